/* SPDX-License-Identifier: GPL-2.0 */
/*
 * virtio devices and their transport.
 *
 * A device (dev-*.c) fills a struct virtio_dev and its ops; the transport
 * (transport-mmio.c or transport-pci.c, with what they share in
 * transport.c) owns the register state the driver writes: status,
 * feature selection, queue sizes and addresses. The device learns about
 * them only through ops->activate() (DRIVER_OK) and ops->reset() (status
 * 0 after activation), both called under the transport's lock from a vCPU
 * thread. Between those two calls the queue configuration does not change
 * (the transport ignores queue writes while the device is live).
 *
 * Each queue has a kick eventfd (a KVM ioeventfd on its notify register)
 * and a call eventfd (a KVM irqfd on its interrupt: the device's one
 * interrupt with virtio-mmio, the queue's own MSI-X vector with
 * virtio-pci): the same fds serve a userspace backend and a vhost backend.
 */
#ifndef VMLAUNCH_VIRTIO_H
#define VMLAUNCH_VIRTIO_H

#include <sys/uio.h>
#include <linux/virtio_ring.h>

#include "vmlaunch.h"

#define VIRTIO_MAX_QUEUES	8
#define VIRTQ_MAX_SIZE		256	/* QueueNumMax of every queue */

struct virtio_dev;
struct virtio_transport;

struct virtio_dev_ops {
	/* Config space reads and writes, range already checked. */
	void (*read_config)(struct virtio_dev *vdev, u32 offset, void *data, u32 len);
	void (*write_config)(struct virtio_dev *vdev, u32 offset, const void *data, u32 len);
	/* DRIVER_OK: start serving the ready queues. 0 or -errno (NEEDS_RESET). */
	int (*activate)(struct virtio_dev *vdev);
	/* Stop touching guest memory; return once nothing is in flight. */
	void (*reset)(struct virtio_dev *vdev);
};

struct virtio_queue {
	u16 num;
	bool ready;
	u64 desc;		/* guest physical addresses */
	u64 avail;
	u64 used;
	int kick_fd;		/* eventfd, signalled by KVM on QueueNotify */
	int call_fd;		/* eventfd, a KVM irqfd: used buffers are there */
};

struct virtio_dev {
	const struct virtio_dev_ops *ops;
	const char *name;	/* for messages, e.g. "vda" */
	struct vm *vm;
	u32 device_id;
	u64 features;		/* offered */
	u64 acked;		/* accepted by the driver (valid once active) */
	u32 config_size;
	unsigned int nqueues;
	struct virtio_queue vq[VIRTIO_MAX_QUEUES];

	/*
	 * An eventfd with a KVM irqfd on it for config changes; each queue's
	 * call_fd is for used buffers. virtio-mmio has one interrupt, so
	 * there all of them are the same eventfd.
	 */
	int config_fd;
	u32 isr;		/* InterruptStatus bits, atomic */
	/*
	 * The interrupt may be raised by someone who cannot set isr (a vhost
	 * worker signalling a call_fd): InterruptStatus then always reads
	 * "used buffer". See Documentation/vmlaunch.rst.
	 */
	bool isr_always_used;
	struct virtio_transport *transport;
};

/* InterruptStatus bits */
#define VIRTIO_ISR_USED		0x1
#define VIRTIO_ISR_CONFIG	0x2

/* Interrupt the driver: a used buffer in @queue, or a config change. */
void virtio_notify_used(struct virtio_dev *vdev, unsigned int queue);
void virtio_notify_config(struct virtio_dev *vdev);

/* Mark the device broken (DEVICE_NEEDS_RESET) and tell the driver. */
void virtio_needs_reset(struct virtio_dev *vdev);

/*
 * A device joins the VM's transport (--transport): virtio-mmio, described
 * in @info for the DSDT, or a virtio-pci function (@info left unnamed).
 * Reset after the vCPUs are gone; remove resets, then frees.
 */
int virtio_transport_add(struct vm *vm, struct virtio_dev *vdev, struct acpi_device_info *info);
void virtio_transport_reset(struct virtio_dev *vdev);
void virtio_transport_remove(struct virtio_dev *vdev);

/*
 * ---- what both transports share (transport.c) ----------------------------
 *
 * The driver-visible state machine: feature negotiation, the status byte,
 * the queue selector. All of it under `lock`, which each transport takes
 * around a register access; device activate/reset run under it. A device
 * may flag DEVICE_NEEDS_RESET from any thread (atomic, no lock).
 */
struct virtio_transport {
	struct virtio_dev *vdev;
	pthread_mutex_t lock;
	u32 status;
	bool needs_reset;	/* atomic */
	bool active;		/* ops->activate() succeeded */
	u32 dev_features_sel;
	u32 drv_features_sel;
	u64 driver_features;
	u32 queue_sel;
	u16 queue_num_reset;	/* QueueNum after a reset: 0 (mmio) or the maximum (pci) */
	void (*transport_reset)(struct virtio_transport *t);	/* optional, under lock */
	/* Optional: vdev->isr or needs_reset changed; any thread, lock or not. */
	void (*isr_changed)(struct virtio_transport *t);
};

void vt_init(struct virtio_transport *t, struct virtio_dev *vdev, u16 queue_num_reset);
void vt_reset(struct virtio_transport *t);
void vt_write_status(struct virtio_transport *t, u32 val);
u32 vt_read_status(struct virtio_transport *t);
u32 vt_device_features(const struct virtio_transport *t);
void vt_write_driver_features(struct virtio_transport *t, u32 val);
struct virtio_queue *vt_selected_queue(struct virtio_transport *t);
void vt_set_addr_half(u64 *addr, bool high, u32 val);
void vt_config_access(struct virtio_transport *t, u64 offset, u8 *data, u32 len, bool write);

int virtio_mmio_add(struct vm *vm, struct virtio_dev *vdev, struct acpi_device_info *info);
void virtio_mmio_remove(struct virtio_dev *vdev);
int virtio_pci_add(struct vm *vm, struct virtio_dev *vdev);
void virtio_pci_remove(struct virtio_dev *vdev);

/* ---- userspace split virtqueues (virtio.c) ------------------------------- */

struct virtq {
	const struct vm *vm;
	u16 num;
	bool event_idx;
	bool indirect;
	struct vring_desc *desc;
	struct vring_avail *avail;
	struct vring_used *used;
	u16 last_avail;		/* next avail entry to take */
	u16 used_idx;		/* our copy of used->idx */
	u16 signalled_used;	/* used_idx when we last interrupted */
	bool signalled_valid;
};

/*
 * A descriptor chain mapped to host memory: out (device-readable)
 * segments first, then in (device-writable) ones. A chain has at most
 * `num` descriptors, indirect ones included, so VIRTQ_MAX_SIZE bounds it.
 */
struct virtq_chain {
	u16 head;
	unsigned int nout, nin;
	u64 out_len, in_len;
	struct iovec iov[VIRTQ_MAX_SIZE];
};

int virtq_init(struct virtq *vr, const struct vm *vm, const struct virtio_queue *q, u64 features);
int virtq_pop(struct virtq *vr, struct virtq_chain *c);
void virtq_push(struct virtq *vr, u16 head, u32 len);
bool virtq_should_notify(struct virtq *vr);
bool virtq_enable_kicks(struct virtq *vr);
void virtq_disable_kicks(struct virtq *vr);
bool virtq_has_avail(const struct virtq *vr);

/* iovec helpers over a chain */
size_t iov_copy_from(const struct iovec *iov, unsigned int n, size_t skip, void *buf, size_t len);
size_t iov_copy_to(const struct iovec *iov, unsigned int n, size_t skip, const void *buf, size_t len);

#endif /* VMLAUNCH_VIRTIO_H */
