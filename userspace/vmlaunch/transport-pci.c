// SPDX-License-Identifier: GPL-2.0
/*
 * virtio-pci, modern interface only (virtio 1.2, section 4.1), with MSI-X.
 *
 * Each device is a function on bus 0 (pci.c) with device ID 0x1040 plus
 * its virtio ID, no INTx pin, and one 32 KiB memory BAR holding, a page
 * apart, the regions its vendor capabilities point to:
 *
 *   0x0000 common configuration     0x3000 notifications, 4 bytes per queue
 *   0x1000 ISR status               0x4000 MSI-X table, a vector per queue + 1
 *   0x2000 device configuration     0x5000 MSI-X pending bits
 *
 * Why MSI-X: with virtio-mmio, every interrupt costs the guest an exit to
 * vmlaunch (writing InterruptACK; reading InterruptStatus is served from a
 * read-only page) on top of the interrupt itself, and KVM injects an
 * IOAPIC pin's irqfd from a kworker. An MSI-X vector needs no
 * acknowledgement (the driver knows the source from the vector), and KVM
 * injects it straight from the signalling thread.
 *
 * Data path, the same for both backends as with virtio-mmio: a queue's
 * notify register is a KVM ioeventfd (16-bit write of the queue index),
 * moved with the BAR; a queue's used buffers raise its call_fd, an irqfd
 * on the MSI route of the vector the driver gave the queue; config
 * changes raise config_fd, an irqfd on the config vector's route. A
 * vector the driver masks (or all of them, with the function mask or
 * MSI-X off) has its irqfds detached: signals stay counted in the
 * eventfds, read as pending in the PBA, and KVM delivers them when the
 * vector is unmasked and the irqfds attached again.
 *
 * One vector per queue plus one for config changes is what Linux asks
 * for first (and QEMU offers): each queue's interrupt can then go to the
 * CPU that uses the queue, as blk-mq and multiqueue virtio-net want. A
 * driver that shares a vector between queues (Linux's fallback) gets
 * several irqfds on one route, which KVM allows.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <linux/pci_regs.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ids.h>
#include <linux/virtio_pci.h>

#include "pci.h"
#include "virtio.h"

#define VIRTIO_PCI_VENDOR	0x1af4
#define VIRTIO_PCI_DEVICE_BASE	0x1040	/* + virtio device ID: a modern device */
#define VIRTIO_PCI_REVISION	1

#define BAR0_SIZE		0x8000
#define COMMON_OFF		0x0000
#define COMMON_LEN		0x40	/* up to queue_reset (virtio 1.2) */
#define ISR_OFF			0x1000
#define ISR_LEN			4
#define DEVICE_OFF		0x2000
#define NOTIFY_OFF		0x3000
#define NOTIFY_MULT		4
#define MSIX_TABLE_OFF		0x4000
#define MSIX_PBA_OFF		0x5000
#define MSIX_MAX_VECTORS	(VIRTIO_MAX_QUEUES + 1)
#define REGION_LEN		0x1000

/* Configuration space of the PCI_CFG access window. */
#define PCICFG_DATA		16

struct msix_entry {
	u32 addr_lo;
	u32 addr_hi;
	u32 data;
	u32 ctrl;
};

struct virtio_pci {
	struct virtio_transport t;	/* first: vdev->transport points here */
	struct vm *vm;
	struct pci_function fn;
	u8 msix_cap;
	u8 pcicfg_cap;
	u16 config_vector;
	u16 queue_vector[VIRTIO_MAX_QUEUES];
	unsigned int nvectors;		/* the device's queues + 1 */
	struct msix_entry msix[MSIX_MAX_VECTORS];
	int route_gsi[MSIX_MAX_VECTORS];
	int queue_gsi[VIRTIO_MAX_QUEUES];	/* where each call_fd is attached, -1: nowhere */
	int config_gsi;
	u64 notify_base;		/* where the kick ioeventfds are, 0: none */
};

static u16 pci_class_of(u32 device_id)
{
	switch (device_id) {
	case VIRTIO_ID_BLOCK:
		return 0x0180;		/* mass storage, other */
	case VIRTIO_ID_NET:
		return 0x0200;		/* Ethernet */
	case VIRTIO_ID_CONSOLE:
		return 0x0780;		/* communication, other */
	}
	return 0xff00;
}

/* ---- MSI-X ------------------------------------------------------------------ */

/* The route a vector's signals go to now, or -1 if they must wait. */
static int vector_gsi(const struct virtio_pci *p, u16 vector)
{
	u16 ctrl = pci_get16(&p->fn, p->msix_cap + PCI_MSIX_FLAGS);

	if (vector >= p->nvectors || !(ctrl & PCI_MSIX_FLAGS_ENABLE) ||
	    (ctrl & PCI_MSIX_FLAGS_MASKALL) ||
	    (p->msix[vector].ctrl & PCI_MSIX_ENTRY_CTRL_MASKBIT))
		return -1;
	return p->route_gsi[vector];
}

/* @what: -1 for config changes, else the queue. */
static void attach_irqfd(struct virtio_pci *p, int what, int fd, int *cur, u16 vector)
{
	int want = vector_gsi(p, vector), r;
	char source[sizeof("queue -2147483648")] = "config";

	if (*cur == want)
		return;
	if (what >= 0)
		snprintf(source, sizeof(source), "queue %d", what);
	if (*cur >= 0)
		vm_irqfd_detach(p->vm, fd, *cur);
	*cur = -1;
	if (want < 0) {
		if (vector < p->nvectors)
			pr_debug("%s: %s interrupts held: MSI-X vector %u is masked",
				 p->t.vdev->name, source, vector);
		return;
	}
	r = vm_irqfd(p->vm, fd, want);
	if (r) {
		pr_err("%s: KVM_IRQFD on MSI route %d: %s", p->t.vdev->name, want, strerror(-r));
		return;
	}
	*cur = want;
	pr_debug("%s: %s interrupts on MSI-X vector %u (GSI %d)", p->t.vdev->name, source,
		 vector, want);
}

/* Under t.lock, after anything a vector's routing depends on changed. */
static void msix_sync(struct virtio_pci *p)
{
	struct virtio_dev *vdev = p->t.vdev;
	unsigned int i;

	for (i = 0; i < vdev->nqueues; i++)
		attach_irqfd(p, i, vdev->vq[i].call_fd, &p->queue_gsi[i], p->queue_vector[i]);
	attach_irqfd(p, -1, vdev->config_fd, &p->config_gsi, p->config_vector);
}

static bool fd_pending(int fd)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };

	return poll(&pfd, 1, 0) == 1 && (pfd.revents & POLLIN);
}

static u64 msix_pending(struct virtio_pci *p)
{
	struct virtio_dev *vdev = p->t.vdev;
	unsigned int i;
	u64 bits = 0;

	for (i = 0; i < vdev->nqueues; i++) {
		u16 v = p->queue_vector[i];

		if (p->queue_gsi[i] < 0 && v < p->nvectors && fd_pending(vdev->vq[i].call_fd))
			bits |= 1ULL << v;
	}
	if (p->config_gsi < 0 && p->config_vector < p->nvectors && fd_pending(vdev->config_fd))
		bits |= 1ULL << p->config_vector;
	return bits;
}

static void msix_table_write(struct virtio_pci *p, u64 off, u32 val)
{
	struct msix_entry *e = &p->msix[off / PCI_MSIX_ENTRY_SIZE];
	unsigned int vector = off / PCI_MSIX_ENTRY_SIZE;
	int r;

	switch (off % PCI_MSIX_ENTRY_SIZE) {
	case PCI_MSIX_ENTRY_LOWER_ADDR:
		e->addr_lo = val & ~3U;
		break;
	case PCI_MSIX_ENTRY_UPPER_ADDR:
		e->addr_hi = val;
		break;
	case PCI_MSIX_ENTRY_DATA:
		e->data = val;
		break;
	case PCI_MSIX_ENTRY_VECTOR_CTRL:
		e->ctrl = val & PCI_MSIX_ENTRY_CTRL_MASKBIT;
		msix_sync(p);
		return;
	}
	r = vm_msi_route_set(p->vm, p->route_gsi[vector], (u64)e->addr_hi << 32 | e->addr_lo,
			     e->data);
	if (r)
		pr_err("%s: MSI-X vector %u: KVM_SET_GSI_ROUTING: %s", p->t.vdev->name, vector,
		       strerror(-r));
}

static u32 msix_table_read(struct virtio_pci *p, u64 off)
{
	const struct msix_entry *e = &p->msix[off / PCI_MSIX_ENTRY_SIZE];

	switch (off % PCI_MSIX_ENTRY_SIZE) {
	case PCI_MSIX_ENTRY_LOWER_ADDR:
		return e->addr_lo;
	case PCI_MSIX_ENTRY_UPPER_ADDR:
		return e->addr_hi;
	case PCI_MSIX_ENTRY_DATA:
		return e->data;
	}
	return e->ctrl;
}

/* ---- common configuration --------------------------------------------------- */

/* The queue address whose 32-bit half is at @off (bit 2: the high one). */
static u64 *queue_addr(struct virtio_queue *q, u64 off)
{
	switch (off & ~4ULL) {
	case VIRTIO_PCI_COMMON_Q_DESCLO:
		return &q->desc;
	case VIRTIO_PCI_COMMON_Q_AVAILLO:
		return &q->avail;
	case VIRTIO_PCI_COMMON_Q_USEDLO:
		return &q->used;
	}
	return NULL;
}

static u16 checked_vector(struct virtio_pci *p, u32 val)
{
	/* Reading back NO_VECTOR is how the driver learns a vector was refused. */
	if (val < p->nvectors)
		return val;
	if (val != VIRTIO_MSI_NO_VECTOR)
		pr_guest_once("%s: MSI-X vector %u does not exist (the table has %u)",
			      p->t.vdev->name, val, p->nvectors);
	return VIRTIO_MSI_NO_VECTOR;
}

/* The size each common configuration field has; 0: no field starts there. */
static u32 common_field_size(u64 off)
{
	switch (off) {
	case VIRTIO_PCI_COMMON_DFSELECT:
	case VIRTIO_PCI_COMMON_DF:
	case VIRTIO_PCI_COMMON_GFSELECT:
	case VIRTIO_PCI_COMMON_GF:
	case VIRTIO_PCI_COMMON_Q_DESCLO:
	case VIRTIO_PCI_COMMON_Q_DESCHI:
	case VIRTIO_PCI_COMMON_Q_AVAILLO:
	case VIRTIO_PCI_COMMON_Q_AVAILHI:
	case VIRTIO_PCI_COMMON_Q_USEDLO:
	case VIRTIO_PCI_COMMON_Q_USEDHI:
		return 4;
	case VIRTIO_PCI_COMMON_STATUS:
	case VIRTIO_PCI_COMMON_CFGGENERATION:
		return 1;
	case VIRTIO_PCI_COMMON_MSIX:
	case VIRTIO_PCI_COMMON_NUMQ:
	case VIRTIO_PCI_COMMON_Q_SELECT:
	case VIRTIO_PCI_COMMON_Q_SIZE:
	case VIRTIO_PCI_COMMON_Q_MSIX:
	case VIRTIO_PCI_COMMON_Q_ENABLE:
	case VIRTIO_PCI_COMMON_Q_NOFF:
	case 0x38:			/* queue_notify_data */
	case 0x3a:			/* queue_reset */
		return 2;
	}
	return 0;
}

static u32 common_read(struct virtio_pci *p, u64 off)
{
	struct virtio_transport *t = &p->t;
	struct virtio_queue *q = vt_selected_queue(t);
	u64 *addr;

	switch (off) {
	case VIRTIO_PCI_COMMON_DFSELECT:
		return t->dev_features_sel;
	case VIRTIO_PCI_COMMON_DF:
		return vt_device_features(t);
	case VIRTIO_PCI_COMMON_GFSELECT:
		return t->drv_features_sel;
	case VIRTIO_PCI_COMMON_GF:
		if (t->drv_features_sel > 1)
			return 0;
		return t->driver_features >> (32 * t->drv_features_sel);
	case VIRTIO_PCI_COMMON_MSIX:
		return p->config_vector;
	case VIRTIO_PCI_COMMON_NUMQ:
		return t->vdev->nqueues;
	case VIRTIO_PCI_COMMON_STATUS:
		return vt_read_status(t);
	case VIRTIO_PCI_COMMON_CFGGENERATION:
		return 0;		/* the config space never changes */
	case VIRTIO_PCI_COMMON_Q_SELECT:
		return t->queue_sel;
	}
	if (!q)			/* queue_size 0: no such queue */
		return off == VIRTIO_PCI_COMMON_Q_MSIX ? VIRTIO_MSI_NO_VECTOR : 0;
	addr = queue_addr(q, off);
	if (addr)
		return off & 4 ? *addr >> 32 : (u32)*addr;
	switch (off) {
	case VIRTIO_PCI_COMMON_Q_SIZE:
		return q->num;
	case VIRTIO_PCI_COMMON_Q_MSIX:
		return p->queue_vector[t->queue_sel];
	case VIRTIO_PCI_COMMON_Q_ENABLE:
		return q->ready;
	case VIRTIO_PCI_COMMON_Q_NOFF:
		return t->queue_sel;
	}
	return 0;
}

static void common_write(struct virtio_pci *p, u64 off, u32 val)
{
	struct virtio_transport *t = &p->t;
	struct virtio_queue *q = vt_selected_queue(t);
	/* Queue fields are frozen once the queue or the device is live. */
	bool q_writable = q && !q->ready && !t->active;
	u64 *addr;

	switch (off) {
	case VIRTIO_PCI_COMMON_DFSELECT:
		t->dev_features_sel = val;
		return;
	case VIRTIO_PCI_COMMON_GFSELECT:
		t->drv_features_sel = val;
		return;
	case VIRTIO_PCI_COMMON_GF:
		vt_write_driver_features(t, val);
		return;
	case VIRTIO_PCI_COMMON_MSIX:
		p->config_vector = checked_vector(p, val);
		msix_sync(p);
		return;
	case VIRTIO_PCI_COMMON_STATUS:
		vt_write_status(t, val);
		return;
	case VIRTIO_PCI_COMMON_Q_SELECT:
		t->queue_sel = val;
		return;
	}
	if (!q)
		return;
	addr = queue_addr(q, off);
	if (addr) {
		if (q_writable)
			vt_set_addr_half(addr, off & 4, val);
		return;
	}
	switch (off) {
	case VIRTIO_PCI_COMMON_Q_MSIX:
		p->queue_vector[t->queue_sel] = checked_vector(p, val);
		msix_sync(p);
		break;
	case VIRTIO_PCI_COMMON_Q_SIZE:
		if (q_writable)
			q->num = val;
		break;
	case VIRTIO_PCI_COMMON_Q_ENABLE:
		if (!t->active && val == 1)
			q->ready = true;
		break;
	}
}

/* 64-bit fields may also be written whole; the rest take their own size. */
static void common_access(struct virtio_pci *p, u64 off, u8 *data, u32 len, bool write)
{
	u32 val = 0, size = common_field_size(off);

	if (len == 8 && !(off & 7) && off >= VIRTIO_PCI_COMMON_Q_DESCLO &&
	    off <= VIRTIO_PCI_COMMON_Q_USEDLO) {
		common_access(p, off, data, 4, write);
		common_access(p, off + 4, data + 4, 4, write);
		return;
	}
	if (!size || len != size) {
		if (!write)
			memset(data, 0, len);
		pr_guest_once("%s: common configuration 0x%llx accessed with size %u",
			      p->t.vdev->name, (unsigned long long)off, len);
		return;
	}
	if (write) {
		memcpy(&val, data, len);
		common_write(p, off, val);
	} else {
		val = common_read(p, off);
		memcpy(data, &val, len);
	}
}

/* ---- BAR 0 --------------------------------------------------------------------- */

/* Under t.lock. */
static void bar0_access(struct virtio_pci *p, u64 off, u8 *data, u32 len, bool write)
{
	struct virtio_dev *vdev = p->t.vdev;
	u64 region = ALIGN_DOWN(off, REGION_LEN), roff = off - region;
	u32 val = 0;

	switch (region) {
	case COMMON_OFF:
		if (roff + len <= COMMON_LEN) {
			common_access(p, roff, data, len, write);
			return;
		}
		break;
	case ISR_OFF:
		if (roff + len > ISR_LEN)
			break;
		/* Reading clears it; only INTx drivers read it, MSI-X ones never. */
		if (!write) {
			val = __atomic_exchange_n(&vdev->isr, 0, __ATOMIC_ACQ_REL);
			if (vdev->isr_always_used && p->t.active)
				val |= VIRTIO_ISR_USED;
			memset(data, 0, len);
			if (!roff)
				data[0] = val;
		}
		return;
	case DEVICE_OFF:
		vt_config_access(&p->t, roff, data, len, write);
		return;
	case NOTIFY_OFF:
		/* Only notifies no ioeventfd took (other sizes or values) come here. */
		if (roff / NOTIFY_MULT < vdev->nqueues &&
		    roff + len <= vdev->nqueues * NOTIFY_MULT) {
			if (write)
				eventfd_signal(vdev->vq[roff / NOTIFY_MULT].kick_fd);
			else
				memset(data, 0, len);
			return;
		}
		break;
	case MSIX_TABLE_OFF:
		if (roff + len > p->nvectors * PCI_MSIX_ENTRY_SIZE || (roff & 3) ||
		    (len != 4 && len != 8) || (len == 8 && (roff & 7)))
			break;
		for (u32 i = 0; i < len; i += 4) {
			if (write) {
				memcpy(&val, data + i, 4);
				msix_table_write(p, roff + i, val);
			} else {
				val = msix_table_read(p, roff + i);
				memcpy(data + i, &val, 4);
			}
		}
		return;
	case MSIX_PBA_OFF:
		if (roff + len > 8)
			break;
		if (!write) {
			u64 bits = msix_pending(p);

			memcpy(data, (u8 *)&bits + roff, len);
		}
		return;
	}
	if (!write)
		memset(data, 0, len);
	pr_guest_once("%s: BAR 0 offset 0x%llx accessed with size %u", vdev->name,
		      (unsigned long long)off, len);
}

static struct virtio_pci *to_vpci(struct pci_function *f)
{
	return f->opaque;
}

static void vpci_bar_io(struct pci_function *f, unsigned int bar, u64 off, u8 *data, u32 len,
			bool write)
{
	struct virtio_pci *p = to_vpci(f);

	(void)bar;		/* BAR 0 is the only one */
	pthread_mutex_lock(&p->t.lock);
	bar0_access(p, off, data, len, write);
	pthread_mutex_unlock(&p->t.lock);
}

/* Under the bus lock: the kick ioeventfds follow BAR 0. */
static void vpci_bar_moved(struct pci_function *f, unsigned int bar, u64 old_base, u64 base)
{
	struct virtio_pci *p = to_vpci(f);
	struct virtio_dev *vdev = p->t.vdev;
	unsigned int i;
	int r;

	(void)bar;
	for (i = 0; i < vdev->nqueues && old_base; i++)
		vm_ioeventfd_detach(p->vm, vdev->vq[i].kick_fd,
				    old_base + NOTIFY_OFF + i * NOTIFY_MULT, 2, i);
	p->notify_base = 0;
	if (!base)
		return;
	for (i = 0; i < vdev->nqueues; i++) {
		/* Without it the notify still works, through vmlaunch: slower. */
		r = vm_ioeventfd(p->vm, vdev->vq[i].kick_fd, base + NOTIFY_OFF + i * NOTIFY_MULT,
				 2, i);
		if (r)
			pr_warn("%s: KVM_IOEVENTFD for queue %u: %s", vdev->name, i, strerror(-r));
	}
	p->notify_base = base;
	pr_debug("%s: BAR 0 at 0x%llx", vdev->name, (unsigned long long)base);
}

/* The PCI_CFG capability: a window onto BAR 0 through configuration space. */
static bool pcicfg_window(struct virtio_pci *p, u32 off, u32 len, u64 *bar_off, u32 *size)
{
	u32 cap = p->pcicfg_cap;

	if (off + len <= cap + PCICFG_DATA || off >= cap + PCICFG_DATA + 4)
		return false;
	*bar_off = pci_get32(&p->fn, cap + VIRTIO_PCI_CAP_OFFSET);
	*size = pci_get32(&p->fn, cap + VIRTIO_PCI_CAP_LENGTH);
	if (p->fn.cfg[cap + VIRTIO_PCI_CAP_BAR] != 0 ||
	    (*size != 1 && *size != 2 && *size != 4) || (*bar_off & (*size - 1)) ||
	    *bar_off + *size > BAR0_SIZE) {
		pr_guest_once("%s: PCI_CFG window: bar %u offset 0x%llx length %u",
			      p->t.vdev->name, p->fn.cfg[cap + VIRTIO_PCI_CAP_BAR],
			      (unsigned long long)*bar_off, *size);
		return false;
	}
	return true;
}

static void vpci_config_written(struct pci_function *f, u32 off, u32 len)
{
	struct virtio_pci *p = to_vpci(f);
	u64 bar_off;
	u32 size;
	u32 flags = p->msix_cap + PCI_MSIX_FLAGS;

	pthread_mutex_lock(&p->t.lock);
	if (off < flags + 2 && off + len > flags)
		msix_sync(p);
	if (pcicfg_window(p, off, len, &bar_off, &size))
		bar0_access(p, bar_off, f->cfg + p->pcicfg_cap + PCICFG_DATA, size, true);
	pthread_mutex_unlock(&p->t.lock);
}

static void vpci_config_read(struct pci_function *f, u32 off, u32 len)
{
	struct virtio_pci *p = to_vpci(f);
	u64 bar_off;
	u32 size;

	pthread_mutex_lock(&p->t.lock);
	if (pcicfg_window(p, off, len, &bar_off, &size))
		bar0_access(p, bar_off, f->cfg + p->pcicfg_cap + PCICFG_DATA, size, false);
	pthread_mutex_unlock(&p->t.lock);
}

static const struct pci_function_ops vpci_ops = {
	.bar_io = vpci_bar_io,
	.bar_moved = vpci_bar_moved,
	.config_written = vpci_config_written,
	.config_read = vpci_config_read,
};

/* ---- setup ----------------------------------------------------------------------- */

/* Under t.lock, from vt_reset(): vectors go back to none. */
static void vpci_reset(struct virtio_transport *t)
{
	struct virtio_pci *p = (struct virtio_pci *)t;
	unsigned int i;

	p->config_vector = VIRTIO_MSI_NO_VECTOR;
	for (i = 0; i < VIRTIO_MAX_QUEUES; i++)
		p->queue_vector[i] = VIRTIO_MSI_NO_VECTOR;
	if (p->vm)
		msix_sync(p);
}

static void add_virtio_cap(struct virtio_pci *p, u8 type, u32 offset, u32 length, u8 extra)
{
	u8 cap = pci_add_capability(&p->fn, PCI_CAP_ID_VNDR, sizeof(struct virtio_pci_cap) + extra);

	if (!cap)
		return;
	p->fn.cfg[cap + VIRTIO_PCI_CAP_LEN] = sizeof(struct virtio_pci_cap) + extra;
	p->fn.cfg[cap + VIRTIO_PCI_CAP_CFG_TYPE] = type;
	p->fn.cfg[cap + VIRTIO_PCI_CAP_BAR] = 0;
	pci_put32(&p->fn, cap + VIRTIO_PCI_CAP_OFFSET, offset);
	pci_put32(&p->fn, cap + VIRTIO_PCI_CAP_LENGTH, length);
	if (type == VIRTIO_PCI_CAP_NOTIFY_CFG)
		pci_put32(&p->fn, cap + VIRTIO_PCI_NOTIFY_CAP_MULT, NOTIFY_MULT);
	if (type == VIRTIO_PCI_CAP_PCI_CFG) {
		/* bar, offset, length and the data bytes are the driver's. */
		p->fn.wmask[cap + VIRTIO_PCI_CAP_BAR] = 0xff;
		memset(p->fn.wmask + cap + VIRTIO_PCI_CAP_OFFSET, 0xff, 8 + 4);
		p->pcicfg_cap = cap;
	}
}

static void build_config_space(struct virtio_pci *p)
{
	struct pci_function *f = &p->fn;
	struct virtio_dev *vdev = p->t.vdev;
	u8 cap;

	pci_put16(f, PCI_VENDOR_ID, VIRTIO_PCI_VENDOR);
	pci_put16(f, PCI_DEVICE_ID, VIRTIO_PCI_DEVICE_BASE + vdev->device_id);
	f->cfg[PCI_REVISION_ID] = VIRTIO_PCI_REVISION;
	pci_put16(f, PCI_CLASS_DEVICE, pci_class_of(vdev->device_id));
	f->cfg[PCI_HEADER_TYPE] = PCI_HEADER_TYPE_NORMAL;
	pci_put16(f, PCI_SUBSYSTEM_VENDOR_ID, VIRTIO_PCI_VENDOR);
	pci_put16(f, PCI_SUBSYSTEM_ID, VIRTIO_PCI_DEVICE_BASE + vdev->device_id);
	f->cfg[PCI_INTERRUPT_PIN] = 0;	/* MSI-X only */
	f->bar_size[0] = BAR0_SIZE;

	cap = pci_add_capability(f, PCI_CAP_ID_MSIX, PCI_CAP_MSIX_SIZEOF);
	p->msix_cap = cap;
	pci_put16(f, cap + PCI_MSIX_FLAGS, p->nvectors - 1);
	f->wmask[cap + PCI_MSIX_FLAGS + 1] = (PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL) >> 8;
	pci_put32(f, cap + PCI_MSIX_TABLE, MSIX_TABLE_OFF);	/* BIR 0 */
	pci_put32(f, cap + PCI_MSIX_PBA, MSIX_PBA_OFF);

	add_virtio_cap(p, VIRTIO_PCI_CAP_COMMON_CFG, COMMON_OFF, COMMON_LEN, 0);
	add_virtio_cap(p, VIRTIO_PCI_CAP_NOTIFY_CFG, NOTIFY_OFF, vdev->nqueues * NOTIFY_MULT, 4);
	add_virtio_cap(p, VIRTIO_PCI_CAP_ISR_CFG, ISR_OFF, ISR_LEN, 0);
	if (vdev->config_size)
		add_virtio_cap(p, VIRTIO_PCI_CAP_DEVICE_CFG, DEVICE_OFF, vdev->config_size, 0);
	add_virtio_cap(p, VIRTIO_PCI_CAP_PCI_CFG, 0, 0, 4);
}

int virtio_pci_add(struct vm *vm, struct virtio_dev *vdev)
{
	struct virtio_pci *p;
	unsigned int i;
	int r;

	if (!vm->pci)
		return -ENODEV;
	if (vdev->config_size > REGION_LEN || vdev->nqueues * NOTIFY_MULT > REGION_LEN)
		return -EINVAL;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->nvectors = vdev->nqueues + 1;
	p->config_gsi = -1;
	for (i = 0; i < VIRTIO_MAX_QUEUES; i++)
		p->queue_gsi[i] = -1;
	for (i = 0; i < MSIX_MAX_VECTORS; i++) {
		p->route_gsi[i] = -1;
		p->msix[i].ctrl = PCI_MSIX_ENTRY_CTRL_MASKBIT;	/* masked after reset */
	}
	p->fn.opaque = p;
	p->fn.ops = &vpci_ops;
	p->t.transport_reset = vpci_reset;
	vt_init(&p->t, vdev, VIRTQ_MAX_SIZE);
	build_config_space(p);

	vdev->config_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (vdev->config_fd < 0)
		goto fail_errno;
	for (i = 0; i < vdev->nqueues; i++) {
		vdev->vq[i].call_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (vdev->vq[i].call_fd < 0)
			goto fail_errno;
	}
	for (i = 0; i < p->nvectors; i++) {
		r = vm_msi_route_add(vm);
		if (r < 0) {
			pr_err("%s: cannot add an MSI route: %s", vdev->name, strerror(-r));
			goto fail;
		}
		p->route_gsi[i] = r;
	}
	p->vm = vm;
	r = pci_add_function(vm->pci, &p->fn);
	if (r) {
		pr_err("%s: no room on the PCI bus: %s", vdev->name, strerror(-r));
		goto fail;
	}
	pr_debug("%s: virtio-pci at 00:%02x.0", vdev->name, p->fn.slot);
	return 0;

fail_errno:
	r = -errno;
fail:
	virtio_pci_remove(vdev);
	return r;
}

void virtio_pci_remove(struct virtio_dev *vdev)
{
	struct virtio_pci *p = (struct virtio_pci *)vdev->transport;
	unsigned int i;

	if (!p)
		return;
	virtio_transport_reset(vdev);
	pci_remove_function(vdev->vm->pci, &p->fn);	/* detaches the ioeventfds */
	pthread_mutex_lock(&p->t.lock);
	if (p->vm) {
		for (i = 0; i < vdev->nqueues; i++)
			attach_irqfd(p, i, vdev->vq[i].call_fd, &p->queue_gsi[i],
				     VIRTIO_MSI_NO_VECTOR);
		attach_irqfd(p, -1, vdev->config_fd, &p->config_gsi, VIRTIO_MSI_NO_VECTOR);
	}
	pthread_mutex_unlock(&p->t.lock);
	for (i = 0; i < vdev->nqueues; i++) {
		if (vdev->vq[i].call_fd >= 0)
			close(vdev->vq[i].call_fd);
		vdev->vq[i].call_fd = -1;
	}
	if (vdev->config_fd >= 0)
		close(vdev->config_fd);
	vdev->config_fd = -1;
	pthread_mutex_destroy(&p->t.lock);
	free(p);
	vdev->transport = NULL;
}
