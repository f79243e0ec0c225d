// SPDX-License-Identifier: GPL-2.0
/*
 * pci_test: the PCI bus (pci.c) and a virtio-pci function
 * (transport-pci.c, transport.c) driven the way a guest's vCPU drives
 * them, without KVM: every access goes through the port I/O handler
 * registered for 0xcf8 or the MMIO handler registered for the window,
 * dispatched as kvm.c dispatches an exit, and writes that a KVM ioeventfd
 * would take never reach vmlaunch. kvm_stub.c records the irqfds,
 * ioeventfds and MSI routes the code asks KVM for. Most cases play a
 * well-behaved driver; many play a hostile one. Then a virtio-mmio device
 * (transport-mmio.c), whose register reads the guest makes from a
 * read-only page: that page must read what a read that exits would.
 * Prints TAP; exits 1 if any case fails.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/pci_regs.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ids.h>
#include <linux/virtio_mmio.h>
#include <linux/virtio_pci.h>

#include "kvm_stub.h"
#include "pci.h"
#include "virtio.h"

bool vmlaunch_verbose;

/* What transport-pci.c and pci.c promise the guest. */
#define CONF1_ADDR		0xcf8
#define CONF1_DATA		0xcfc
#define CONF1_ENABLE		0x80000000U
#define BAR0_SIZE		0x8000
#define ISR_OFF			0x1000
#define DEVICE_OFF		0x2000
#define NOTIFY_OFF		0x3000
#define TABLE_OFF		0x4000
#define PBA_OFF			0x5000
#define COMMON_Q_NDATA		0x38
#define COMMON_Q_RESET		0x3a
#define NQUEUES			2
#define NVECTORS		(NQUEUES + 1)	/* a vector per queue, one for config */
#define CONFIG_SIZE		8
#define FEATURES		((1ULL << VIRTIO_F_VERSION_1) | \
				 (1ULL << VIRTIO_RING_F_EVENT_IDX) | (1ULL << 3))
#define MSI_ADDR		0xfee01000ULL
#define STATUS_FEATURES		(VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | \
				 VIRTIO_CONFIG_S_FEATURES_OK)

struct fake_dev {
	struct virtio_dev vdev;
	u8 config[CONFIG_SIZE];
	unsigned int activated, refused, resets;
	int activate_result;		/* what activate() returns */
};

static struct vm vm;
static struct fake_dev dev_a, dev_b;
static unsigned int slot;	/* dev_a's */
static u64 bar;			/* where dev_a's BAR 0 should decode */
static u8 cap_msix, cap_vndr[VIRTIO_PCI_CAP_PCI_CFG + 1];
static unsigned int ntests, nfailed;

static void check(bool ok, const char *what)
{
	ntests++;
	if (!ok)
		nfailed++;
	printf("%sok %u %s\n", ok ? "" : "not ", ntests, what);
}

/* ---- the fake device --------------------------------------------------------------- */

static struct fake_dev *to_fake(struct virtio_dev *vdev)
{
	return (struct fake_dev *)vdev;
}

static void fake_read_config(struct virtio_dev *vdev, u32 offset, void *data, u32 len)
{
	memcpy(data, to_fake(vdev)->config + offset, len);
}

static int fake_activate(struct virtio_dev *vdev)
{
	struct fake_dev *d = to_fake(vdev);

	d->activated++;
	if (d->activate_result)
		d->refused++;
	return d->activate_result;
}

static void fake_reset(struct virtio_dev *vdev)
{
	to_fake(vdev)->resets++;
}

/* No write_config: the device config space is read-only, as virtio-blk's. */
static const struct virtio_dev_ops fake_ops = {
	.read_config = fake_read_config,
	.activate = fake_activate,
	.reset = fake_reset,
};

/* A fresh fake device on the VM's transport; @info as the DSDT would get it. */
static int fake_add_info(struct fake_dev *d, const char *name, struct acpi_device_info *info)
{
	unsigned int i;

	memset(d, 0, sizeof(*d));
	d->vdev.ops = &fake_ops;
	d->vdev.name = name;
	d->vdev.device_id = VIRTIO_ID_BLOCK;
	d->vdev.features = FEATURES;
	d->vdev.config_size = CONFIG_SIZE;
	d->vdev.nqueues = NQUEUES;
	for (i = 0; i < CONFIG_SIZE; i++)
		d->config[i] = 0x10 + i;
	return virtio_transport_add(&vm, &d->vdev, info);
}

static int fake_add(struct fake_dev *d, const char *name)
{
	struct acpi_device_info info = { .name = "XXXX" };
	int r = fake_add_info(d, name, &info);

	/* A PCI function has no DSDT entry. */
	return r ? r : info.name[0] ? -EINVAL : 0;
}

/* ---- a vCPU ----------------------------------------------------------------------- */

static u32 pio_read(u16 port, u32 len)
{
	const struct io_range *r = vm_find_range(vm.pio, vm.npio, port, len);
	u32 v = 0;

	if (r)
		r->fn(r->opaque, port - r->base, (u8 *)&v, len, false);
	else
		memset(&v, 0xff, len);
	return v;
}

static void pio_write(u16 port, u32 len, u32 v)
{
	const struct io_range *r = vm_find_range(vm.pio, vm.npio, port, len);

	if (r)
		r->fn(r->opaque, port - r->base, (u8 *)&v, len, true);
}

static u64 mmio_read(u64 addr, u32 len)
{
	const struct io_range *r = vm_find_range(vm.mmio, vm.nmmio, addr, len);
	u64 v = 0;

	if (r)
		r->fn(r->opaque, addr - r->base, (u8 *)&v, len, false);
	return v;
}

/* A write KVM matches to an ioeventfd signals it in the kernel: no exit. */
static void mmio_write(u64 addr, u32 len, u64 v)
{
	const struct io_range *r;
	u64 value = len == 8 ? v : v & ((1ULL << (8 * len)) - 1);
	int fd = stub_ioeventfd_take(addr, len, value);

	if (fd >= 0) {
		eventfd_signal(fd);
		return;
	}
	r = vm_find_range(vm.mmio, vm.nmmio, addr, len);
	if (r)
		r->fn(r->opaque, addr - r->base, (u8 *)&v, len, true);
}

static void conf1_select(unsigned int s, u32 off)
{
	pio_write(CONF1_ADDR, 4, CONF1_ENABLE | s << 11 | (off & 0xfc));
}

static u32 cfg_read(unsigned int s, u32 off, u32 len)
{
	conf1_select(s, off);
	return pio_read(CONF1_DATA + (off & 3), len);
}

static void cfg_write(unsigned int s, u32 off, u32 len, u32 v)
{
	conf1_select(s, off);
	pio_write(CONF1_DATA + (off & 3), len, v);
}

/* dev_a's common configuration, wherever BAR 0 is now. */
static u64 common_read(u32 off, u32 len)
{
	return mmio_read(bar + off, len);
}

static void common_write(u32 off, u32 len, u64 v)
{
	mmio_write(bar + off, len, v);
}

/* What an eventfd counted since it was last read (it is non-blocking): 0 if nothing. */
static u64 fd_take(int fd)
{
	u64 v;

	if (read(fd, &v, sizeof(v)) != sizeof(v))
		return 0;
	return v;
}

static bool notify_fds_at(struct fake_dev *d, u64 base)
{
	unsigned int i;

	for (i = 0; i < NQUEUES; i++)
		if (!stub_ioeventfd(d->vdev.vq[i].kick_fd, base + NOTIFY_OFF + 4 * i, 2, i))
			return false;
	return true;
}

/* The MSI routes added from the @first-th on: one per vector, all there, all different. */
static bool vector_routes_distinct(unsigned int first)
{
	unsigned int v, w;

	for (v = 0; v < NVECTORS; v++) {
		if (stub_msi_route_gsi(first + v) < 0)
			return false;
		for (w = 0; w < v; w++)
			if (stub_msi_route_gsi(first + v) == stub_msi_route_gsi(first + w))
				return false;
	}
	return true;
}

static bool fd_open(int fd)
{
	return fd >= 0 && fcntl(fd, F_GETFD) >= 0;
}

/* Every queue's call and kick eventfd, and config_fd: open, and no two the same. */
static bool eventfds_distinct(const struct fake_dev *d)
{
	int fds[2 * NQUEUES + 1];
	unsigned int i, j, n = 0;

	for (i = 0; i < NQUEUES; i++) {
		fds[n++] = d->vdev.vq[i].call_fd;
		fds[n++] = d->vdev.vq[i].kick_fd;
	}
	fds[n++] = d->vdev.config_fd;
	for (i = 0; i < n; i++) {
		if (!fd_open(fds[i]))
			return false;
		for (j = 0; j < i; j++)
			if (fds[i] == fds[j])
				return false;
	}
	return true;
}

/* The first slot from @from on with a virtio function, 0 if none. */
static unsigned int find_function(unsigned int from)
{
	unsigned int s;

	for (s = from; s < PCI_MAX_SLOTS; s++)
		if (cfg_read(s, PCI_VENDOR_ID, 2) == 0x1af4)
			return s;
	return 0;
}

static void set_bar0(unsigned int s, u32 v)
{
	cfg_write(s, PCI_BASE_ADDRESS_0, 4, v);
}

static void set_command(unsigned int s, u16 v)
{
	cfg_write(s, PCI_COMMAND, 2, v);
}

/* ---- configuration space -------------------------------------------------------------- */

static void test_conf1(void)
{
	pio_write(CONF1_ADDR, 4, 0x8000a9f4);
	check(pio_read(CONF1_ADDR, 4) == 0x8000a9f4, "conf1: a 32-bit write to 0xcf8 latches");
	pio_write(CONF1_ADDR + 3, 1, 0);
	pio_write(CONF1_ADDR + 2, 2, 0);
	pio_write(CONF1_ADDR, 1, 0);
	pio_write(CONF1_ADDR, 2, 0);
	check(pio_read(CONF1_ADDR, 4) == 0x8000a9f4,
	      "conf1: byte and word writes to 0xcf8-0xcfb leave the latch alone");
	check(pio_read(CONF1_ADDR, 2) == 0xffff && pio_read(CONF1_ADDR + 3, 1) == 0xff &&
	      pio_read(CONF1_ADDR + 1, 1) == 0xff,
	      "conf1: byte and word reads of 0xcf8-0xcfb read all ones");

	conf1_select(slot, 0);
	check(pio_read(CONF1_DATA, 4) == 0x10421af4 && pio_read(CONF1_DATA + 2, 2) == 0x1042 &&
	      pio_read(CONF1_DATA + 1, 1) == 0x1a,
	      "conf1: dword, word and byte reads of the data port");
	pio_write(CONF1_ADDR, 4, slot << 11);
	check(pio_read(CONF1_DATA, 4) == 0xffffffff, "conf1: enable bit clear reads all ones");
	pio_write(CONF1_ADDR, 4, CONF1_ENABLE | 1 << 16 | slot << 11);
	check(pio_read(CONF1_DATA, 4) == 0xffffffff, "conf1: bus 1 reads all ones");
	pio_write(CONF1_ADDR, 4, CONF1_ENABLE | slot << 11 | 1 << 8);
	check(pio_read(CONF1_DATA, 4) == 0xffffffff, "conf1: function 1 reads all ones");
	check(cfg_read(31, 0, 4) == 0xffffffff && cfg_read(slot + 1, 0, 2) == 0xffff,
	      "conf1: an empty slot reads all ones");
	cfg_write(31, PCI_COMMAND, 2, 0xffff);
	check(cfg_read(31, PCI_COMMAND, 2) == 0xffff, "conf1: writes to an empty slot go nowhere");

	/* Register bits 0-1 of the latch are ignored: the data port's offset selects the byte. */
	pio_write(CONF1_ADDR, 4, CONF1_ENABLE | slot << 11 | 3);
	check(pio_read(CONF1_DATA, 2) == 0x1af4, "conf1: latch bits 0-1 do not shift the register");

	check(cfg_read(0, PCI_VENDOR_ID, 2) == 0x1b36 &&
	      cfg_read(0, PCI_CLASS_DEVICE, 2) == 0x0600 &&
	      cfg_read(0, PCI_HEADER_TYPE, 1) == PCI_HEADER_TYPE_NORMAL,
	      "host bridge at 00.0: class 0x0600, header type 0");
	cfg_write(0, PCI_COMMAND, 2, 0xffff);
	cfg_write(0, PCI_BASE_ADDRESS_0, 4, 0xffffffff);
	cfg_write(0, PCI_VENDOR_ID, 4, 0);
	check(cfg_read(0, PCI_COMMAND, 2) == 0 && cfg_read(0, PCI_BASE_ADDRESS_0, 4) == 0 &&
	      cfg_read(0, PCI_VENDOR_ID, 2) == 0x1b36,
	      "host bridge: every register is read-only, no BARs");
}

static void test_ids_and_caps(void)
{
	static const struct {
		u32 offset, length, cap_len;
	} want[] = {
		[VIRTIO_PCI_CAP_COMMON_CFG] = { 0, 0x40, 16 },
		[VIRTIO_PCI_CAP_NOTIFY_CFG] = { NOTIFY_OFF, NQUEUES * 4, 20 },
		[VIRTIO_PCI_CAP_ISR_CFG] = { ISR_OFF, 4, 16 },
		[VIRTIO_PCI_CAP_DEVICE_CFG] = { DEVICE_OFF, CONFIG_SIZE, 16 },
		[VIRTIO_PCI_CAP_PCI_CFG] = { 0, 0, 20 },
	};
	bool layout_ok = true, list_ok = true;
	unsigned int n = 0, t;
	u32 pos, flags;

	check(cfg_read(slot, PCI_VENDOR_ID, 2) == 0x1af4 &&
	      cfg_read(slot, PCI_DEVICE_ID, 2) == 0x1040 + VIRTIO_ID_BLOCK &&
	      cfg_read(slot, PCI_REVISION_ID, 1) == 1,
	      "function: vendor 0x1af4, device 0x1040 + virtio ID, revision 1");
	check(cfg_read(slot, PCI_CLASS_DEVICE, 2) == 0x0180 &&
	      cfg_read(slot, PCI_SUBSYSTEM_VENDOR_ID, 2) == 0x1af4 &&
	      cfg_read(slot, PCI_SUBSYSTEM_ID, 2) == 0x1042,
	      "function: class of a block device, subsystem IDs");
	check(cfg_read(slot, PCI_INTERRUPT_PIN, 1) == 0 &&
	      (cfg_read(slot, PCI_STATUS, 2) & PCI_STATUS_CAP_LIST),
	      "function: no INTx pin, status has the capability list bit");

	memset(cap_vndr, 0, sizeof(cap_vndr));
	cap_msix = 0;
	for (pos = cfg_read(slot, PCI_CAPABILITY_LIST, 1); pos; pos = cfg_read(slot, pos + 1, 1)) {
		u32 id = cfg_read(slot, pos, 1);

		/* More capabilities than fit in 192 bytes: the list loops. */
		if (pos < PCI_STD_HEADER_SIZEOF || (pos & 3) || ++n > 48) {
			list_ok = false;
			break;
		}
		if (id == PCI_CAP_ID_MSIX && !cap_msix) {
			cap_msix = pos;
		} else if (id == PCI_CAP_ID_VNDR) {
			t = cfg_read(slot, pos + VIRTIO_PCI_CAP_CFG_TYPE, 1);
			if (t < ARRAY_SIZE(cap_vndr) && !cap_vndr[t])
				cap_vndr[t] = pos;
			else
				list_ok = false;
		} else {
			list_ok = false;
		}
	}
	check(list_ok && n == 6, "capabilities: MSI-X and five vendor capabilities, list ends");

	flags = cfg_read(slot, cap_msix + PCI_MSIX_FLAGS, 2);
	check(cap_msix && (flags & PCI_MSIX_FLAGS_QSIZE) == NQUEUES &&
	      !(flags & (PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL)) &&
	      cfg_read(slot, cap_msix + PCI_MSIX_TABLE, 4) == TABLE_OFF &&
	      cfg_read(slot, cap_msix + PCI_MSIX_PBA, 4) == PBA_OFF,
	      "MSI-X: table size field num_queues (a vector per queue + 1), disabled, "
	      "table at BAR0+0x4000, PBA at BAR0+0x5000");
	check(vector_routes_distinct(0) && stub_msi_route_gsi(NVECTORS) == -1,
	      "MSI-X: the function has an MSI route per vector, three in all");
	check(eventfds_distinct(&dev_a),
	      "each queue has its own call eventfd, apart from config_fd and the kick eventfds");

	for (t = VIRTIO_PCI_CAP_COMMON_CFG; t <= VIRTIO_PCI_CAP_PCI_CFG; t++) {
		pos = cap_vndr[t];
		if (!pos || cfg_read(slot, pos + VIRTIO_PCI_CAP_BAR, 1) != 0 ||
		    cfg_read(slot, pos + VIRTIO_PCI_CAP_LEN, 1) != want[t].cap_len ||
		    cfg_read(slot, pos + VIRTIO_PCI_CAP_OFFSET, 4) != want[t].offset ||
		    cfg_read(slot, pos + VIRTIO_PCI_CAP_LENGTH, 4) != want[t].length)
			layout_ok = false;
	}
	check(layout_ok, "vendor capabilities 1-5: BAR 0, offsets and lengths of the layout");
	pos = cap_vndr[VIRTIO_PCI_CAP_NOTIFY_CFG];
	check(pos && cfg_read(slot, pos + VIRTIO_PCI_NOTIFY_CAP_MULT, 4) == 4,
	      "notify capability: multiplier 4");
}

static void test_bar_sizing(void)
{
	bool others = true;
	unsigned int b;

	set_command(slot, 0);
	set_bar0(slot, 0xffffffff);
	check(cfg_read(slot, PCI_BASE_ADDRESS_0, 4) == 0xffff8000,
	      "BAR 0 sizing: all ones read back as 32 KiB, 32-bit, non-prefetchable");
	set_bar0(slot, bar);
	set_command(slot, PCI_COMMAND_MEMORY);
	check(cfg_read(slot, PCI_BASE_ADDRESS_0, 4) == bar && notify_fds_at(&dev_a, bar),
	      "BAR 0 sizing: restoring the address decodes there again");

	for (b = 1; b < PCI_NUM_BARS; b++) {
		cfg_write(slot, PCI_BASE_ADDRESS_0 + 4 * b, 4, 0xffffffff);
		others &= cfg_read(slot, PCI_BASE_ADDRESS_0 + 4 * b, 4) == 0;
	}
	cfg_write(slot, PCI_ROM_ADDRESS, 4, 0xffffffff);
	check(others && cfg_read(slot, PCI_ROM_ADDRESS, 4) == 0,
	      "BARs 1-5 and the expansion ROM read 0 and ignore writes");

	cfg_write(slot, PCI_VENDOR_ID, 4, 0);
	cfg_write(slot, PCI_STATUS, 2, 0);
	cfg_write(slot, PCI_STATUS, 2, 0xffff);
	cfg_write(slot, PCI_CAPABILITY_LIST, 1, 0);
	cfg_write(slot, PCI_CLASS_REVISION, 4, 0);
	cfg_write(slot, PCI_INTERRUPT_PIN, 1, 1);
	check(cfg_read(slot, PCI_VENDOR_ID, 4) == 0x10421af4 &&
	      (cfg_read(slot, PCI_STATUS, 2) & PCI_STATUS_CAP_LIST) &&
	      cfg_read(slot, PCI_CAPABILITY_LIST, 1) == cap_msix &&
	      cfg_read(slot, PCI_CLASS_REVISION, 4) == 0x01800001 &&
	      cfg_read(slot, PCI_INTERRUPT_PIN, 1) == 0,
	      "read-only fields ignore writes: IDs, status, capability pointer, class, pin");
	cfg_write(slot, cap_vndr[VIRTIO_PCI_CAP_COMMON_CFG] + VIRTIO_PCI_CAP_OFFSET, 4, 0x1000);
	cfg_write(slot, cap_msix + PCI_MSIX_TABLE, 4, 0);
	cfg_write(slot, cap_msix + PCI_MSIX_FLAGS, 2, 0x07ff);
	check(cfg_read(slot, cap_vndr[VIRTIO_PCI_CAP_COMMON_CFG] + VIRTIO_PCI_CAP_OFFSET, 4) == 0 &&
	      cfg_read(slot, cap_msix + PCI_MSIX_TABLE, 4) == TABLE_OFF &&
	      cfg_read(slot, cap_msix + PCI_MSIX_FLAGS, 2) == NQUEUES,
	      "capabilities are read-only (MSI-X table size and offset, virtio offsets)");

	cfg_write(slot, PCI_INTERRUPT_LINE, 1, 0x0b);
	set_command(slot, 0xffff);
	check(cfg_read(slot, PCI_INTERRUPT_LINE, 1) == 0x0b &&
	      cfg_read(slot, PCI_COMMAND, 2) ==
	      (PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | PCI_COMMAND_INTX_DISABLE),
	      "writable: interrupt line; command memory, master and INTx disable only");
	set_command(slot, PCI_COMMAND_MEMORY);
}

static void test_bar_decode(void)
{
	const u64 fw = PCI_WINDOW_BASE + (slot - 1) * 0x100000ULL;
	u64 moved = PCI_WINDOW_BASE + 0x8000000;
	unsigned int s;
	int b_fds[3];

	check(bar == fw && cfg_read(slot, PCI_BASE_ADDRESS_0, 4) == fw &&
	      (cfg_read(slot, PCI_COMMAND, 2) & PCI_COMMAND_MEMORY),
	      "BAR 0 placed by \"firmware\" in the window, memory decoding on");
	check(stub_ioeventfd_count() == NQUEUES && notify_fds_at(&dev_a, fw),
	      "kick ioeventfds at BAR0+0x3000+4*i, 2 bytes, datamatch i");
	check(common_read(VIRTIO_PCI_COMMON_NUMQ, 2) == NQUEUES,
	      "MMIO at BAR 0 reaches the common configuration");

	set_command(slot, PCI_COMMAND_MASTER);
	check(stub_ioeventfd_count() == 0 && common_read(VIRTIO_PCI_COMMON_NUMQ, 2) == 0xffff,
	      "memory decoding off: no ioeventfds, BAR 0 reads all ones");
	set_bar0(slot, moved);
	check(stub_ioeventfd_count() == 0, "moving BAR 0 while decoding is off attaches nothing");
	set_command(slot, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
	check(stub_ioeventfd_count() == NQUEUES && notify_fds_at(&dev_a, moved) &&
	      mmio_read(moved + VIRTIO_PCI_COMMON_NUMQ, 2) == NQUEUES &&
	      mmio_read(fw + VIRTIO_PCI_COMMON_NUMQ, 2) == 0xffff,
	      "decoding on at a new address: ioeventfds and MMIO follow, the old one is empty");
	check(mmio_read(moved + BAR0_SIZE - 4, 8) == ~0ULL && mmio_read(moved - 4, 8) == ~0ULL &&
	      mmio_read(moved + BAR0_SIZE - 8, 8) == 0,
	      "accesses straddling either end of BAR 0 read all ones, its unused end 0");

	/* A driver may also move a BAR with decoding on: the ioeventfds follow at once. */
	moved = PCI_WINDOW_BASE + PCI_WINDOW_SIZE - BAR0_SIZE;
	set_bar0(slot, moved);
	check(stub_ioeventfd_count() == NQUEUES && notify_fds_at(&dev_a, moved) &&
	      mmio_read(moved + VIRTIO_PCI_COMMON_NUMQ, 2) == NQUEUES,
	      "BAR 0 moved while decoding, to the last 32 KiB of the window");
	check(mmio_read(moved + BAR0_SIZE - 8, 8) == 0 && mmio_read(moved - 4, 8) == ~0ULL,
	      "at the window's end: the last 8 bytes are BAR 0's, before it all ones");

	set_bar0(slot, 0xd0000000);
	check(stub_ioeventfd_count() == 0 && cfg_read(slot, PCI_BASE_ADDRESS_0, 4) == 0xd0000000,
	      "BAR 0 below the window: kept in the register, decodes nowhere");
	set_bar0(slot, PCI_WINDOW_BASE + PCI_WINDOW_SIZE);
	check(stub_ioeventfd_count() == 0 && mmio_read(moved + VIRTIO_PCI_COMMON_NUMQ, 2) == 0xffff,
	      "BAR 0 above the window decodes nowhere");
	set_bar0(slot, 0xe0404000 | 0xf);
	check(cfg_read(slot, PCI_BASE_ADDRESS_0, 4) == 0xe0400000 &&
	      notify_fds_at(&dev_a, 0xe0400000) && stub_ioeventfd_count() == NQUEUES,
	      "a misaligned BAR 0 address loses its low bits and decodes aligned");
	cfg_write(slot, PCI_BASE_ADDRESS_0 + 2, 2, 0xe050);
	check(notify_fds_at(&dev_a, 0xe0500000) && stub_ioeventfd_count() == NQUEUES,
	      "a 16-bit write to the BAR's upper half moves it");

	/* A second function: a BAR moved onto another one's does not decode. */
	if (fake_add(&dev_b, "b")) {
		check(false, "a second function joins the bus");
		return;
	}
	s = find_function(slot + 1);
	check(s == slot + 1 && stub_ioeventfd_count() == 2 * NQUEUES &&
	      notify_fds_at(&dev_b, fw + 0x100000),
	      "a second function at the next slot, BAR 0 1 MiB further");
	check(vector_routes_distinct(0) && vector_routes_distinct(NVECTORS) &&
	      stub_msi_route_gsi(2 * NVECTORS) == -1 && eventfds_distinct(&dev_b) &&
	      dev_b.vdev.vq[0].call_fd != dev_a.vdev.vq[0].call_fd &&
	      dev_b.vdev.vq[1].call_fd != dev_a.vdev.vq[1].call_fd,
	      "the second function has three MSI routes of its own, six in all, "
	      "and its own eventfds");
	set_bar0(s, 0xe0500000);
	check(stub_ioeventfd_count() == NQUEUES && notify_fds_at(&dev_a, 0xe0500000) &&
	      mmio_read(0xe0500000 + VIRTIO_PCI_COMMON_NUMQ, 2) == NQUEUES &&
	      !stub_refused(),
	      "a BAR moved onto another function's decodes nowhere; the other keeps it");
	set_bar0(slot, 0xe0600000);
	check(stub_ioeventfd_count() == 2 * NQUEUES && notify_fds_at(&dev_a, 0xe0600000) &&
	      notify_fds_at(&dev_b, 0xe0500000) && !stub_refused(),
	      "once the other moves away, the uncovered BAR decodes again");

	/* The second function's vectors: its own routes, not the first one's. */
	mmio_write(0xe0500000 + VIRTIO_PCI_COMMON_Q_SELECT, 2, 1);
	mmio_write(0xe0500000 + VIRTIO_PCI_COMMON_Q_MSIX, 2, 2);
	mmio_write(0xe0500000 + TABLE_OFF + 2 * PCI_MSIX_ENTRY_SIZE + PCI_MSIX_ENTRY_VECTOR_CTRL,
		   4, 0);
	cfg_write(s, cap_msix + PCI_MSIX_FLAGS, 2, PCI_MSIX_FLAGS_ENABLE);
	check(cfg_read(s, cap_msix, 1) == PCI_CAP_ID_MSIX && stub_irqfd_count() == 1 &&
	      stub_irqfd_gsi(dev_b.vdev.vq[1].call_fd) == stub_msi_route_gsi(NVECTORS + 2) &&
	      !stub_refused(),
	      "the second function's queue 1 on its vector 2: an irqfd on its own third route");
	b_fds[0] = dev_b.vdev.vq[0].call_fd;
	b_fds[1] = dev_b.vdev.vq[1].call_fd;
	b_fds[2] = dev_b.vdev.config_fd;
	virtio_transport_remove(&dev_b.vdev);
	check(stub_ioeventfd_count() == NQUEUES && stub_irqfd_count() == 0 &&
	      cfg_read(s, PCI_VENDOR_ID, 2) == 0xffff && !stub_refused(),
	      "the second function leaves the bus, its irqfd detached");
	check(dev_b.vdev.vq[0].call_fd == -1 && dev_b.vdev.vq[1].call_fd == -1 &&
	      dev_b.vdev.config_fd == -1 && !fd_open(b_fds[0]) && !fd_open(b_fds[1]) &&
	      !fd_open(b_fds[2]) && eventfds_distinct(&dev_a),
	      "the second function's eventfds are closed, the first one's stay open");

	set_bar0(slot, bar);
	check(notify_fds_at(&dev_a, bar) && stub_ioeventfd_count() == NQUEUES,
	      "BAR 0 back at its firmware address");
}

/* ---- common configuration ------------------------------------------------------------ */

static u32 status(void)
{
	return common_read(VIRTIO_PCI_COMMON_STATUS, 1);
}

static void set_status(u32 v)
{
	common_write(VIRTIO_PCI_COMMON_STATUS, 1, v);
}

static void write_features(u64 f)
{
	common_write(VIRTIO_PCI_COMMON_GFSELECT, 4, 0);
	common_write(VIRTIO_PCI_COMMON_GF, 4, (u32)f);
	common_write(VIRTIO_PCI_COMMON_GFSELECT, 4, 1);
	common_write(VIRTIO_PCI_COMMON_GF, 4, f >> 32);
}

static void select_queue(u16 q)
{
	common_write(VIRTIO_PCI_COMMON_Q_SELECT, 2, q);
}

/* Not live: every activate() that succeeded was followed by one reset(). */
static bool activations_balanced(struct fake_dev *d)
{
	return d->activated - d->refused == d->resets;
}

/* Up to FEATURES_OK with every feature offered. */
static void negotiate(void)
{
	set_status(0);
	set_status(VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
	write_features(FEATURES);
	set_status(STATUS_FEATURES);
}

static void test_features(void)
{
	struct virtio_dev *vdev = &dev_a.vdev;
	bool sel_ok;

	check(common_read(VIRTIO_PCI_COMMON_NUMQ, 2) == NQUEUES && status() == 0 &&
	      common_read(VIRTIO_PCI_COMMON_CFGGENERATION, 1) == 0,
	      "common: num_queues 2, status 0, config generation 0");
	common_write(VIRTIO_PCI_COMMON_DFSELECT, 4, 0);
	sel_ok = common_read(VIRTIO_PCI_COMMON_DFSELECT, 4) == 0 &&
		 common_read(VIRTIO_PCI_COMMON_DF, 4) == (u32)FEATURES;
	common_write(VIRTIO_PCI_COMMON_DFSELECT, 4, 1);
	sel_ok &= common_read(VIRTIO_PCI_COMMON_DF, 4) == FEATURES >> 32;
	common_write(VIRTIO_PCI_COMMON_DFSELECT, 4, 2);
	sel_ok &= common_read(VIRTIO_PCI_COMMON_DF, 4) == 0;
	common_write(VIRTIO_PCI_COMMON_DFSELECT, 4, 0xffffffff);
	sel_ok &= common_read(VIRTIO_PCI_COMMON_DF, 4) == 0;
	check(sel_ok, "device features: selector 0 and 1 read the offer, others 0");

	set_status(VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
	write_features(FEATURES);
	common_write(VIRTIO_PCI_COMMON_GFSELECT, 4, 0);
	sel_ok = common_read(VIRTIO_PCI_COMMON_GF, 4) == (u32)FEATURES;
	common_write(VIRTIO_PCI_COMMON_GFSELECT, 4, 1);
	sel_ok &= common_read(VIRTIO_PCI_COMMON_GF, 4) == FEATURES >> 32;
	common_write(VIRTIO_PCI_COMMON_GFSELECT, 4, 2);
	common_write(VIRTIO_PCI_COMMON_GF, 4, 0xffffffff);
	sel_ok &= common_read(VIRTIO_PCI_COMMON_GF, 4) == 0;
	check(sel_ok && status() == (VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER),
	      "driver features: written and read back through the selector");

	write_features(FEATURES | 1ULL << 10);
	set_status(STATUS_FEATURES);
	check(status() == (VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER),
	      "FEATURES_OK refused when the driver accepts a feature never offered");
	write_features(FEATURES & ~(1ULL << VIRTIO_F_VERSION_1));
	set_status(STATUS_FEATURES);
	check(status() == (VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER),
	      "FEATURES_OK refused without VIRTIO_F_VERSION_1");
	write_features(FEATURES);
	set_status(STATUS_FEATURES);
	check(status() == STATUS_FEATURES && vdev->acked == FEATURES,
	      "FEATURES_OK accepted with a subset of the offer and VERSION_1");
	write_features(1ULL << VIRTIO_F_VERSION_1);
	check(vdev->acked == FEATURES && common_read(VIRTIO_PCI_COMMON_GF, 4) == FEATURES >> 32,
	      "driver features frozen after FEATURES_OK");
	set_status(0);
	check(status() == 0 && vdev->acked == 0 && dev_a.resets == 0,
	      "status 0 before DRIVER_OK: reset without calling the device's reset");
}

static void test_queues(void)
{
	struct virtio_dev *vdev = &dev_a.vdev;
	struct virtio_queue *q0 = &vdev->vq[0];
	unsigned int act;
	bool ok;

	negotiate();
	select_queue(NQUEUES);
	common_write(VIRTIO_PCI_COMMON_Q_SIZE, 2, 64);
	common_write(VIRTIO_PCI_COMMON_Q_ENABLE, 2, 1);
	common_write(VIRTIO_PCI_COMMON_Q_DESCLO, 4, 0x1000);
	check(common_read(VIRTIO_PCI_COMMON_Q_SELECT, 2) == NQUEUES &&
	      common_read(VIRTIO_PCI_COMMON_Q_SIZE, 2) == 0 &&
	      common_read(VIRTIO_PCI_COMMON_Q_ENABLE, 2) == 0 &&
	      common_read(VIRTIO_PCI_COMMON_Q_DESCLO, 4) == 0 && !vdev->vq[NQUEUES].ready &&
	      vdev->vq[NQUEUES].num == 0,
	      "queue_select past num_queues: size 0, writes ignored");
	select_queue(0xffff);
	common_write(VIRTIO_PCI_COMMON_Q_MSIX, 2, 0);
	check(common_read(VIRTIO_PCI_COMMON_Q_SIZE, 2) == 0 &&
	      common_read(VIRTIO_PCI_COMMON_Q_MSIX, 2) == VIRTIO_MSI_NO_VECTOR,
	      "queue_select 0xffff: no queue, no vector, vector write ignored");

	select_queue(1);
	ok = common_read(VIRTIO_PCI_COMMON_Q_SIZE, 2) == VIRTQ_MAX_SIZE &&
	     common_read(VIRTIO_PCI_COMMON_Q_NOFF, 2) == 1;
	select_queue(0);
	check(ok && common_read(VIRTIO_PCI_COMMON_Q_SIZE, 2) == VIRTQ_MAX_SIZE &&
	      common_read(VIRTIO_PCI_COMMON_Q_NOFF, 2) == 0 &&
	      common_read(VIRTIO_PCI_COMMON_Q_MSIX, 2) == VIRTIO_MSI_NO_VECTOR,
	      "after reset: queue size 256, notify offset = queue index, no vector");

	common_write(VIRTIO_PCI_COMMON_Q_SIZE, 2, 128);
	common_write(VIRTIO_PCI_COMMON_Q_DESCLO, 4, 0x12345000);
	common_write(VIRTIO_PCI_COMMON_Q_DESCHI, 4, 0x1);
	common_write(VIRTIO_PCI_COMMON_Q_AVAILLO, 8, 0x223456000ULL);
	common_write(VIRTIO_PCI_COMMON_Q_USEDLO, 8, 0x334567000ULL);
	check(q0->num == 128 && q0->desc == 0x112345000ULL && q0->avail == 0x223456000ULL &&
	      q0->used == 0x334567000ULL,
	      "queue size, and addresses written as two halves or one 8-byte access");
	check(common_read(VIRTIO_PCI_COMMON_Q_DESCLO, 8) == 0x112345000ULL &&
	      common_read(VIRTIO_PCI_COMMON_Q_AVAILHI, 4) == 2 &&
	      common_read(VIRTIO_PCI_COMMON_Q_USEDLO, 4) == 0x34567000,
	      "queue addresses read back as halves or whole");

	common_write(VIRTIO_PCI_COMMON_Q_SIZE, 4, 64);
	common_write(VIRTIO_PCI_COMMON_Q_SIZE, 1, 64);
	common_write(VIRTIO_PCI_COMMON_Q_SIZE + 1, 1, 0);
	common_write(VIRTIO_PCI_COMMON_Q_DESCLO, 2, 0);
	common_write(VIRTIO_PCI_COMMON_Q_DESCHI - 2, 4, 0);
	common_write(VIRTIO_PCI_COMMON_Q_DESCHI, 8, 0);
	common_write(VIRTIO_PCI_COMMON_GF, 8, 0);
	common_write(VIRTIO_PCI_COMMON_STATUS, 2, 0);
	check(q0->num == 128 && q0->desc == 0x112345000ULL && status() == STATUS_FEATURES,
	      "wrong-size or misaligned writes to fields are ignored");
	check(common_read(VIRTIO_PCI_COMMON_DF, 1) == 0 &&
	      common_read(VIRTIO_PCI_COMMON_Q_SIZE, 4) == 0 &&
	      common_read(VIRTIO_PCI_COMMON_Q_SIZE + 1, 1) == 0 &&
	      common_read(VIRTIO_PCI_COMMON_STATUS, 4) == 0 &&
	      common_read(VIRTIO_PCI_COMMON_Q_DESCHI, 8) == 0 &&
	      common_read(VIRTIO_PCI_COMMON_DF, 8) == 0,
	      "wrong-size or misaligned reads of fields read 0");
	common_write(COMMON_Q_NDATA, 2, 0xffff);
	common_write(COMMON_Q_RESET, 2, 1);
	check(common_read(COMMON_Q_NDATA, 2) == 0 && common_read(COMMON_Q_RESET, 2) == 0 &&
	      common_read(0x3c, 4) == 0 && common_read(0x40, 4) == 0 && q0->num == 128,
	      "queue_notify_data, queue_reset and past the end: read 0, writes ignored");

	common_write(VIRTIO_PCI_COMMON_Q_ENABLE, 2, 1);
	common_write(VIRTIO_PCI_COMMON_Q_SIZE, 2, 64);
	common_write(VIRTIO_PCI_COMMON_Q_DESCLO, 4, 0x5000);
	common_write(VIRTIO_PCI_COMMON_Q_USEDHI, 4, 7);
	check(common_read(VIRTIO_PCI_COMMON_Q_ENABLE, 2) == 1 && q0->ready && q0->num == 128 &&
	      q0->desc == 0x112345000ULL && q0->used == 0x334567000ULL,
	      "queue_enable freezes the queue's size and addresses");

	set_status(STATUS_FEATURES | VIRTIO_CONFIG_S_DRIVER_OK);
	check(dev_a.activated == 1 && status() == (STATUS_FEATURES | VIRTIO_CONFIG_S_DRIVER_OK),
	      "DRIVER_OK activates the device once");
	select_queue(1);
	common_write(VIRTIO_PCI_COMMON_Q_SIZE, 2, 16);
	common_write(VIRTIO_PCI_COMMON_Q_ENABLE, 2, 1);
	check(vdev->vq[1].num == VIRTQ_MAX_SIZE && !vdev->vq[1].ready,
	      "while live, a queue that was not enabled stays as it was");

	/* virtio 1.2, 2.1.2: the driver MUST NOT clear a status bit; a hostile one does. */
	set_status(STATUS_FEATURES);
	write_features(1ULL << VIRTIO_F_VERSION_1);
	set_status(STATUS_FEATURES | VIRTIO_CONFIG_S_DRIVER_OK);
	check(dev_a.activated == 1 && dev_a.resets == 0 && vdev->acked == FEATURES,
	      "clearing DRIVER_OK or FEATURES_OK: no second activate, no renegotiation");

	set_status(0);
	select_queue(0);
	check(activations_balanced(&dev_a) && status() == 0 && q0->num == VIRTQ_MAX_SIZE &&
	      !q0->ready &&
	      !q0->desc && !q0->avail && !q0->used && vdev->acked == 0 &&
	      common_read(VIRTIO_PCI_COMMON_Q_ENABLE, 2) == 0,
	      "status 0 when live: the device's reset, queues back to defaults");

	act = dev_a.activated;
	negotiate();
	common_write(VIRTIO_PCI_COMMON_Q_SIZE, 2, 100);
	common_write(VIRTIO_PCI_COMMON_Q_ENABLE, 2, 1);
	set_status(STATUS_FEATURES | VIRTIO_CONFIG_S_DRIVER_OK);
	check(dev_a.activated == act &&
	      status() == (STATUS_FEATURES | VIRTIO_CONFIG_S_NEEDS_RESET),
	      "DRIVER_OK with a queue size not a power of two: NEEDS_RESET, no activate");
	negotiate();
	common_write(VIRTIO_PCI_COMMON_Q_ENABLE, 2, 1);
	dev_a.activate_result = -EIO;
	set_status(STATUS_FEATURES | VIRTIO_CONFIG_S_DRIVER_OK);
	dev_a.activate_result = 0;
	check(dev_a.activated == act + 1 && activations_balanced(&dev_a) &&
	      status() == (STATUS_FEATURES | VIRTIO_CONFIG_S_NEEDS_RESET),
	      "DRIVER_OK the device refuses: NEEDS_RESET");
	set_status(0);
	set_status(VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
		   VIRTIO_CONFIG_S_DRIVER_OK);
	check(dev_a.activated == act + 1 && activations_balanced(&dev_a) &&
	      status() == (VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
			   VIRTIO_CONFIG_S_NEEDS_RESET),
	      "DRIVER_OK without FEATURES_OK: NEEDS_RESET, no activate");
	set_status(0);
}

static void test_device_config(void)
{
	u64 v = mmio_read(bar + DEVICE_OFF, 8);

	check(v == 0x1716151413121110ULL && mmio_read(bar + DEVICE_OFF + 6, 2) == 0x1716 &&
	      mmio_read(bar + DEVICE_OFF + 3, 1) == 0x13,
	      "device config: 8, 2 and 1-byte reads");
	mmio_write(bar + DEVICE_OFF, 4, 0);
	check(mmio_read(bar + DEVICE_OFF + 6, 4) == 0 && mmio_read(bar + DEVICE_OFF + 8, 1) == 0 &&
	      mmio_read(bar + DEVICE_OFF + 1, 3) == 0 && dev_a.config[0] == 0x10,
	      "device config: past its size or 3 bytes read 0; no write_config, no write");
}

/* ---- MSI-X ------------------------------------------------------------------------- */

static void msix_ctrl(u16 flags)
{
	cfg_write(slot, cap_msix + PCI_MSIX_FLAGS, 2, flags);
}

static void table_write(unsigned int vector, u32 field, u32 len, u64 v)
{
	mmio_write(bar + TABLE_OFF + vector * PCI_MSIX_ENTRY_SIZE + field, len, v);
}

static u64 table_read(unsigned int vector, u32 field, u32 len)
{
	return mmio_read(bar + TABLE_OFF + vector * PCI_MSIX_ENTRY_SIZE + field, len);
}

static u64 pba(void)
{
	return mmio_read(bar + PBA_OFF, 8);
}

static bool route_is(int gsi, u64 addr, u32 data)
{
	u64 a;
	u32 d;

	return gsi >= 0 && stub_msi_route(gsi, &a, &d) && a == addr && d == data;
}

/* dev_a's routes were added first: vector v's is the v-th. */
static int vector_route(unsigned int v)
{
	return stub_msi_route_gsi(v);
}

static int call_fd(unsigned int q)
{
	return dev_a.vdev.vq[q].call_fd;
}

/* Queue @q's vector, leaving queue 0 selected. */
static void set_queue_vector(u16 q, u16 v)
{
	select_queue(q);
	common_write(VIRTIO_PCI_COMMON_Q_MSIX, 2, v);
	select_queue(0);
}

static u16 queue_vector(u16 q)
{
	u16 v;

	select_queue(q);
	v = common_read(VIRTIO_PCI_COMMON_Q_MSIX, 2);
	select_queue(0);
	return v;
}

static void set_config_vector(u16 v)
{
	common_write(VIRTIO_PCI_COMMON_MSIX, 2, v);
}

static u16 config_vector(void)
{
	return common_read(VIRTIO_PCI_COMMON_MSIX, 2);
}

static void mask_vector(unsigned int v, bool masked)
{
	table_write(v, PCI_MSIX_ENTRY_VECTOR_CTRL, 4, masked ? PCI_MSIX_ENTRY_CTRL_MASKBIT : 0);
}

/* What KVM would have taken from the used-buffer and config eventfds. */
static void drain_calls(struct fake_dev *d)
{
	unsigned int i;

	for (i = 0; i < NQUEUES; i++)
		fd_take(d->vdev.vq[i].call_fd);
	fd_take(d->vdev.config_fd);
}

static void test_msix_vectors(void)
{
	/* The first vector past the table, a large one, and the largest not NO_VECTOR. */
	static const u16 refused[] = { NVECTORS, 0x1234, VIRTIO_MSI_NO_VECTOR - 1 };
	unsigned int v, i;
	bool ok = true;
	u16 q;

	for (v = 0; v < NVECTORS; v++) {
		set_config_vector(v);
		ok &= config_vector() == v;
	}
	for (i = 0; i < ARRAY_SIZE(refused); i++) {
		set_config_vector(1);
		set_config_vector(refused[i]);
		ok &= config_vector() == VIRTIO_MSI_NO_VECTOR;
	}
	set_config_vector(1);
	set_config_vector(VIRTIO_MSI_NO_VECTOR);
	ok &= config_vector() == VIRTIO_MSI_NO_VECTOR;
	check(ok, "msix_config takes vectors 0, 1 and 2; 3 and 0x1234 read back NO_VECTOR");

	ok = true;
	for (q = NQUEUES; q-- > 0;) {
		for (v = 0; v < NVECTORS; v++) {
			set_queue_vector(q, v);
			ok &= queue_vector(q) == v;
		}
		for (i = 0; i < ARRAY_SIZE(refused); i++) {
			set_queue_vector(q, 1);
			set_queue_vector(q, refused[i]);
			ok &= queue_vector(q) == VIRTIO_MSI_NO_VECTOR;
		}
		if (q == 1) {
			/* Queue 1 keeps a vector while queue 0's are tried: one each. */
			set_queue_vector(1, NVECTORS - 1);
			ok &= queue_vector(0) == VIRTIO_MSI_NO_VECTOR;
		}
	}
	check(ok && queue_vector(1) == NVECTORS - 1 && queue_vector(0) == VIRTIO_MSI_NO_VECTOR,
	      "queue_msix_vector takes 0, 1 and 2 per queue; 3 and 0x1234 read back NO_VECTOR");
	check(stub_irqfd_count() == 0, "vectors chosen with MSI-X disabled attach no irqfd");
}

static void test_msix_table(void)
{
	int gsi0 = vector_route(0), gsi1 = vector_route(1), gsi2 = vector_route(2);
	unsigned int sets, v;
	bool ok = pba() == 0;

	for (v = 0; v < NVECTORS; v++)
		ok &= table_read(v, PCI_MSIX_ENTRY_VECTOR_CTRL, 4) == PCI_MSIX_ENTRY_CTRL_MASKBIT &&
		      table_read(v, PCI_MSIX_ENTRY_LOWER_ADDR, 8) == 0 &&
		      table_read(v, PCI_MSIX_ENTRY_DATA, 4) == 0;
	check(ok, "MSI-X table after reset: three entries, masked and empty, nothing pending");

	table_write(0, PCI_MSIX_ENTRY_LOWER_ADDR, 4, MSI_ADDR | 3);
	table_write(0, PCI_MSIX_ENTRY_UPPER_ADDR, 4, 0);
	table_write(0, PCI_MSIX_ENTRY_DATA, 4, 0x4041);
	check(route_is(gsi0, MSI_ADDR, 0x4041) &&
	      table_read(0, PCI_MSIX_ENTRY_LOWER_ADDR, 4) == MSI_ADDR &&
	      table_read(0, PCI_MSIX_ENTRY_DATA, 4) == 0x4041,
	      "table entry 0: address (low bits dropped) and data set its MSI route");
	table_write(1, PCI_MSIX_ENTRY_LOWER_ADDR, 8, 0x1200000000ULL | MSI_ADDR);
	table_write(1, PCI_MSIX_ENTRY_DATA, 4, 0x4042);
	check(route_is(gsi1, 0x1200000000ULL | MSI_ADDR, 0x4042) &&
	      table_read(1, PCI_MSIX_ENTRY_LOWER_ADDR, 8) == (0x1200000000ULL | MSI_ADDR) &&
	      route_is(gsi0, MSI_ADDR, 0x4041),
	      "table entry 1 written with an 8-byte access: its own route");
	/* Data and vector control of the last entry in one 8-byte access, still masked. */
	table_write(2, PCI_MSIX_ENTRY_LOWER_ADDR, 4, MSI_ADDR | 1);
	table_write(2, PCI_MSIX_ENTRY_DATA, 8, (u64)PCI_MSIX_ENTRY_CTRL_MASKBIT << 32 | 0x4043);
	check(route_is(gsi2, MSI_ADDR, 0x4043) &&
	      table_read(2, PCI_MSIX_ENTRY_DATA, 8) ==
	      ((u64)PCI_MSIX_ENTRY_CTRL_MASKBIT << 32 | 0x4043) &&
	      route_is(gsi0, MSI_ADDR, 0x4041) &&
	      route_is(gsi1, 0x1200000000ULL | MSI_ADDR, 0x4042) && stub_irqfd_count() == 0,
	      "table entry 2, the last: its own route; data and control as one 8-byte access");

	sets = stub_route_sets();
	table_write(0, PCI_MSIX_ENTRY_DATA, 1, 0xff);
	table_write(0, PCI_MSIX_ENTRY_DATA, 2, 0xffff);
	table_write(0, PCI_MSIX_ENTRY_DATA + 1, 4, 0xffffffff);
	table_write(0, PCI_MSIX_ENTRY_UPPER_ADDR, 8, ~0ULL);
	table_write(NVECTORS, PCI_MSIX_ENTRY_LOWER_ADDR, 8, MSI_ADDR);
	table_write(NVECTORS, PCI_MSIX_ENTRY_DATA, 4, 0x4044);
	table_write(NVECTORS, PCI_MSIX_ENTRY_VECTOR_CTRL, 4, 0);
	table_write(1, PCI_MSIX_ENTRY_VECTOR_CTRL, 8, 0);
	table_write(2, PCI_MSIX_ENTRY_VECTOR_CTRL, 8, 0);
	table_write(0x3f, PCI_MSIX_ENTRY_VECTOR_CTRL, 4, 0);
	check(stub_route_sets() == sets && route_is(gsi0, MSI_ADDR, 0x4041) &&
	      route_is(gsi1, 0x1200000000ULL | MSI_ADDR, 0x4042) &&
	      route_is(gsi2, MSI_ADDR, 0x4043) &&
	      table_read(1, PCI_MSIX_ENTRY_VECTOR_CTRL, 4) == PCI_MSIX_ENTRY_CTRL_MASKBIT &&
	      table_read(2, PCI_MSIX_ENTRY_VECTOR_CTRL, 4) == PCI_MSIX_ENTRY_CTRL_MASKBIT,
	      "table writes of size 1/2, unaligned, or past three entries are ignored");
	check(table_read(0, PCI_MSIX_ENTRY_DATA, 1) == 0 &&
	      table_read(0, PCI_MSIX_ENTRY_DATA, 2) == 0 &&
	      table_read(0, PCI_MSIX_ENTRY_DATA + 2, 4) == 0 &&
	      table_read(0, PCI_MSIX_ENTRY_UPPER_ADDR, 8) == 0 &&
	      table_read(NVECTORS, PCI_MSIX_ENTRY_LOWER_ADDR, 4) == 0 &&
	      table_read(NVECTORS, PCI_MSIX_ENTRY_DATA, 8) == 0 &&
	      table_read(NVECTORS, PCI_MSIX_ENTRY_VECTOR_CTRL, 4) == 0 &&
	      table_read(1, PCI_MSIX_ENTRY_VECTOR_CTRL, 8) == 0 &&
	      table_read(2, PCI_MSIX_ENTRY_VECTOR_CTRL, 8) == 0,
	      "table reads of size 1/2, unaligned, or past three entries read 0");
}

static void test_msix_irqfds(void)
{
	struct virtio_dev *vdev = &dev_a.vdev;
	int gsi0 = vector_route(0), gsi1 = vector_route(1), gsi2 = vector_route(2);
	int q0 = call_fd(0), q1 = call_fd(1), cfd = vdev->config_fd;
	u64 pending;
	bool ok;

	/* Linux's first choice: config on vector 0, then a vector per queue. */
	negotiate();
	set_config_vector(0);
	set_queue_vector(0, 1);
	set_queue_vector(1, 2);
	msix_ctrl(PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL);
	check(stub_irqfd_count() == 0 &&
	      (cfg_read(slot, cap_msix + PCI_MSIX_FLAGS, 2) & ~PCI_MSIX_FLAGS_QSIZE) ==
	      (PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL),
	      "MSI-X enabled with the function masked: no irqfd");
	msix_ctrl(PCI_MSIX_FLAGS_ENABLE);
	check(stub_irqfd_count() == 0, "MSI-X enabled, entries still masked: no irqfd");
	mask_vector(1, false);
	check(stub_irqfd_count() == 1 && stub_irqfd_gsi(q0) == gsi1,
	      "entry 1 unmasked: queue 0's call_fd drives its vector's route, nothing else");
	table_write(2, PCI_MSIX_ENTRY_VECTOR_CTRL, 4, 0xfffffffe);
	check(stub_irqfd_count() == 2 && stub_irqfd_gsi(q1) == gsi2 &&
	      stub_irqfd_gsi(q0) == gsi1 && table_read(2, PCI_MSIX_ENTRY_VECTOR_CTRL, 4) == 0,
	      "entry 2 unmasked (reserved bits dropped): queue 1's call_fd on vector 2's route");
	mask_vector(0, false);
	check(stub_irqfd_count() == 3 && stub_irqfd_gsi(cfd) == gsi0 &&
	      stub_irqfd_gsi(q0) == gsi1 && stub_irqfd_gsi(q1) == gsi2 && !stub_refused(),
	      "a vector per queue: each call_fd on its own vector's route, "
	      "config_fd on vector 0's");

	drain_calls(&dev_a);
	mmio_read(bar + ISR_OFF, 1);
	virtio_notify_used(vdev, 1);
	check(fd_take(q1) == 1 && fd_take(q0) == 0 && fd_take(cfd) == 0 &&
	      mmio_read(bar + ISR_OFF, 1) == VIRTIO_ISR_USED,
	      "virtio_notify_used(queue 1) signals queue 1's call_fd only, ISR used bit");
	virtio_notify_used(vdev, 0);
	check(fd_take(q0) == 1 && fd_take(q1) == 0 && fd_take(cfd) == 0,
	      "virtio_notify_used(queue 0) signals queue 0's call_fd only");
	virtio_notify_config(vdev);
	check(fd_take(cfd) == 1 && fd_take(q0) == 0 && fd_take(q1) == 0 &&
	      mmio_read(bar + ISR_OFF, 1) == (VIRTIO_ISR_USED | VIRTIO_ISR_CONFIG),
	      "virtio_notify_config signals config_fd only; ISR has both bits");

	mask_vector(2, true);
	check(stub_irqfd_count() == 2 && stub_irqfd_gsi(q1) == -1 && stub_irqfd_gsi(q0) == gsi1 &&
	      stub_irqfd_gsi(cfd) == gsi0,
	      "entry 2 masked: only queue 1's call_fd detached");
	check(pba() == 0, "masked, nothing signalled: nothing pending");
	virtio_notify_used(vdev, 1);
	check(pba() == 4 && mmio_read(bar + PBA_OFF, 1) == 4,
	      "queue 1 signalled on masked vector 2: PBA bit 2 only");
	virtio_notify_used(vdev, 0);
	virtio_notify_config(vdev);
	check(pba() == 4, "signals on unmasked vectors are not pending: KVM takes them");
	fd_take(q0);
	fd_take(cfd);
	mmio_write(bar + PBA_OFF, 8, 0);
	mmio_write(bar + PBA_OFF, 1, 0);
	check(pba() == 4, "the PBA is read-only");
	mask_vector(2, false);
	check(stub_irqfd_gsi(q1) == gsi2 && stub_irqfd_count() == 3 && pba() == 0,
	      "entry 2 unmasked: queue 1's call_fd attached again (KVM delivers), PBA clear");
	fd_take(q1);

	mask_vector(1, true);
	mask_vector(2, true);
	virtio_notify_used(vdev, 1);
	pending = pba();
	set_queue_vector(1, 1);
	check(pending == 4 && pba() == 2 && stub_irqfd_gsi(q1) == -1 &&
	      stub_irqfd_gsi(q0) == -1 && stub_irqfd_count() == 1,
	      "a held signal follows its queue to another masked vector's PBA bit");
	set_queue_vector(1, 2);
	mask_vector(1, false);
	mask_vector(2, false);
	fd_take(q1);

	msix_ctrl(PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL);
	check(stub_irqfd_count() == 0, "function mask set: every irqfd detached");
	virtio_notify_config(vdev);
	check(pba() == 1, "config change while the function is masked: vector 0's PBA bit");
	virtio_notify_used(vdev, 0);
	check(pba() == 3, "queue 0's used buffers too: vector 1's bit as well");
	msix_ctrl(PCI_MSIX_FLAGS_ENABLE);
	check(stub_irqfd_gsi(cfd) == gsi0 && stub_irqfd_gsi(q0) == gsi1 &&
	      stub_irqfd_gsi(q1) == gsi2 && stub_irqfd_count() == 3 && pba() == 0,
	      "function mask cleared: all three attached again");
	drain_calls(&dev_a);

	/* Linux's fallback: config on vector 0, every queue on vector 1. */
	set_queue_vector(1, 1);
	check(queue_vector(0) == 1 && queue_vector(1) == 1 && stub_irqfd_count() == 3 &&
	      stub_irqfd_gsi(q0) == gsi1 && stub_irqfd_gsi(q1) == gsi1 &&
	      stub_irqfd_gsi(cfd) == gsi0 && !stub_refused(),
	      "both queues on vector 1: two irqfds on its route");
	mask_vector(1, true);
	check(stub_irqfd_count() == 1 && stub_irqfd_gsi(q0) == -1 && stub_irqfd_gsi(q1) == -1 &&
	      stub_irqfd_gsi(cfd) == gsi0,
	      "the shared vector masked: both queues' irqfds detached, config_fd stays");
	virtio_notify_used(vdev, 0);
	ok = pba() == 2;
	fd_take(q0);
	ok &= pba() == 0;
	virtio_notify_used(vdev, 1);
	ok &= pba() == 2;
	virtio_notify_used(vdev, 0);
	check(ok && pba() == 2,
	      "either queue signalled on the masked shared vector: its one PBA bit");
	mask_vector(1, false);
	check(stub_irqfd_count() == 3 && stub_irqfd_gsi(q0) == gsi1 && stub_irqfd_gsi(q1) == gsi1 &&
	      pba() == 0, "the shared vector unmasked: both attached again, PBA clear");
	drain_calls(&dev_a);

	set_queue_vector(0, 2);
	check(stub_irqfd_gsi(q0) == gsi2 && stub_irqfd_gsi(q1) == gsi1 &&
	      stub_irqfd_gsi(cfd) == gsi0 && stub_irqfd_count() == 3,
	      "queue 0 moved to vector 2: its call_fd follows, queue 1's stays");
	set_config_vector(1);
	check(stub_irqfd_gsi(cfd) == gsi1 && stub_irqfd_gsi(q1) == gsi1 &&
	      stub_irqfd_gsi(q0) == gsi2 && stub_irqfd_count() == 3 && !stub_refused(),
	      "config on queue 1's vector: config_fd joins it on that route");
	set_config_vector(0);
	set_queue_vector(0, 1);
	set_queue_vector(1, 2);

	/* A queue without a callback has no vector, and no irqfd; the others keep theirs. */
	set_queue_vector(0, VIRTIO_MSI_NO_VECTOR);
	check(stub_irqfd_gsi(q0) == -1 && stub_irqfd_gsi(q1) == gsi2 &&
	      stub_irqfd_gsi(cfd) == gsi0 && stub_irqfd_count() == 2,
	      "queue 0 without a vector: no irqfd for it, queue 1 keeps its own");
	virtio_notify_used(vdev, 0);
	check(pba() == 0, "a signal on no vector is pending on none");
	fd_take(q0);
	set_queue_vector(1, VIRTIO_MSI_NO_VECTOR);
	check(stub_irqfd_count() == 1 && stub_irqfd_gsi(q1) == -1 && stub_irqfd_gsi(cfd) == gsi0,
	      "no queue with a vector: only config_fd attached");
	set_queue_vector(0, NVECTORS);
	check(queue_vector(0) == VIRTIO_MSI_NO_VECTOR && stub_irqfd_gsi(q0) == -1 &&
	      stub_irqfd_count() == 1, "queue 0 given vector 3, which does not exist: no irqfd");
	set_queue_vector(0, 1);
	set_queue_vector(1, 2);
	set_config_vector(NVECTORS);
	check(stub_irqfd_gsi(cfd) == -1 && stub_irqfd_gsi(q0) == gsi1 &&
	      stub_irqfd_gsi(q1) == gsi2 && stub_irqfd_count() == 2,
	      "config vector 3 refused: config_fd detached, the queues keep theirs");
	virtio_notify_config(vdev);
	check(pba() == 0, "a config change on no vector is pending on none");
	fd_take(cfd);
	set_config_vector(0);

	msix_ctrl(0);
	check(stub_irqfd_count() == 0, "MSI-X disabled: every irqfd detached");
	msix_ctrl(PCI_MSIX_FLAGS_ENABLE);
	check(stub_irqfd_gsi(cfd) == gsi0 && stub_irqfd_gsi(q0) == gsi1 &&
	      stub_irqfd_gsi(q1) == gsi2 && stub_irqfd_count() == 3,
	      "MSI-X enabled again: all three attached");
	set_status(0);
	check(stub_irqfd_count() == 0 && config_vector() == VIRTIO_MSI_NO_VECTOR &&
	      queue_vector(0) == VIRTIO_MSI_NO_VECTOR && queue_vector(1) == VIRTIO_MSI_NO_VECTOR &&
	      table_read(0, PCI_MSIX_ENTRY_DATA, 4) == 0x4041 &&
	      table_read(2, PCI_MSIX_ENTRY_DATA, 4) == 0x4043,
	      "device reset: vectors back to none, irqfds detached, the table stays");
	check(!stub_refused(), "no irqfd or route call KVM would refuse");
}

/* ---- notify, ISR, PCI_CFG --------------------------------------------------------------- */

static void test_notify(void)
{
	int k0 = dev_a.vdev.vq[0].kick_fd, k1 = dev_a.vdev.vq[1].kick_fd;

	fd_take(k0);
	fd_take(k1);
	mmio_write(bar + NOTIFY_OFF + 4, 2, 1);
	check(fd_take(k1) == 1 && fd_take(k0) == 0, "notify: queue 1's ioeventfd takes its kick");
	mmio_write(bar + NOTIFY_OFF + 4, 4, 1);
	check(fd_take(k1) == 1 && fd_take(k0) == 0,
	      "notify: a 4-byte write no ioeventfd takes still kicks queue 1");
	mmio_write(bar + NOTIFY_OFF, 2, 0x55);
	check(fd_take(k0) == 1 && fd_take(k1) == 0,
	      "notify: the wrong value at queue 0's address kicks queue 0");
	mmio_write(bar + NOTIFY_OFF + 4 * NQUEUES, 2, NQUEUES);
	mmio_write(bar + NOTIFY_OFF + 4 * NQUEUES - 1, 2, 0);
	mmio_write(bar + NOTIFY_OFF + 0x800, 4, 0);
	check(fd_take(k0) == 0 && fd_take(k1) == 0,
	      "notify: past num_queues * 4 (or straddling it) kicks nothing");
	check(mmio_read(bar + NOTIFY_OFF, 4) == 0, "notify: reads 0");
}

static void test_isr(void)
{
	struct virtio_dev *vdev = &dev_a.vdev;

	virtio_notify_config(vdev);
	check(mmio_read(bar + ISR_OFF, 1) == VIRTIO_ISR_CONFIG && mmio_read(bar + ISR_OFF, 1) == 0,
	      "ISR: reads the config bit, and reading clears it");
	virtio_notify_used(vdev, 1);
	mmio_write(bar + ISR_OFF, 1, 0);
	check(mmio_read(bar + ISR_OFF, 4) == VIRTIO_ISR_USED && mmio_read(bar + ISR_OFF, 4) == 0,
	      "ISR: any queue's used buffers set the used bit; writes do not clear it, "
	      "a 4-byte read does");
	virtio_notify_used(vdev, 0);
	check(mmio_read(bar + ISR_OFF + 2, 4) == 0 && mmio_read(bar + ISR_OFF + 4, 1) == 0 &&
	      mmio_read(bar + ISR_OFF, 1) == VIRTIO_ISR_USED,
	      "ISR: reads past its 4 bytes read 0 and leave it set");
	drain_calls(&dev_a);
}

static void pcicfg_set(u8 b, u32 offset, u32 length)
{
	u8 cap = cap_vndr[VIRTIO_PCI_CAP_PCI_CFG];

	cfg_write(slot, cap + VIRTIO_PCI_CAP_BAR, 1, b);
	cfg_write(slot, cap + VIRTIO_PCI_CAP_OFFSET, 4, offset);
	cfg_write(slot, cap + VIRTIO_PCI_CAP_LENGTH, 4, length);
}

static u32 pcicfg_data(void)
{
	return cfg_read(slot, cap_vndr[VIRTIO_PCI_CAP_PCI_CFG] + 16, 4);
}

static void pcicfg_data_write(u32 v)
{
	cfg_write(slot, cap_vndr[VIRTIO_PCI_CAP_PCI_CFG] + 16, 4, v);
}

/* A refused window: the data bytes keep what the driver wrote, BAR 0 is not touched. */
static bool pcicfg_refused(u8 b, u32 offset, u32 length)
{
	bool ok;

	pcicfg_set(0, ISR_OFF, 1);
	pcicfg_data_write(0xdeadbeef);	/* a write to ISR: ignored */
	virtio_notify_config(&dev_a.vdev);
	pcicfg_set(b, offset, length);
	pcicfg_data_write(0xdeadbeef);
	ok = pcicfg_data() == 0xdeadbeef;
	ok &= mmio_read(bar + ISR_OFF, 1) == VIRTIO_ISR_CONFIG;
	fd_take(dev_a.vdev.config_fd);
	return ok;
}

static void test_pcicfg(void)
{
	u8 cap = cap_vndr[VIRTIO_PCI_CAP_PCI_CFG];

	pcicfg_set(0, VIRTIO_PCI_COMMON_NUMQ, 2);
	check(cfg_read(slot, cap + VIRTIO_PCI_CAP_OFFSET, 4) == VIRTIO_PCI_COMMON_NUMQ &&
	      cfg_read(slot, cap + VIRTIO_PCI_CAP_LENGTH, 4) == 2 &&
	      (pcicfg_data() & 0xffff) == NQUEUES,
	      "PCI_CFG window: num_queues through configuration space");
	pcicfg_set(0, VIRTIO_PCI_COMMON_Q_SELECT, 2);
	pcicfg_data_write(1);
	check(common_read(VIRTIO_PCI_COMMON_Q_SELECT, 2) == 1 && (pcicfg_data() & 0xffff) == 1,
	      "PCI_CFG window: a write reaches queue_select");
	select_queue(0);
	virtio_notify_config(&dev_a.vdev);
	pcicfg_set(0, ISR_OFF, 1);
	check((pcicfg_data() & 0xff) == VIRTIO_ISR_CONFIG && mmio_read(bar + ISR_OFF, 1) == 0,
	      "PCI_CFG window: reads ISR, clearing it");
	fd_take(dev_a.vdev.config_fd);
	set_command(slot, 0);
	pcicfg_set(0, VIRTIO_PCI_COMMON_NUMQ, 2);
	check((pcicfg_data() & 0xffff) == NQUEUES,
	      "PCI_CFG window: works with memory decoding off");
	set_command(slot, PCI_COMMAND_MEMORY);

	check(pcicfg_refused(0, ISR_OFF, 3), "PCI_CFG window: length 3 refused");
	check(pcicfg_refused(0, ISR_OFF, 0), "PCI_CFG window: length 0 refused");
	check(pcicfg_refused(0, ISR_OFF + 1, 2), "PCI_CFG window: unaligned offset refused");
	check(pcicfg_refused(1, ISR_OFF, 1), "PCI_CFG window: BAR 1 refused");
	check(pcicfg_refused(0, BAR0_SIZE, 4) && pcicfg_refused(0, BAR0_SIZE - 2, 4) &&
	      pcicfg_refused(0, 0xfffffffc, 4),
	      "PCI_CFG window: past 32 KiB (or wrapping) refused");
	check(pcicfg_refused(0, ISR_OFF, 0xffffffff), "PCI_CFG window: huge length refused");

	/* Any write to the data bytes writes the window's first length bytes (4.1.4.9). */
	pcicfg_set(0, VIRTIO_PCI_COMMON_Q_SELECT, 2);
	pcicfg_data_write(0x77770001);
	check(common_read(VIRTIO_PCI_COMMON_Q_SELECT, 2) == 1,
	      "PCI_CFG window: a 4-byte data write");
	cfg_write(slot, cap + 16, 1, 0);
	check(common_read(VIRTIO_PCI_COMMON_Q_SELECT, 2) == 0 &&
	      cfg_read(slot, cap + 18, 2) == 0x7777,
	      "PCI_CFG window: a byte write to its data writes the window's two bytes");
	pcicfg_set(0, 0, 0);
}

/* ---- hostile sweeps ----------------------------------------------------------------------- */

static u64 rng_state = 0x9e3779b97f4a7c15ULL;

static u64 rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

static void drain_fds(struct fake_dev *d)
{
	unsigned int i;

	drain_calls(d);
	for (i = 0; i < NQUEUES; i++)
		fd_take(d->vdev.vq[i].kick_fd);
}

static bool is_vector_route(int gsi)
{
	unsigned int v;

	for (v = 0; v < NVECTORS; v++)
		if (gsi == vector_route(v))
			return true;
	return false;
}

/*
 * What is attached must match the function's state, whatever the guest
 * did: the kick ioeventfds where BAR 0 decodes; each queue's call_fd and
 * config_fd on the route of the vector the guest reads back for it if
 * that vector exists, MSI-X is on and its entry unmasked, else nowhere;
 * and a signal on a detached one pending in exactly its vector's PBA bit.
 * Leaves the call eventfds drained.
 */
static bool attachments_consistent(void)
{
	u32 b = cfg_read(slot, PCI_BASE_ADDRESS_0, 4) & ~0xfU;
	bool decoded = (cfg_read(slot, PCI_COMMAND, 2) & PCI_COMMAND_MEMORY) &&
		       b >= PCI_WINDOW_BASE && b < PCI_WINDOW_BASE + PCI_WINDOW_SIZE;
	u16 flags = cfg_read(slot, cap_msix + PCI_MSIX_FLAGS, 2);
	bool msix_on = (flags & PCI_MSIX_FLAGS_ENABLE) && !(flags & PCI_MSIX_FLAGS_MASKALL);
	unsigned int i, attached = 0;
	u64 want_pba = 0;
	int fd, gsi, want;
	u16 sel = 0, vector;
	bool ok = true;

	if (decoded ? !(stub_ioeventfd_count() == NQUEUES && notify_fds_at(&dev_a, b)) :
	    stub_ioeventfd_count() != 0)
		return false;
	if (stub_refused())
		return false;
	if (decoded)
		sel = mmio_read(b + VIRTIO_PCI_COMMON_Q_SELECT, 2);
	for (i = 0; i <= NQUEUES; i++) {
		fd = i < NQUEUES ? call_fd(i) : dev_a.vdev.config_fd;
		gsi = stub_irqfd_gsi(fd);
		attached += gsi >= 0;
		if (!decoded) {
			/* No vector to read back: one of the function's routes, or none. */
			ok &= gsi < 0 || (msix_on && is_vector_route(gsi));
			continue;
		}
		if (i < NQUEUES) {
			mmio_write(b + VIRTIO_PCI_COMMON_Q_SELECT, 2, i);
			vector = mmio_read(b + VIRTIO_PCI_COMMON_Q_MSIX, 2);
		} else {
			vector = mmio_read(b + VIRTIO_PCI_COMMON_MSIX, 2);
		}
		ok &= vector < NVECTORS || vector == VIRTIO_MSI_NO_VECTOR;
		want = -1;
		if (vector < NVECTORS && msix_on &&
		    !(mmio_read(b + TABLE_OFF + vector * PCI_MSIX_ENTRY_SIZE +
				PCI_MSIX_ENTRY_VECTOR_CTRL, 4) & PCI_MSIX_ENTRY_CTRL_MASKBIT))
			want = vector_route(vector);
		ok &= gsi == want;
		fd_take(fd);
		eventfd_signal(fd);
		if (want < 0 && vector < NVECTORS)
			want_pba |= 1ULL << vector;
	}
	if (decoded) {
		ok &= mmio_read(b + PBA_OFF, 8) == want_pba;
		mmio_write(b + VIRTIO_PCI_COMMON_Q_SELECT, 2, sel);
		ok &= mmio_read(b + VIRTIO_PCI_COMMON_Q_SELECT, 2) == sel;
		drain_calls(&dev_a);
	}
	return ok && attached == stub_irqfd_count();
}

static void test_sweep_config(void)
{
	unsigned int off, len, round, port;

	/* Every register, every size the ports allow: garbage, then read back; four rounds. */
	for (round = 0; round < 4; round++) {
		for (off = 0; off < PCI_CFG_SIZE; off++) {
			for (len = 1; len <= 4; len *= 2) {
				if ((off & 3) + len > 4)
					continue;
				cfg_write(slot, off, len, rnd());
				cfg_read(slot, off, len);
				drain_fds(&dev_a);
			}
		}
	}
	check(attachments_consistent(), "sweep: garbage to every config register, sizes 1/2/4");
	for (round = 0; round < 100000; round++) {
		/* Mostly our function's registers, sometimes any bus, slot and function. */
		pio_write(CONF1_ADDR, 4, rnd() & 3 ? (rnd() & 0x80ff00ff) | slot << 11 : rnd());
		port = CONF1_ADDR + rnd() % 8;
		len = 1 << rnd() % 3;
		if (rnd() & 1)
			pio_write(port, len, rnd());
		else
			pio_read(port, len);
		if (!(round & 255))
			drain_fds(&dev_a);
	}
	check(attachments_consistent(), "sweep: random latch values and port accesses");

	/* Back to a decoded BAR 0 for the MMIO sweep. */
	set_bar0(slot, bar);
	set_command(slot, PCI_COMMAND_MEMORY);
	cfg_write(slot, cap_msix + PCI_MSIX_FLAGS, 2, PCI_MSIX_FLAGS_ENABLE);
	check(cfg_read(slot, PCI_VENDOR_ID, 4) == 0x10421af4 &&
	      cfg_read(slot, PCI_CAPABILITY_LIST, 1) == cap_msix &&
	      common_read(VIRTIO_PCI_COMMON_NUMQ, 2) == NQUEUES && attachments_consistent(),
	      "after the config sweep: IDs and capabilities intact, BAR 0 decodes again");
}

static void test_sweep_bar0(void)
{
	static const u32 sizes[] = { 1, 2, 4, 8 };
	unsigned int i;
	u64 off;

	for (off = 0; off < BAR0_SIZE; off++) {
		for (i = 0; i < ARRAY_SIZE(sizes); i++) {
			mmio_read(bar + off, sizes[i]);
			mmio_write(bar + off, sizes[i], rnd());
			mmio_read(bar + off, sizes[i]);
		}
		if (!(off & 63))
			drain_fds(&dev_a);
	}
	check(attachments_consistent(), "sweep: garbage to every BAR 0 offset, sizes 1/2/4/8");
	/* Again through the PCI_CFG window, with the window's fields as garbage too. */
	for (i = 0; i < 200000; i++) {
		pcicfg_set(rnd() & 1 ? 0 : rnd(), rnd() & 1 ? rnd() % (2 * BAR0_SIZE) : rnd(),
			   rnd() & 1 ? 1U << rnd() % 3 : (u32)rnd());
		if (rnd() & 1)
			pcicfg_data_write(rnd());
		else
			pcicfg_data();
		if (!(i & 63))
			drain_fds(&dev_a);
	}
	check(attachments_consistent(), "sweep: garbage through the PCI_CFG window");
}

/*
 * Garbage rarely gets a device to DRIVER_OK: random traffic aimed at the
 * registers, with small values, status flips and a driver starting over
 * now and then, walks the status machine and the MSI-X state instead.
 */
static void test_sweep_registers(void)
{
	static const struct {
		u32 off, len;
	} hot[] = {
		{ 0, 0x44 },
		{ ISR_OFF, 8 },
		{ DEVICE_OFF, CONFIG_SIZE + 4 },
		{ NOTIFY_OFF, 4 * NQUEUES + 4 },
		{ TABLE_OFF, NVECTORS * PCI_MSIX_ENTRY_SIZE + 8 },
		{ PBA_OFF, 16 },
	};
	unsigned int i, r, len, bad = 0, act = dev_a.activated;
	u64 off, v;

	for (i = 0; i < 500000; i++) {
		r = rnd() % ARRAY_SIZE(hot);
		len = 1U << rnd() % 4;
		off = hot[r].off + rnd() % hot[r].len;
		if (rnd() % 4)
			off = ALIGN_DOWN(off, len);
		v = rnd() & 1 ? rnd() % 4 : rnd();
		switch (rnd() % 64) {
		case 0:
			negotiate();
			break;
		case 1:
			msix_ctrl(rnd() & (PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL));
			break;
		case 2:
			set_command(slot, rnd() % 4 ? PCI_COMMAND_MEMORY : 0);
			break;
		case 3:
			set_status(rnd());
			break;
		default:
			if (rnd() & 1)
				mmio_write(bar + off, len, v);
			else
				mmio_read(bar + off, len);
		}
		if (!(i & 63)) {
			drain_fds(&dev_a);
			bad += !attachments_consistent();
		}
	}
	set_command(slot, PCI_COMMAND_MEMORY);
	check(!bad && attachments_consistent(),
	      "sweep: random register traffic keeps irqfds and ioeventfds consistent");
	printf("# register traffic activated the device %u times\n", dev_a.activated - act);
	set_status(0);
	drain_fds(&dev_a);
	check(dev_a.activated - act > 100 && activations_balanced(&dev_a) && status() == 0 &&
	      common_read(VIRTIO_PCI_COMMON_NUMQ, 2) == NQUEUES,
	      "sweep: every activate was followed by exactly one reset");
}

static void test_teardown(void)
{
	struct virtio_dev *vdev = &dev_a.vdev;
	int q0 = call_fd(0), q1 = call_fd(1), cfd = vdev->config_fd;
	int k0 = vdev->vq[0].kick_fd, k1 = vdev->vq[1].kick_fd;
	unsigned int v;

	/* Everything attached: decoded BAR, MSI-X on, a vector per queue, all unmasked. */
	negotiate();
	set_config_vector(0);
	set_queue_vector(0, 1);
	set_queue_vector(1, 2);
	for (v = 0; v < NVECTORS; v++)
		mask_vector(v, false);
	msix_ctrl(PCI_MSIX_FLAGS_ENABLE);
	common_write(VIRTIO_PCI_COMMON_Q_ENABLE, 2, 1);
	set_status(STATUS_FEATURES | VIRTIO_CONFIG_S_DRIVER_OK);
	check(stub_irqfd_count() == NVECTORS && stub_irqfd_gsi(cfd) == vector_route(0) &&
	      stub_irqfd_gsi(q0) == vector_route(1) && stub_irqfd_gsi(q1) == vector_route(2) &&
	      stub_ioeventfd_count() == NQUEUES && (status() & VIRTIO_CONFIG_S_DRIVER_OK),
	      "before removal: live, an irqfd per queue and for config, the ioeventfds attached");
	dev_a.resets = 0;
	virtio_transport_remove(vdev);
	check(stub_irqfd_count() == 0 && stub_ioeventfd_count() == 0 && !stub_refused(),
	      "removal detaches every queue's irqfd, the config irqfd and the ioeventfds, "
	      "and nothing else");
	check(dev_a.resets == 1 && !vdev->transport && vdev->vq[0].call_fd == -1 &&
	      vdev->vq[1].call_fd == -1 && vdev->config_fd == -1 && vdev->vq[0].kick_fd == -1 &&
	      vdev->vq[1].kick_fd == -1,
	      "removal resets the live device and sets every eventfd to -1");
	check(!fd_open(q0) && !fd_open(q1) && !fd_open(cfd) && !fd_open(k0) && !fd_open(k1),
	      "removal closes every queue's call and kick eventfd, and config_fd");
	check(cfg_read(slot, PCI_VENDOR_ID, 4) == 0xffffffff &&
	      mmio_read(bar + VIRTIO_PCI_COMMON_NUMQ, 2) == 0xffff,
	      "the function left the bus: its slot and BAR read all ones");
}

/* ---- virtio-mmio: the register page ----------------------------------------------- */

static struct fake_dev dev_m;	/* on virtio-mmio */
static u64 mmio_base;		/* dev_m's register window */

/* What the guest reads on the page, without an exit. */
static u32 page_read(u32 off)
{
	const u32 *p = stub_page_at(mmio_base + off);

	return p ? *p : 0xdeadbeef;
}

/* What the same read returned when it exited to vmlaunch. */
static u32 exit_read(u32 off)
{
	return mmio_read(mmio_base + off, 4);
}

/* Every register and config word: the page reads what the exit would. */
static bool page_matches(void)
{
	u32 off;

	for (off = 0; off < VIRTIO_MMIO_CONFIG + CONFIG_SIZE; off += 4) {
		if (page_read(off) != exit_read(off)) {
			printf("# offset 0x%x: page 0x%x, exit 0x%x\n", off, page_read(off),
			       exit_read(off));
			return false;
		}
	}
	return true;
}

static void mmio_reg_write(u32 off, u32 v)
{
	mmio_write(mmio_base + off, 4, v);
}

/* Raises the used bit as a backend thread does, while the vCPU acknowledges. */
static void *notify_storm(void *arg)
{
	unsigned int i;

	(void)arg;
	for (i = 0; i < 20000; i++)
		virtio_notify_used(&dev_m.vdev, i & 1);
	return NULL;
}

static void test_mmio_page(void)
{
	struct virtio_dev *vdev = &dev_m.vdev;
	unsigned int irqfds;
	pthread_t storm;
	bool ok = true;
	u32 sel;

	check(stub_page_at(mmio_base) && page_read(VIRTIO_MMIO_MAGIC_VALUE) == 0x74726976 &&
	      page_read(VIRTIO_MMIO_VERSION) == 2 &&
	      page_read(VIRTIO_MMIO_DEVICE_ID) == VIRTIO_ID_BLOCK && page_matches(),
	      "mmio: the register window is a read-only page that reads what an exit would");
	for (sel = 0; sel < 4; sel++) {
		mmio_reg_write(VIRTIO_MMIO_DEVICE_FEATURES_SEL, sel);
		ok &= page_read(VIRTIO_MMIO_DEVICE_FEATURES) ==
		      (sel < 2 ? (u32)(FEATURES >> (32 * sel)) : 0) && page_matches();
	}
	check(ok, "mmio: DeviceFeatures on the page follows DeviceFeaturesSel");
	mmio_reg_write(VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
	mmio_reg_write(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	mmio_reg_write(VIRTIO_MMIO_DRIVER_FEATURES, (u32)(FEATURES >> 32));
	mmio_reg_write(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	mmio_reg_write(VIRTIO_MMIO_DRIVER_FEATURES, (u32)FEATURES);
	mmio_reg_write(VIRTIO_MMIO_STATUS, STATUS_FEATURES);
	check(page_read(VIRTIO_MMIO_STATUS) == STATUS_FEATURES && page_matches(),
	      "mmio: Status on the page follows the driver's writes");
	ok = true;
	for (sel = 0; sel < NQUEUES + 2; sel++) {
		mmio_reg_write(VIRTIO_MMIO_QUEUE_SEL, sel);
		ok &= page_read(VIRTIO_MMIO_QUEUE_NUM_MAX) == (sel < NQUEUES ? VIRTQ_MAX_SIZE : 0);
		if (sel < NQUEUES) {
			mmio_reg_write(VIRTIO_MMIO_QUEUE_NUM, 64);
			mmio_reg_write(VIRTIO_MMIO_QUEUE_DESC_LOW, 0x10000 * (sel + 1));
			mmio_reg_write(VIRTIO_MMIO_QUEUE_AVAIL_LOW, 0x10000 * (sel + 1) + 0x400);
			mmio_reg_write(VIRTIO_MMIO_QUEUE_USED_LOW, 0x10000 * (sel + 1) + 0x1000);
			mmio_reg_write(VIRTIO_MMIO_QUEUE_READY, 1);
			ok &= page_read(VIRTIO_MMIO_QUEUE_READY) == 1;
		}
		ok &= page_matches();
	}
	mmio_reg_write(VIRTIO_MMIO_QUEUE_SEL, 0);
	check(ok && page_read(VIRTIO_MMIO_QUEUE_READY) == 1,
	      "mmio: QueueNumMax and QueueReady on the page follow QueueSel");
	mmio_reg_write(VIRTIO_MMIO_STATUS, STATUS_FEATURES | VIRTIO_CONFIG_S_DRIVER_OK);
	check(dev_m.activated == 1 && page_read(VIRTIO_MMIO_STATUS) ==
	      (STATUS_FEATURES | VIRTIO_CONFIG_S_DRIVER_OK) && page_read(VIRTIO_MMIO_INTERRUPT_STATUS) == 0 &&
	      page_matches(), "mmio: DRIVER_OK shows on the page, no interrupt pending");

	virtio_notify_used(vdev, 1);
	check(page_read(VIRTIO_MMIO_INTERRUPT_STATUS) == VIRTIO_ISR_USED &&
	      fd_take(vdev->vq[1].call_fd) == 1,
	      "mmio: a backend's used buffers are on the page when its interrupt fires");
	mmio_reg_write(VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_ISR_USED);
	check(page_read(VIRTIO_MMIO_INTERRUPT_STATUS) == 0 && page_matches(),
	      "mmio: InterruptACK clears the bit on the page");
	virtio_needs_reset(vdev);
	check(page_read(VIRTIO_MMIO_INTERRUPT_STATUS) == VIRTIO_ISR_CONFIG &&
	      (page_read(VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET) && page_matches() &&
	      fd_take(vdev->config_fd) == 1,
	      "mmio: NEEDS_RESET and the config bit are on the page when the config interrupt fires");
	mmio_reg_write(VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_ISR_CONFIG);

	/* The vCPU acknowledges while a backend keeps raising: the page ends up right. */
	if (pthread_create(&storm, NULL, notify_storm, NULL)) {
		check(false, "mmio: a backend thread for the storm");
		return;
	}
	for (sel = 0; sel < 20000; sel++)
		mmio_reg_write(VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_ISR_USED);
	pthread_join(storm, NULL);
	check(page_read(VIRTIO_MMIO_INTERRUPT_STATUS) == (vdev->isr & VIRTIO_ISR_USED) &&
	      page_matches(),
	      "mmio: after acknowledgements racing a backend's interrupts, the page reads the state");
	mmio_reg_write(VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_ISR_USED);
	check(page_read(VIRTIO_MMIO_INTERRUPT_STATUS) == 0, "mmio: and the last ack clears it");
	drain_calls(&dev_m);
	fd_take(vdev->config_fd);

	mmio_reg_write(VIRTIO_MMIO_STATUS, 0);
	check(dev_m.resets == 1 && page_read(VIRTIO_MMIO_STATUS) == 0 &&
	      page_read(VIRTIO_MMIO_QUEUE_READY) == 0 && page_matches(),
	      "mmio: a reset shows on the page: Status 0, no queue ready");
	mmio_reg_write(VIRTIO_MMIO_CONFIG, 0xffffffff);
	mmio_reg_write(VIRTIO_MMIO_MAGIC_VALUE, 0);
	check(page_read(VIRTIO_MMIO_CONFIG) == 0x13121110 &&
	      page_read(VIRTIO_MMIO_MAGIC_VALUE) == 0x74726976 && page_matches(),
	      "mmio: the guest's writes to read-only registers and config change nothing on the page");

	irqfds = stub_irqfd_count();
	virtio_transport_remove(vdev);
	check(!stub_page_at(mmio_base) && stub_irqfd_count() == irqfds - 1 && !stub_refused(),
	      "mmio: removal takes the page away from the guest and detaches the irqfd");
}

/* --mmio-reads exit: no page, every read exits. */
static void test_mmio_reads_exit(void)
{
	struct acpi_device_info info = { .name = "XXXX" };
	int r;

	vm.mmio_reads_exit = true;
	r = fake_add_info(&dev_m, "m", &info);
	check(!r && !stub_page_at(info.base) &&
	      mmio_read(info.base + VIRTIO_MMIO_MAGIC_VALUE, 4) == 0x74726976,
	      "mmio --mmio-reads exit: no page, reads exit and are answered");
	if (!r)
		virtio_transport_remove(&dev_m.vdev);
	vm.mmio_reads_exit = false;
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	vm.virtio_pci = true;
	vm.pci = pci_bus_create(&vm);
	if (!vm.pci || fake_add(&dev_a, "a")) {
		printf("Bail out! cannot set up the bus and a function\n");
		return 1;
	}
	/* As the guest finds it: scanning the slots. */
	slot = find_function(1);
	if (!slot) {
		printf("Bail out! the function is not on the bus\n");
		return 1;
	}
	bar = cfg_read(slot, PCI_BASE_ADDRESS_0, 4) & ~0xfULL;

	printf("TAP version 13\n");
	test_conf1();
	test_ids_and_caps();
	test_bar_sizing();
	test_bar_decode();
	test_features();
	test_queues();
	test_device_config();
	test_msix_vectors();
	test_msix_table();
	test_msix_irqfds();
	test_notify();
	test_isr();
	test_pcicfg();
	test_sweep_config();
	test_sweep_bar0();
	test_sweep_registers();
	test_teardown();

	vm.virtio_pci = false;
	{
		struct acpi_device_info info = { .name = "XXXX" };

		if (fake_add_info(&dev_m, "m", &info)) {
			printf("Bail out! cannot add a virtio-mmio device\n");
			return 1;
		}
		mmio_base = info.base;
	}
	test_mmio_page();
	test_mmio_reads_exit();
	pci_bus_destroy(vm.pci);
	printf("1..%u\n", ntests);
	printf("# %u passed, %u failed\n", ntests - nfailed, nfailed);
	return nfailed ? 1 : 0;
}
