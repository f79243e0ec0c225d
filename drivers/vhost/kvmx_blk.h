/* SPDX-License-Identifier: GPL-2.0 */
/*
 * kvmx vhost-blk internals shared by the device, its request validation
 * and their KUnit suite.
 */
#ifndef _KVMX_BLK_H
#define _KVMX_BLK_H

#include <linux/bits.h>
#include <linux/blkdev.h>
#include <linux/types.h>
#include <uapi/linux/vhost_blk.h>

#define KVMX_BLK_HDR_LEN	16	/* struct virtio_blk_outhdr */
#define KVMX_BLK_STATUS_LEN	1
/* Ranges one DISCARD / WRITE_ZEROES request may carry (config max_*_seg). */
#define KVMX_BLK_MAX_DWZ_SEGS	32
/* Sectors one range may cover (config max_discard/write_zeroes_sectors). */
#define KVMX_BLK_MAX_DWZ_SECTORS	BIT(22)

/* The header in CPU byte order. */
struct kvmx_blk_hdr {
	u32 type;
	u32 ioprio;
	u64 sector;
};

struct kvmx_blk_range {
	u64 sector;
	u32 num_sectors;
	u32 flags;
};

struct kvmx_blk_backend_info {
	u64 sectors;		/* size in 512-byte sectors, rounded down */
	bool read_only;
};

/* What one validated request does. */
struct kvmx_blk_op {
	u32 type;
	u64 offset;		/* byte offset on the backend (IN, OUT) */
	u32 len;		/* data bytes (IN, OUT, GET_ID, DISCARD/WZ payload) */
};

u8 kvmx_blk_classify(const struct kvmx_blk_hdr *hdr, u32 out_len, u32 in_len,
		     const struct kvmx_blk_backend_info *backend,
		     struct kvmx_blk_op *req);
u8 kvmx_blk_check_range(const struct kvmx_blk_range *seg, bool write_zeroes,
			const struct kvmx_blk_backend_info *backend,
			u64 *offset, u64 *len);

#endif /* _KVMX_BLK_H */
