// SPDX-License-Identifier: GPL-2.0
/*
 * virtio-blk (virtio 1.2, section 5.2) with one or more request queues
 * (queues=N: VIRTIO_BLK_F_MQ) and two backends:
 *
 * - userspace ("user"): an I/O thread per queue owns that virtqueue. It
 *   waits on its own io_uring for the queue's kick eventfd and for I/O
 *   completions, turns each chain into a readv/writev/fsync on the backing
 *   file, and on completion writes the status byte, adds the used entry
 *   and, if the driver wants one, signals the device's irqfd. The queues
 *   share nothing but the backing fd, so they scale as the guest's CPUs
 *   submit in parallel.
 * - vhost ("vhost"): /dev/vhost-blk serves the virtqueues in the kernel,
 *   each queue on its own worker; vmlaunch only sets them up at DRIVER_OK
 *   and detaches them at reset.
 *
 * Both offer the same features and config space, so a guest cannot tell
 * them apart: VERSION_1, INDIRECT_DESC, EVENT_IDX, SEG_MAX, BLK_SIZE,
 * FLUSH, MQ when queues= is over 1 and, for ,ro disks, RO. Read-only is
 * enforced by the backend too: OUT requests fail with IOERR (the file is
 * open read-only).
 *
 * A driver may use fewer queues than offered (Linux uses at most one per
 * possible CPU, plus poll queues): the queues it did not make ready are
 * not served, and queue 0 must be ready.
 *
 * Lifetimes (userspace backend), per queue: a request slot is free (on
 * `free`), owned by the kernel (counted in `inflight`), or being handled by
 * the I/O thread under `lock`. Reset clears `active` under the lock and
 * waits for `inflight` to drop to zero, after which nothing touches guest
 * memory until the next activation. The I/O threads live from blk_create()
 * to blk_destroy().
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <liburing.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <linux/fs.h>
#include <linux/virtio_blk.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ids.h>
#include <linux/vhost_blk.h>
#include <linux/kvmx_vhost.h>

#include "dev-blk.h"
#include "vhost.h"

#define SECTOR_SHIFT		9
#define SECTOR_SIZE		(1U << SECTOR_SHIFT)
#define BLK_SEG_MAX		(VIRTQ_MAX_SIZE - 2)	/* header and status take two */
#define BLK_RING_ENTRIES	(2 * VIRTQ_MAX_SIZE)

#define TAG_KICK		1ULL
#define TAG_STOP		2ULL

#define BLK_FEATURES		((1ULL << VIRTIO_F_VERSION_1) |			\
				 (1ULL << VIRTIO_RING_F_INDIRECT_DESC) |	\
				 (1ULL << VIRTIO_RING_F_EVENT_IDX) |		\
				 (1ULL << VIRTIO_BLK_F_SEG_MAX) |		\
				 (1ULL << VIRTIO_BLK_F_BLK_SIZE) |		\
				 (1ULL << VIRTIO_BLK_F_FLUSH))

struct blk_req {
	struct virtq_chain chain;
	u8 *status;			/* the chain's last writable byte */
	u32 used_len;			/* on success */
	u64 expected;			/* bytes the backend must move */
	unsigned int ndata;
	struct iovec data[VIRTQ_MAX_SIZE];
};

_Static_assert(DISK_MAX_QUEUES <= VIRTIO_MAX_QUEUES, "a disk's queues fit the transport");

struct blk_dev;

/* One virtqueue of the userspace backend and the thread that serves it. */
struct blk_queue {
	struct blk_dev *b;
	unsigned int index;
	char name[16];			/* its thread's: "vda", or "vda.1" with queues= */
	struct io_uring ring;
	bool ring_ready;
	pthread_t thread;
	bool thread_started;
	pthread_mutex_t lock;
	pthread_cond_t idle;
	/* under lock: */
	bool active;
	bool broken;
	bool dead;			/* the I/O thread has quit on an error */
	bool pushed;			/* used entries added since the last notify check */
	unsigned int inflight;
	u64 requests;			/* chains taken, for --verbose */
	struct virtq vr;
	struct blk_req *reqs;
	u16 free[VIRTQ_MAX_SIZE];
	unsigned int nfree;
	bool head_busy[VIRTQ_MAX_SIZE];
};

struct blk_dev {
	struct virtio_dev vdev;
	char name[8];
	const struct disk_config *cfg;
	int fd;
	u64 size;			/* bytes; capacity is size / 512 */
	struct virtio_blk_config config;

	/* userspace backend */
	int stop_fd;			/* never drained: every I/O thread sees it */
	struct blk_queue q[VIRTIO_MAX_QUEUES];

	/* vhost backend */
	struct vhost vhost;
	int err_fd;			/* signalled when the kernel finds a ring broken */
	bool vring_set[VIRTIO_MAX_QUEUES];	/* backend attached at the last activation */
};

static struct blk_dev *to_blk(struct virtio_dev *vdev)
{
	return (struct blk_dev *)vdev;
}

static void blk_read_config(struct virtio_dev *vdev, u32 off, void *data, u32 len)
{
	memcpy(data, (u8 *)&to_blk(vdev)->config + off, len);
}

/* ---- userspace backend ----------------------------------------------------- */

static void blk_put_req(struct blk_queue *q, struct blk_req *req)
{
	q->head_busy[req->chain.head] = false;
	q->free[q->nfree++] = req - q->reqs;
}

/* Hand a request back to the driver; nothing is written after a reset. */
static void blk_finish(struct blk_queue *q, struct blk_req *req, u8 status, u32 used_len)
{
	if (q->active && !q->broken) {
		__atomic_store_n(req->status, status, __ATOMIC_RELAXED);
		virtq_push(&q->vr, req->chain.head, used_len);
		q->pushed = true;
	}
	blk_put_req(q, req);
}

static void blk_broken(struct blk_queue *q)
{
	q->broken = true;
	virtio_needs_reset(&q->b->vdev);
}

static bool blk_range_ok(const struct blk_dev *b, u64 sector, u64 len)
{
	u64 sectors = b->size >> SECTOR_SHIFT;

	return !(len & (SECTOR_SIZE - 1)) && sector <= sectors &&
	       (len >> SECTOR_SHIFT) <= sectors - sector;
}

static struct io_uring_sqe *blk_get_sqe(struct blk_queue *q)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&q->ring);

	if (!sqe) {
		io_uring_submit(&q->ring);
		sqe = io_uring_get_sqe(&q->ring);
	}
	return sqe;
}

/* Copy [skip, skip + len) of the chain's iovecs @iov[0..n) into req->data. */
static void blk_set_data(struct blk_req *req, const struct iovec *iov, unsigned int n,
			 u64 skip, u64 len)
{
	unsigned int i;

	req->ndata = 0;
	for (i = 0; i < n && len; i++) {
		u64 seg = iov[i].iov_len, chunk;

		if (skip >= seg) {
			skip -= seg;
			continue;
		}
		chunk = seg - skip < len ? seg - skip : len;
		req->data[req->ndata++] = (struct iovec){ (u8 *)iov[i].iov_base + skip, chunk };
		len -= chunk;
		skip = 0;
	}
}

static void blk_handle(struct blk_queue *q, struct blk_req *req)
{
	struct blk_dev *b = q->b;
	struct virtq_chain *c = &req->chain;
	const struct iovec *in = &c->iov[c->nout];
	struct virtio_blk_outhdr hdr;
	struct io_uring_sqe *sqe;
	u64 len;

	if (c->out_len < sizeof(hdr) || !c->in_len) {
		pr_guest_once("%s: request without header or status byte", b->name);
		/* Nowhere to put a status: return the chain untouched. */
		if (q->active && !q->broken) {
			virtq_push(&q->vr, c->head, 0);
			q->pushed = true;
		}
		blk_put_req(q, req);
		return;
	}
	iov_copy_from(c->iov, c->nout, 0, &hdr, sizeof(hdr));
	hdr.type = le32toh(hdr.type);
	hdr.sector = le64toh(hdr.sector);
	req->status = (u8 *)in[c->nin - 1].iov_base + in[c->nin - 1].iov_len - 1;

	switch (hdr.type) {
	case VIRTIO_BLK_T_IN:
		len = c->in_len - 1;
		if (!blk_range_ok(b, hdr.sector, len))
			goto ioerr;
		blk_set_data(req, in, c->nin, 0, len);
		req->used_len = len + 1;
		break;
	case VIRTIO_BLK_T_OUT:
		len = c->out_len - sizeof(hdr);
		if (b->cfg->ro || !blk_range_ok(b, hdr.sector, len))
			goto ioerr;
		blk_set_data(req, c->iov, c->nout, sizeof(hdr), len);
		req->used_len = 1;
		break;
	case VIRTIO_BLK_T_FLUSH:
		len = 0;
		req->used_len = 1;
		break;
	case VIRTIO_BLK_T_GET_ID: {
		u8 id[VIRTIO_BLK_ID_BYTES] = { 0 };
		size_t n = c->in_len - 1 < sizeof(id) ? c->in_len - 1 : sizeof(id);

		memcpy(id, b->cfg->serial, strnlen(b->cfg->serial, sizeof(id)));
		iov_copy_to(in, c->nin, 0, id, n);
		blk_finish(q, req, VIRTIO_BLK_S_OK, n + 1);
		return;
	}
	default:
		blk_finish(q, req, VIRTIO_BLK_S_UNSUPP, 1);
		return;
	}

	if ((hdr.type == VIRTIO_BLK_T_IN || hdr.type == VIRTIO_BLK_T_OUT) && !len) {
		blk_finish(q, req, VIRTIO_BLK_S_OK, req->used_len);
		return;
	}
	sqe = blk_get_sqe(q);
	if (!sqe)
		goto ioerr;
	req->expected = len;
	if (hdr.type == VIRTIO_BLK_T_IN)
		io_uring_prep_readv(sqe, b->fd, req->data, req->ndata, hdr.sector << SECTOR_SHIFT);
	else if (hdr.type == VIRTIO_BLK_T_OUT)
		io_uring_prep_writev(sqe, b->fd, req->data, req->ndata, hdr.sector << SECTOR_SHIFT);
	else
		io_uring_prep_fsync(sqe, b->fd, IORING_FSYNC_DATASYNC);
	io_uring_sqe_set_data(sqe, req);
	q->inflight++;
	return;
ioerr:
	blk_finish(q, req, VIRTIO_BLK_S_IOERR, 1);
}

static void blk_io_done(struct blk_queue *q, struct blk_req *req, int res)
{
	q->inflight--;
	if (res < 0 || (u64)res != req->expected) {
		if (res < 0)
			pr_guest_once("%s: backend I/O failed: %s", q->b->name, strerror(-res));
		blk_finish(q, req, VIRTIO_BLK_S_IOERR, 1);
	} else {
		blk_finish(q, req, VIRTIO_BLK_S_OK, req->used_len);
	}
}

/*
 * Take every available chain; called with the lock held. Kicks are back on
 * when it returns, unless @keep_kicks_off: the caller then polls the ring
 * (blk_poll()) and turns them on when it stops.
 */
static void blk_process(struct blk_queue *q, bool keep_kicks_off)
{
	if (!q->active || q->broken)
		return;
	do {
		virtq_disable_kicks(&q->vr);
		for (;;) {
			struct blk_req *req;
			int r;

			/* All slots busy: completions call us again. */
			if (!q->nfree)
				return;
			req = &q->reqs[q->free[q->nfree - 1]];
			r = virtq_pop(&q->vr, &req->chain);
			if (!r)
				break;
			if (r < 0 || q->head_busy[req->chain.head]) {
				if (r > 0)
					pr_guest_once("%s: descriptor head reused while in flight",
						      q->name);
				blk_broken(q);
				return;
			}
			q->nfree--;
			q->head_busy[req->chain.head] = true;
			q->requests++;
			blk_handle(q, req);
		}
	} while (!keep_kicks_off && virtq_enable_kicks(&q->vr));
}

/*
 * poll=USEC: spin, kicks off, until the driver adds a request, an I/O
 * completes or USEC pass, as QEMU's iothread polls: a request that comes
 * meanwhile costs the guest no kick (a VM exit) and the thread no wakeup.
 * True if there is work; false after turning kicks back on with nothing
 * new (or if the queue stopped), when the thread may sleep.
 */
static bool blk_poll(struct blk_queue *q, unsigned int usec)
{
	double end = vmlaunch_elapsed() + usec / 1e6;
	bool work = false;

	do {
		if (IO_URING_READ_ONCE(*q->ring.sq.kflags) & IORING_SQ_TASKRUN)
			io_uring_get_events(&q->ring);
		if (io_uring_cq_ready(&q->ring))
			return true;
		pthread_mutex_lock(&q->lock);
		if (!q->active || q->broken) {
			pthread_mutex_unlock(&q->lock);
			return false;
		}
		work = virtq_has_avail(&q->vr);
		pthread_mutex_unlock(&q->lock);
		if (work)
			return true;
		__builtin_ia32_pause();
	} while (vmlaunch_elapsed() < end);
	pthread_mutex_lock(&q->lock);
	if (q->active && !q->broken)
		work = virtq_enable_kicks(&q->vr);
	pthread_mutex_unlock(&q->lock);
	return work;
}

static int blk_arm_poll(struct blk_queue *q, int fd, u64 tag)
{
	struct io_uring_sqe *sqe = blk_get_sqe(q);

	if (!sqe)
		return -EBUSY;
	io_uring_prep_poll_add(sqe, fd, POLLIN);
	io_uring_sqe_set_data64(sqe, tag);
	return 0;
}

static void *blk_io_thread(void *arg)
{
	struct blk_queue *q = arg;
	struct blk_dev *b = q->b;
	int kick_fd = b->vdev.vq[q->index].kick_fd;
	unsigned int poll_us = b->cfg->poll_us;
	bool stop = false, work = false;

	blk_arm_poll(q, kick_fd, TAG_KICK);
	blk_arm_poll(q, b->stop_fd, TAG_STOP);
	io_uring_submit(&q->ring);

	while (!stop) {
		struct io_uring_cqe *cqe;
		bool kicked = false, polling;
		unsigned int head, n = 0;
		int r;

		/* After a poll that found work, take it without sleeping. */
		r = work ? 0 : io_uring_wait_cqe(&q->ring, &cqe);
		work = false;
		if (r == -EINTR)
			continue;
		if (r < 0) {
			pr_err("%s: io_uring: %s", q->name, strerror(-r));
			vm_request_stop(b->vdev.vm, VMLAUNCH_EXIT_ERROR);
			/* Nobody completes what is in flight now: let a reset go on. */
			pthread_mutex_lock(&q->lock);
			q->dead = true;
			pthread_cond_broadcast(&q->idle);
			pthread_mutex_unlock(&q->lock);
			break;
		}

		pthread_mutex_lock(&q->lock);
		io_uring_for_each_cqe(&q->ring, head, cqe) {
			u64 tag = io_uring_cqe_get_data64(cqe);

			n++;
			if (tag == TAG_KICK)
				kicked = true;
			else if (tag == TAG_STOP)
				stop = true;
			else
				blk_io_done(q, (struct blk_req *)(uintptr_t)tag, cqe->res);
		}
		io_uring_cq_advance(&q->ring, n);
		if (kicked) {
			eventfd_drain(kick_fd);
			blk_arm_poll(q, kick_fd, TAG_KICK);
		}
		polling = poll_us && q->active && !q->broken;
		blk_process(q, polling);
		if (q->pushed && q->active && !q->broken && virtq_should_notify(&q->vr))
			virtio_notify_used(&b->vdev, q->index);
		q->pushed = false;
		if (!q->inflight)
			pthread_cond_broadcast(&q->idle);
		pthread_mutex_unlock(&q->lock);
		io_uring_submit(&q->ring);
		if (polling && !stop)
			work = blk_poll(q, poll_us);
	}
	return NULL;
}

/* Queue 0 must be ready; the others are served if the driver made them so. */
static bool blk_queues_ready(struct blk_dev *b)
{
	if (b->vdev.vq[0].ready)
		return true;
	pr_guest_once("%s: DRIVER_OK without queue 0 ready", b->name);
	return false;
}

static void blk_user_stop(struct blk_queue *q)
{
	pthread_mutex_lock(&q->lock);
	q->active = false;
	while (q->inflight && !q->dead)
		pthread_cond_wait(&q->idle, &q->lock);
	pthread_mutex_unlock(&q->lock);
}

static void blk_user_reset(struct virtio_dev *vdev)
{
	struct blk_dev *b = to_blk(vdev);
	unsigned int i;

	for (i = 0; i < vdev->nqueues; i++)
		blk_user_stop(&b->q[i]);
}

static int blk_user_activate(struct virtio_dev *vdev)
{
	struct blk_dev *b = to_blk(vdev);
	unsigned int i;
	int r = 0;

	if (!blk_queues_ready(b))
		return -EINVAL;
	for (i = 0; i < vdev->nqueues && !r; i++) {
		struct blk_queue *q = &b->q[i];

		if (!vdev->vq[i].ready)
			continue;
		pthread_mutex_lock(&q->lock);
		r = virtq_init(&q->vr, vdev->vm, &vdev->vq[i], vdev->acked);
		if (!r) {
			q->active = true;
			q->broken = false;
			q->pushed = false;
		} else {
			pr_guest_once("%s: queue %u is misaligned or outside guest memory",
				      b->name, i);
		}
		pthread_mutex_unlock(&q->lock);
	}
	if (r) {
		blk_user_reset(vdev);
		return r;
	}
	/* Requests queued before DRIVER_OK had their kick already. */
	for (i = 0; i < vdev->nqueues; i++)
		if (vdev->vq[i].ready)
			eventfd_signal(vdev->vq[i].kick_fd);
	return 0;
}

static const struct virtio_dev_ops blk_user_ops = {
	.read_config = blk_read_config,
	.activate = blk_user_activate,
	.reset = blk_user_reset,
};

static int blk_queue_init(struct blk_dev *b, unsigned int index)
{
	struct blk_queue *q = &b->q[index];
	unsigned int i;
	int r;

	q->reqs = calloc(VIRTQ_MAX_SIZE, sizeof(*q->reqs));
	if (!q->reqs)
		return -ENOMEM;
	for (i = 0; i < VIRTQ_MAX_SIZE; i++)
		q->free[i] = VIRTQ_MAX_SIZE - 1 - i;
	q->nfree = VIRTQ_MAX_SIZE;
	/*
	 * A polling thread stays in userspace, where the kernel's default
	 * way of posting completions (task work, run on the way back to
	 * userspace after an IPI) lags: with TASKRUN_FLAG the kernel instead
	 * raises IORING_SQ_TASKRUN and blk_poll() enters to collect them.
	 */
	r = -EINVAL;
	if (b->cfg->poll_us)
		r = io_uring_queue_init(BLK_RING_ENTRIES, &q->ring,
					IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG);
	if (r == -EINVAL)
		r = io_uring_queue_init(BLK_RING_ENTRIES, &q->ring, 0);
	if (r) {
		pr_err("%s: io_uring_queue_init: %s", q->name, strerror(-r));
		return r;
	}
	q->ring_ready = true;
	r = pthread_create(&q->thread, NULL, blk_io_thread, q);
	if (r)
		return -r;
	q->thread_started = true;
	pthread_setname_np(q->thread, q->name);
	return 0;
}

static int blk_user_init(struct blk_dev *b)
{
	unsigned int i;
	int r;

	b->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (b->stop_fd < 0)
		return -errno;
	for (i = 0; i < b->vdev.nqueues; i++) {
		r = blk_queue_init(b, i);
		if (r)
			return r;
	}
	return 0;
}

/* ---- vhost backend ---------------------------------------------------------------- */

static void blk_vhost_reset(struct virtio_dev *vdev)
{
	struct blk_dev *b = to_blk(vdev);
	unsigned int i;

	/* Detaching waits for requests in flight and stops the ring. */
	for (i = 0; i < vdev->nqueues; i++) {
		struct vhost_vring_file backend = { .index = i, .fd = -1 };

		if (!b->vring_set[i])
			continue;
		if (ioctl(b->vhost.fd, VHOST_BLK_SET_BACKEND, &backend) < 0)
			pr_err("%s: VHOST_BLK_SET_BACKEND %u -1: %s", b->name, i,
			       strerror(errno));
		b->vring_set[i] = false;
	}
}

static int blk_vhost_start_queue(struct blk_dev *b, unsigned int index)
{
	struct virtio_dev *vdev = &b->vdev;
	struct vhost_vring_file backend = { .index = index, .fd = b->fd };
	int r;

	r = vhost_setup_vring(&b->vhost, vdev->vm, index, &vdev->vq[index], vdev->acked,
			      vdev->vq[index].call_fd, b->err_fd);
	if (r)
		return r;
	if (b->cfg->poll_us) {
		struct vhost_vring_state poll = { .index = index, .num = b->cfg->poll_us };

		if (ioctl(b->vhost.fd, VHOST_SET_VRING_BUSYLOOP_TIMEOUT, &poll) < 0) {
			r = -errno;
			pr_err("%s: VHOST_SET_VRING_BUSYLOOP_TIMEOUT %u us: %s", b->name,
			       b->cfg->poll_us, strerror(-r));
			return r;
		}
	}
	if (ioctl(b->vhost.fd, VHOST_BLK_SET_BACKEND, &backend) < 0) {
		r = -errno;
		pr_err("%s: VHOST_BLK_SET_BACKEND %u: %s", b->name, index, strerror(-r));
		return r;
	}
	b->vring_set[index] = true;
	/* Kicks that came before the ring was attached. */
	eventfd_signal(vdev->vq[index].kick_fd);
	return 0;
}

static int blk_vhost_activate(struct virtio_dev *vdev)
{
	struct blk_dev *b = to_blk(vdev);
	unsigned int i;
	int r;

	if (!blk_queues_ready(b))
		return -EINVAL;
	r = vhost_set_features(&b->vhost, vdev->acked);
	for (i = 0; i < vdev->nqueues && !r; i++)
		if (vdev->vq[i].ready)
			r = blk_vhost_start_queue(b, i);
	if (r)
		blk_vhost_reset(vdev);
	return r;
}

/* Main thread: the kernel stopped the ring because the guest broke a rule. */
static void blk_vhost_ring_error(void *opaque)
{
	struct blk_dev *b = opaque;
	unsigned int i;

	eventfd_drain(b->err_fd);
	for (i = 0; i < b->vdev.nqueues; i++) {
		struct vhost_blk_stats stats = { .index = i };

		if (ioctl(b->vhost.fd, VHOST_BLK_GET_STATS, &stats) == 0 && stats.broken)
			pr_debug("%s: vhost ring %u broken, last error %d", b->name, i,
				 stats.last_error);
	}
	virtio_needs_reset(&b->vdev);
}

static const struct virtio_dev_ops blk_vhost_ops = {
	.read_config = blk_read_config,
	.activate = blk_vhost_activate,
	.reset = blk_vhost_reset,
};

static int blk_vhost_init(struct blk_dev *b)
{
	struct vhost_blk_serial serial = { 0 };
	const u64 needed = 1ULL << VIRTIO_F_VERSION_1;
	unsigned int i;
	int r;

	r = vhost_open(&b->vhost, "/dev/vhost-blk", b->vdev.vm);
	if (r)
		return r;
	/* The queues run in parallel, as the userspace backend's threads do. */
	for (i = 1; i < b->vdev.nqueues; i++) {
		struct vhost_worker_state worker = { 0 };
		struct vhost_vring_worker attach = { .index = i };

		if (ioctl(b->vhost.fd, VHOST_NEW_WORKER, &worker) < 0) {
			r = -errno;
			pr_err("%s: VHOST_NEW_WORKER for queue %u: %s", b->name, i, strerror(-r));
			return r;
		}
		attach.worker_id = worker.worker_id;
		if (ioctl(b->vhost.fd, VHOST_ATTACH_VRING_WORKER, &attach) < 0) {
			r = -errno;
			pr_err("%s: VHOST_ATTACH_VRING_WORKER %u: %s", b->name, i, strerror(-r));
			return r;
		}
	}
	b->err_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (b->err_fd < 0)
		return -errno;
	r = vm_watch_fd(b->vdev.vm, b->err_fd, blk_vhost_ring_error, b);
	if (r)
		return r;
	if ((b->vhost.features & needed) != needed) {
		pr_err("%s: /dev/vhost-blk does not offer VIRTIO_F_VERSION_1", b->name);
		return -EOPNOTSUPP;
	}
	b->vdev.features &= b->vhost.features;
	memcpy(serial.id, b->cfg->serial, strnlen(b->cfg->serial, sizeof(serial.id)));
	if (ioctl(b->vhost.fd, VHOST_BLK_SET_SERIAL, &serial) < 0)
		pr_warn("%s: VHOST_BLK_SET_SERIAL: %s; GET_ID answers the backend's default",
			b->name, strerror(errno));
	/* A vhost worker raises the interrupt without telling us. */
	b->vdev.isr_always_used = true;
	return 0;
}

/* ---- device -------------------------------------------------------------------- */

static int blk_open_backing(struct blk_dev *b)
{
	struct stat st;
	int r;

	b->fd = open(b->cfg->path, (b->cfg->ro ? O_RDONLY : O_RDWR) | O_CLOEXEC |
		     (b->cfg->direct ? O_DIRECT : 0));
	if (b->fd < 0) {
		r = -errno;
		pr_err("--disk %s: %s", b->cfg->path, strerror(-r));
		return r;
	}
	if (fstat(b->fd, &st) < 0)
		return -errno;
	if (S_ISBLK(st.st_mode)) {
		if (ioctl(b->fd, BLKGETSIZE64, &b->size) < 0)
			return -errno;
	} else if (S_ISREG(st.st_mode)) {
		b->size = st.st_size;
	} else {
		pr_err("--disk %s: not a regular file or block device", b->cfg->path);
		return -EINVAL;
	}
	if (b->size & (SECTOR_SIZE - 1))
		pr_warn("--disk %s: the last %llu bytes (less than a sector) are not visible",
			b->cfg->path, (unsigned long long)(b->size & (SECTOR_SIZE - 1)));
	return 0;
}

struct blk_dev *blk_create(struct vm *vm, const struct disk_config *cfg, unsigned int index,
			   struct acpi_device_info *info)
{
	struct blk_dev *b = calloc(1, sizeof(*b));
	unsigned int i;
	int r;

	if (!b)
		return NULL;
	b->cfg = cfg;
	b->fd = b->stop_fd = b->vhost.fd = b->err_fd = -1;
	snprintf(b->name, sizeof(b->name), "vd%c", 'a' + index);
	for (i = 0; i < VIRTIO_MAX_QUEUES; i++) {
		struct blk_queue *q = &b->q[i];

		q->b = b;
		q->index = i;
		if (cfg->queues > 1)
			snprintf(q->name, sizeof(q->name), "%s.%u", b->name, i);
		else
			snprintf(q->name, sizeof(q->name), "%s", b->name);
		pthread_mutex_init(&q->lock, NULL);
		pthread_cond_init(&q->idle, NULL);
	}

	r = blk_open_backing(b);
	if (r)
		goto fail;

	b->config.capacity = b->size >> SECTOR_SHIFT;
	b->config.seg_max = BLK_SEG_MAX;
	b->config.blk_size = SECTOR_SIZE;
	b->config.num_queues = cfg->queues;

	b->vdev.name = b->name;
	b->vdev.vm = vm;
	b->vdev.device_id = VIRTIO_ID_BLOCK;
	b->vdev.features = BLK_FEATURES | (cfg->ro ? 1ULL << VIRTIO_BLK_F_RO : 0) |
			   (cfg->queues > 1 ? 1ULL << VIRTIO_BLK_F_MQ : 0);
	b->vdev.config_size = sizeof(b->config);
	b->vdev.nqueues = cfg->queues;
	b->vdev.ops = cfg->backend == DISK_VHOST ? &blk_vhost_ops : &blk_user_ops;

	/* The transport creates the kick and call eventfds both backends use. */
	r = virtio_transport_add(vm, &b->vdev, info);
	if (r) {
		pr_err("%s: cannot add a virtio device: %s", b->name, strerror(-r));
		goto fail;
	}
	r = cfg->backend == DISK_VHOST ? blk_vhost_init(b) : blk_user_init(b);
	if (r)
		goto fail;
	pr_debug("%s: %s, %llu sectors, %u queue%s, %s backend%s", b->name, cfg->path,
		 (unsigned long long)b->config.capacity, cfg->queues, cfg->queues > 1 ? "s" : "",
		 cfg->backend == DISK_VHOST ? "vhost" : "user", cfg->ro ? ", read-only" : "");
	return b;
fail:
	blk_destroy(b);
	return NULL;
}

/* With --verbose: how the requests spread over the queues. */
static void blk_print_requests(struct blk_dev *b)
{
	unsigned int i;

	if (!vmlaunch_verbose)
		return;
	for (i = 0; i < b->vdev.nqueues; i++) {
		struct vhost_blk_stats stats = { .index = i };
		u64 requests = b->q[i].requests;

		if (b->cfg->backend == DISK_VHOST) {
			if (ioctl(b->vhost.fd, VHOST_BLK_GET_STATS, &stats) < 0)
				continue;
			requests = stats.requests;
		}
		pr_debug("%s: queue %u: %llu requests", b->name, i, (unsigned long long)requests);
	}
}

/* After the vCPUs have stopped. */
void blk_destroy(struct blk_dev *b)
{
	unsigned int i;

	if (!b)
		return;
	/* Reset with the I/O threads alive: they complete what is in flight. */
	virtio_transport_reset(&b->vdev);
	/* Never drained: one signal stops every I/O thread. */
	if (b->stop_fd >= 0)
		eventfd_signal(b->stop_fd);
	for (i = 0; i < VIRTIO_MAX_QUEUES; i++)
		if (b->q[i].thread_started)
			pthread_join(b->q[i].thread, NULL);
	blk_print_requests(b);
	virtio_transport_remove(&b->vdev);
	for (i = 0; i < VIRTIO_MAX_QUEUES; i++) {
		if (b->q[i].ring_ready)
			io_uring_queue_exit(&b->q[i].ring);
		free(b->q[i].reqs);
		pthread_cond_destroy(&b->q[i].idle);
		pthread_mutex_destroy(&b->q[i].lock);
	}
	vhost_close(&b->vhost);
	if (b->err_fd >= 0)
		close(b->err_fd);
	if (b->stop_fd >= 0)
		close(b->stop_fd);
	if (b->fd >= 0)
		close(b->fd);
	free(b);
}
