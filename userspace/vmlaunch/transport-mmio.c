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
 * All register state is under `lock`; device activate/reset run under it.
 * A device may flag DEVICE_NEEDS_RESET from any thread (atomic, no lock).
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
	struct virtio_dev *vdev;
	struct vm *vm;
	pthread_mutex_t lock;
	u64 base;
	u32 gsi;
	u32 status;
	bool needs_reset;	/* atomic: set by the device from any thread */
	bool active;		/* ops->activate() succeeded */
	u32 dev_features_sel;
	u32 drv_features_sel;
	u64 driver_features;
	u32 queue_sel;
};

static unsigned int mmio_count;

void virtio_notify(struct virtio_dev *vdev, u32 isr_bits)
{
	__atomic_fetch_or(&vdev->isr, isr_bits, __ATOMIC_RELEASE);
	eventfd_signal(vdev->call_fd);
}

void virtio_needs_reset(struct virtio_dev *vdev)
{
	struct virtio_mmio *m = vdev->transport;

	if (!__atomic_exchange_n(&m->needs_reset, true, __ATOMIC_ACQ_REL)) {
		pr_warn("%s: device needs a reset (the guest broke the virtqueue rules)",
			vdev->name);
		virtio_notify(vdev, VIRTIO_ISR_CONFIG);
	}
}

static struct virtio_queue *selected_queue(struct virtio_mmio *m)
{
	if (m->queue_sel >= m->vdev->nqueues)
		return NULL;
	return &m->vdev->vq[m->queue_sel];
}

static void mmio_reset(struct virtio_mmio *m)
{
	struct virtio_dev *vdev = m->vdev;
	unsigned int i;

	if (m->active)
		vdev->ops->reset(vdev);
	m->active = false;
	m->status = 0;
	m->dev_features_sel = m->drv_features_sel = 0;
	m->driver_features = 0;
	m->queue_sel = 0;
	vdev->acked = 0;
	for (i = 0; i < vdev->nqueues; i++) {
		struct virtio_queue *q = &vdev->vq[i];

		q->num = 0;
		q->ready = false;
		q->desc = q->avail = q->used = 0;
	}
	__atomic_store_n(&vdev->isr, 0, __ATOMIC_RELEASE);
	__atomic_store_n(&m->needs_reset, false, __ATOMIC_RELEASE);
}

static bool features_ok(struct virtio_mmio *m)
{
	u64 f = m->driver_features;

	if (f & ~m->vdev->features) {
		pr_guest_once("%s: driver accepted features 0x%llx never offered", m->vdev->name,
			      (unsigned long long)(f & ~m->vdev->features));
		return false;
	}
	/* A version 2 device is a virtio 1.x device. */
	return f & (1ULL << VIRTIO_F_VERSION_1);
}

static bool queues_ok(struct virtio_mmio *m)
{
	unsigned int i;

	for (i = 0; i < m->vdev->nqueues; i++) {
		const struct virtio_queue *q = &m->vdev->vq[i];

		if (!q->ready)
			continue;
		if (!q->num || q->num > VIRTQ_MAX_SIZE || (q->num & (q->num - 1))) {
			pr_guest_once("%s: queue %u size %u is not a power of two up to %u",
				      m->vdev->name, i, q->num, VIRTQ_MAX_SIZE);
			return false;
		}
	}
	return true;
}

static void mmio_write_status(struct virtio_mmio *m, u32 val)
{
	u32 old = m->status;

	if (val == 0) {
		mmio_reset(m);
		return;
	}
	val &= 0xff;
	if ((val & VIRTIO_CONFIG_S_FEATURES_OK) && !(old & VIRTIO_CONFIG_S_FEATURES_OK)) {
		if (features_ok(m))
			m->vdev->acked = m->driver_features;
		else
			val &= ~VIRTIO_CONFIG_S_FEATURES_OK;	/* the driver reads it back */
	}
	if ((val & VIRTIO_CONFIG_S_DRIVER_OK) && !(old & VIRTIO_CONFIG_S_DRIVER_OK)) {
		if (!(val & VIRTIO_CONFIG_S_FEATURES_OK) || !queues_ok(m) ||
		    m->vdev->ops->activate(m->vdev)) {
			val &= ~VIRTIO_CONFIG_S_DRIVER_OK;
			val |= VIRTIO_CONFIG_S_NEEDS_RESET;
		} else {
			m->active = true;
		}
	}
	m->status = val | (old & VIRTIO_CONFIG_S_NEEDS_RESET);
}

static u32 mmio_read_reg(struct virtio_mmio *m, u64 off)
{
	struct virtio_dev *vdev = m->vdev;
	struct virtio_queue *q = selected_queue(m);
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
		if (m->dev_features_sel > 1)
			return 0;
		return vdev->features >> (32 * m->dev_features_sel);
	case VIRTIO_MMIO_QUEUE_NUM_MAX:
		return q ? VIRTQ_MAX_SIZE : 0;
	case VIRTIO_MMIO_QUEUE_READY:
		return q ? q->ready : 0;
	case VIRTIO_MMIO_INTERRUPT_STATUS:
		isr = __atomic_load_n(&vdev->isr, __ATOMIC_ACQUIRE);
		if (vdev->isr_always_used && m->active)
			isr |= VIRTIO_ISR_USED;
		return isr;
	case VIRTIO_MMIO_STATUS:
		return m->status |
		       (__atomic_load_n(&m->needs_reset, __ATOMIC_ACQUIRE) ?
			VIRTIO_CONFIG_S_NEEDS_RESET : 0);
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
	struct virtio_dev *vdev = m->vdev;
	struct virtio_queue *q = selected_queue(m);
	/* Queue registers are frozen once the queue or the device is live. */
	bool q_writable = q && !q->ready && !m->active;

	switch (off) {
	case VIRTIO_MMIO_DEVICE_FEATURES_SEL:
		m->dev_features_sel = val;
		break;
	case VIRTIO_MMIO_DRIVER_FEATURES:
		if (m->status & VIRTIO_CONFIG_S_FEATURES_OK)
			break;
		if (m->drv_features_sel == 0)
			m->driver_features = (m->driver_features & ~0xffffffffULL) | val;
		else if (m->drv_features_sel == 1)
			m->driver_features = (m->driver_features & 0xffffffffULL) | ((u64)val << 32);
		break;
	case VIRTIO_MMIO_DRIVER_FEATURES_SEL:
		m->drv_features_sel = val;
		break;
	case VIRTIO_MMIO_QUEUE_SEL:
		m->queue_sel = val;
		break;
	case VIRTIO_MMIO_QUEUE_NUM:
		if (q_writable && val <= 0xffff)
			q->num = val;
		break;
	case VIRTIO_MMIO_QUEUE_READY:
		if (q && !m->active)
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
		mmio_write_status(m, val);
		break;
	case VIRTIO_MMIO_QUEUE_DESC_LOW:
		if (q_writable)
			q->desc = (q->desc & ~0xffffffffULL) | val;
		break;
	case VIRTIO_MMIO_QUEUE_DESC_HIGH:
		if (q_writable)
			q->desc = (q->desc & 0xffffffffULL) | ((u64)val << 32);
		break;
	case VIRTIO_MMIO_QUEUE_AVAIL_LOW:
		if (q_writable)
			q->avail = (q->avail & ~0xffffffffULL) | val;
		break;
	case VIRTIO_MMIO_QUEUE_AVAIL_HIGH:
		if (q_writable)
			q->avail = (q->avail & 0xffffffffULL) | ((u64)val << 32);
		break;
	case VIRTIO_MMIO_QUEUE_USED_LOW:
		if (q_writable)
			q->used = (q->used & ~0xffffffffULL) | val;
		break;
	case VIRTIO_MMIO_QUEUE_USED_HIGH:
		if (q_writable)
			q->used = (q->used & 0xffffffffULL) | ((u64)val << 32);
		break;
	default:
		break;
	}
}

static void mmio_io(void *opaque, u64 off, u8 *data, u32 len, bool write)
{
	struct virtio_mmio *m = opaque;
	struct virtio_dev *vdev = m->vdev;
	u32 val;

	pthread_mutex_lock(&m->lock);
	if (off >= VIRTIO_MMIO_CONFIG) {
		u64 coff = off - VIRTIO_MMIO_CONFIG;

		if ((len == 1 || len == 2 || len == 4 || len == 8) &&
		    coff < vdev->config_size && len <= vdev->config_size - coff) {
			if (!write)
				vdev->ops->read_config(vdev, coff, data, len);
			else if (vdev->ops->write_config)
				vdev->ops->write_config(vdev, coff, data, len);
		} else {
			if (!write)
				memset(data, 0, len);
			pr_guest_once("%s: bad config access, offset 0x%llx size %u",
				      vdev->name, (unsigned long long)coff, len);
		}
	} else if (len != 4 || (off & 3)) {
		if (!write)
			memset(data, 0, len);
		pr_guest_once("%s: register 0x%llx accessed with size %u", vdev->name,
			      (unsigned long long)off, len);
	} else if (write) {
		memcpy(&val, data, 4);
		mmio_write_reg(m, off, val);
	} else {
		val = mmio_read_reg(m, off);
		memcpy(data, &val, 4);
	}
	pthread_mutex_unlock(&m->lock);
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
	m->vdev = vdev;
	m->vm = vm;
	m->base = VIRTIO_MMIO_BASE + (u64)mmio_count * VIRTIO_MMIO_STRIDE;
	m->gsi = VIRTIO_MMIO_GSI_BASE + mmio_count;
	pthread_mutex_init(&m->lock, NULL);
	vdev->vm = vm;
	vdev->transport = m;
	vdev->call_fd = -1;
	for (i = 0; i < vdev->nqueues; i++)
		vdev->vq[i].kick_fd = -1;

	vdev->call_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (vdev->call_fd < 0)
		goto fail_errno;
	r = vm_irqfd(vm, vdev->call_fd, m->gsi);
	if (r) {
		pr_err("%s: KVM_IRQFD on GSI %u: %s", vdev->name, m->gsi, strerror(-r));
		goto fail;
	}
	for (i = 0; i < vdev->nqueues; i++) {
		vdev->vq[i].kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (vdev->vq[i].kick_fd < 0)
			goto fail_errno;
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

/* After the vCPUs are gone: as if the driver wrote 0 to Status. */
void virtio_mmio_reset(struct virtio_dev *vdev)
{
	struct virtio_mmio *m = vdev->transport;

	if (!m)
		return;
	pthread_mutex_lock(&m->lock);
	mmio_reset(m);
	pthread_mutex_unlock(&m->lock);
}

/* Reset the device if it is live, then close the eventfds. */
void virtio_mmio_remove(struct virtio_dev *vdev)
{
	struct virtio_mmio *m = vdev->transport;
	unsigned int i;

	if (!m)
		return;
	virtio_mmio_reset(vdev);
	for (i = 0; i < vdev->nqueues; i++) {
		if (vdev->vq[i].kick_fd >= 0)
			close(vdev->vq[i].kick_fd);
		vdev->vq[i].kick_fd = -1;
	}
	if (vdev->call_fd >= 0)
		close(vdev->call_fd);
	vdev->call_fd = -1;
	pthread_mutex_destroy(&m->lock);
	free(m);
	vdev->transport = NULL;
}
