// SPDX-License-Identifier: GPL-2.0
/*
 * kvmx vhost-blk: a virtio-blk device backend in the host kernel.
 *
 * Each virtqueue has its own backend file (a regular file or a block
 * device), a fixed pool of requests as large as the ring, and a worker
 * (the core's, shared or per queue). Reads and writes go to a block device
 * opened O_DIRECT as bios built straight on the guest's pages (FLUSH as an
 * empty REQ_PREFLUSH bio), and to anything else as asynchronous kiocbs
 * (FLUSH as vfs_fsync()): the worker submits a whole batch of chains per
 * kick and never waits for data. Completions may arrive in interrupt
 * context, where guest memory cannot be touched, so they are queued on a
 * lock-free list and the worker writes status bytes and used entries on
 * its next round.
 *
 * Lifetimes: a request belongs to the free stack (under vq->mutex), to the
 * backend (counted in q->inflight), or to the done list. The backend file
 * is only dropped once q->inflight is zero; the device is only freed once
 * every completion has left its RCU read side (see blk_iocb_complete()).
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/blkdev.h>
#include <linux/fs.h>
#include <linux/falloc.h>
#include <linux/file.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/nospec.h>
#include <linux/pagemap.h>
#include <linux/seq_file.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/virtio_blk.h>
#include <linux/wait.h>

#include "kvmx_vhost.h"
#include "kvmx_blk.h"

#define BLK_WEIGHT	128	/* chains per round before other queues run */
/*
 * Data, header and status, plus room for buffers that cross a boundary
 * between memory regions and so map to two segments.
 */
#define BLK_REQ_SEGS	(VHOST_BLK_SEG_MAX + 2 + 16)

#define BLK_FEATURES	(KVMX_CORE_FEATURES | \
			 BIT_ULL(VIRTIO_BLK_F_SEG_MAX) | \
			 BIT_ULL(VIRTIO_BLK_F_SIZE_MAX) | \
			 BIT_ULL(VIRTIO_BLK_F_BLK_SIZE) | \
			 BIT_ULL(VIRTIO_BLK_F_FLUSH) | \
			 BIT_ULL(VIRTIO_BLK_F_MQ) | \
			 BIT_ULL(VIRTIO_BLK_F_DISCARD) | \
			 BIT_ULL(VIRTIO_BLK_F_WRITE_ZEROES) | \
			 BIT_ULL(VIRTIO_BLK_F_RO))

struct blk_queue;

/*
 * A bio of the direct path with room for our own list link: bi_next
 * belongs to the block layer while the bio is in flight.
 */
struct blk_bio {
	struct blk_bio *next;
	struct bio bio;		/* last: the bio set's front pad ends here */
};

static struct bio_set blk_bio_set;

struct blk_req {
	struct blk_queue *q;
	struct kvmx_chain chain;
	struct kiocb iocb;
	struct llist_node done_node;
	long result;		/* bytes moved or -errno, from the backend */
	u32 expected;		/* bytes the backend had to move */
	bool write;		/* OUT, else IN */
	bool flush;		/* a FLUSH bio: no data, status only */
	u64 bio_pos;		/* byte offset of the direct bios */
	/* Direct bios: in flight plus one held by the submitter; first error. */
	atomic_t bios_pending;
	int bio_error;
	struct blk_bio *bios;	/* submitted, released by the worker */
	struct iovec iov[BLK_REQ_SEGS];
	u64 gpa[BLK_REQ_SEGS];
};

struct blk_queue {
	struct kvmx_vq vq;
	struct file *backend;			/* under vq.mutex */
	/* Set when the backend is a block device opened O_DIRECT. */
	struct block_device *bdev;
	struct kvmx_blk_backend_info info;	/* of the backend */
	u8 serial[VIRTIO_BLK_ID_BYTES];

	struct blk_req *reqs;
	u32 nreqs;
	u16 *free;				/* stack of free requests */
	u32 nfree;

	struct llist_head done;			/* completed, any context */
	atomic_t inflight;			/* submitted, not yet on done */
	wait_queue_head_t idle;

	bool signal;				/* used entries not yet signalled */
	/* Signal coalescing while the worker polls (see blk_busy_poll()). */
	struct kvmx_hold hold;
	/*
	 * The handler is running and reaps before it returns, so a completion
	 * need not queue it again (see blk_iocb_complete()).
	 */
	bool in_handler;
	/*
	 * A detach, reset or close waits for vq->mutex, which a polling
	 * handler holds: this ends its poll and any hold at once.
	 */
	bool quiescing;
	u64 requests;
	u64 ioerr;
	u64 unsupp;
	int last_error;
	/* Waits in the kicker for a lone request (see blk_kicker_wait()). */
	u64 kicker_waits;
	u64 kicker_timeouts;
};

struct blk_dev {
	struct kvmx_dev dev;
	struct blk_queue queues[VHOST_BLK_MAX_QUEUES];
	struct kvmx_vq *vqs[VHOST_BLK_MAX_QUEUES];
};

static void blk_put_req(struct blk_queue *q, struct blk_req *req)
{
	q->free[q->nfree++] = req - q->reqs;
}

/* Write the status byte, log what the guest sees changed, hand it back. */
static void blk_complete(struct blk_queue *q, struct blk_req *req, u8 status,
			 u32 used_len)
{
	struct kvmx_chain *chain = &req->chain;
	const struct iovec *last = &chain->iov[chain->nout + chain->nin - 1];
	u8 __user *status_ptr = last->iov_base + last->iov_len - 1;

	if (status == VIRTIO_BLK_S_IOERR)
		q->ioerr++;
	else if (status == VIRTIO_BLK_S_UNSUPP)
		q->unsupp++;

	if (put_user(status, status_ptr)) {
		kvmx_vq_fail(&q->vq, -EFAULT, KVMX_FAULT_ADDR);
	} else {
		kvmx_vq_log_write(&q->vq, chain, chain->in_len);
		if (!kvmx_vq_add_used(&q->vq, chain->head, used_len))
			q->signal = true;
	}
	blk_put_req(q, req);
}

/* One call per batch of used entries, however they completed. */
static void blk_signal(struct blk_queue *q)
{
	kvmx_hold_drop(&q->hold);
	if (q->signal) {
		q->signal = false;
		kvmx_vq_signal(&q->vq);
	}
}

/*
 * Runs in whatever context the backend completes in (often an interrupt),
 * so it only queues the request for the worker.
 */
static void blk_req_done(struct blk_req *req, long ret)
{
	struct blk_queue *q = req->q;

	req->result = ret;
	/* The release path waits for this read side before freeing q. */
	rcu_read_lock();
	/*
	 * llist_add() is a full barrier, paired with the one in
	 * blk_handler_exit(): either the handler's last reap sees this
	 * request, or we see in_handler clear and queue the handler. Backends
	 * that complete inside submission (buffered I/O, fast devices) so
	 * cost no extra handler round.
	 */
	llist_add(&req->done_node, &q->done);
	if (!READ_ONCE(q->in_handler))
		kvmx_vq_queue_work(&q->vq);
	if (atomic_dec_and_test(&q->inflight))
		wake_up_all(&q->idle);
	rcu_read_unlock();
}

static void blk_iocb_complete(struct kiocb *iocb, long ret)
{
	blk_req_done(container_of(iocb, struct blk_req, iocb), ret);
}

/*
 * Unpin the guest pages of a request's bios; read data landed in them, so
 * they are dirtied. Process context: dirtying a page may sleep.
 */
static void blk_req_release_bios(struct blk_req *req)
{
	struct address_space *mapping;
	struct blk_bio *b;

	if (!req->bios)
		return;
	while ((b = req->bios)) {
		req->bios = b->next;
		bio_release_pages(&b->bio, !req->write);
		bio_put(&b->bio);
	}
	/* As direct writes through the file do: drop what a reader cached meanwhile. */
	mapping = req->q->backend->f_mapping;
	if (req->write && mapping->nrpages)
		invalidate_inode_pages2_range(mapping, req->bio_pos >> PAGE_SHIFT,
					      (req->bio_pos + req->expected - 1) >> PAGE_SHIFT);
}

static void blk_reap(struct blk_queue *q)
{
	struct llist_node *node = llist_del_all(&q->done);
	struct blk_req *req, *next;

	node = llist_reverse_order(node);
	llist_for_each_entry_safe(req, next, node, done_node) {
		u8 status = VIRTIO_BLK_S_OK;
		u32 used_len = KVMX_BLK_STATUS_LEN;

		blk_req_release_bios(req);

		if (req->result != req->expected) {
			status = VIRTIO_BLK_S_IOERR;
			q->last_error = req->result < 0 ? req->result : -EIO;
			pr_warn_ratelimited("vq %u: backend %s of %u bytes returned %ld\n",
					    q->vq.index,
					    req->flush ? "flush" : req->write ? "write" : "read",
					    req->expected, req->result);
		} else if (!req->write && !req->flush) {
			/* A read: data plus the status byte were written. */
			used_len = req->chain.in_len;
		}
		blk_complete(q, req, status, used_len);
	}
}

static void blk_bio_put_pending(struct blk_req *req)
{
	if (atomic_dec_and_test(&req->bios_pending))
		blk_req_done(req, req->bio_error ? req->bio_error : req->expected);
}

/* Any context, often an interrupt: only account and hand over. */
static void blk_bio_end_io(struct bio *bio)
{
	struct blk_req *req = bio->bi_private;

	if (bio->bi_status)
		cmpxchg(&req->bio_error, 0, blk_status_to_errno(bio->bi_status));
	blk_bio_put_pending(req);
}

/*
 * The block device's own direct-I/O path, without the file layers: bios on
 * the guest's pages, pinned in the owner's mm the worker runs in. A guest
 * buffer the block device cannot take as it is (alignment) goes the kiocb
 * way, which fails it the way the device would.
 */
static bool blk_submit_bios(struct blk_queue *q, struct blk_req *req,
			    const struct kvmx_blk_op *op, struct iov_iter *iter,
			    bool write)
{
	struct block_device *bdev = q->bdev;
	blk_opf_t opf = write ? REQ_OP_WRITE | REQ_SYNC | REQ_IDLE : REQ_OP_READ;
	sector_t sector = op->offset >> SECTOR_SHIFT;
	struct address_space *mapping = q->backend->f_mapping;
	struct blk_bio **tail, *b, *next;
	unsigned int nbios;

	if ((op->offset | op->len) & (bdev_logical_block_size(bdev) - 1) ||
	    !bdev_iter_is_aligned(bdev, iter) || !op->len)
		return false;
	/*
	 * Stay coherent with buffered users of the same device, as the
	 * block device's own O_DIRECT path is: their dirty pages reach the
	 * disk first, and a write leaves no stale page behind.
	 */
	if (mapping->nrpages) {
		loff_t end = op->offset + op->len - 1;

		if (filemap_write_and_wait_range(mapping, op->offset, end) ||
		    (write && invalidate_inode_pages2_range(mapping, op->offset >> PAGE_SHIFT,
							     end >> PAGE_SHIFT)))
			return false;
	}

	req->expected = op->len;
	req->write = write;
	req->bio_pos = op->offset;
	req->bio_error = 0;
	atomic_inc(&q->inflight);
	/*
	 * Pin the whole request before anything is submitted, so a guest
	 * buffer that cannot be pinned fails the request without writing
	 * part of it.
	 */
	tail = &req->bios;
	nbios = 0;
	while (iov_iter_count(iter)) {
		struct blk_bio *b;
		struct bio *bio;
		int err;

		bio = bio_alloc_bioset(bdev, bio_iov_vecs_to_alloc(iter, BIO_MAX_VECS), opf,
				       GFP_KERNEL, &blk_bio_set);
		bio->bi_iter.bi_sector = sector;
		bio->bi_end_io = blk_bio_end_io;
		bio->bi_private = req;
		b = container_of(bio, struct blk_bio, bio);
		b->next = NULL;
		*tail = b;
		tail = &b->next;
		nbios++;
		err = bio_iov_iter_get_pages(bio, iter);
		/* A bio that took nothing would never finish the loop. */
		if (!err && !bio->bi_iter.bi_size)
			err = -EIO;
		if (unlikely(err)) {
			/* Guest memory the owner has no pages behind. */
			pr_warn_ratelimited("vq %u: cannot pin guest buffer: %d\n",
					    q->vq.index, err);
			blk_req_release_bios(req);
			blk_req_done(req, err);
			return true;
		}
		sector += bio->bi_iter.bi_size >> SECTOR_SHIFT;
	}
	/* One reference per bio, plus ours until the last one is out. */
	atomic_set(&req->bios_pending, nbios + 1);
	for (b = req->bios; b; b = next) {
		next = b->next;
		submit_bio(&b->bio);
	}
	blk_bio_put_pending(req);
	return true;
}

/*
 * FLUSH on the bio path, asynchronous like the data: an empty
 * REQ_PREFLUSH write, which the device completes once its volatile cache
 * is on stable storage (at once when it has none). It covers every write
 * the guest has seen complete, since those completed their bios first;
 * writes still in flight are not covered, as the virtio spec allows.
 * Guest data never sits in the page cache on this path, but a buffered
 * user of the same device may have left dirty pages, which vfs_fsync()
 * would have written back: so does this, as the block device's own fsync
 * does, along with the writeback errors fsync would report. Clean, that
 * is a check of nrpages and of the file's error sequence.
 *
 * Return: 0 with the request in flight, or -errno with nothing submitted.
 */
static int blk_submit_flush_bio(struct blk_queue *q, struct blk_req *req)
{
	struct blk_bio *b;
	struct bio *bio;
	int err;

	err = file_write_and_wait_range(q->backend, 0, LLONG_MAX);
	if (err)
		return err;

	req->expected = 0;
	req->write = false;
	req->flush = true;
	req->bio_error = 0;
	atomic_inc(&q->inflight);
	bio = bio_alloc_bioset(q->bdev, 0, REQ_OP_WRITE | REQ_PREFLUSH, GFP_KERNEL,
			       &blk_bio_set);
	bio->bi_end_io = blk_bio_end_io;
	bio->bi_private = req;
	b = container_of(bio, struct blk_bio, bio);
	b->next = NULL;
	req->bios = b;
	/* No submitter's reference: nothing here touches req after submission. */
	atomic_set(&req->bios_pending, 1);
	submit_bio(bio);
	return 0;
}

static void blk_submit_rw(struct blk_queue *q, struct blk_req *req,
			  const struct kvmx_blk_op *op, struct iov_iter *iter,
			  bool write)
{
	struct file *file = q->backend;
	struct kiocb *iocb = &req->iocb;
	ssize_t ret;

	iov_iter_truncate(iter, op->len);
	if (q->bdev && blk_submit_bios(q, req, op, iter, write))
		return;

	init_sync_kiocb(iocb, file);
	/* A disk is positional: an O_APPEND backend must not move writes. */
	iocb->ki_flags &= ~IOCB_APPEND;
	iocb->ki_pos = op->offset;
	iocb->ki_complete = blk_iocb_complete;
	req->expected = op->len;
	req->write = write;

	atomic_inc(&q->inflight);
	if (write) {
		file_start_write(file);
		ret = file->f_op->write_iter(iocb, iter);
		file_end_write(file);
	} else {
		ret = file->f_op->read_iter(iocb, iter);
	}
	/* Buffered I/O and errors return at once; direct I/O calls back. */
	if (ret != -EIOCBQUEUED)
		blk_iocb_complete(iocb, ret);
}

/*
 * For backends without FALLOC_FL_ZERO_RANGE (tmpfs, many file systems):
 * write the zeroes, which keeps the range allocated as WRITE_ZEROES
 * without UNMAP asks.
 */
static int blk_write_zeroes(struct file *file, u64 offset, u64 len)
{
	const size_t chunk = SZ_64K;
	struct kvec kvec;
	struct kiocb iocb;
	struct iov_iter iter;
	int err = 0;

	kvec.iov_base = kzalloc(chunk, GFP_KERNEL);
	if (!kvec.iov_base)
		return -ENOMEM;
	while (len) {
		ssize_t ret;

		kvec.iov_len = min_t(u64, len, chunk);
		iov_iter_kvec(&iter, ITER_SOURCE, &kvec, 1, kvec.iov_len);
		init_sync_kiocb(&iocb, file);
		iocb.ki_flags &= ~IOCB_APPEND;
		iocb.ki_pos = offset;
		file_start_write(file);
		ret = file->f_op->write_iter(&iocb, &iter);
		file_end_write(file);
		if (ret != kvec.iov_len) {
			err = ret < 0 ? ret : -EIO;
			break;
		}
		offset += ret;
		len -= ret;
		cond_resched();
	}
	kfree(kvec.iov_base);
	return err;
}

static u8 blk_discard_write_zeroes(struct blk_queue *q, const struct kvmx_blk_op *op,
				   struct iov_iter *iter)
{
	bool write_zeroes = op->type == VIRTIO_BLK_T_WRITE_ZEROES;
	unsigned int i, nsegs = op->len / sizeof(struct virtio_blk_discard_write_zeroes);

	for (i = 0; i < nsegs; i++) {
		struct virtio_blk_discard_write_zeroes raw;
		struct kvmx_blk_range seg;
		u64 offset, len;
		int mode, err;
		u8 status;

		if (copy_from_iter(&raw, sizeof(raw), iter) != sizeof(raw))
			return VIRTIO_BLK_S_IOERR;
		seg.sector = le64_to_cpu((__force __le64)raw.sector);
		seg.num_sectors = le32_to_cpu((__force __le32)raw.num_sectors);
		seg.flags = le32_to_cpu((__force __le32)raw.flags);
		status = kvmx_blk_check_range(&seg, write_zeroes, &q->info, &offset, &len);
		if (status != VIRTIO_BLK_S_OK)
			return status;

		/*
		 * Punching a hole reads back as zeroes on files and block
		 * devices alike, so it serves DISCARD and WRITE_ZEROES with
		 * UNMAP; without UNMAP the range stays allocated.
		 */
		if (!write_zeroes || (seg.flags & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP))
			mode = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
		else
			mode = FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE;
		err = vfs_fallocate(q->backend, mode, offset, len);
		if (err == -EOPNOTSUPP && write_zeroes)
			err = blk_write_zeroes(q->backend, offset, len);
		if (err == -EOPNOTSUPP)
			return VIRTIO_BLK_S_UNSUPP;
		if (err) {
			q->last_error = err;
			return VIRTIO_BLK_S_IOERR;
		}
	}
	return VIRTIO_BLK_S_OK;
}

/* Start one request; it completes now or, for data, when the backend calls. */
static void blk_submit(struct blk_queue *q, struct blk_req *req)
{
	struct kvmx_chain *chain = &req->chain;
	struct virtio_blk_outhdr raw;
	struct kvmx_blk_hdr hdr;
	struct kvmx_blk_op op;
	struct iov_iter out, in;
	u8 status;
	int err;

	q->requests++;
	if (chain->out_len < KVMX_BLK_HDR_LEN || !chain->in_len) {
		/* Nowhere to put a status: give the buffers back untouched. */
		pr_warn_ratelimited("vq %u: request without header or status byte\n",
				    q->vq.index);
		q->ioerr++;
		if (!kvmx_vq_add_used(&q->vq, chain->head, 0))
			q->signal = true;
		blk_put_req(q, req);
		return;
	}

	kvmx_chain_out_iter(chain, &out);
	kvmx_chain_in_iter(chain, &in);
	if (copy_from_iter(&raw, sizeof(raw), &out) != sizeof(raw)) {
		blk_complete(q, req, VIRTIO_BLK_S_IOERR, KVMX_BLK_STATUS_LEN);
		return;
	}
	hdr.type = le32_to_cpu((__force __le32)raw.type);
	hdr.ioprio = le32_to_cpu((__force __le32)raw.ioprio);
	hdr.sector = le64_to_cpu((__force __le64)raw.sector);
	/* The status byte is the last writable byte, never data. */
	iov_iter_truncate(&in, chain->in_len - KVMX_BLK_STATUS_LEN);

	status = kvmx_blk_classify(&hdr, chain->out_len, chain->in_len, &q->info, &op);
	if (status != VIRTIO_BLK_S_OK) {
		blk_complete(q, req, status, KVMX_BLK_STATUS_LEN);
		return;
	}

	switch (op.type) {
	case VIRTIO_BLK_T_IN:
		blk_submit_rw(q, req, &op, &in, false);
		return;
	case VIRTIO_BLK_T_OUT:
		blk_submit_rw(q, req, &op, &out, true);
		return;
	case VIRTIO_BLK_T_FLUSH:
		/* Durable means on stable storage before the guest hears back. */
		if (q->info.read_only) {
			err = 0;
		} else if (q->bdev) {
			err = blk_submit_flush_bio(q, req);
			if (!err)
				return;
		} else {
			err = vfs_fsync(q->backend, 0);
		}
		if (err)
			q->last_error = err;
		status = err ? VIRTIO_BLK_S_IOERR : VIRTIO_BLK_S_OK;
		break;
	case VIRTIO_BLK_T_GET_ID:
		if (copy_to_iter(q->serial, op.len, &in) != op.len)
			status = VIRTIO_BLK_S_IOERR;
		break;
	default:
		status = blk_discard_write_zeroes(q, &op, &out);
		break;
	}
	blk_complete(q, req, status, KVMX_BLK_STATUS_LEN +
		     (op.type == VIRTIO_BLK_T_GET_ID && status == VIRTIO_BLK_S_OK ? op.len : 0));
}

/* Take chains while there are free requests, budget and buffers. */
static unsigned int blk_submit_batch(struct blk_queue *q, unsigned int budget,
				     bool *ring_empty)
{
	struct kvmx_vq *vq = &q->vq;
	struct blk_plug plug;
	unsigned int taken = 0;

	*ring_empty = false;
	/* Let the block layer merge and dispatch the batch in one go. */
	blk_start_plug(&plug);
	while (taken < budget && q->nfree) {
		struct blk_req *req;
		int r;

		req = &q->reqs[q->free[--q->nfree]];
		req->q = q;
		req->chain.iov = req->iov;
		req->chain.gpa = req->gpa;
		req->chain.max_segs = BLK_REQ_SEGS;
		req->bios = NULL;
		req->flush = false;
		r = kvmx_vq_get_chain(vq, &req->chain);
		if (r <= 0) {
			blk_put_req(q, req);
			*ring_empty = !r;
			break;
		}
		blk_submit(q, req);
		taken++;
	}
	blk_finish_plug(&plug);
	return taken;
}

static unsigned int signal_hold_max_us = 128;
module_param_cb(signal_hold_max_us, &kvmx_wait_us_ops, &signal_hold_max_us, 0644);
MODULE_PARM_DESC(signal_hold_max_us,
		 "Cap on the adaptive hold (us, 0-1000000): how long a queue must stay quiet before the worker signals the completions it held, at most four holds in all (default 128; 0: signal at once)");

static u32 blk_hold_max_ns(void)
{
	return kvmx_hold_max_ns(&signal_hold_max_us);
}

/* Signal what is pending now, or start holding it while the guest may send more. */
static void blk_hold_or_signal(struct blk_queue *q, u64 now)
{
	if (q->signal && !kvmx_hold_begin(&q->hold, now, blk_hold_max_ns()))
		blk_signal(q);
}

/*
 * Before sleeping, watch the ring and the completions with kicks still off,
 * for as long as the core allows: the VMM's busyloop timeout, or the
 * adaptive window. At iodepth 1 this saves the two thread wakeups each
 * request otherwise costs (kick to worker, completion to worker); deeper,
 * it keeps the guest from exiting to kick, at the price of a spinning CPU.
 *
 * Deeper still, an interrupt per request the guest adds costs more than
 * the I/O (each is an exit under KVM): completions are signalled once the
 * guest's burst of submissions is over, the hold. The worker keeps
 * polling while one is held, so it never sleeps on a signal it owes;
 * anything that ends the round early signals on the way out.
 */
static bool blk_busy_poll(struct blk_queue *q)
{
	struct kvmx_vq *vq = &q->vq;
	u64 end = kvmx_vq_poll_deadline(vq);

	blk_hold_or_signal(q, local_clock());
	while (kvmx_hold_held(&q->hold) || kvmx_poll_on(end)) {
		u64 now = local_clock();

		if (!llist_empty(&q->done)) {
			blk_reap(q);
			kvmx_hold_activity(&q->hold, now);
			blk_hold_or_signal(q, now);
			end = kvmx_vq_poll_deadline(vq);
		}
		if (kvmx_hold_ran_out(&q->hold, now, blk_hold_max_ns()))
			blk_signal(q);
		/* An unreadable ring reads as work: get_chain reports it. */
		if (q->nfree && !kvmx_vq_avail_empty(vq)) {
			kvmx_hold_activity(&q->hold, now);
			return true;
		}
		if (READ_ONCE(q->quiescing))
			break;
		if (kvmx_hold_held(&q->hold)) {
			/* Other rings of a shared worker do not wait for a hold. */
			if (kvmx_vq_has_work(vq)) {
				blk_signal(q);
				break;
			}
			/* A hold outlasts a preemption, which is no quiet guest. */
			cond_resched();
		}
		cpu_relax();
	}
	return false;
}

static unsigned int kicker_wait_us = 200;
module_param_cb(kicker_wait_us, &kvmx_wait_us_ops, &kicker_wait_us, 0644);
MODULE_PARM_DESC(kicker_wait_us,
		 "When kvmx_core's kick_inline runs a queue in the vCPU that kicked it and one request is in flight: how long (us, 0-1000000) the vCPU may sleep for its completion before re-entering the guest (default 200; 0: never wait)");

/*
 * In the kicker with a lone request in flight (iodepth 1): the guest's next
 * step is to wait for it, so sleep here while the backend completes it.
 * The vCPU then re-enters with the completion and its interrupt pending,
 * where it would otherwise halt and be woken by the worker's signal. With
 * more in flight the guest has work of its own; the completions go
 * through the worker. Interruptible: a signal to the VMM ends the wait.
 */
static void blk_kicker_wait(struct blk_queue *q)
{
	u32 wait_us = READ_ONCE(kicker_wait_us);
	long r;

	if (!wait_us || atomic_read(&q->inflight) != 1)
		return;
	q->kicker_waits++;
	r = wait_event_interruptible_hrtimeout(q->idle, !atomic_read(&q->inflight),
					       ns_to_ktime((u64)wait_us * NSEC_PER_USEC));
	if (r)
		q->kicker_timeouts++;
}

static void blk_handler_exit(struct blk_queue *q)
{
	WRITE_ONCE(q->in_handler, false);
	/* Pairs with llist_add() in blk_iocb_complete(). */
	smp_mb();
	blk_reap(q);
	blk_signal(q);
}

static void blk_handle_kick(struct kvmx_vq *vq)
{
	struct blk_queue *q = container_of(vq, struct blk_queue, vq);
	unsigned int budget = vq->dev->weight, taken = 0, n;
	bool ring_empty;

	if (kvmx_vq_in_kicker(vq)) {
		/* A kick with requests in flight is a guest that keeps a queue. */
		if (atomic_read(&q->inflight))
			kvmx_vq_kicker_saw_deep(vq);
		if (kvmx_vq_kicker_hand_over(vq))
			return;
	}

	WRITE_ONCE(q->in_handler, true);
	blk_reap(q);
	kvmx_vq_disable_notify(vq);
	while (budget) {
		n = blk_submit_batch(q, budget, &ring_empty);
		budget -= n;
		taken += n;
		if (taken > 1 || atomic_read(&q->inflight) > 1)
			kvmx_vq_kicker_saw_deep(vq);
		/* Out of requests: their completions requeue us. */
		if (!ring_empty)
			break;
		blk_reap(q);
		if (kvmx_vq_in_kicker(vq))
			blk_kicker_wait(q);
		else if (blk_busy_poll(q))
			continue;
		if (!kvmx_vq_enable_notify(vq)) {
			if (!kvmx_vq_in_kicker(vq))
				kvmx_vq_poll_sleep(vq);
			break;
		}
		kvmx_vq_disable_notify(vq);
	}
	if (!budget)
		kvmx_vq_queue_work(vq);
	blk_handler_exit(q);
}

static int blk_queue_prepare(struct blk_queue *q, struct file *file)
{
	struct inode *inode = file->f_mapping->host;
	u32 i, n = q->vq.num;

	if (!n)
		return -EINVAL;
	if (q->nreqs != n) {
		kvfree(q->reqs);
		kvfree(q->free);
		q->nreqs = 0;
		q->reqs = kvcalloc(n, sizeof(*q->reqs), GFP_KERNEL_ACCOUNT);
		q->free = kvcalloc(n, sizeof(*q->free), GFP_KERNEL_ACCOUNT);
		if (!q->reqs || !q->free) {
			kvfree(q->reqs);
			kvfree(q->free);
			q->reqs = NULL;
			q->free = NULL;
			return -ENOMEM;
		}
		q->nreqs = n;
	}
	for (i = 0; i < n; i++)
		q->free[i] = n - 1 - i;
	q->nfree = n;

	q->info.sectors = i_size_read(inode) >> SECTOR_SHIFT;
	q->info.read_only = !(file->f_mode & FMODE_WRITE);
	/*
	 * Only O_DIRECT: bios bypass the page cache, which a buffered
	 * backend fd asks us to stay coherent with.
	 */
	q->bdev = S_ISBLK(inode->i_mode) && (file->f_flags & O_DIRECT) ? I_BDEV(inode) : NULL;
	return 0;
}

/*
 * Stop taking chains and wait for the backend to finish what it has. Called
 * without vq->mutex, which completions never need.
 */
static void blk_queue_quiesce(struct blk_queue *q)
{
	WRITE_ONCE(q->quiescing, true);
	mutex_lock(&q->vq.mutex);
	kvmx_vq_stop(&q->vq);
	WRITE_ONCE(q->quiescing, false);
	mutex_unlock(&q->vq.mutex);
	wait_event(q->idle, !atomic_read(&q->inflight));
}

/* Quiesce, tell the guest how its last requests ended, drop the backend. */
static struct file *blk_queue_detach(struct blk_queue *q)
{
	struct file *old;

	blk_queue_quiesce(q);
	mutex_lock(&q->vq.mutex);
	blk_reap(q);
	blk_signal(q);
	old = q->backend;
	q->backend = NULL;
	mutex_unlock(&q->vq.mutex);
	return old;
}

static int blk_check_backend(struct file *file)
{
	umode_t mode = file_inode(file)->i_mode;

	if (!S_ISREG(mode) && !S_ISBLK(mode))
		return -EINVAL;
	if (!(file->f_mode & FMODE_READ) || !file->f_op->read_iter)
		return -EBADF;
	if ((file->f_mode & FMODE_WRITE) && !file->f_op->write_iter)
		return -EINVAL;
	return 0;
}

static long blk_set_backend(struct blk_dev *b, struct vhost_vring_file __user *argp)
{
	struct file *file = NULL, *old;
	struct vhost_vring_file f;
	struct blk_queue *q;
	long r;

	if (copy_from_user(&f, argp, sizeof(f)))
		return -EFAULT;
	if (f.index >= VHOST_BLK_MAX_QUEUES)
		return -ENOBUFS;
	q = &b->queues[array_index_nospec(f.index, VHOST_BLK_MAX_QUEUES)];
	if (f.fd != VHOST_FILE_UNBIND) {
		file = fget(f.fd);
		if (!file)
			return -EBADF;
		r = blk_check_backend(file);
		if (r)
			goto put_file;
	}

	mutex_lock(&b->dev.mutex);
	r = kvmx_dev_check_owner(&b->dev);
	if (r)
		goto unlock;

	old = blk_queue_detach(q);
	if (file) {
		mutex_lock(&q->vq.mutex);
		r = blk_queue_prepare(q, file);
		if (!r) {
			q->backend = file;
			r = kvmx_vq_start(&q->vq, q);
			if (r)
				q->backend = NULL;
		}
		mutex_unlock(&q->vq.mutex);
		if (!r)
			file = NULL;	/* the queue owns it now */
	}
	mutex_unlock(&b->dev.mutex);
	if (old)
		fput(old);
	goto put_file;

unlock:
	mutex_unlock(&b->dev.mutex);
put_file:
	if (file)
		fput(file);
	return r;
}

static long blk_set_serial(struct blk_dev *b, struct vhost_blk_serial __user *argp)
{
	struct vhost_blk_serial serial;
	unsigned int i;

	if (copy_from_user(&serial, argp, sizeof(serial)))
		return -EFAULT;
	for (i = 0; i < VHOST_BLK_MAX_QUEUES; i++) {
		mutex_lock(&b->queues[i].vq.mutex);
		memcpy(b->queues[i].serial, serial.id, sizeof(serial.id));
		mutex_unlock(&b->queues[i].vq.mutex);
	}
	return 0;
}

static long blk_get_stats(struct blk_dev *b, struct vhost_blk_stats __user *argp)
{
	struct vhost_blk_stats stats;
	struct blk_queue *q;

	if (copy_from_user(&stats, argp, sizeof(stats)))
		return -EFAULT;
	if (stats.index >= VHOST_BLK_MAX_QUEUES)
		return -ENOBUFS;
	q = &b->queues[array_index_nospec(stats.index, VHOST_BLK_MAX_QUEUES)];

	mutex_lock(&q->vq.mutex);
	stats.broken = q->vq.broken;
	stats.requests = q->requests;
	stats.ioerr = q->ioerr;
	stats.unsupp = q->unsupp;
	stats.inflight = atomic_read(&q->inflight);
	stats.last_error = q->last_error;
	stats.flags = 0;
	if (q->bdev)
		stats.flags |= VHOST_BLK_STATS_F_BIO;
	if (q->bdev && !q->info.read_only)
		stats.flags |= VHOST_BLK_STATS_F_FLUSH_BIO;
	mutex_unlock(&q->vq.mutex);
	return copy_to_user(argp, &stats, sizeof(stats)) ? -EFAULT : 0;
}

static long blk_reset_owner(struct blk_dev *b, void __user *argp)
{
	struct file *old;
	unsigned int i;
	long r;

	mutex_lock(&b->dev.mutex);
	r = kvmx_dev_check_owner(&b->dev);
	if (!r) {
		for (i = 0; i < VHOST_BLK_MAX_QUEUES; i++) {
			old = blk_queue_detach(&b->queues[i]);
			if (old)
				fput(old);
		}
	}
	mutex_unlock(&b->dev.mutex);
	return r ? r : kvmx_dev_ioctl(&b->dev, VHOST_RESET_OWNER, argp);
}

static long blk_ioctl(struct file *file, unsigned int ioctl, unsigned long arg)
{
	struct blk_dev *b = file->private_data;
	void __user *argp = (void __user *)arg;
	long r;

	switch (ioctl) {
	case VHOST_BLK_SET_BACKEND:
		return blk_set_backend(b, argp);
	case VHOST_RESET_OWNER:
		return blk_reset_owner(b, argp);
	case VHOST_BLK_SET_SERIAL:
	case VHOST_BLK_GET_STATS:
		mutex_lock(&b->dev.mutex);
		r = kvmx_dev_check_owner(&b->dev);
		mutex_unlock(&b->dev.mutex);
		if (r)
			return r;
		if (ioctl == VHOST_BLK_SET_SERIAL)
			return blk_set_serial(b, argp);
		return blk_get_stats(b, argp);
	default:
		return kvmx_dev_ioctl(&b->dev, ioctl, argp);
	}
}

static const kvmx_handle_kick_t blk_handlers[VHOST_BLK_MAX_QUEUES] = {
	[0 ... VHOST_BLK_MAX_QUEUES - 1] = blk_handle_kick,
};

static int blk_open(struct inode *inode, struct file *file)
{
	struct blk_dev *b;
	unsigned int i;

	b = kvzalloc(sizeof(*b), GFP_KERNEL_ACCOUNT);
	if (!b)
		return -ENOMEM;
	for (i = 0; i < VHOST_BLK_MAX_QUEUES; i++) {
		struct blk_queue *q = &b->queues[i];

		init_llist_head(&q->done);
		init_waitqueue_head(&q->idle);
		b->vqs[i] = &q->vq;
	}
	kvmx_dev_init(&b->dev, "vhost-blk", b->vqs, VHOST_BLK_MAX_QUEUES,
		      blk_handlers, BLK_FEATURES, BLK_WEIGHT);
	kvmx_dev_allow_kick_inline(&b->dev, file, GENMASK_ULL(VHOST_BLK_MAX_QUEUES - 1, 0));
	file->private_data = b;
	return 0;
}

static int blk_release(struct inode *inode, struct file *file)
{
	struct blk_dev *b = file->private_data;
	unsigned int i;

	for (i = 0; i < VHOST_BLK_MAX_QUEUES; i++)
		blk_queue_quiesce(&b->queues[i]);
	/* Completions may still be inside blk_iocb_complete(); let them leave. */
	synchronize_rcu();
	kvmx_dev_stop(&b->dev);

	/* The owner may be gone: finished requests are dropped, not written. */
	for (i = 0; i < VHOST_BLK_MAX_QUEUES; i++) {
		struct blk_queue *q = &b->queues[i];

		struct llist_node *node = llist_del_all(&q->done);
		struct blk_req *req, *next;

		llist_for_each_entry_safe(req, next, node, done_node)
			blk_req_release_bios(req);
		if (q->backend)
			fput(q->backend);
		kvfree(q->reqs);
		kvfree(q->free);
	}
	kvmx_dev_cleanup(&b->dev);
	kvfree(b);
	return 0;
}

/*
 * Per queue with a backend: what the worker's adaptive windows learnt.
 * Read without the queue's mutex: a value a round stale is fine here.
 */
static void blk_show_fdinfo(struct seq_file *m, struct file *file)
{
	struct blk_dev *b = file->private_data;
	char prefix[8];
	unsigned int i;

	for (i = 0; i < VHOST_BLK_MAX_QUEUES; i++) {
		const struct blk_queue *q = &b->queues[i];

		if (!READ_ONCE(q->backend))
			continue;
		seq_printf(m, "q%u_requests:\t%llu\n", i, READ_ONCE(q->requests));
		seq_printf(m, "q%u_poll_ns:\t%u\n", i, READ_ONCE(q->vq.poll_ns));
		seq_printf(m, "q%u_hold_ns:\t%u\n", i, READ_ONCE(q->hold.hold_ns));
		snprintf(prefix, sizeof(prefix), "q%u_", i);
		kvmx_vq_show_kicker(m, prefix, &q->vq);
		seq_printf(m, "q%u_kicker_waits:\t%llu\n", i, READ_ONCE(q->kicker_waits));
		seq_printf(m, "q%u_kicker_timeouts:\t%llu\n", i, READ_ONCE(q->kicker_timeouts));
	}
}

static const struct file_operations blk_fops = {
	.owner = THIS_MODULE,
	.open = blk_open,
	.release = blk_release,
	.show_fdinfo = blk_show_fdinfo,
	.unlocked_ioctl = blk_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.llseek = noop_llseek,
};

static struct miscdevice blk_misc = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "vhost-blk",
	.fops = &blk_fops,
	.mode = 0600,
};

static int __init blk_init(void)
{
	int err;

	err = bioset_init(&blk_bio_set, BIO_POOL_SIZE, offsetof(struct blk_bio, bio),
			  BIOSET_NEED_BVECS);
	if (err)
		return err;
	err = misc_register(&blk_misc);
	if (err)
		bioset_exit(&blk_bio_set);
	return err;
}
module_init(blk_init);

static void __exit blk_exit(void)
{
	misc_deregister(&blk_misc);
	bioset_exit(&blk_bio_set);
}
module_exit(blk_exit);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("kvmx developers");
MODULE_DESCRIPTION("kvmx vhost-blk: in-kernel virtio-blk backend on a file or block device (/dev/vhost-blk)");
