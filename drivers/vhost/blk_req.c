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

/**
 * kvmx_blk_hold_start - used entries are ready: how long to hold their signal?
 * @hold: the queue's hold state
 * @max_ns: the longest hold allowed; below KVMX_BLK_HOLD_MIN_NS, none
 *
 * A held signal goes out once the queue has been quiet for the hold.
 * Holding pays while the guest is still adding requests: one interrupt
 * then covers its whole burst, where each costs the guest an exit. It
 * costs a guest that waits for this very completion the whole hold, so a
 * closed hold is only tried again now and then (a probe, for @max_ns),
 * less often each time a probe catches nothing.
 *
 * Return: the hold in nanoseconds; 0 to signal at once.
 */
u32 kvmx_blk_hold_start(struct kvmx_blk_hold *hold, u32 max_ns)
{
	if (max_ns < KVMX_BLK_HOLD_MIN_NS) {
		hold->hold_ns = 0;
		return 0;
	}
	hold->hold_ns = min(hold->hold_ns, max_ns);
	if (hold->hold_ns)
		return hold->hold_ns;
	if (hold->probe_in > 1) {
		hold->probe_in--;
		return 0;
	}
	return max_ns;
}
EXPORT_SYMBOL_GPL(kvmx_blk_hold_start);

/**
 * kvmx_blk_hold_end - a hold ran out: learn from it
 * @hold: the queue's hold state; a hold that ran while it was closed
 *	was a probe (kvmx_blk_hold_start() returned @max_ns)
 * @caught_gap_ns: the longest quiet gap after which the queue still saw a
 *	request or a completion during the hold; 0 if it saw none
 * @max_ns: the longest hold allowed
 *
 * A hold that caught some of a burst grows to twice the longest gap inside
 * it, and does not shrink for a burst with shorter gaps: a hold too short
 * for the next gap costs an interrupt, too long costs nothing while the
 * guest keeps adding requests. One that caught nothing only delayed a
 * guest that was waiting for us; yet a guest deep in I/O still has many
 * such holds between those that catch (measured under nested KVM: 4 of 5
 * catch nothing, and holding still halves its interrupts per request), so
 * only KVMX_BLK_HOLD_MISSES of them in a row close the hold. A probe that
 * caught nothing doubles the signals until the next one, up to
 * KVMX_BLK_HOLD_PROBE_MAX.
 */
void kvmx_blk_hold_end(struct kvmx_blk_hold *hold, u64 caught_gap_ns, u32 max_ns)
{
	if (max_ns < KVMX_BLK_HOLD_MIN_NS) {
		hold->hold_ns = 0;
	} else if (caught_gap_ns) {
		u64 twice = 2 * min_t(u64, caught_gap_ns, max_ns);

		hold->hold_ns = clamp_t(u64, max_t(u64, twice, hold->hold_ns),
					KVMX_BLK_HOLD_MIN_NS, max_ns);
		hold->probe_every = 1;
		hold->misses = 0;
	} else if (!hold->hold_ns) {
		/* A probe. */
		hold->probe_every = clamp(2 * hold->probe_every, 2, KVMX_BLK_HOLD_PROBE_MAX);
	} else if (++hold->misses >= KVMX_BLK_HOLD_MISSES) {
		hold->hold_ns = 0;
		hold->misses = 0;
		hold->probe_every = 2;
	}
	if (!hold->hold_ns)
		hold->probe_in = hold->probe_every;
}
EXPORT_SYMBOL_GPL(kvmx_blk_hold_end);
