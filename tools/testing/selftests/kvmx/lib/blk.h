/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The virtio-blk guest driver of the kvmx selftests, and the host storage
 * its requests land on.
 *
 * A request is two byte streams: what the device reads (the 16-byte
 * header, then the data of a write or the ranges of a discard) and what it
 * writes (the data of a read or the id of GET_ID, then one status byte,
 * always the last writable byte). How the streams are cut into buffers and
 * where those buffers sit in guest memory is the layout, chosen apart from
 * the contents, so one request can be sent in many shapes: header and data
 * in one buffer, data scattered over uneven buffers, a buffer straddling
 * the guest region boundary.
 *
 * Backends are files on tmpfs (/tmp in the test VM), loop devices over
 * such files and null_blk. Each has a descriptor for VHOST_BLK_SET_BACKEND
 * and a separate buffered one the test reads the truth from.
 *
 * Conventions as in vhost.h: 0 or a non-negative value on success, a
 * negative errno on failure, with a message on stderr unless said silent.
 */
#ifndef KVMX_SELFTEST_BLK_H
#define KVMX_SELFTEST_BLK_H

#include <stdbool.h>
#include <stdint.h>
#include <linux/vhost_blk.h>

#include "guest.h"
#include "vhost.h"
#include "vring.h"

#define BLK_DEV_PATH		"/dev/vhost-blk"
#define BLK_MODULE		"kvmx_vhost_blk"
#define BLK_SECTOR_SIZE		512U
#define BLK_HDR_LEN		16U	/* struct virtio_blk_outhdr */
#define BLK_DWZ_LEN		16U	/* struct virtio_blk_discard_write_zeroes */
/* Header, seg_max data buffers, status, and room for buffers split in two. */
#define BLK_REQ_MAX_SEGS	(VHOST_BLK_SEG_MAX + 8)
/* How long the helpers wait for a used entry before calling the device stuck. */
#define BLK_TIMEOUT_MS		10000
/* What the driver puts in writable buffers before the device writes them. */
#define BLK_POISON		0xa5

struct blk_req {
	uint32_t type;
	uint64_t sector;
	/* Device-readable bytes: header, then data or ranges (host copy). */
	uint8_t *out;
	uint32_t out_len;
	/* Device-writable bytes: data or id, then the status byte. */
	uint32_t in_len;

	unsigned int nout;
	unsigned int nin;
	struct vring_seg out_seg[BLK_REQ_MAX_SEGS];
	struct vring_seg in_seg[BLK_REQ_MAX_SEGS];
	int head;
};

/*
 * Fill @r with a request of @type at @sector whose readable stream is the
 * header followed by @payload (may be NULL when @payload_len is 0) and
 * whose writable stream is @in_len bytes, status byte included. No guest
 * memory is used until a layout is chosen.
 */
int blk_req_init(struct blk_req *r, uint32_t type, uint64_t sector, const void *payload,
		 uint32_t payload_len, uint32_t in_len);
void blk_req_free(struct blk_req *r);

/*
 * Cut the streams into buffers of the given lengths (which must add up to
 * out_len and in_len), allocate them in guest memory 512-byte aligned plus
 * @misalign, write the readable stream and poison the writable one. NULL
 * cuts mean the layout every virtio-blk driver uses: the header alone,
 * the payload in one buffer; the data in one buffer, the status alone.
 */
int blk_req_layout(struct guest_mem *mem, struct blk_req *r, const uint32_t *out_cuts,
		   unsigned int nout, const uint32_t *in_cuts, unsigned int nin,
		   unsigned int misalign);
/* Write the streams into buffers the caller placed in out_seg and in_seg. */
int blk_req_place(struct guest_mem *mem, struct blk_req *r);

/* The writable stream as the device left it, into @dst (in_len bytes). */
int blk_req_read_in(const struct guest_mem *mem, const struct blk_req *r, void *dst);
/* The status byte (0..255), or -EFAULT. */
int blk_req_status(const struct guest_mem *mem, const struct blk_req *r);

/* Queue the request's chain on @vr (directly or through an indirect table). */
int blk_req_add(struct vring_drv *vr, struct blk_req *r, bool indirect);

/* One discard / write-zeroes range, little-endian, into @dst. */
void blk_dwz_set(void *dst, uint64_t sector, uint32_t num_sectors, uint32_t flags);

/* ---- the device -------------------------------------------------------- */

/* Silent, for tests that expect errors. */
int blk_set_backend(const struct vhost_dev *dev, unsigned int idx, int fd);
int blk_set_serial(const struct vhost_dev *dev, const void *id, size_t len);
int blk_get_stats(const struct vhost_dev *dev, unsigned int idx, struct vhost_blk_stats *st);

/*
 * A whole guest: memory, the device with @nvqs virtqueues of @ring_num
 * entries wired to their rings, @features acked. Usable where the test
 * harness is not (a forked child, a thread).
 */
#define BLK_GUEST_MAX_VQS	VHOST_DEV_MAX_VQS

struct blk_guest {
	struct guest_mem mem;
	struct vhost_dev dev;
	struct vring_drv vq[BLK_GUEST_MAX_VQS];
	unsigned int nvqs;
};

/* Returns vhost_open()'s -errno as is, so a caller can skip on ENOENT. */
int blk_guest_open(struct blk_guest *g, unsigned int nvqs, unsigned int ring_num,
		   uint64_t features);
void blk_guest_close(struct blk_guest *g);

/*
 * Take @n used entries of @vq into @elems, waiting up to @timeout_ms in
 * all. 0, -ETIMEDOUT, -EIO if the ring broke first, or -EPROTO (with a
 * message). Calls are consumed but not required: see blk_guest_reap().
 */
int blk_guest_reap(struct blk_guest *g, unsigned int vq, struct vring_used_elem *elems,
		   unsigned int n, int timeout_ms);
/*
 * Queue @r on @vq, publish, kick and wait for its used entry, which must
 * name its head. Returns the status byte and sets *@used_len (may be NULL).
 */
int blk_guest_do(struct blk_guest *g, unsigned int vq, struct blk_req *r, bool indirect,
		 uint32_t *used_len);

/* ---- backends ---------------------------------------------------------- */

enum blk_backend_kind {
	BLK_BACKEND_FILE,
	BLK_BACKEND_LOOP,
	BLK_BACKEND_NULLB,
};

struct blk_backend {
	enum blk_backend_kind kind;
	int fd;			/* for VHOST_BLK_SET_BACKEND */
	int check_fd;		/* buffered, read-write: the truth */
	int backing_fd;		/* a loop device's backing file, else -1 */
	uint64_t size;
	char path[64];		/* the file or the block device */
	char backing_path[64];
};

/*
 * A file of @size bytes holding @content in @dir (on tmpfs), opened with
 * @flags (O_RDWR, O_RDONLY, O_RDWR | O_DIRECT, ...). -EINVAL from an
 * O_DIRECT open is returned silently: the filesystem lacks it.
 */
int blk_file_create(struct blk_backend *b, const char *dir, uint64_t size,
		    const void *content, int flags);
/*
 * A loop device over such a file, opened with @flags. -ENODEV, silently,
 * when this kernel has no loop driver.
 */
int blk_loop_create(struct blk_backend *b, const char *dir, uint64_t size,
		    const void *content, int flags);
/*
 * /dev/nullb0, memory-backed, loading null_blk if needed; @content goes to
 * its first @size bytes. -ENODEV, silently, when there is no memory-backed
 * null_blk to be had.
 */
int blk_nullb_open(struct blk_backend *b, uint64_t size, const void *content, int flags);
void blk_backend_destroy(struct blk_backend *b);

/* pread()/pwrite() of exactly @len bytes on the check descriptor. */
int blk_backend_read(const struct blk_backend *b, uint64_t off, void *buf, size_t len);
int blk_backend_write(const struct blk_backend *b, uint64_t off, const void *buf, size_t len);

#endif /* KVMX_SELFTEST_BLK_H */
