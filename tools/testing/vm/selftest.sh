#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Checks that vm-run tells good runs from bad ones: a clean run passes, the
# command's exit status comes through, a timeout is reported as one, a VM
# whose CPUs all halt for good is stopped as stalled, and a deliberate
# kernel WARN (and, where kmemleak exists, a deliberate leak) fails the
# run even though the command itself succeeded. The bad kernel
# behaviour comes from a throwaway module built here, at run time, against
# the kernel under test.
#
# Usage: selftest.sh [--debian]
#   default   the debug kernel (must be built: make debug-kernel)
#   --debian  Debian's 6.12 kernel (no kmemleak there: that check is skipped)
#
# Six VM boots: about 2 minutes on Debian's kernel, 12 on the debug one
# (idle 2-core host). Not part of `make check`. Each boot may take
# SELFTEST_TIMEOUT seconds (default 1200).
set -euo pipefail

HERE=$(cd "$(dirname "$(readlink -f "$0")")" && pwd)
REPO=$(cd "$HERE/../../.." && pwd)
VM_RUN=$HERE/vm-run
TIMEOUT=${SELFTEST_TIMEOUT:-1200}

PASSED=0
FAILED=0

say() { printf 'selftest: %s\n' "$*" >&2; }

# Runs vm-run with the given arguments, its output kept in $WORK/<name>.log,
# and checks the exit status and that the summary line matches a regex.
check() {
	local name=$1 want_rc=$2 want_summary=$3 rc summary
	shift 3

	say "$name ..."
	rc=0
	# The check's own options come later and win (--timeout for one).
	"$VM_RUN" "${KERNEL_ARGS[@]}" --timeout "$TIMEOUT" --out "$WORK/$name" "$@" \
		>"$WORK/$name.log" 2>&1 || rc=$?
	summary=$(grep '^vm-run: ' "$WORK/$name.log" | tail -n 1)
	if [ "$rc" = "$want_rc" ] && grep -qE -e "$want_summary" <<<"$summary"; then
		say "$name: ok ($summary)"
		PASSED=$((PASSED + 1))
	else
		say "$name: FAILED: vm-run exited $rc (want $want_rc), last line: $summary"
		say "$name: want a last line matching: $want_summary; full output in $WORK/$name.log"
		FAILED=$((FAILED + 1))
	fi
}

build_module() {
	local kdir=$1 dir=$WORK/module

	mkdir -p "$dir"
	cat >"$dir/vmrun_selftest.c" <<'EOF'
// SPDX-License-Identifier: GPL-2.0
/* Misbehaves on load, on purpose, for tools/testing/vm/selftest.sh. */
#include <linux/bug.h>
#include <linux/module.h>
#include <linux/slab.h>
#include <linux/smp.h>

static char *what = "nothing";
module_param(what, charp, 0444);

/* Interrupts off, halted: nothing wakes this CPU again. */
static void vmrun_selftest_halt(void *unused)
{
	local_irq_disable();
	for (;;)
		native_halt();
}

static int __init vmrun_selftest_init(void)
{
	if (!strcmp(what, "warn"))
		WARN_ON(1);
	if (!strcmp(what, "leak"))
		pr_info("vmrun_selftest: leaking %p\n", kmalloc(128, GFP_KERNEL));
	if (!strcmp(what, "halt")) {
		pr_info("vmrun_selftest: halting every CPU\n");
		on_each_cpu(vmrun_selftest_halt, NULL, 0);
	}
	return 0;
}

static void __exit vmrun_selftest_exit(void)
{
}

module_init(vmrun_selftest_init);
module_exit(vmrun_selftest_exit);
MODULE_DESCRIPTION("vm-run selftest: a deliberate WARN, leak or halt");
MODULE_LICENSE("GPL");
EOF
	echo 'obj-m := vmrun_selftest.o' >"$dir/Kbuild"
	say "building the test module against $kdir"
	make -s -C "$kdir" M="$dir" modules >"$WORK/module-build.log" 2>&1 || {
		cat "$WORK/module-build.log" >&2
		say "cannot build the test module"
		exit 1
	}
	MODULE=$dir/vmrun_selftest.ko
}

main() {
	local kdir

	KERNEL_ARGS=()
	case ${1:-} in
	--debian) KERNEL_ARGS=(--debian) ;;
	"") ;;
	*) sed -n '3,18p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
	esac

	# Under the host's /tmp on purpose: the VM must see directories there
	# (the module, the output directories) at the same paths.
	WORK=$(mktemp -d -t vm-run-selftest.XXXXXX)

	check clean 0 'command exited 0; kernel log clean' -- true
	if [ "$FAILED" != 0 ]; then
		say "a plain run fails; not going on (see $WORK)"
		exit 1
	fi
	check exit-status 3 'command exited 3; kernel log clean' -- sh -c 'exit 3'
	# Garbage for --stall is refused before anything boots.
	check stall-garbage 2 'error: --stall takes whole seconds' --stall 5s -- true
	check stall-negative 2 'error: --stall takes whole seconds' --stall -1 -- true
	check timeout 124 'timed out after 20 s' --timeout 20 -- sleep 3600

	# The first check proved the kernel exists, so neither call builds.
	if [ "${KERNEL_ARGS[*]}" = --debian ]; then
		kdir=$("$REPO/scripts/kvmx-kernel" debian 6.12)
	else
		kdir=$("$REPO/scripts/kvmx-kernel" debug)
	fi
	build_module "$kdir"
	check warn 1 'command exited 0; FAILED: kernel WARNING in the guest kernel log' \
		-- insmod "$MODULE" what=warn
	# Every CPU halted with interrupts off: the stall watchdog, not the
	# 20-minute timeout, ends it, with the CPUs' registers saved.
	check stall 124 'stalled: the VM.s CPUs did no work for [0-9]+ s' \
		--stall 30 -- insmod "$MODULE" what=halt
	if ! grep -q 'RIP=' "$WORK/stall/qemu-stall.log" 2>/dev/null; then
		say "stall: FAILED: no registers in $WORK/stall/qemu-stall.log"
		FAILED=$((FAILED + 1))
	fi
	if grep -q 'kmemleak' "$WORK/clean/dmesg"; then
		check leak 1 'command exited 0; FAILED: kmemleak: [1-9][0-9]* unreferenced object' \
			-- insmod "$MODULE" what=leak
	else
		say "leak: skipped (no kmemleak in this kernel)"
	fi

	say "$PASSED passed, $FAILED failed"
	if [ "$FAILED" = 0 ]; then
		rm -rf "$WORK"
	else
		say "logs kept in $WORK"
		exit 1
	fi
}

main "$@"
