/* SPDX-License-Identifier: GPL-2.0 */
/*
 * virtio devices and their transport.
 *
 * A device (dev-*.c) fills a struct virtio_dev and its ops; the transport
 * (transport-mmio.c) owns the register state the driver writes: status,
 * feature selection, queue sizes and addresses. The device learns about
 * them only through ops->activate() (DRIVER_OK) and ops->reset() (status
 * 0 after activation), both called under the transport's lock from a vCPU
 * thread. Between those two calls the queue configuration does not change
 * (the transport ignores queue writes while the device is live).
 *
 * Each queue has a kick eventfd (a KVM ioeventfd on QueueNotify) and the
 * device has one call eventfd (a KVM irqfd on its interrupt): the same two
 * fds serve a userspace backend and a vhost backend.
 */
#ifndef VMLAUNCH_VIRTIO_H
#define VMLAUNCH_VIRTIO_H

#include <sys/uio.h>
#include <linux/virtio_ring.h>

#include "vmlaunch.h"

#define VIRTIO_MAX_QUEUES	8
#define VIRTQ_MAX_SIZE		256	/* QueueNumMax of every queue */

struct virtio_dev;

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

	int call_fd;		/* eventfd, a KVM irqfd on the device's GSI */
	u32 isr;		/* InterruptStatus bits, atomic */
	/*
	 * The interrupt may be raised by someone who cannot set isr (a vhost
	 * worker signalling call_fd): InterruptStatus then always reads
	 * "used buffer". See Documentation/vmlaunch.rst.
	 */
	bool isr_always_used;
	void *transport;
};

/* InterruptStatus bits */
#define VIRTIO_ISR_USED		0x1
#define VIRTIO_ISR_CONFIG	0x2

/* Interrupt the driver: a used buffer (or a config change) is there. */
void virtio_notify(struct virtio_dev *vdev, u32 isr_bits);

/* Mark the device broken (DEVICE_NEEDS_RESET) and tell the driver. */
void virtio_needs_reset(struct virtio_dev *vdev);

/* transport-mmio.c */
int virtio_mmio_add(struct vm *vm, struct virtio_dev *vdev, struct acpi_device_info *info);
void virtio_mmio_reset(struct virtio_dev *vdev);
void virtio_mmio_remove(struct virtio_dev *vdev);

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
