#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# vmlaunch end to end: boot real Linux guests under (nested) KVM with
# vmlaunch and check what they did. Runs as root inside the test VM, where
# the kvmx modules are already loaded; prints TAP as kselftest_harness does.
#
# Needs, relative to the repository this script lives in:
#   build/vmlaunch/vmlaunch   make vmlaunch
#   build/guest/              tools/testing/guest/mkinitramfs (run here if
#                             missing; the VM's root is writable overlay)
# and, for the network tests, iperf3, ip and the tun and vhost_net modules.
#
# Environment: VMLAUNCH_TEST_TIMEOUT  seconds one guest may run (default 240,
#                                     600 on the debug kernel)
#              VMLAUNCH_TEST_KEEP=1   keep the work directory (logs, disks)
#              VMLAUNCH_TEST_ONLY=RE  run only the tests whose name matches
#                                     (the others are reported as skipped)
set -u

HERE=$(cd "$(dirname "$(readlink -f "$0")")" && pwd)
REPO=$(cd "$HERE/../../../.." && pwd)
VMLAUNCH=$REPO/build/vmlaunch/vmlaunch
GUEST=$REPO/build/guest
# On the debug kernel (KASAN, lockdep), every exit of a nested guest costs
# far more: a boot that takes 6-15 s on Debian's kernel took 105-430 s, the
# net guest 182-363 s (measured under TCG on a shared 2-core host).
# The guest's own watchdog (kvmx.timeout, for an action that hangs) fires
# well before the host's.
if [[ $(uname -r) == *-kvmx-debug* ]]; then
	TIMEOUT=${VMLAUNCH_TEST_TIMEOUT:-600}
else
	TIMEOUT=${VMLAUNCH_TEST_TIMEOUT:-240}
fi
WATCHDOG=$((TIMEOUT * 3 / 8))
CMDLINE="console=ttyS0 pci=off quiet nokaslr panic=-1 kvmx.timeout=$WATCHDOG"
# --transport pci: the guest must scan its PCI bus, though not every bus
# for an AGP bridge first (see vmlaunch's default command line).
CMDLINE_PCI=${CMDLINE/ pci=off/ pci=noearly}
MEM=256M
PATTERN_SIZE=1048576

WORK=$(mktemp -d /tmp/vmlaunch_test.XXXXXX)
HOLDER_PID=
SERVER_PIDS=()
TAPS=()
cleanup() {
	local pid tap
	[ -z "$HOLDER_PID" ] || kill "$HOLDER_PID" 2>/dev/null
	for pid in "${SERVER_PIDS[@]}"; do
		kill "$pid" 2>/dev/null
	done
	for tap in "${TAPS[@]}"; do
		ip link del "$tap" 2>/dev/null
	done
	[ "${VMLAUNCH_TEST_KEEP:-0}" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT

# Some tests look at a guest another test started.
TESTS=(
	boot_powers_off_with_status_0
	console_input_reaches_the_guest
	virtio_console_carries_both_ways
	disk_write_user_backend
	reboot_with_two_cpus_exits_3
	mmio_register_reads_need_no_exit
	disk_write_mmio_reads_exit
	disk_write_vhost_backend
	disk_queues_each_carry_requests
	pci_disk_write_user_backend
	pci_disk_write_vhost_backend
	read_only_disks_refuse_writes
	sigterm_exits_4
	threads_are_named_for_their_roles
	net_user_backend
	net_vhost_net
	net_kvmx_vhost_net
	pci_net_user_backend
	pci_net_vhost_net
	pci_net_kvmx_vhost_net
	qemu_vhostfd_on_vhost_net
	qemu_vhostfd_on_kvmx_vhost_net
	bad_arguments_exit_2
	missing_kernel_is_reported
	no_dev_kvm_is_reported
	virtqueue_rejects_hostile_chains
	pci_transport_rejects_hostile_accesses
)

# ---- helpers -------------------------------------------------------------------

diag() {
	printf '# %s\n' "$@"
}

# Show the end of a guest log after a failure.
show_log() {
	diag "last lines of $(basename "$1"):"
	tail -n "${2:-25}" "$1" | sed 's/^/# | /'
}

# A reason to skip every test that boots a guest, or empty.
GUEST_SKIP=
VHOST_SKIP=

setup() {
	if [ ! -x "$VMLAUNCH" ]; then
		GUEST_SKIP="no $VMLAUNCH (run make vmlaunch)"
		return
	fi
	if [ ! -e /dev/kvm ]; then
		modprobe kvm_amd 2>/dev/null || modprobe kvm_intel 2>/dev/null
		udevadm settle 2>/dev/null
	fi
	if [ ! -e /dev/kvm ]; then
		GUEST_SKIP="no /dev/kvm (kvm_amd/kvm_intel would not load: no nested virtualization?)"
		return
	fi
	if [ ! -e "$GUEST/bzImage" ] || [ ! -e "$GUEST/initramfs.cpio.gz" ] ||
		[ ! -e "$GUEST/pattern.bin" ]; then
		diag "no guest image in $GUEST; building it"
		if ! "$REPO/tools/testing/guest/mkinitramfs" --out "$GUEST" >"$WORK/mkinitramfs.log" 2>&1; then
			show_log "$WORK/mkinitramfs.log" 5
			GUEST_SKIP="no guest image (tools/testing/guest/mkinitramfs failed)"
			return
		fi
	fi
	[ -e /dev/vhost-blk ] || VHOST_SKIP="no /dev/vhost-blk (kvmx_vhost_blk is not loaded)"
	hold_kvm_static_keys
}

# ---- network ---------------------------------------------------------------------

# One guest, one NIC per backend, each on its own tap and subnet here:
# NIC i is tap kvmxtap<i>, 10.0.<10+i>.1 here and .2 in the guest, with
# iperf3 servers on ports 5201+2i (guest sends) and 5202+2i (guest
# receives). Filled by net_setup: the NICs that run, and why others don't.
NET_BACKENDS=(user vhost kvmx)
declare -A NET_SKIP NET_MAC
NET_ARGS=()
NET_SPECS=
NET_FD_TAP=

net_skip_all() {
	local b
	for b in "${NET_BACKENDS[@]}"; do
		NET_SKIP[$b]=$1
	done
}

net_setup() {
	local i=0 b tap opt port
	[ -z "$GUEST_SKIP" ] || { net_skip_all "$GUEST_SKIP"; return; }
	[ -e "$GUEST/initramfs-net.cpio.gz" ] ||
		{ net_skip_all "no $GUEST/initramfs-net.cpio.gz (run tools/testing/guest/mkinitramfs)"; return; }
	command -v iperf3 >/dev/null || { net_skip_all "no iperf3 here (apt-get install iperf3)"; return; }
	command -v ip >/dev/null || { net_skip_all "no ip here (apt-get install iproute2)"; return; }
	[ -e /dev/net/tun ] || modprobe tun 2>/dev/null
	[ -e /dev/net/tun ] || { net_skip_all "no /dev/net/tun (the tun module would not load)"; return; }
	[ -e /dev/vhost-net ] || modprobe vhost_net 2>/dev/null
	[ -e /dev/vhost-net ] || NET_SKIP[vhost]="no /dev/vhost-net (the vhost_net module would not load)"
	[ -e /dev/kvmx-vhost-net ] ||
		NET_SKIP[kvmx]="no /dev/kvmx-vhost-net (kvmx_vhost_net is not loaded)"
	for b in "${NET_BACKENDS[@]}"; do
		[ -z "${NET_SKIP[$b]:-}" ] || continue
		case $b in
		user) opt=tap=kvmxtap$i,user ;;
		# Through fds opened by the caller, as libvirt hands them to QEMU.
		vhost) opt=tapfd=@TAPFD@,vhostfd=@VHOSTFD@ NET_FD_TAP=kvmxtap$i ;;
		kvmx) opt=tap=kvmxtap$i,vhost=/dev/kvmx-vhost-net ;;
		esac
		tap=kvmxtap$i
		port=$((5201 + 2 * i))
		NET_MAC[$b]=02:6b:76:6d:78:1$i
		if ! ip tuntap add dev "$tap" mode tap vnet_hdr >"$WORK/net-setup.log" 2>&1 ||
			! ip addr add "10.0.$((10 + i)).1/24" dev "$tap" >>"$WORK/net-setup.log" 2>&1 ||
			! ip link set "$tap" up >>"$WORK/net-setup.log" 2>&1; then
			NET_SKIP[$b]="cannot set up tap $tap: $(tr '\n' ' ' <"$WORK/net-setup.log")"
			continue
		fi
		TAPS+=("$tap")
		iperf3_servers "10.0.$((10 + i))" "$port" "$WORK/iperf3-$b"
		NET_ARGS+=(--net "$opt,mac=${NET_MAC[$b]}")
		NET_SPECS+=${NET_SPECS:++}${NET_MAC[$b]},10.0.$((10 + i)).2/24,10.0.$((10 + i)).1,$port
		i=$((i + 1))
	done
}

# iperf3_bytes FILE WHAT: the bytes the server's JSON report says it
# received (WHAT=sum_received) or sent (sum_sent); 0 if there is none.
iperf3_bytes() {
	python3 -c 'import json, sys; print(int(json.load(open(sys.argv[1]))["end"][sys.argv[2]]["bytes"]))' \
		"$1" "$2" 2>/dev/null || echo 0
}

# with_fds TAP VHOST FDINFO CMD ARGS...: open TAP (IFF_TAP|IFF_NO_PI|
# IFF_VNET_HDR) and the VHOST node as libvirt does for a VMM, and run CMD
# with both inherited, @TAPFD@ and @VHOSTFD@ in ARGS replaced by their
# numbers. FDINFO "-": exec CMD. Else run it, then write the fdinfo of our
# own copy of the vhost fd to FDINFO (the device outlives CMD through it,
# so its counters are what CMD moved through it) and exit with CMD's
# status. A script file, because timeout(1) cannot run a shell function.
WITH_FDS=$WORK/with_fds.py
cat >"$WITH_FDS" <<'EOF'
import fcntl, os, struct, sys
tap = os.open("/dev/net/tun", os.O_RDWR)
# TUNSETIFF, struct ifreq: IFF_TAP | IFF_NO_PI | IFF_VNET_HDR
fcntl.ioctl(tap, 0x400454ca, struct.pack("16sH22x", sys.argv[1].encode(), 0x5002))
vhost = os.open(sys.argv[2], os.O_RDWR)
os.set_inheritable(tap, True)
os.set_inheritable(vhost, True)
args = [a.replace("@TAPFD@", str(tap)).replace("@VHOSTFD@", str(vhost)) for a in sys.argv[4:]]
if sys.argv[3] == "-":
    os.execvp(args[0], args)
pid = os.fork()
if pid == 0:
    os.execvp(args[0], args)
_, status = os.waitpid(pid, 0)
with open("/proc/self/fdinfo/%d" % vhost) as src, open(sys.argv[3], "w") as dst:
    dst.write(src.read())
sys.exit(os.waitstatus_to_exitcode(status))
EOF

# iperf3_servers NET PORT PREFIX: two one-shot iperf3 servers on NET.1 (-1:
# one client each, then the JSON report and exit 0), ports PORT (the guest
# sends) and PORT+1 (it receives), reporting to PREFIX-send.json and
# PREFIX-receive.json. Servers an earlier guest left on NET go first.
iperf3_servers() {
	pkill -f "iperf3 -s -1 -J -B $1.1 " 2>/dev/null && sleep 0.2
	rm -f "$3-send.json" "$3-receive.json"
	iperf3 -s -1 -J -B "$1.1" -p "$2" --logfile "$3-send.json" &
	SERVER_PIDS+=($!)
	iperf3 -s -1 -J -B "$1.1" -p $(($2 + 1)) --logfile "$3-receive.json" &
	SERVER_PIDS+=($!)
}

# net_servers PREFIX: fresh one-shot iperf3 servers for every NIC, on the
# ports net_setup gave them, reporting to PREFIX-BACKEND-{send,receive}.json.
# The earlier ones are done, never got a client, or were left mid-test by
# a guest that died (they would answer a new client "busy").
net_servers() {
	local i=0 b
	for b in "${NET_BACKENDS[@]}"; do
		[ -z "${NET_SKIP[$b]:-}" ] || continue
		iperf3_servers "10.0.$((10 + i))" $((5201 + 2 * i)) "$1-$b"
		i=$((i + 1))
	done
}

# net_run NAME PREFIX CMDLINE [ARGS...]: the guest that tests every NIC,
# once, booted by the first test that needs it; its iperf3 servers report
# to PREFIX-BACKEND-*.json (started again if the guest has to run again).
net_run() {
	local name=$1 prefix=$2 cmdline=$3
	shift 3
	[ -z "${VM_RC[$name]:-}" ] || return 0
	[ -n "$NET_SPECS" ] || return 0
	[ -z "$NET_FD_TAP" ] || RUN_PREFIX=(python3 "$WITH_FDS" "$NET_FD_TAP" /dev/vhost-net -)
	RUN_BEFORE_RETRY=(net_servers "$prefix")
	VMLAUNCH_INITRD=$GUEST/initramfs-net.cpio.gz run_vm "$name" --cpus 2 --mem 512M "$@" \
		"${NET_ARGS[@]}" \
		--cmdline "$cmdline kvmx.timeout=$((TIMEOUT * 5 / 6)) kvmx.test=net kvmx.net=$NET_SPECS"
	RUN_PREFIX=()
	RUN_BEFORE_RETRY=()
	# The servers end after their one test; give the last report a moment.
	sleep 1
	diag "$name guest: $SECS s from start to poweroff"
}

# The same NICs on virtio-pci, with servers of their own.
net_pci_boot() {
	[ -z "${VM_RC[net_pci]:-}" ] || return 0
	net_servers "$WORK/iperf3-pci"
	net_run net_pci "$WORK/iperf3-pci" "$CMDLINE_PCI" --transport pci
}

# net_test BACKEND [pci]: the guest pinged this NIC's peer without a loss
# and ran iperf3 both ways with status 0; the server received more than 0
# bytes from the guest, and sent more than 0 bytes that the guest's iperf3
# counted as received. Its virtio interrupts came through the IOAPIC
# (virtio-mmio) or as MSI-X vectors (pci).
net_test() {
	local b=$1 name=net json=$WORK/iperf3-$1 chip=IO-APIC
	[ -z "${NET_SKIP[$b]:-}" ] || { SKIP_REASON=${NET_SKIP[$b]}; return 4; }
	if [ "${2:-}" = pci ]; then
		name=net_pci json=$WORK/iperf3-pci-$b chip=PCI-MSIX
		net_pci_boot
	else
		net_run net "$WORK/iperf3" "$CMDLINE"
	fi
	RC=${VM_RC[$name]}
	expect_rc 0 "$WORK/$name.log" || return 1
	net_checks "$WORK/$name.log" "${NET_MAC[$b]}" "$json" || return 1
	expect_virtio_irqs "$WORK/$name.log" $chip
}

# net_checks LOG MAC JSON: what the guest's net action reported for the
# NIC with MAC, and the iperf3 servers' reports JSON-send.json and
# JSON-receive.json.
net_checks() {
	local log=$1 mac=$2 json=$3 bytes ok=0
	expect_line "$log" "KVMX-TEST: net done" || return 1
	grep -a "KVMX-TEST: net $mac" "$log" | tr -d '\r' | sed 's/^KVMX-TEST: /# /'
	if ! tr -d '\r' <"$log" | grep -q "^KVMX-TEST: net $mac ping rc 0 10 packets transmitted, 10 packets received"; then
		diag "ping lost packets or failed"
		ok=1
	fi
	if ! tr -d '\r' <"$log" | grep -q "^KVMX-TEST: net $mac flood rc 0 1000 packets transmitted, 1000 packets received, 0% packet loss"; then
		diag "the ping flood lost packets or failed"
		ok=1
	fi
	expect_line "$log" "KVMX-TEST: net $mac iperf3-send rc 0" \
		"KVMX-TEST: net $mac iperf3-receive rc 0" || ok=1
	bytes=$(iperf3_bytes "$json-send.json" sum_received)
	diag "iperf3, guest to here: the server received $bytes bytes"
	[ "$bytes" -gt 0 ] || ok=1
	bytes=$(iperf3_bytes "$json-receive.json" sum_sent)
	diag "iperf3, here to guest: the server sent $bytes bytes"
	[ "$bytes" -gt 0 ] || ok=1
	if ! tr -d '\r' <"$log" |
		grep -Eq "^KVMX-TEST: net $mac iperf3-receive: .* [1-9][0-9.]* [KMG]Bytes .* receiver"; then
		diag "the guest's iperf3 received nothing"
		ok=1
	fi
	return $ok
}

test_net_user_backend() {
	net_test user
}

test_net_vhost_net() {
	net_test vhost
}

test_net_kvmx_vhost_net() {
	net_test kvmx
}

test_pci_net_user_backend() {
	net_test user pci
}

test_pci_net_vhost_net() {
	net_test vhost pci
}

test_pci_net_kvmx_vhost_net() {
	net_test kvmx pci
}

# fdinfo_value FILE KEY: KEY's number in an fdinfo dump, or -1.
fdinfo_value() {
	awk -v k="$2:" '$1 == k { print $2; found = 1 } END { if (!found) print -1 }' "$1"
}

# qemu_net_test NODE TAP LAST_OCTET PORT MAC: stock QEMU (Debian's
# qemu-system-x86, microvm, virtio-net-device) given a tap fd and an fd of
# NODE with -netdev tap,vhost=on,vhostfd=N, as libvirt would: the guest's
# net action (10 pings, a flood of 1000, iperf3 both ways) must pass. On
# kvmx's node the device's own counters must show the traffic went
# through it with nothing dropped.
# Did the guest kernel whose console is in LOG say why it stopped (a
# panic, an oops, a reboot)? A death without such a word is the nested-KVM
# reset that earns a guest one more run (see run_vm).
kernel_said_why() {
	grep -qE 'reboot: Restarting|Kernel panic|Oops|BUG|Call Trace' "$1"
}

# qemu_net_boot NODE TAP NET PORT MAC NAME LOG FDINFO: fresh one-shot
# iperf3 servers for the guest, then QEMU on NODE; sets RC.
qemu_net_boot() {
	local node=$1 tap=$2 net=$3 port=$4 mac=$5 name=$6 log=$7 fdinfo=$8

	iperf3_servers "$net" "$port" "$WORK/iperf3-$name"
	python3 "$WITH_FDS" "$tap" "$node" "$fdinfo" \
		timeout -k 20 "$TIMEOUT" qemu-system-x86_64 \
		-M microvm,x-option-roms=off,rtc=off -enable-kvm -cpu host -m 512M -smp 1 \
		-nodefaults -no-user-config -display none -monitor none -serial stdio -no-reboot \
		-kernel "$GUEST/bzImage" -initrd "$GUEST/initramfs-net.cpio.gz" \
		-append "$CMDLINE kvmx.timeout=$((TIMEOUT * 5 / 6)) kvmx.test=net kvmx.net=$mac,$net.2/24,$net.1,$port" \
		-netdev "tap,id=n0,fd=@TAPFD@,vhost=on,vhostfd=@VHOSTFD@" \
		-device "virtio-net-device,netdev=n0,mac=$mac" >"$log" 2>&1
	RC=$?
	sleep 1
}

qemu_net_test() {
	local node=$1 tap=$2 net=10.0.$3 port=$4 mac=$5 name=qemu-$2
	local log=$WORK/$name.log fdinfo=$WORK/$name.fdinfo key val ok=0
	command -v qemu-system-x86_64 >/dev/null ||
		{ SKIP_REASON="no qemu-system-x86_64 here (apt-get install qemu-system-x86)"; return 4; }
	if ! ip tuntap add dev "$tap" mode tap vnet_hdr >"$WORK/$name-setup.log" 2>&1 ||
		! ip addr add "$net.1/24" dev "$tap" >>"$WORK/$name-setup.log" 2>&1 ||
		! ip link set "$tap" up >>"$WORK/$name-setup.log" 2>&1; then
		diag "cannot set up tap $tap: $(tr '\n' ' ' <"$WORK/$name-setup.log")"
		return 1
	fi
	TAPS+=("$tap")
	qemu_net_boot "$node" "$tap" "$net" "$port" "$mac" "$name" "$log" "$fdinfo"
	# With -no-reboot, a guest reset ends QEMU with 0. One that ended
	# silently mid-test (the nested-KVM reset run_vm describes; seen once
	# during host-to-guest iperf3 on kvmx's NIC, not yet explained) runs
	# once more; a second one fails.
	if [ "$RC" = 0 ] && ! grep -q 'KVMX-TEST: net done' "$log" && ! kernel_said_why "$log"; then
		diag "QEMU's guest ended before 'net done' without a kernel message: running it once more; its log: $log.reset.log"
		tail -n 3 "$log" | sed 's/^/# | /'
		mv "$log" "$log.reset.log"
		qemu_net_boot "$node" "$tap" "$net" "$port" "$mac" "$name" "$log" "$fdinfo"
	fi
	if [ "$RC" = 124 ]; then
		diag "QEMU did not finish within $TIMEOUT s"
		show_log "$log"
		return 1
	fi
	if [ "$RC" != 0 ]; then
		diag "QEMU exited with $RC, expected 0"
		show_log "$log"
		return 1
	fi
	net_checks "$log" "$mac" "$WORK/iperf3-$name" || ok=1
	[ "$node" = /dev/kvmx-vhost-net ] || return $ok
	[ -s "$fdinfo" ] || { diag "no fdinfo of the vhost fd was kept"; return 1; }
	diag "kvmx vhost-net counters after QEMU: $(grep -E '^(rx|tx)_' "$fdinfo" | tr '\t\n' '  ')"
	for key in rx_packets tx_packets; do
		val=$(fdinfo_value "$fdinfo" "$key")
		# The flood alone is 1000 frames each way.
		[ "$val" -ge 1000 ] || { diag "$key is $val, expected at least 1000"; ok=1; }
	done
	for key in rx_dropped tx_dropped; do
		val=$(fdinfo_value "$fdinfo" "$key")
		[ "$val" = 0 ] || { diag "$key is $val, expected 0"; ok=1; }
	done
	return $ok
}

# The reference: what the same QEMU command does with the kernel's
# vhost_net proves the test itself right.
test_qemu_vhostfd_on_vhost_net() {
	[ -z "${NET_SKIP[vhost]:-}" ] || { SKIP_REASON=${NET_SKIP[vhost]}; return 4; }
	qemu_net_test /dev/vhost-net kvmxtapqv 20 5231 02:6b:76:6d:78:2e
}

test_qemu_vhostfd_on_kvmx_vhost_net() {
	[ -z "${NET_SKIP[kvmx]:-}" ] || { SKIP_REASON=${NET_SKIP[kvmx]}; return 4; }
	qemu_net_test /dev/kvmx-vhost-net kvmxtapqk 21 5233 02:6b:76:6d:78:2f
}

# One idle VM open for the whole run, so that booting and ending guests
# never patches kernel text (see tools/testing/guest/hold-kvm-keys).
hold_kvm_static_keys() {
	local i
	command -v python3 >/dev/null || { diag "no python3: KVM's static keys not held"; return; }
	python3 "$REPO/tools/testing/guest/hold-kvm-keys" >"$WORK/holder.log" 2>&1 &
	HOLDER_PID=$!
	# Let the keys settle before the first guest starts.
	for i in $(seq 100); do
		grep -q ready "$WORK/holder.log" 2>/dev/null && break
		sleep 0.1
	done
	grep -q ready "$WORK/holder.log" || diag "KVM's static keys not held: $(cat "$WORK/holder.log")"
	sleep 2
}

# run_vm NAME ARGS...: run vmlaunch on the test guest, output in $WORK/NAME.log;
# sets RC (vmlaunch's exit status, 124 if it had to be stopped) and SECS,
# and remembers both as VM_RC[NAME] and VM_SECS[NAME]. RUN_PREFIX, if set,
# is a command that execs the rest (see with_fds).
declare -A VM_RC VM_SECS
RUN_PREFIX=()
# A command run_vm runs before it boots a guest again (net_run: fresh servers).
RUN_BEFORE_RETRY=()
run_vm_once() {
	local name=$1 start end
	shift
	start=$(date +%s%N)
	timeout -k 20 "$TIMEOUT" "${RUN_PREFIX[@]}" "$VMLAUNCH" --kernel "$GUEST/bzImage" \
		--initrd "${VMLAUNCH_INITRD:-$GUEST/initramfs.cpio.gz}" --mem "$MEM" "$@" \
		>"$WORK/$name.log" 2>&1
	RC=$?
	end=$(date +%s%N)
	SECS=$(((end - start) / 1000000000))
	VM_RC[$name]=$RC
	VM_SECS[$name]=$SECS
}

# A guest with 2 vCPUs patches its own kernel text (static keys) through
# int3 while the other vCPU runs it; nested under QEMU's multi-threaded
# TCG, that vCPU can execute the stale int3 and the guest panics with
# "Oops: int3" (seen in early boot of a userspace-backend guest, no kvmx
# device involved: the emulator race kvmx-check already retries for the
# test VM itself). The 2-vCPU net guest also, now and then, triple-faults
# with nothing on its console: no panic, no oops, no reboot message
# (seen during traffic on the userspace backend's NIC as on kvmx's, and
# on the same guest passing when run again). Such a guest runs once more,
# with a line saying so and its log kept; a second death counts.
run_vm() {
	local why kept

	run_vm_once "$@"
	if grep -q 'Oops: int3' "$WORK/$1.log" 2>/dev/null; then
		why="died of 'Oops: int3' (an emulator race, see run_vm)"
		kept=$WORK/$1.int3.log
	elif grep -q 'triple fault' "$WORK/$1.log" 2>/dev/null && ! kernel_said_why "$WORK/$1.log"; then
		why="triple-faulted without a kernel message (nested KVM under TCG, see run_vm)"
		kept=$WORK/$1.triple-fault.log
	else
		return 0
	fi
	diag "guest '$1' $why: running it once more; its log: $kept"
	tail -n 3 "$WORK/$1.log" | sed 's/^/# | /'
	mv "$WORK/$1.log" "$kept"
	[ ${#RUN_BEFORE_RETRY[@]} = 0 ] || "${RUN_BEFORE_RETRY[@]}"
	run_vm_once "$@"
}

# ran NAME: load RC and SECS of a guest an earlier test booted; false if
# none did (that test was skipped).
ran() {
	[ -n "${VM_RC[$1]:-}" ] || return 1
	RC=${VM_RC[$1]}
	SECS=${VM_SECS[$1]}
}

# expect_rc WANT LOG: fail with the log unless vmlaunch exited with WANT.
expect_rc() {
	if [ "$RC" = 124 ]; then
		diag "vmlaunch did not finish within $TIMEOUT s"
		show_log "$2"
		return 1
	fi
	if [ "$RC" != "$1" ]; then
		diag "vmlaunch exited with $RC, expected $1"
		show_log "$2"
		return 1
	fi
}

# expect_line LOG TEXT...: each TEXT must be a line of LOG, as printed.
expect_line() {
	local log=$1 text
	shift
	for text in "$@"; do
		if ! tr -d '\r' <"$log" | grep -qxF -- "$text"; then
			diag "expected the line '$text'"
			show_log "$log"
			return 1
		fi
	done
}

# A disk image: 8 MiB, with the pattern in its first MiB (the guest checks
# that it reads it back), zeroes elsewhere.
make_disk() {
	truncate -s 8M "$1" && dd if="$GUEST/pattern.bin" of="$1" conv=notrunc status=none
}

# same_bytes FILE OFFSET: the MiB of FILE at OFFSET is the pattern.
same_bytes() {
	dd if="$1" bs=64k skip=$(($2 / 65536)) count=16 status=none | cmp -s - "$GUEST/pattern.bin"
}

# expect_virtio_irqs LOG CHIP: the guest's virtio interrupts (its "irq NAME
# CHIP COUNT" lines) all come through CHIP (IO-APIC: virtio-mmio's pins;
# PCI-MSIX: virtio-pci's vectors), and it took some.
expect_virtio_irqs() {
	local log=$1 chip=$2 lines
	lines=$(tr -d '\r' <"$log" | sed -n 's/^KVMX-TEST: irq //p')
	diag "the guest's virtio interrupts: $(echo "$lines" | paste -sd ';')"
	[ -n "$lines" ] || { diag "the guest listed no virtio interrupt"; return 1; }
	if echo "$lines" | awk -v c="$chip" 'index($2, c) != 1 { bad = 1 } END { exit !bad }'; then
		diag "a virtio interrupt does not come through $chip"
		return 1
	fi
	if ! echo "$lines" | awk '$3 > 0 { took = 1 } END { exit !took }'; then
		diag "the guest took no virtio interrupt"
		return 1
	fi
}

# ---- tests ----------------------------------------------------------------------

# The first guest waits for a line on its console (vmlaunch --console,
# stdin a FIFO the test writes once the guest asks), prints it back and
# powers off.
# console_vm NAME LINE ARGS...: boot the console action with --console and
# ARGS, write LINE to vmlaunch's stdin (a FIFO) once the guest asks;
# output in $WORK/NAME.log, RC and SECS as run_vm sets them.
console_vm() {
	local name=$1 line=$2 log=$WORK/$1.log fifo=$WORK/$1.in pid i start end
	shift 2
	mkfifo "$fifo" || return 1
	start=$(date +%s%N)
	timeout -k 20 "$TIMEOUT" "$VMLAUNCH" --kernel "$GUEST/bzImage" \
		--initrd "$GUEST/initramfs.cpio.gz" --mem "$MEM" --console "$@" \
		<"$fifo" >"$log" 2>&1 &
	pid=$!
	exec 3>"$fifo"
	for i in $(seq $((TIMEOUT * 10))); do
		grep -q "KVMX-TEST: waiting for a line on the console" "$log" && break
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	echo "$line" >&3
	wait "$pid"
	RC=$?
	exec 3>&-
	rm -f "$fifo"
	end=$(date +%s%N)
	SECS=$(((end - start) / 1000000000))
	VM_RC[$name]=$RC
	VM_SECS[$name]=$SECS
}

test_boot_powers_off_with_status_0() {
	local log=$WORK/boot.log
	[ -z "$GUEST_SKIP" ] || { SKIP_REASON=$GUEST_SKIP; return 4; }
	console_vm boot "hello from the host" --cmdline "$CMDLINE kvmx.test=console" || return 1
	expect_rc 0 "$log" || return 1
	if ! grep -q "^KVMX-TEST: poweroff at" "$log"; then
		diag "the guest did not power off by itself"
		show_log "$log"
		return 1
	fi
	diag "boot to poweroff: $SECS s ($(grep -o 'init started at .*' "$log" | tr -d '\r'))"
}

test_console_input_reaches_the_guest() {
	ran boot || { SKIP_REASON="no guest booted (see boot_powers_off_with_status_0)"; return 4; }
	expect_line "$WORK/boot.log" "KVMX-TEST: console got 'hello from the host'"
}

# With --virtio-console, stdin goes to the guest's hvc0 only and hvc0's
# output to stdout: the guest's init switches to hvc0 once virtio_mmio is
# loaded, says so, reads the line there and prints it back there.
# vmlaunch -v counts the bytes the device moved each way.
test_virtio_console_carries_both_ways() {
	local log=$WORK/vcon.log line="hello over hvc0"
	[ -z "$GUEST_SKIP" ] || { SKIP_REASON=$GUEST_SKIP; return 4; }
	console_vm vcon "$line" --virtio-console -v \
		--cmdline "$CMDLINE console=hvc0 kvmx.console=hvc0 kvmx.test=console" || return 1
	expect_rc 0 "$log" || return 1
	expect_line "$log" "KVMX-TEST: console is /dev/hvc0" \
		"KVMX-TEST: console got '$line'" || return 1
	# The line and its newline went in; the guest's reports came out.
	if ! grep -Eq "hvc0: $((${#line} + 1)) bytes to the guest, [1-9][0-9]* from it, 0 lost" "$log"; then
		diag "vmlaunch -v did not count ${#line}+1 bytes in and some out"
		show_log "$log"
		return 1
	fi
	diag "virtio console guest: $SECS s, $(grep -o 'hvc0: [0-9]* bytes.*' "$log")"
}

# disk_write BACKEND [ARGS...]: the disk-write action on a disk served by
# BACKEND; more vmlaunch arguments may follow, more --disk options in
# DISK_OPTS (",opt,...").
disk_write() {
	local backend=$1 name=${DISK_NAME:-disk_write_$1} serial=vmlaunch-$1 want=0 img
	local queues=1 chip=IO-APIC
	shift
	[[ " $* " == *" kvmx.end=reboot "* ]] && want=3
	[[ " $* " == *" --transport pci "* ]] && chip=PCI-MSIX
	[[ ${DISK_OPTS:-} =~ ,queues=([0-9]+) ]] && queues=${BASH_REMATCH[1]}
	img=$WORK/$name.img
	make_disk "$img" || return 1
	run_vm "$name" "$@" --disk "$img,$backend${DISK_OPTS:-},serial=$serial"
	expect_rc $want "$WORK/$name.log" || return 1
	expect_line "$WORK/$name.log" "KVMX-TEST: vda size 16384 ro 0" "KVMX-TEST: vda queues $queues" \
		"KVMX-TEST: vda serial $serial" "KVMX-TEST: vda read ok" \
		"KVMX-TEST: vda write ok" "KVMX-TEST: vda readback ok" || return 1
	expect_virtio_irqs "$WORK/$name.log" $chip || return 1
	if ! same_bytes "$img" $PATTERN_SIZE; then
		diag "the backing file does not hold what the guest wrote at 1 MiB"
		return 1
	fi
	if ! same_bytes "$img" 0; then
		diag "the backing file's first MiB changed"
		return 1
	fi
	if [ "$(stat -c %s "$img")" != 8388608 ]; then
		diag "the backing file changed size"
		return 1
	fi
	diag "boot, write, flush, stop: $SECS s"
}

# This guest has two vCPUs and reboots at the end (see the next test), and
# its disk a queue per vCPU (see disk_queues_each_carry_requests), each
# thread polling its ring 20 us before it sleeps (poll=).
test_disk_write_user_backend() {
	[ -z "$GUEST_SKIP" ] || { SKIP_REASON=$GUEST_SKIP; return 4; }
	DISK_OPTS=,queues=2,poll=20 disk_write user --cpus 2 -v \
		--cmdline "$CMDLINE kvmx.test=disk-write kvmx.end=reboot"
}

test_reboot_with_two_cpus_exits_3() {
	local log=$WORK/disk_write_user.log
	ran disk_write_user || { SKIP_REASON="no guest booted (see disk_write_user_backend)"; return 4; }
	expect_rc 3 "$log" || return 1
	if ! grep -q "KVMX-TEST: modules loaded at .* s, cpus 2" "$log"; then
		diag "the guest did not report 2 CPUs"
		show_log "$log"
		return 1
	fi
	grep -q "^KVMX-TEST: reboot at" "$log" || { diag "the guest did not reboot"; return 1; }
}

# virtio-mmio registers are read from a read-only page (Documentation/
# vmlaunch.rst, "Register reads without exits"): the guest of
# disk_write_user_backend probed its disk and took its interrupts on both
# vCPUs without one MMIO read exiting to vmlaunch (-v counts them).
test_mmio_register_reads_need_no_exit() {
	local log=$WORK/disk_write_user.log

	ran disk_write_user || { SKIP_REASON="no guest booted (see disk_write_user_backend)"; return 4; }
	if [ "$(grep -c 'vCPU [0-9]*: .* MMIO (0 reads)' "$log")" != 2 ]; then
		diag "a vCPU's MMIO reads exited to vmlaunch (or -v did not count them):"
		grep 'vCPU [0-9]*: ' "$log" | sed 's/^/# | /'
		return 1
	fi
}

# --mmio-reads exit: no register page, every read exits and is answered;
# the guest works as before.
test_disk_write_mmio_reads_exit() {
	local log=$WORK/disk_write_reads_exit.log

	[ -z "$GUEST_SKIP" ] || { SKIP_REASON=$GUEST_SKIP; return 4; }
	DISK_NAME=disk_write_reads_exit disk_write user --mmio-reads exit -v \
		--cmdline "$CMDLINE kvmx.test=disk-write" || return 1
	if ! grep -Eq 'vCPU 0: .* MMIO \([1-9][0-9]* reads\)' "$log"; then
		diag "with --mmio-reads exit, no MMIO read exited:"
		grep 'vCPU [0-9]*: ' "$log" | sed 's/^/# | /'
		return 1
	fi
}

# 3200 MiB of guest RAM: 3 GiB below the MMIO hole, the rest from 4 GiB,
# so the backend's memory table has two regions and buffers may be above
# 4 GiB (MAP_NORESERVE: only what the guest touches is allocated).
test_disk_write_vhost_backend() {
	[ -z "$GUEST_SKIP" ] || { SKIP_REASON=$GUEST_SKIP; return 4; }
	[ -z "$VHOST_SKIP" ] || { SKIP_REASON=$VHOST_SKIP; return 4; }
	# With the worker busy-polling the ring between requests (poll=), the
	# path QEMU-like setups use; a refused busy-loop ioctl fails the boot.
	# Two vCPUs, a queue each, a worker each.
	DISK_OPTS=,poll=20,queues=2 disk_write vhost --mem 3200M --cpus 2 -v \
		--cmdline "$CMDLINE kvmx.test=disk-write"
}

# The same on virtio-pci, each disk a PCI function on bus 0: reads, writes
# and readbacks through BAR 0's common configuration, notify and device
# regions, every interrupt an MSI-X vector. The disk with two queues, read
# from one vCPU and written from the other, must take interrupts on each
# queue's own vector (virtio0-req.0 and virtio0-req.1 in the guest).
test_pci_disk_write_user_backend() {
	local log=$WORK/pci_disk_write_user.log q n
	[ -z "$GUEST_SKIP" ] || { SKIP_REASON=$GUEST_SKIP; return 4; }
	DISK_NAME=pci_disk_write_user DISK_OPTS=,queues=2 disk_write user --transport pci \
		--cpus 2 -v --cmdline "$CMDLINE_PCI kvmx.test=disk-write" || return 1
	for q in 0 1; do
		n=$(tr -d '\r' <"$log" | sed -n "s/^KVMX-TEST: irq virtio0-req.$q PCI-MSIX[^ ]* \([0-9]*\)$/\1/p")
		if [ -z "$n" ] || [ "$n" = 0 ]; then
			diag "queue $q's vector took ${n:-no} interrupts"
			return 1
		fi
	done
}

test_pci_disk_write_vhost_backend() {
	[ -z "$GUEST_SKIP" ] || { SKIP_REASON=$GUEST_SKIP; return 4; }
	[ -z "$VHOST_SKIP" ] || { SKIP_REASON=$VHOST_SKIP; return 4; }
	DISK_NAME=pci_disk_write_vhost disk_write vhost --transport pci -v \
		--cmdline "$CMDLINE_PCI kvmx.test=disk-write"
}

# The two disk_write guests above: a disk with queues=2 on two vCPUs, the
# first read on one CPU, the write and an O_DIRECT readback (16 requests
# of 64 KiB, submitted by the reading CPU itself) on the other. Each queue
# must have served requests (vmlaunch -v counts them per queue: its own
# threads' for user, VHOST_BLK_GET_STATS for vhost), or blk-mq's second
# queue went unused or unserved.
test_disk_queues_each_carry_requests() {
	local name log q n checked=0
	for name in disk_write_user disk_write_vhost; do
		ran "$name" || continue
		log=$WORK/$name.log
		for q in 0 1; do
			n=$(sed -n "s/.*vda: queue $q: \([0-9]*\) requests.*/\1/p" "$log")
			if [ -z "$n" ] || [ "$n" = 0 ]; then
				diag "$name: queue $q served ${n:-no} requests"
				show_log "$log"
				return 1
			fi
			diag "$name: queue $q served $n requests"
		done
		if grep -q "vda: queue 2:" "$log"; then
			diag "$name: vmlaunch counted a third queue on a queues=2 disk"
			return 1
		fi
		checked=$((checked + 1))
	done
	[ $checked -gt 0 ] || { SKIP_REASON="no disk_write guest booted"; return 4; }
}

# One vCPU and disks that offer two queues: Linux makes only queue 0 ready
# (one per possible CPU), and both backends must serve the disk with that.
test_read_only_disks_refuse_writes() {
	local disks=(user) args=() d sum_before sum_after lines=()
	[ -z "$GUEST_SKIP" ] || { SKIP_REASON=$GUEST_SKIP; return 4; }
	[ -n "$VHOST_SKIP" ] || disks+=(vhost)
	for d in "${disks[@]}"; do
		make_disk "$WORK/ro-$d.img" || return 1
		args+=(--disk "$WORK/ro-$d.img,$d,ro,queues=2")
	done
	sum_before=$(cat "$WORK"/ro-*.img | sha256sum)
	run_vm ro --cmdline "$CMDLINE kvmx.test=disk-ro" "${args[@]}"
	expect_rc 0 "$WORK/ro.log" || return 1
	for d in vda vdb; do
		[ "$d" = vdb ] && [ ${#disks[@]} -lt 2 ] && break
		lines+=("KVMX-TEST: $d size 16384 ro 1" "KVMX-TEST: $d queues 1" "KVMX-TEST: $d read ok"
			"KVMX-TEST: $d write refused" "KVMX-TEST: $d read after write ok")
	done
	expect_line "$WORK/ro.log" "${lines[@]}" "KVMX-TEST: disk-ro done" || return 1
	sum_after=$(cat "$WORK"/ro-*.img | sha256sum)
	if [ "$sum_before" != "$sum_after" ]; then
		diag "a read-only backing file changed"
		return 1
	fi
	[ -n "$VHOST_SKIP" ] && diag "vhost backend not covered: $VHOST_SKIP"
	return 0
}

# SIGTERM while the guest boots (two vCPUs, a disk served from userspace):
# vmlaunch stops it and exits with 4. What its threads are called is kept
# for the next test.
test_sigterm_exits_4() {
	local pid i log=$WORK/sigterm.log
	[ -z "$GUEST_SKIP" ] || { SKIP_REASON=$GUEST_SKIP; return 4; }
	make_disk "$WORK/sigterm.img" || return 1
	"$VMLAUNCH" -v --kernel "$GUEST/bzImage" --initrd "$GUEST/initramfs.cpio.gz" \
		--mem "$MEM" --cpus 2 --disk "$WORK/sigterm.img,user" \
		--cmdline "$CMDLINE kvmx.test=sleep" >"$log" 2>&1 &
	pid=$!
	for i in $(seq 100); do
		grep -q "starting 2 vCPU" "$log" && break
		sleep 0.1
	done
	sleep 2
	cat /proc/"$pid"/task/*/comm 2>/dev/null | sort | tr '\n' ' ' >"$WORK/sigterm.threads"
	kill -TERM "$pid"
	for i in $(seq 300); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		diag "vmlaunch still runs 30 s after SIGTERM"
		kill -KILL "$pid"
		wait "$pid"
		return 1
	fi
	wait "$pid"
	RC=$?
	expect_rc 4 "$log"
}

# top -H, perf and taskset tell a VM's threads apart by name, as QEMU's.
test_threads_are_named_for_their_roles() {
	local threads want
	[ -s "$WORK/sigterm.threads" ] ||
		{ SKIP_REASON="no guest ran (see sigterm_exits_4)"; return 4; }
	threads=$(cat "$WORK/sigterm.threads")
	for want in vcpu0 vcpu1 vda vmlaunch; do
		if [[ " $threads" != *" $want "* ]]; then
			diag "no thread named $want; the threads were: $threads"
			return 1
		fi
	done
	diag "threads: $threads"
}

# bad_args WANT_TEXT ARGS...: vmlaunch ARGS exits 2 and says WANT_TEXT.
bad_args() {
	local want=$1 out
	shift
	out=$("$VMLAUNCH" "$@" 2>&1)
	RC=$?
	if [ "$RC" != 2 ]; then
		diag "vmlaunch $* exited with $RC, expected 2"
		printf '%s\n' "$out" | sed 's/^/# | /'
		return 1
	fi
	if ! grep -qF -- "$want" <<<"$out"; then
		diag "vmlaunch $*: no '$want' in:"
		printf '%s\n' "$out" | sed 's/^/# | /'
		return 1
	fi
}

test_bad_arguments_exit_2() {
	local k=$GUEST/bzImage disk=$WORK/args.img notkernel=$WORK/not-a-kernel ok=0 i many=()
	[ -x "$VMLAUNCH" ] || { SKIP_REASON="no $VMLAUNCH (run make vmlaunch)"; return 4; }
	[ -e "$k" ] || k=$VMLAUNCH	# any existing file gets past the kernel check
	truncate -s 1M "$disk"
	head -c 4096 /dev/zero >"$notkernel"
	for i in $(seq 9); do
		many+=(--disk "$disk")
	done
	bad_args "no --kernel given" || ok=1
	bad_args "--mem 12Q: not a size" --kernel "$k" --mem 12Q || ok=1
	bad_args "--mem 1K: must be from 32M to 1T" --kernel "$k" --mem 1K || ok=1
	bad_args "--cpus 0: need a whole number from 1 to 64" --kernel "$k" --cpus 0 || ok=1
	bad_args "--cpus two: need a whole number" --kernel "$k" --cpus two || ok=1
	bad_args "unknown option '--frobnicate'" --kernel "$k" --frobnicate || ok=1
	bad_args "--cmdline needs an argument" --kernel "$k" --cmdline || ok=1
	bad_args "unexpected argument 'extra'" --kernel "$k" extra || ok=1
	bad_args "--disk $WORK/none.img: No such file or directory" \
		--kernel "$k" --disk "$WORK/none.img" || ok=1
	bad_args "unknown option 'bogus'" --kernel "$k" --disk "$disk,bogus" || ok=1
	bad_args "poll=100001: expected microseconds, 0 to 100000" \
		--kernel "$k" --disk "$disk,poll=100001" || ok=1
	bad_args "poll=100001: expected microseconds, 0 to 100000" \
		--kernel "$k" --disk "$disk,vhost,poll=100001" || ok=1
	bad_args "poll=32us: expected microseconds, 0 to 100000" \
		--kernel "$k" --disk "$disk,vhost,poll=32us" || ok=1
	bad_args "queues=0: expected 1 to 8" --kernel "$k" --disk "$disk,queues=0" || ok=1
	bad_args "queues=9: expected 1 to 8" --kernel "$k" --disk "$disk,vhost,queues=9" || ok=1
	bad_args "queues=two: expected 1 to 8" --kernel "$k" --disk "$disk,queues=two" || ok=1
	bad_args "too many disks (at most 8)" --kernel "$k" "${many[@]}" || ok=1
	bad_args "--initrd $WORK/none.cpio: No such file or directory" \
		--kernel "$k" --initrd "$WORK/none.cpio" || ok=1
	bad_args "not an x86 bzImage" --kernel "$notkernel" || ok=1
	bad_args "--net user: no tap given" --kernel "$k" --net user || ok=1
	bad_args "unknown option 'bogus'" --kernel "$k" --net tap=t0,bogus || ok=1
	bad_args "more than one backend" --kernel "$k" --net tap=t0,user,vhost || ok=1
	bad_args "--net tapfd=97: not an open file descriptor" --kernel "$k" --net tapfd=97 || ok=1
	bad_args "--net mac=02:00:00:00:00: not a MAC address" \
		--kernel "$k" --net tap=t0,mac=02:00:00:00:00 || ok=1
	bad_args "too many NICs (at most 4)" --kernel "$k" --net tap=a --net tap=b \
		--net tap=c --net tap=d --net tap=e || ok=1
	bad_args "too many devices (at most 8 disks and NICs together)" \
		--kernel "$k" "${many[@]:2}" --net tap=t0 || ok=1
	bad_args "--virtio-console: too many devices" \
		--kernel "$k" --virtio-console "${many[@]:2}" || ok=1
	bad_args "--transport usb: use mmio or pci" --kernel "$k" --transport usb || ok=1
	bad_args "--mmio-reads trap: use map or exit" --kernel "$k" --mmio-reads trap || ok=1
	bad_args "--transport pci: the command line says pci=off" \
		--kernel "$k" --transport pci --cmdline "console=ttyS0 pci=off" || ok=1
	return $ok
}

test_missing_kernel_is_reported() {
	[ -x "$VMLAUNCH" ] || { SKIP_REASON="no $VMLAUNCH (run make vmlaunch)"; return 4; }
	bad_args "--kernel $WORK/missing/bzImage: No such file or directory" \
		--kernel "$WORK/missing/bzImage"
}

# Without /dev/kvm (hidden by a private /dev), vmlaunch says so and exits 1.
test_no_dev_kvm_is_reported() {
	local log=$WORK/nokvm.log k=$GUEST/bzImage
	[ -x "$VMLAUNCH" ] || { SKIP_REASON="no $VMLAUNCH (run make vmlaunch)"; return 4; }
	[ -e "$k" ] || k=$VMLAUNCH
	if ! unshare -m true 2>/dev/null; then
		SKIP_REASON="unshare -m is not allowed here"
		return 4
	fi
	unshare -m sh -c 'mount -t tmpfs none /dev && exec "$0" --kernel "$1"' \
		"$VMLAUNCH" "$k" >"$log" 2>&1
	RC=$?
	expect_rc 1 "$log" || return 1
	if ! grep -q "/dev/kvm does not exist: KVM is not available" "$log"; then
		diag "no clear message about /dev/kvm"
		show_log "$log"
		return 1
	fi
}

# unit_test NAME WHAT: one of vmlaunch's unit tests (TAP), without a VM.
unit_test() {
	local bin=$REPO/build/vmlaunch/$1 out
	[ -x "$bin" ] || { SKIP_REASON="no $bin (run make vmlaunch)"; return 4; }
	out=$("$bin" 2>/dev/null)
	RC=$?
	diag "$(grep -c '^ok' <<<"$out") $2 cases passed"
	if [ "$RC" != 0 ]; then
		grep '^not ok' <<<"$out" | sed 's/^/# | /'
		return 1
	fi
}

# The userspace backend's ring code against hostile rings.
test_virtqueue_rejects_hostile_chains() {
	unit_test virtq_test virtqueue
}

# The PCI bus and a virtio-pci function driven through their port and
# MMIO handlers, as a hostile driver would, with KVM stubbed out; then a
# virtio-mmio device's read-only register page against its exit path.
test_pci_transport_rejects_hostile_accesses() {
	unit_test pci_test "virtio-pci and virtio-mmio"
}

# ---- main: TAP as kselftest_harness prints it ---------------------------------------

setup
net_setup
echo "TAP version 13"
echo "1..${#TESTS[@]}"
echo "# Starting ${#TESTS[@]} tests from 1 test cases."
pass=0
fail=0
skip=0
n=0
for t in "${TESTS[@]}"; do
	n=$((n + 1))
	SKIP_REASON=
	echo "#  RUN           vmlaunch.$t ..."
	if [ -n "${VMLAUNCH_TEST_ONLY:-}" ] && ! [[ $t =~ $VMLAUNCH_TEST_ONLY ]]; then
		SKIP_REASON="not selected by VMLAUNCH_TEST_ONLY"
		r=4
	else
		"test_$t"
		r=$?
	fi
	case $r in
	0)
		echo "#            OK  vmlaunch.$t"
		echo "ok $n vmlaunch.$t"
		pass=$((pass + 1))
		;;
	4)
		echo "#      SKIP      $SKIP_REASON"
		echo "#            OK  vmlaunch.$t"
		echo "ok $n vmlaunch.$t # SKIP $SKIP_REASON"
		skip=$((skip + 1))
		;;
	*)
		echo "#     FAIL  vmlaunch.$t"
		echo "not ok $n vmlaunch.$t"
		fail=$((fail + 1))
		;;
	esac
done

if [ $fail -eq 0 ]; then
	echo "# PASSED: $((pass + skip)) / ${#TESTS[@]} tests passed."
else
	echo "# FAILED: $((pass + skip)) / ${#TESTS[@]} tests passed."
fi
echo "# Totals: pass:$pass fail:$fail xfail:0 xpass:0 skip:$skip error:0"
[ "${VMLAUNCH_TEST_KEEP:-0}" = 1 ] && echo "# logs kept in $WORK"
[ $fail -eq 0 ] || exit 1
[ $pass -gt 0 ] || exit 4
exit 0
