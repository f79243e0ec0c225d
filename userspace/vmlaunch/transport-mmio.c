// SPDX-License-Identifier: GPL-2.0
/*
 * virtio-mmio transport, version 2 (virtio 1.2, section 4.2.2).
 *
 * Each device gets a 0x200-byte register window at
 * VIRTIO_MMIO_BASE + n * 0x1000 and GSI 16 + n, and is described to the
 * guest in the ACPI DSDT (acpi.c). Registers below 0x100 take aligned
 * 32-bit accesses only; the device config space from 0x100 takes 1, 2, 4
 * and 8-byte accesses inside config_size. Anything else reads as zero and
 * is otherwise ignored.
 *
 * Data path: QueueNotify writes with value n hit KVM ioeventfd n (the
 * queue's kick eventfd) without leaving the kernel; the device interrupts
 * through a KVM irqfd on its GSI. The GSI is declared edge-triggered, so
 * the irqfd needs no resample eventfd. Only a notify that matches no
 * ioeventfd (an out-of-range queue index, or KVM refused one) reaches this
 * file, which then signals the kick eventfd itself.
 *
 * Register reads need no exit. The register window's page is guest memory
 * that KVM maps read-only (KVM_MEM_READONLY) and vmlaunch keeps equal to
 * what a read would return: after each write the guest makes (the writes
 * still exit, and QueueNotify still hits its ioeventfd) and whenever a
 * backend raises InterruptStatus or NEEDS_RESET. virtio-mmio reads have
 * no side effects, which is what makes this possible, and they are most
 * of the exits: the driver reads InterruptStatus on every interrupt, which
 * on this transport cost an exit to vmlaunch each (--mmio-reads exit, or a
 * KVM without read-only memory, gives the old way: every read exits).
 *
 * The status, feature and queue-selector logic is transport.c's; register
 * accesses run under its lock.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <linux/virtio_config.h>
#include <linux/virtio_mmio.h>

#include "virtio.h"

#define VIRTIO_MMIO_BASE	0xd0000000ULL
#define VIRTIO_MMIO_STRIDE	0x1000
#define VIRTIO_MMIO_SIZE	0x200
#define VIRTIO_MMIO_PAGE	0x1000	/* the register page KVM maps read-only */
#define VIRTIO_MMIO_GSI_BASE	16
#define VIRTIO_MMIO_MAX		8	/* GSIs 16..23: the IOAPIC's last pins */
#define VIRTIO_MMIO_MAGIC	0x74726976	/* "virt" */
#define VIRTIO_MMIO_VENDOR	0x584d564b	/* "KVMX" */

struct virtio_mmio {
	struct virtio_transport t;	/* first: vdev->transport points here */
	struct vm *vm;
	u64 base;
	u32 gsi;
	int irq_fd;			/* every queue's call_fd, and the config_fd */
	bool irq_attached;		/* a KVM irqfd on irq_fd */
	/*
	 * The register window as the guest reads it, NULL if every read
	 * exits; slot is its KVM memory slot.
	 */
	u32 *regs;
	u32 regs_slot;
};

static unsigned int mmio_count;

/* InterruptStatus; any thread, as a backend raises it. */
static u32 mmio_isr(struct virtio_mmio *m)
{
	struct virtio_dev *vdev = m->t.vdev;
	u32 isr = __atomic_load_n(&vdev->isr, __ATOMIC_ACQUIRE);

	if (vdev->isr_always_used && __atomic_load_n(&m->t.active, __ATOMIC_ACQUIRE))
		isr |= VIRTIO_ISR_USED;
	return isr;
}

static u32 mmio_read_reg(struct virtio_mmio *m, u64 off)
{
	struct virtio_dev *vdev = m->t.vdev;
	struct virtio_queue *q = vt_selected_queue(&m->t);

	switch (off) {
	case VIRTIO_MMIO_MAGIC_VALUE:
		return VIRTIO_MMIO_MAGIC;
	case VIRTIO_MMIO_VERSION:
		return 2;
	case VIRTIO_MMIO_DEVICE_ID:
		return vdev->device_id;
	case VIRTIO_MMIO_VENDOR_ID:
		return VIRTIO_MMIO_VENDOR;
	case VIRTIO_MMIO_DEVICE_FEATURES:
		return vt_device_features(&m->t);
	case VIRTIO_MMIO_QUEUE_NUM_MAX:
		return q ? VIRTQ_MAX_SIZE : 0;
	case VIRTIO_MMIO_QUEUE_READY:
		return q ? q->ready : 0;
	case VIRTIO_MMIO_INTERRUPT_STATUS:
		return mmio_isr(m);
	case VIRTIO_MMIO_STATUS:
		return vt_read_status(&m->t);
	case VIRTIO_MMIO_SHM_LEN_LOW:
	case VIRTIO_MMIO_SHM_LEN_HIGH:
		return 0xffffffff;	/* no shared memory region */
	case VIRTIO_MMIO_CONFIG_GENERATION:
		return 0;		/* the config space never changes */
	}
	return 0;
}

static void regs_store(struct virtio_mmio *m, u64 off, u32 val)
{
	__atomic_store_n(&m->regs[off / 4], val, __ATOMIC_RELEASE);
}

/*
 * InterruptStatus and Status into the register page, from any thread. A
 * store may land after a newer one from another thread, so each writer
 * reads the state again after its stores and repeats them until it holds
 * still: the last writer's stores are then the current state.
 */
static void mmio_regs_sync_isr(struct virtio_transport *t)
{
	struct virtio_mmio *m = (struct virtio_mmio *)t;
	u32 isr, status;

	if (!m->regs)
		return;
	do {
		isr = mmio_isr(m);
		status = vt_read_status(t);
		regs_store(m, VIRTIO_MMIO_INTERRUPT_STATUS, isr);
		regs_store(m, VIRTIO_MMIO_STATUS, status);
	} while (mmio_isr(m) != isr || vt_read_status(t) != status);
}

/*
 * The whole register page, under the lock: after a write of the guest
 * (selectors, status, config) or a reset. Config space goes in as the
 * device reads it; it does not change behind the guest's back (only the
 * guest writes it, and ConfigGeneration stays 0).
 */
static void mmio_regs_sync(struct virtio_transport *t)
{
	struct virtio_mmio *m = (struct virtio_mmio *)t;
	struct virtio_dev *vdev = m->t.vdev;
	/* The window's config space; what lies beyond it is never read through it. */
	u8 config[VIRTIO_MMIO_SIZE - VIRTIO_MMIO_CONFIG] = { 0 };
	u32 config_size = vdev->config_size < sizeof(config) ? vdev->config_size : sizeof(config);
	u32 val;
	u64 off;

	if (!m->regs)
		return;
	for (off = 0; off < VIRTIO_MMIO_CONFIG; off += 4)
		regs_store(m, off, mmio_read_reg(m, off));
	if (config_size)
		vdev->ops->read_config(vdev, 0, config, config_size);
	for (off = 0; off < config_size; off += 4) {
		memcpy(&val, config + off, 4);
		regs_store(m, VIRTIO_MMIO_CONFIG + off, val);
	}
	mmio_regs_sync_isr(t);
}

static void mmio_write_reg(struct virtio_mmio *m, u64 off, u32 val)
{
	struct virtio_dev *vdev = m->t.vdev;
	struct virtio_queue *q = vt_selected_queue(&m->t);
	/* Queue registers are frozen once the queue or the device is live. */
	bool q_writable = q && !q->ready && !m->t.active;

	switch (off) {
	case VIRTIO_MMIO_DEVICE_FEATURES_SEL:
		m->t.dev_features_sel = val;
		break;
	case VIRTIO_MMIO_DRIVER_FEATURES:
		vt_write_driver_features(&m->t, val);
		break;
	case VIRTIO_MMIO_DRIVER_FEATURES_SEL:
		m->t.drv_features_sel = val;
		break;
	case VIRTIO_MMIO_QUEUE_SEL:
		m->t.queue_sel = val;
		break;
	case VIRTIO_MMIO_QUEUE_NUM:
		if (q_writable && val <= 0xffff)
			q->num = val;
		break;
	case VIRTIO_MMIO_QUEUE_READY:
		if (q && !m->t.active)
			q->ready = val & 1;
		break;
	case VIRTIO_MMIO_QUEUE_NOTIFY:
		/* Only notifies no ioeventfd took come here. */
		if (val < vdev->nqueues)
			eventfd_signal(vdev->vq[val].kick_fd);
		return;			/* no register changed */
	case VIRTIO_MMIO_INTERRUPT_ACK:
		__atomic_fetch_and(&vdev->isr, ~val, __ATOMIC_ACQ_REL);
		mmio_regs_sync_isr(&m->t);
		return;			/* nothing else changed */
	case VIRTIO_MMIO_STATUS:
		vt_write_status(&m->t, val);
		break;
	case VIRTIO_MMIO_QUEUE_DESC_LOW:
	case VIRTIO_MMIO_QUEUE_DESC_HIGH:
		if (q_writable)
			vt_set_addr_half(&q->desc, off == VIRTIO_MMIO_QUEUE_DESC_HIGH, val);
		break;
	case VIRTIO_MMIO_QUEUE_AVAIL_LOW:
	case VIRTIO_MMIO_QUEUE_AVAIL_HIGH:
		if (q_writable)
			vt_set_addr_half(&q->avail, off == VIRTIO_MMIO_QUEUE_AVAIL_HIGH, val);
		break;
	case VIRTIO_MMIO_QUEUE_USED_LOW:
	case VIRTIO_MMIO_QUEUE_USED_HIGH:
		if (q_writable)
			vt_set_addr_half(&q->used, off == VIRTIO_MMIO_QUEUE_USED_HIGH, val);
		break;
	default:
		break;
	}
	mmio_regs_sync(&m->t);
}

static void mmio_io(void *opaque, u64 off, u8 *data, u32 len, bool write)
{
	struct virtio_mmio *m = opaque;
	u32 val;

	pthread_mutex_lock(&m->t.lock);
	if (off >= VIRTIO_MMIO_CONFIG) {
		vt_config_access(&m->t, off - VIRTIO_MMIO_CONFIG, data, len, write);
		if (write)
			mmio_regs_sync(&m->t);
	} else if (len != 4 || (off & 3)) {
		if (!write)
			memset(data, 0, len);
		pr_guest_once("%s: register 0x%llx accessed with size %u", m->t.vdev->name,
			      (unsigned long long)off, len);
	} else if (write) {
		memcpy(&val, data, 4);
		mmio_write_reg(m, off, val);
	} else {
		val = mmio_read_reg(m, off);
		memcpy(data, &val, 4);
	}
	pthread_mutex_unlock(&m->t.lock);
}

/*
 * Give the register window its read-only page. Without one (no
 * KVM_CAP_READONLY_MEM, no memory) every read exits, as it always may.
 */
static void mmio_map_regs(struct virtio_mmio *m)
{
	void *page = mmap(NULL, VIRTIO_MMIO_PAGE, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	int r;

	if (page == MAP_FAILED) {
		pr_warn("%s: no register page, every register read exits: %s",
			m->t.vdev->name, strerror(errno));
		return;
	}
	/* Filled before the guest can see it. */
	pthread_mutex_lock(&m->t.lock);
	m->regs = page;
	mmio_regs_sync(&m->t);
	pthread_mutex_unlock(&m->t.lock);
	r = vm_map_readonly(m->vm, m->base, page, VIRTIO_MMIO_PAGE, &m->regs_slot);
	if (r) {
		pr_warn("%s: no read-only register page, every register read exits: %s",
			m->t.vdev->name, strerror(-r));
		pthread_mutex_lock(&m->t.lock);
		m->regs = NULL;
		pthread_mutex_unlock(&m->t.lock);
		munmap(page, VIRTIO_MMIO_PAGE);
	}
}

int virtio_mmio_add(struct vm *vm, struct virtio_dev *vdev, struct acpi_device_info *info)
{
	struct virtio_mmio *m;
	unsigned int i;
	int r;

	if (mmio_count >= VIRTIO_MMIO_MAX)
		return -ENOSPC;
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->vm = vm;
	m->irq_fd = -1;
	m->base = VIRTIO_MMIO_BASE + (u64)mmio_count * VIRTIO_MMIO_STRIDE;
	m->gsi = VIRTIO_MMIO_GSI_BASE + mmio_count;
	vt_init(&m->t, vdev, 0);
	m->t.transport_reset = mmio_regs_sync;
	m->t.isr_changed = mmio_regs_sync_isr;

	m->irq_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (m->irq_fd < 0)
		goto fail_errno;
	/* One interrupt for every queue's used buffers and config changes. */
	vdev->config_fd = m->irq_fd;
	for (i = 0; i < vdev->nqueues; i++)
		vdev->vq[i].call_fd = m->irq_fd;
	r = vm_irqfd(vm, m->irq_fd, m->gsi);
	if (r) {
		pr_err("%s: KVM_IRQFD on GSI %u: %s", vdev->name, m->gsi, strerror(-r));
		goto fail;
	}
	m->irq_attached = true;
	for (i = 0; i < vdev->nqueues; i++) {
		r = vm_ioeventfd(vm, vdev->vq[i].kick_fd, m->base + VIRTIO_MMIO_QUEUE_NOTIFY, 4, i);
		if (r) {
			pr_err("%s: KVM_IOEVENTFD for queue %u: %s", vdev->name, i, strerror(-r));
			goto fail;
		}
	}
	r = vm_register_mmio(vm, m->base, VIRTIO_MMIO_SIZE, mmio_io, m);
	if (r)
		goto fail;
	if (!vm->mmio_reads_exit)
		mmio_map_regs(m);

	snprintf(info->name, sizeof(info->name), "VR%02X", mmio_count);
	info->hid = "LNRO0005";
	info->io = false;
	info->base = m->base;
	info->size = VIRTIO_MMIO_SIZE;
	info->gsi = m->gsi;
	mmio_count++;
	pr_debug("%s: virtio-mmio at 0x%llx, GSI %u", vdev->name,
		 (unsigned long long)m->base, m->gsi);
	return 0;

fail_errno:
	r = -errno;
fail:
	virtio_mmio_remove(vdev);
	return r;
}

/* Reset the device if it is live, then close the eventfd. */
void virtio_mmio_remove(struct virtio_dev *vdev)
{
	struct virtio_mmio *m = (struct virtio_mmio *)vdev->transport;
	unsigned int i;

	if (!m)
		return;
	virtio_transport_reset(vdev);
	if (m->regs) {
		vm_unmap(m->vm, m->regs_slot);
		munmap(m->regs, VIRTIO_MMIO_PAGE);
		m->regs = NULL;
	}
	/* Closing would detach it too, but only once KVM's irqfd work ran. */
	if (m->irq_attached)
		vm_irqfd_detach(m->vm, m->irq_fd, m->gsi);
	if (m->irq_fd >= 0)
		close(m->irq_fd);
	vdev->config_fd = -1;
	for (i = 0; i < vdev->nqueues; i++)
		vdev->vq[i].call_fd = -1;
	pthread_mutex_destroy(&m->t.lock);
	free(m);
	vdev->transport = NULL;
}
