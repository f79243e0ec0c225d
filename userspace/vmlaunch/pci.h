/* SPDX-License-Identifier: GPL-2.0 */
/*
 * A conventional PCI bus 0 (pci.c): configuration space through the
 * legacy ports 0xcf8/0xcfc, a host bridge at 00.0, and a window of guest
 * physical addresses for 32-bit memory BARs, described to the guest by a
 * PNP0A03 host bridge in the DSDT.
 *
 * A function keeps its 256-byte configuration space as bytes with a mask
 * of the bits the driver may write; pci.c handles the header (command
 * register, BAR sizing and placement) and tells the function through its
 * ops what moved, so the function itself only handles its capabilities
 * and what is behind its BARs.
 *
 * Locking: the bus lock covers configuration space and BAR placement; it
 * is taken before any function's own lock, never after.
 */
#ifndef VMLAUNCH_PCI_H
#define VMLAUNCH_PCI_H

#include "vmlaunch.h"

#define PCI_WINDOW_BASE		0xe0000000ULL
#define PCI_WINDOW_SIZE		0x10000000ULL
#define PCI_MAX_SLOTS		32	/* slot 0 is the host bridge */
#define PCI_NUM_BARS		6
#define PCI_CFG_SIZE		256

struct pci_function;

struct pci_function_ops {
	/* An access to a BAR that is decoded; offset inside the BAR. */
	void (*bar_io)(struct pci_function *f, unsigned int bar, u64 offset, u8 *data,
		       u32 len, bool write);
	/* A BAR now decodes at base (0: not at all), was at old_base. */
	void (*bar_moved)(struct pci_function *f, unsigned int bar, u64 old_base, u64 base);
	/* After the bytes [offset, offset + len) were written (masked). */
	void (*config_written)(struct pci_function *f, u32 offset, u32 len);
	/* Before [offset, offset + len) is read: refresh live fields. */
	void (*config_read)(struct pci_function *f, u32 offset, u32 len);
};

struct pci_function {
	const struct pci_function_ops *ops;
	void *opaque;
	unsigned int slot;
	u8 cfg[PCI_CFG_SIZE];
	u8 wmask[PCI_CFG_SIZE];		/* bits the driver may write */
	u32 bar_size[PCI_NUM_BARS];	/* power of two, 0: no BAR */
	u64 bar_base[PCI_NUM_BARS];	/* where it decodes now, 0: nowhere */
	u8 cap_last;			/* the list's last capability, 0: none yet */
	u8 cap_end;			/* the first free byte after it */
};

struct pci_bus *pci_bus_create(struct vm *vm);
void pci_bus_destroy(struct pci_bus *bus);

/*
 * Give f the next free slot and place its BARs in the window, as firmware
 * would; the caller has filled cfg (IDs, class, capabilities) and wmask.
 */
int pci_add_function(struct pci_bus *bus, struct pci_function *f);
void pci_remove_function(struct pci_bus *bus, struct pci_function *f);

/* Add a capability of len bytes to f's list; its offset, or 0 if full. */
u8 pci_add_capability(struct pci_function *f, u8 id, u8 len);

static inline void pci_put16(struct pci_function *f, u32 off, u16 v)
{
	f->cfg[off] = v;
	f->cfg[off + 1] = v >> 8;
}

static inline void pci_put32(struct pci_function *f, u32 off, u32 v)
{
	pci_put16(f, off, v);
	pci_put16(f, off + 2, v >> 16);
}

static inline u16 pci_get16(const struct pci_function *f, u32 off)
{
	return f->cfg[off] | f->cfg[off + 1] << 8;
}

static inline u32 pci_get32(const struct pci_function *f, u32 off)
{
	return pci_get16(f, off) | (u32)pci_get16(f, off + 2) << 16;
}

#endif /* VMLAUNCH_PCI_H */
