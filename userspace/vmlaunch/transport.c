// SPDX-License-Identifier: GPL-2.0
/*
 * What virtio-mmio and virtio-pci share: the device status state machine
 * (virtio 1.2, section 2.1 and 3.1), feature negotiation, the queue
 * selector, device config space bounds, and the choice between the two.
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <linux/virtio_config.h>

#include "virtio.h"

static void close_kick_fds(struct virtio_dev *vdev)
{
	unsigned int i;

	for (i = 0; i < vdev->nqueues; i++) {
		if (vdev->vq[i].kick_fd >= 0)
			close(vdev->vq[i].kick_fd);
		vdev->vq[i].kick_fd = -1;
	}
}

/*
 * The kick eventfds are the same for both transports (each makes them
 * KVM ioeventfds on its own notify registers), so they are made and
 * closed here; the call and config eventfds are the transport's.
 */
int virtio_transport_add(struct vm *vm, struct virtio_dev *vdev, struct acpi_device_info *info)
{
	unsigned int i;
	int r;

	vdev->vm = vm;
	vdev->config_fd = -1;
	for (i = 0; i < VIRTIO_MAX_QUEUES; i++)
		vdev->vq[i].kick_fd = vdev->vq[i].call_fd = -1;
	for (i = 0; i < vdev->nqueues; i++) {
		vdev->vq[i].kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (vdev->vq[i].kick_fd < 0) {
			r = -errno;
			close_kick_fds(vdev);
			return r;
		}
	}
	if (vm->virtio_pci) {
		info->name[0] = 0;	/* a PCI function is not in the DSDT */
		r = virtio_pci_add(vm, vdev);
	} else {
		r = virtio_mmio_add(vm, vdev, info);
	}
	if (r)
		close_kick_fds(vdev);
	return r;
}

/* After the vCPUs are gone: as if the driver wrote 0 to the status. */
void virtio_transport_reset(struct virtio_dev *vdev)
{
	struct virtio_transport *t = vdev->transport;

	if (!t)
		return;
	pthread_mutex_lock(&t->lock);
	vt_reset(t);
	pthread_mutex_unlock(&t->lock);
}

void virtio_transport_remove(struct virtio_dev *vdev)
{
	if (!vdev->transport)
		return;
	if (vdev->vm->virtio_pci)
		virtio_pci_remove(vdev);
	else
		virtio_mmio_remove(vdev);
	close_kick_fds(vdev);
}

/* The transport shows the new InterruptStatus before the interrupt fires. */
static void isr_changed(struct virtio_dev *vdev)
{
	struct virtio_transport *t = vdev->transport;

	if (t && t->isr_changed)
		t->isr_changed(t);
}

void virtio_notify_used(struct virtio_dev *vdev, unsigned int queue)
{
	__atomic_fetch_or(&vdev->isr, VIRTIO_ISR_USED, __ATOMIC_RELEASE);
	isr_changed(vdev);
	eventfd_signal(vdev->vq[queue].call_fd);
}

void virtio_notify_config(struct virtio_dev *vdev)
{
	__atomic_fetch_or(&vdev->isr, VIRTIO_ISR_CONFIG, __ATOMIC_RELEASE);
	isr_changed(vdev);
	eventfd_signal(vdev->config_fd);
}

void virtio_needs_reset(struct virtio_dev *vdev)
{
	struct virtio_transport *t = vdev->transport;

	if (!__atomic_exchange_n(&t->needs_reset, true, __ATOMIC_ACQ_REL)) {
		pr_warn("%s: device needs a reset (the guest broke the virtqueue rules)",
			vdev->name);
		virtio_notify_config(vdev);
	}
}

void vt_init(struct virtio_transport *t, struct virtio_dev *vdev, u16 queue_num_reset)
{
	t->vdev = vdev;
	t->queue_num_reset = queue_num_reset;
	pthread_mutex_init(&t->lock, NULL);
	vdev->transport = t;
	vt_reset(t);
}

/* Both transports take a 64-bit queue address as two 32-bit halves. */
void vt_set_addr_half(u64 *addr, bool high, u32 val)
{
	if (high)
		*addr = (*addr & 0xffffffffULL) | (u64)val << 32;
	else
		*addr = (*addr & ~0xffffffffULL) | val;
}

struct virtio_queue *vt_selected_queue(struct virtio_transport *t)
{
	if (t->queue_sel >= t->vdev->nqueues)
		return NULL;
	return &t->vdev->vq[t->queue_sel];
}

void vt_reset(struct virtio_transport *t)
{
	struct virtio_dev *vdev = t->vdev;
	unsigned int i;

	if (t->active)
		vdev->ops->reset(vdev);
	t->active = false;
	t->status = 0;
	t->dev_features_sel = t->drv_features_sel = 0;
	t->driver_features = 0;
	t->queue_sel = 0;
	vdev->acked = 0;
	for (i = 0; i < vdev->nqueues; i++) {
		struct virtio_queue *q = &vdev->vq[i];

		q->num = t->queue_num_reset;
		q->ready = false;
		q->desc = q->avail = q->used = 0;
	}
	__atomic_store_n(&vdev->isr, 0, __ATOMIC_RELEASE);
	__atomic_store_n(&t->needs_reset, false, __ATOMIC_RELEASE);
	if (t->transport_reset)
		t->transport_reset(t);
}

u32 vt_device_features(const struct virtio_transport *t)
{
	if (t->dev_features_sel > 1)
		return 0;
	return t->vdev->features >> (32 * t->dev_features_sel);
}

void vt_write_driver_features(struct virtio_transport *t, u32 val)
{
	if (t->status & VIRTIO_CONFIG_S_FEATURES_OK)
		return;
	if (t->drv_features_sel == 0)
		t->driver_features = (t->driver_features & ~0xffffffffULL) | val;
	else if (t->drv_features_sel == 1)
		t->driver_features = (t->driver_features & 0xffffffffULL) | ((u64)val << 32);
}

static bool features_ok(struct virtio_transport *t)
{
	u64 f = t->driver_features;

	if (f & ~t->vdev->features) {
		pr_guest_once("%s: driver accepted features 0x%llx never offered", t->vdev->name,
			      (unsigned long long)(f & ~t->vdev->features));
		return false;
	}
	/* Both transports are modern only: no legacy interface. */
	return f & (1ULL << VIRTIO_F_VERSION_1);
}

static bool queues_ok(struct virtio_transport *t)
{
	unsigned int i;

	for (i = 0; i < t->vdev->nqueues; i++) {
		const struct virtio_queue *q = &t->vdev->vq[i];

		if (!q->ready)
			continue;
		if (!q->num || q->num > VIRTQ_MAX_SIZE || (q->num & (q->num - 1))) {
			pr_guest_once("%s: queue %u size %u is not a power of two up to %u",
				      t->vdev->name, i, q->num, VIRTQ_MAX_SIZE);
			return false;
		}
	}
	return true;
}

void vt_write_status(struct virtio_transport *t, u32 val)
{
	u32 old = t->status;

	if (val == 0) {
		vt_reset(t);
		return;
	}
	/*
	 * Only a reset clears status bits (the driver MUST NOT, virtio 1.2,
	 * 2.1.2): dropping DRIVER_OK and setting it again would activate a
	 * live device a second time, dropping FEATURES_OK would renegotiate
	 * the features under it.
	 */
	val = (val & 0xff) | old;
	if ((val & VIRTIO_CONFIG_S_FEATURES_OK) && !(old & VIRTIO_CONFIG_S_FEATURES_OK)) {
		if (features_ok(t))
			t->vdev->acked = t->driver_features;
		else
			val &= ~VIRTIO_CONFIG_S_FEATURES_OK;	/* the driver reads it back */
	}
	if ((val & VIRTIO_CONFIG_S_DRIVER_OK) && !(old & VIRTIO_CONFIG_S_DRIVER_OK)) {
		if (!(val & VIRTIO_CONFIG_S_FEATURES_OK) || !queues_ok(t) ||
		    t->vdev->ops->activate(t->vdev)) {
			val &= ~VIRTIO_CONFIG_S_DRIVER_OK;
			val |= VIRTIO_CONFIG_S_NEEDS_RESET;
		} else {
			t->active = true;
		}
	}
	t->status = val | (old & VIRTIO_CONFIG_S_NEEDS_RESET);
}

/* Any thread: virtio-mmio's register page shows it as backends change it. */
u32 vt_read_status(struct virtio_transport *t)
{
	return __atomic_load_n(&t->status, __ATOMIC_ACQUIRE) |
	       (__atomic_load_n(&t->needs_reset, __ATOMIC_ACQUIRE) ?
		VIRTIO_CONFIG_S_NEEDS_RESET : 0);
}

/* Device config space: 1, 2, 4 and 8-byte accesses inside config_size. */
void vt_config_access(struct virtio_transport *t, u64 offset, u8 *data, u32 len, bool write)
{
	struct virtio_dev *vdev = t->vdev;

	if ((len == 1 || len == 2 || len == 4 || len == 8) &&
	    offset < vdev->config_size && len <= vdev->config_size - offset) {
		if (!write)
			vdev->ops->read_config(vdev, offset, data, len);
		else if (vdev->ops->write_config)
			vdev->ops->write_config(vdev, offset, data, len);
		return;
	}
	if (!write)
		memset(data, 0, len);
	pr_guest_once("%s: bad config access, offset 0x%llx size %u", vdev->name,
		      (unsigned long long)offset, len);
}
