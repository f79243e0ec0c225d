// SPDX-License-Identifier: GPL-2.0
/*
 * PCI bus 0 behind configuration mechanism #1 (ports 0xcf8-0xcff): a
 * 32-bit address latch at 0xcf8 (bit 31 enable, bus, device, function,
 * register) and a data window at 0xcfc-0xcff. Only bus 0, function 0
 * exists. Slot 0 is a host bridge: Linux's check that mechanism #1 works
 * looks for one when the BIOS date is unknown, as it is without DMI.
 *
 * Memory BARs decode inside [PCI_WINDOW_BASE, + PCI_WINDOW_SIZE) while the
 * command register enables memory space; vmlaunch places each function's
 * BARs there before boot, and the driver may move them within it. A BAR
 * moved outside the window, or overlapping another, decodes nowhere.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <linux/pci_regs.h>

#include "pci.h"

#define CONF1_ADDR_PORT		0xcf8
#define CONF1_PORTS		8
#define CONF1_ENABLE		0x80000000U

/* Red Hat's "QEMU PCIe host bridge" ID: no Linux quirk matches it. */
#define HOST_BRIDGE_VENDOR	0x1b36
#define HOST_BRIDGE_DEVICE	0x0008
#define PCI_CLASS_BRIDGE_HOST	0x0600
#define BAR_SLOT_SPACING	0x100000ULL	/* 1 MiB of window per slot */

struct pci_bus {
	struct vm *vm;
	pthread_mutex_t lock;
	u32 conf1_addr;
	struct pci_function host;
	struct pci_function *slots[PCI_MAX_SLOTS];
};

static bool bar_is_64bit(const struct pci_function *f, unsigned int bar)
{
	return (f->cfg[PCI_BASE_ADDRESS_0 + 4 * bar] & PCI_BASE_ADDRESS_MEM_TYPE_MASK) ==
	       PCI_BASE_ADDRESS_MEM_TYPE_64;
}

static u64 bar_address(const struct pci_function *f, unsigned int bar)
{
	u64 addr = pci_get32(f, PCI_BASE_ADDRESS_0 + 4 * bar) & PCI_BASE_ADDRESS_MEM_MASK;

	if (bar_is_64bit(f, bar) && bar + 1 < PCI_NUM_BARS)
		addr |= (u64)pci_get32(f, PCI_BASE_ADDRESS_0 + 4 * (bar + 1)) << 32;
	return addr;
}

static bool bars_overlap(struct pci_bus *bus, const struct pci_function *f, unsigned int bar,
			 u64 base)
{
	unsigned int s, b;

	for (s = 0; s < PCI_MAX_SLOTS; s++) {
		const struct pci_function *o = bus->slots[s];

		for (b = 0; o && b < PCI_NUM_BARS; b++) {
			if ((o == f && b == bar) || !o->bar_base[b])
				continue;
			if (base < o->bar_base[b] + o->bar_size[b] &&
			    o->bar_base[b] < base + f->bar_size[bar])
				return true;
		}
	}
	return false;
}

/* Under the bus lock, after the command register or a BAR changed. */
static void update_bars(struct pci_bus *bus, struct pci_function *f)
{
	bool mem_on = pci_get16(f, PCI_COMMAND) & PCI_COMMAND_MEMORY;
	unsigned int bar;

	for (bar = 0; bar < PCI_NUM_BARS; bar++) {
		u64 addr = bar_address(f, bar), base = 0, old = f->bar_base[bar];

		if (!f->bar_size[bar])
			continue;
		if (mem_on && addr >= PCI_WINDOW_BASE &&
		    addr - PCI_WINDOW_BASE <= PCI_WINDOW_SIZE - f->bar_size[bar] &&
		    !bars_overlap(bus, f, bar, addr))
			base = addr;
		if (base == old)
			continue;
		f->bar_base[bar] = base;
		if (f->ops->bar_moved)
			f->ops->bar_moved(f, bar, old, base);
	}
}

/*
 * A BAR that moved may uncover another function's, which decodes again
 * once nothing overlaps it: recheck every function.
 */
static void update_all_bars(struct pci_bus *bus)
{
	unsigned int s;

	for (s = 0; s < PCI_MAX_SLOTS; s++)
		if (bus->slots[s])
			update_bars(bus, bus->slots[s]);
}

static struct pci_function *conf1_target(struct pci_bus *bus, u32 *reg)
{
	u32 a = bus->conf1_addr;
	unsigned int busnr = (a >> 16) & 0xff, slot = (a >> 11) & 0x1f, fn = (a >> 8) & 7;

	if (!(a & CONF1_ENABLE) || busnr || fn)
		return NULL;
	*reg = a & 0xfc;
	return bus->slots[slot];
}

static void config_access(struct pci_bus *bus, struct pci_function *f, u32 off, u8 *data,
			  u32 len, bool write)
{
	u32 i;

	if (!write) {
		if (f->ops && f->ops->config_read)
			f->ops->config_read(f, off, len);
		memcpy(data, f->cfg + off, len);
		return;
	}
	for (i = 0; i < len; i++)
		f->cfg[off + i] = (f->cfg[off + i] & ~f->wmask[off + i]) |
				  (data[i] & f->wmask[off + i]);
	if (off < PCI_BASE_ADDRESS_5 + 4 && off + len > PCI_COMMAND)
		update_all_bars(bus);
	if (f->ops && f->ops->config_written)
		f->ops->config_written(f, off, len);
}

static void conf1_io(void *opaque, u64 port_off, u8 *data, u32 len, bool write)
{
	struct pci_bus *bus = opaque;
	struct pci_function *f;
	u32 reg = 0;

	pthread_mutex_lock(&bus->lock);
	if (port_off < 4) {
		/* Only whole 32-bit accesses reach the latch (0xcf9 is a reset port elsewhere). */
		if (port_off == 0 && len == 4) {
			if (write)
				memcpy(&bus->conf1_addr, data, 4);
			else
				memcpy(data, &bus->conf1_addr, 4);
		} else if (!write) {
			memset(data, 0xff, len);
		}
	} else {
		u32 byte = port_off - 4;

		f = conf1_target(bus, &reg);
		if (f && byte + len <= 4)
			config_access(bus, f, reg + byte, data, len, write);
		else if (!write)
			memset(data, 0xff, len);	/* no such function */
	}
	pthread_mutex_unlock(&bus->lock);
}

/* An access to the window: find the BAR that decodes it. */
static void window_io(void *opaque, u64 off, u8 *data, u32 len, bool write)
{
	struct pci_bus *bus = opaque;
	u64 addr = PCI_WINDOW_BASE + off;
	struct pci_function *hit = NULL;
	unsigned int s, b, hit_bar = 0;
	u64 hit_off = 0;

	pthread_mutex_lock(&bus->lock);
	for (s = 0; s < PCI_MAX_SLOTS && !hit; s++) {
		struct pci_function *f = bus->slots[s];

		for (b = 0; f && b < PCI_NUM_BARS; b++) {
			u64 base = f->bar_base[b];

			if (base && addr >= base && addr - base < f->bar_size[b] &&
			    len <= f->bar_size[b] - (addr - base)) {
				hit = f;
				hit_bar = b;
				hit_off = addr - base;
				break;
			}
		}
	}
	pthread_mutex_unlock(&bus->lock);
	/*
	 * Outside the bus lock: a function's handler takes its own lock, and
	 * functions are removed only after the vCPUs have stopped.
	 */
	if (hit)
		hit->ops->bar_io(hit, hit_bar, hit_off, data, len, write);
	else if (!write)
		memset(data, 0xff, len);
}

struct pci_bus *pci_bus_create(struct vm *vm)
{
	struct pci_bus *bus = calloc(1, sizeof(*bus));
	struct pci_function *h;

	if (!bus)
		return NULL;
	bus->vm = vm;
	pthread_mutex_init(&bus->lock, NULL);
	h = &bus->host;
	pci_put16(h, PCI_VENDOR_ID, HOST_BRIDGE_VENDOR);
	pci_put16(h, PCI_DEVICE_ID, HOST_BRIDGE_DEVICE);
	pci_put16(h, PCI_CLASS_DEVICE, PCI_CLASS_BRIDGE_HOST);
	h->cfg[PCI_HEADER_TYPE] = PCI_HEADER_TYPE_NORMAL;
	bus->slots[0] = h;
	if (vm_register_pio(vm, CONF1_ADDR_PORT, CONF1_PORTS, conf1_io, bus) ||
	    vm_register_mmio(vm, PCI_WINDOW_BASE, PCI_WINDOW_SIZE, window_io, bus)) {
		pr_err("cannot claim the PCI configuration ports and window");
		pci_bus_destroy(bus);
		return NULL;
	}
	return bus;
}

void pci_bus_destroy(struct pci_bus *bus)
{
	if (!bus)
		return;
	pthread_mutex_destroy(&bus->lock);
	free(bus);
}

u8 pci_add_capability(struct pci_function *f, u8 id, u8 len)
{
	u32 off = f->cap_end ? f->cap_end : PCI_STD_HEADER_SIZEOF;

	if (len < 2 || off + len > PCI_CFG_SIZE)
		return 0;
	f->cfg[off + PCI_CAP_LIST_ID] = id;
	f->cfg[off + PCI_CAP_LIST_NEXT] = 0;
	if (f->cap_last)
		f->cfg[f->cap_last + PCI_CAP_LIST_NEXT] = off;
	else
		f->cfg[PCI_CAPABILITY_LIST] = off;
	pci_put16(f, PCI_STATUS, pci_get16(f, PCI_STATUS) | PCI_STATUS_CAP_LIST);
	f->cap_last = off;
	f->cap_end = ALIGN_UP(off + len, 4);
	return off;
}

int pci_add_function(struct pci_bus *bus, struct pci_function *f)
{
	unsigned int slot, bar;
	u64 base;

	for (slot = 1; slot < PCI_MAX_SLOTS && bus->slots[slot]; slot++)
		;
	if (slot == PCI_MAX_SLOTS)
		return -ENOSPC;
	base = PCI_WINDOW_BASE + (slot - 1) * BAR_SLOT_SPACING;
	for (bar = 0; bar < PCI_NUM_BARS; bar++) {
		u32 size = f->bar_size[bar];
		u32 mask = ~(size - 1) & PCI_BASE_ADDRESS_MEM_MASK;

		if (!size)
			continue;
		if ((size & (size - 1)) || size < 16 || size > BAR_SLOT_SPACING)
			return -EINVAL;
		/* 32-bit, non-prefetchable memory: the low flag bits stay 0. */
		base = ALIGN_UP(base, size);
		pci_put32(f, PCI_BASE_ADDRESS_0 + 4 * bar, base);
		memcpy(f->wmask + PCI_BASE_ADDRESS_0 + 4 * bar, &mask, 4);
		base += size;
	}
	/* Firmware leaves memory decoding on; the driver may toggle it and mastering. */
	pci_put16(f, PCI_COMMAND, PCI_COMMAND_MEMORY);
	f->wmask[PCI_COMMAND] |= PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER;
	f->wmask[PCI_COMMAND + 1] |= PCI_COMMAND_INTX_DISABLE >> 8;
	f->wmask[PCI_INTERRUPT_LINE] = 0xff;
	f->slot = slot;

	pthread_mutex_lock(&bus->lock);
	bus->slots[slot] = f;
	update_bars(bus, f);
	pthread_mutex_unlock(&bus->lock);
	return 0;
}

/* After the vCPUs have stopped. */
void pci_remove_function(struct pci_bus *bus, struct pci_function *f)
{
	if (!bus || !f->slot || bus->slots[f->slot] != f)
		return;
	pthread_mutex_lock(&bus->lock);
	pci_put16(f, PCI_COMMAND, 0);
	update_bars(bus, f);
	bus->slots[f->slot] = NULL;
	pthread_mutex_unlock(&bus->lock);
}
