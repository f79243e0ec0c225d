/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * kvmx: ioctl ABI shared by every kvmx vhost device.
 *
 * Each kvmx device speaks the vhost ABI of <linux/vhost.h> unchanged; this
 * header only adds what older kernels' uapi lacks (so a VMM built on 6.1
 * headers can still use the worker ioctls) and the ioctls of the loopback
 * test device /dev/kvmx-vhost-test. Documented in
 * Documentation/kvmx-vhost-core.rst.
 */
#ifndef _UAPI_LINUX_KVMX_VHOST_H
#define _UAPI_LINUX_KVMX_VHOST_H

#include <linux/types.h>
#include <linux/ioctl.h>
#include <linux/vhost.h>

/* Worker ioctls appeared in Linux 6.5; numbers and layouts are upstream's. */
#ifndef VHOST_NEW_WORKER
struct vhost_worker_state {
	unsigned int worker_id;
};

struct vhost_vring_worker {
	unsigned int index;
	unsigned int worker_id;
};

#define VHOST_NEW_WORKER _IOR(VHOST_VIRTIO, 0x8, struct vhost_worker_state)
#define VHOST_FREE_WORKER _IOW(VHOST_VIRTIO, 0x9, struct vhost_worker_state)
#define VHOST_ATTACH_VRING_WORKER _IOW(VHOST_VIRTIO, 0x15, struct vhost_vring_worker)
#define VHOST_GET_VRING_WORKER _IOWR(VHOST_VIRTIO, 0x16, struct vhost_vring_worker)
#endif

/*
 * /dev/kvmx-vhost-test: a loopback device that exists so the virtqueue core
 * can be driven from userspace without a VM. Every chain it takes is
 * echoed: the bytes of its device-readable part are copied into its
 * device-writable part, and the used length is the number of bytes copied.
 */
#define KVMX_VHOST_TEST_NVQS 2

/* Start (1) or stop (0) processing on every virtqueue. */
#define KVMX_VHOST_TEST_RUN _IOW(VHOST_VIRTIO, 0xe0, int)

/*
 * Counters of one virtqueue, selected by @index. @last_error is the
 * negative errno of the last chain the core rejected, and @last_fault the
 * matching enum kvmx_chain_fault reason (see the documentation), so a test
 * can tell which check fired.
 */
struct kvmx_vhost_test_stats {
	__u32 index;
	__u32 broken;
	__u64 chains;
	__u64 bytes;
	__u64 bad_chains;
	__s32 last_error;
	__u32 last_fault;
};

#define KVMX_VHOST_TEST_GET_STATS _IOWR(VHOST_VIRTIO, 0xe1, struct kvmx_vhost_test_stats)

/* Reasons a descriptor chain is rejected; stable, reported in last_fault. */
enum kvmx_chain_fault {
	KVMX_FAULT_NONE = 0,
	KVMX_FAULT_HEAD_RANGE = 1,	/* head index >= ring size: -ERANGE */
	KVMX_FAULT_NEXT_RANGE = 2,	/* next index outside ring/table: -ERANGE */
	KVMX_FAULT_LOOP = 3,		/* a descriptor visited twice: -ELOOP */
	KVMX_FAULT_TOO_LONG = 4,	/* more descriptors than the ring: -E2BIG */
	KVMX_FAULT_TOO_MANY_SEGS = 5,	/* more segments than the device takes: -E2BIG */
	KVMX_FAULT_NESTED_INDIRECT = 6,	/* indirect inside indirect: -EINVAL */
	KVMX_FAULT_INDIRECT_NEXT = 7,	/* INDIRECT together with NEXT: -EINVAL */
	KVMX_FAULT_INDIRECT_SIZE = 8,	/* table length 0 or not 16-aligned: -EINVAL */
	KVMX_FAULT_INDIRECT_OFF = 9,	/* INDIRECT not negotiated: -EINVAL */
	KVMX_FAULT_ZERO_LEN = 10,	/* zero-length buffer: -EINVAL */
	KVMX_FAULT_OUT_AFTER_IN = 11,	/* readable after writable: -EINVAL */
	KVMX_FAULT_LEN_OVERFLOW = 12,	/* addr + len or chain total wraps: -EOVERFLOW */
	KVMX_FAULT_ADDR = 13,		/* buffer outside every region: -EFAULT */
	KVMX_FAULT_READ = 14,		/* descriptor unreadable: -EFAULT */
	KVMX_FAULT_AVAIL_IDX = 15,	/* avail index moved more than ring size: -EINVAL */
	KVMX_FAULT_MAX
};

#endif /* _UAPI_LINUX_KVMX_VHOST_H */
