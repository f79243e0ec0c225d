# SPDX-License-Identifier: GPL-2.0
#
# kvmx top-level build. `make help` lists the targets.
#
# Modules are built out of tree against KDIR. Without KDIR the build fetches
# Debian's newest 6.12 headers into a cache outside the checkout
# (scripts/kvmx-kernel). Each kernel gets its own object tree under build/,
# so building for Debian 6.12, Debian 6.1 and the debug kernel never mixes
# objects.

REPO := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
KERNEL_TOOL := $(REPO)/scripts/kvmx-kernel
BUILD := $(REPO)/build

# Resolved lazily, once: only targets that need a kernel fetch one.
ifeq ($(origin KDIR),undefined)
KDIR = $(eval KDIR := $(shell $(KERNEL_TOOL) debian 6.12))$(KDIR)
endif
ifeq ($(origin KSRC),undefined)
KSRC = $(eval KSRC := $(shell $(KERNEL_TOOL) source))$(KSRC)
endif
KTAG = $(notdir $(patsubst %/,%,$(KDIR)))
MODDIR = $(BUILD)/modules/$(KTAG)
SELFTEST_OUT := $(BUILD)/selftests

KBUILD_DIRS := drivers include

.PHONY: all modules selftests vmlaunch check demo install clean help \
	debug-kernel checkpatch sparse bench bench-boot

all: modules selftests vmlaunch

help:
	@echo 'kvmx targets:'
	@echo '  make [KDIR=<kernel build dir>]  modules (kvmx_*.ko) + selftests + vmlaunch'
	@echo '  make check          build, then run KUnit + kselftests + vmlaunch tests in the test VM (debug kernel)'
	@echo '  make bench          benchmarks in the test VM (bench/run: vhost-blk + vhost-net; bench/boot; bench/guest-blk and bench/guest-net on both transports)'
	@echo '  make bench-boot     vmlaunch vs QEMU -M microvm boot time and memory only'
	@echo '  make demo           set everything up, boot the test VM, show kvmx working'
	@echo '  make install KDIR=/lib/modules/$$(uname -r)/build  modules_install + depmod'
	@echo '  make debug-kernel   build (once) and cache the debug kernel'
	@echo '  make checkpatch     scripts/checkpatch.pl --strict on all kernel code'
	@echo '  make sparse         build with C=2 W=1 (sparse + extra warnings)'
	@echo '  make clean'
	@echo 'Variables: KDIR, KVMX_CACHE (default ~/.cache/kvmx), W=1, C=1'

# Kbuild writes objects next to the sources; a per-kernel tree of symlinks
# to the sources (never to objects) keeps one checkout buildable for
# several kernels at once.
modules:
	@test -n "$(KDIR)" || { echo 'error: no KDIR (scripts/kvmx-kernel failed)'; exit 1; }
	@mkdir -p $(MODDIR)
	@cd $(REPO) && for f in Kbuild $$(find $(KBUILD_DIRS) -name '*.[ch]'); do \
		mkdir -p $(MODDIR)/$$(dirname $$f) && ln -sf $(REPO)/$$f $(MODDIR)/$$f; \
	done
	$(MAKE) -C $(KDIR) M=$(MODDIR) modules
	@echo "kvmx: modules for $(KTAG) in $(MODDIR)"

selftests:
	$(MAKE) -C $(REPO)/tools/testing/selftests/kvmx KSFT_DIR=$(KSRC)/tools/testing/selftests \
		OUTPUT=$(SELFTEST_OUT)

# The launcher is plain userspace: libc, liburing and the uapi headers.
vmlaunch:
	$(MAKE) -C $(REPO)/userspace/vmlaunch OUTPUT=$(BUILD)/vmlaunch

debug-kernel:
	$(KERNEL_TOOL) debug

# The README's test command.
check:
	$(REPO)/tools/testing/kvmx-check

demo:
	$(REPO)/tools/testing/kvmx-demo

# Host -> guest small packets at sustained rates too, and under pktgen:
# iperf3's flood alone only shows the guest's receive livelock
# (bench/README.rst).
GUEST_NET_BENCH := --tests tcp-tx,tcp-rx,udp-tx,udp-rx,pktgen-rx,rr --udp-rx-sweep 16M,24M,32M

bench:
	$(REPO)/bench/run
	$(REPO)/bench/boot
	$(REPO)/bench/guest-blk
	$(REPO)/bench/guest-blk --guest-poll
	$(REPO)/bench/guest-blk --transport pci
	$(REPO)/bench/guest-blk --transport pci --backing tmpfs
	$(REPO)/bench/guest-net $(GUEST_NET_BENCH)
	$(REPO)/bench/guest-net --transport pci $(GUEST_NET_BENCH)

# Boot time and memory only: vmlaunch vs QEMU -M microvm.
bench-boot:
	$(REPO)/bench/boot

install: modules
	$(MAKE) -C $(KDIR) M=$(MODDIR) modules_install
	depmod -a $(if $(INSTALL_MOD_PATH),-b $(INSTALL_MOD_PATH)) \
		$$($(MAKE) -s -C $(KDIR) kernelrelease)

checkpatch:
	@cd $(REPO) && perl $(KSRC)/scripts/checkpatch.pl --strict --no-tree --terse -f \
		$$(git ls-files 'drivers/*.[ch]' 'include/*.h' 'virt/*.[ch]')

sparse:
	$(MAKE) modules C=2 W=1

clean:
	rm -rf $(BUILD)
