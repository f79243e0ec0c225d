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
 * The status, feature and queue-selector logic is transport.c's; register
 * accesses run under its lock.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <linux/virtio_config.h>
#include <linux/virtio_mmio.h>

#include "virtio.h"

#define VIRTIO_MMIO_BASE	0xd0000000ULL
#define VIRTIO_MMIO_STRIDE	0x1000
#define VIRTIO_MMIO_SIZE	0x200
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
};

static unsigned int mmio_count;

static u32 mmio_read_reg(struct virtio_mmio *m, u64 off)
{
	struct virtio_dev *vdev = m->t.vdev;
	struct virtio_queue *q = vt_selected_queue(&m->t);
	u32 isr;

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
		isr = __atomic_load_n(&vdev->isr, __ATOMIC_ACQUIRE);
		if (vdev->isr_always_used && m->t.active)
			isr |= VIRTIO_ISR_USED;
		return isr;
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
		break;
	case VIRTIO_MMIO_INTERRUPT_ACK:
		__atomic_fetch_and(&vdev->isr, ~val, __ATOMIC_ACQ_REL);
		break;
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
}

static void mmio_io(void *opaque, u64 off, u8 *data, u32 len, bool write)
{
	struct virtio_mmio *m = opaque;
	u32 val;

	pthread_mutex_lock(&m->t.lock);
	if (off >= VIRTIO_MMIO_CONFIG) {
		vt_config_access(&m->t, off - VIRTIO_MMIO_CONFIG, data, len, write);
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
	if (m->irq_fd >= 0)
		close(m->irq_fd);
	vdev->config_fd = -1;
	for (i = 0; i < vdev->nqueues; i++)
		vdev->vq[i].call_fd = -1;
	pthread_mutex_destroy(&m->t.lock);
	free(m);
	vdev->transport = NULL;
}
