/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * kvmx vhost-blk: in-kernel virtio-blk backend, /dev/vhost-blk.
 *
 * The vhost ABI of <linux/vhost.h> plus VHOST_BLK_SET_BACKEND, whose number
 * and argument are those of the vhost-blk RFCs (so VMM patches written for
 * them fit), and kvmx extensions. Documented in Documentation/vhost-blk.rst.
 */
#ifndef _UAPI_LINUX_VHOST_BLK_H
#define _UAPI_LINUX_VHOST_BLK_H

#include <linux/types.h>
#include <linux/ioctl.h>
#include <linux/vhost.h>
#include <linux/virtio_blk.h>

/* Virtqueues a vhost-blk device has; a VMM uses as many as it sets up. */
#define VHOST_BLK_MAX_QUEUES	16

/* Data segments one request may carry (the VMM's config seg_max bound). */
#define VHOST_BLK_SEG_MAX	254

/*
 * Attach the file or block device @fd to virtqueue @index; -1 detaches.
 * Requests in flight on the old backend complete first. The fd must be
 * open for reading; a backend not open for writing is read-only and
 * write requests to it fail with VIRTIO_BLK_S_IOERR.
 */
#define VHOST_BLK_SET_BACKEND	_IOW(VHOST_VIRTIO, 0x50, struct vhost_vring_file)

/* kvmx extension: the serial number GET_ID returns (up to 20 bytes, NUL padded). */
struct vhost_blk_serial {
	__u8 id[VIRTIO_BLK_ID_BYTES];
};

#define VHOST_BLK_SET_SERIAL	_IOW(VHOST_VIRTIO, 0x51, struct vhost_blk_serial)

/*
 * kvmx extension: per-queue counters. @index selects the queue.
 * @last_error is the errno of the last failed backend I/O. @flags tells
 * how the backend is driven: VHOST_BLK_STATS_F_BIO when reads and writes
 * go to a block device opened O_DIRECT as bios, else through its file;
 * VHOST_BLK_STATS_F_FLUSH_BIO when FLUSH goes to that device as an
 * asynchronous REQ_PREFLUSH bio (a writable one), else it is an fsync of
 * the file in the queue's worker (or nothing, read-only).
 */
struct vhost_blk_stats {
	__u32 index;
	__u32 broken;
	__u64 requests;
	__u64 ioerr;
	__u64 unsupp;
	__u64 inflight;
	__s32 last_error;
	__u32 flags;
};

#define VHOST_BLK_STATS_F_BIO	(1U << 0)
#define VHOST_BLK_STATS_F_FLUSH_BIO	(1U << 1)

#define VHOST_BLK_GET_STATS	_IOWR(VHOST_VIRTIO, 0x52, struct vhost_blk_stats)

#endif /* _UAPI_LINUX_VHOST_BLK_H */
