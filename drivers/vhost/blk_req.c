// SPDX-License-Identifier: GPL-2.0
/*
 * kvmx vhost-blk request validation: what a virtio-blk request asks for and
 * whether the backend can do it, decided from its header and the chain's
 * lengths alone, before any byte of data moves. Pure logic, so KUnit can
 * cover the sector maths and every malformed request.
 */
#include <linux/export.h>
#include <linux/minmax.h>
#include <linux/overflow.h>
#include <linux/virtio_blk.h>

#include "kvmx_blk.h"

/**
 * kvmx_blk_classify - validate a request and say how to carry it out
 * @hdr: the request header, already copied out of guest memory
 * @out_len: readable bytes of the chain, header included
 * @in_len: writable bytes of the chain, status byte included
 * @backend: size and mode of the backend
 * @req: filled with the operation, byte offset and data length
 *
 * The caller has checked that the chain holds a header and a status byte.
 *
 * Return: VIRTIO_BLK_S_OK when the request may go to the backend, else the
 * status to complete it with right away.
 */
u8 kvmx_blk_classify(const struct kvmx_blk_hdr *hdr, u32 out_len, u32 in_len,
		     const struct kvmx_blk_backend_info *backend,
		     struct kvmx_blk_op *req)
{
	u64 end_sector;
	u32 len;

	req->type = hdr->type;
	req->offset = 0;
	req->len = 0;

	switch (hdr->type) {
	case VIRTIO_BLK_T_IN:
	case VIRTIO_BLK_T_OUT:
		len = hdr->type == VIRTIO_BLK_T_IN ? in_len - KVMX_BLK_STATUS_LEN :
						     out_len - KVMX_BLK_HDR_LEN;
		if (len % SECTOR_SIZE)
			return VIRTIO_BLK_S_IOERR;
		if (hdr->type == VIRTIO_BLK_T_OUT && backend->read_only)
			return VIRTIO_BLK_S_IOERR;
		if (check_add_overflow(hdr->sector, (u64)len >> SECTOR_SHIFT, &end_sector) ||
		    end_sector > backend->sectors)
			return VIRTIO_BLK_S_IOERR;
		req->offset = hdr->sector << SECTOR_SHIFT;
		req->len = len;
		return VIRTIO_BLK_S_OK;

	case VIRTIO_BLK_T_FLUSH:
		/* A flush carries no data; a read-only backend has none to flush. */
		return VIRTIO_BLK_S_OK;

	case VIRTIO_BLK_T_GET_ID:
		len = in_len - KVMX_BLK_STATUS_LEN;
		if (!len)
			return VIRTIO_BLK_S_IOERR;
		req->len = min_t(u32, len, VIRTIO_BLK_ID_BYTES);
		return VIRTIO_BLK_S_OK;

	case VIRTIO_BLK_T_DISCARD:
	case VIRTIO_BLK_T_WRITE_ZEROES:
		len = out_len - KVMX_BLK_HDR_LEN;
		if (!len || len % sizeof(struct virtio_blk_discard_write_zeroes) ||
		    len / sizeof(struct virtio_blk_discard_write_zeroes) > KVMX_BLK_MAX_DWZ_SEGS)
			return VIRTIO_BLK_S_IOERR;
		if (backend->read_only)
			return VIRTIO_BLK_S_IOERR;
		req->len = len;
		return VIRTIO_BLK_S_OK;

	default:
		return VIRTIO_BLK_S_UNSUPP;
	}
}
EXPORT_SYMBOL_GPL(kvmx_blk_classify);

/**
 * kvmx_blk_check_range - validate one discard / write-zeroes segment
 * @seg: the segment, already converted to CPU byte order
 * @write_zeroes: true for WRITE_ZEROES, whose only valid flag is UNMAP
 * @backend: size of the backend
 * @offset: set to the byte offset of the range
 * @len: set to its byte length
 *
 * Return: VIRTIO_BLK_S_OK, VIRTIO_BLK_S_UNSUPP for flags this request type
 * does not have, or VIRTIO_BLK_S_IOERR for an empty or out-of-range range.
 */
u8 kvmx_blk_check_range(const struct kvmx_blk_range *seg, bool write_zeroes,
			const struct kvmx_blk_backend_info *backend,
			u64 *offset, u64 *len)
{
	u32 allowed = write_zeroes ? VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP : 0;
	u64 end_sector;

	if (seg->flags & ~allowed)
		return VIRTIO_BLK_S_UNSUPP;
	if (!seg->num_sectors || seg->num_sectors > KVMX_BLK_MAX_DWZ_SECTORS)
		return VIRTIO_BLK_S_IOERR;
	if (check_add_overflow(seg->sector, (u64)seg->num_sectors, &end_sector) ||
	    end_sector > backend->sectors)
		return VIRTIO_BLK_S_IOERR;
	*offset = seg->sector << SECTOR_SHIFT;
	*len = (u64)seg->num_sectors << SECTOR_SHIFT;
	return VIRTIO_BLK_S_OK;
}
EXPORT_SYMBOL_GPL(kvmx_blk_check_range);
