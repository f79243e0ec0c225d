// SPDX-License-Identifier: GPL-2.0
/*
 * virtio-blk (virtio 1.2, section 5.2) with one request queue and two
 * backends:
 *
 * - userspace ("user"): an I/O thread owns the virtqueue. It waits on an
 *   io_uring for the queue's kick eventfd and for I/O completions, turns
 *   each chain into a readv/writev/fsync on the backing file, and on
 *   completion writes the status byte, adds the used entry and, if the
 *   driver wants one, signals the device's irqfd.
 * - vhost ("vhost"): /dev/vhost-blk serves the virtqueue in the kernel;
 *   vmlaunch only sets it up at DRIVER_OK and detaches it at reset.
 *
 * Both offer the same features and config space, so a guest cannot tell
 * them apart: VERSION_1, INDIRECT_DESC, EVENT_IDX, SEG_MAX, BLK_SIZE,
 * FLUSH and, for ,ro disks, RO. Read-only is enforced by the backend too:
 * OUT requests fail with IOERR (the file is open read-only).
 *
 * Lifetimes (userspace backend): a request slot is free (on `free`), owned
 * by the kernel (counted in `inflight`), or being handled by the I/O
 * thread under `lock`. Reset clears `active` under the lock and waits for
 * `inflight` to drop to zero, after which nothing touches guest memory
 * until the next activation. The I/O thread lives from blk_create() to
 * blk_destroy().
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

struct blk_dev {
	struct virtio_dev vdev;
	char name[8];
	const struct disk_config *cfg;
	int fd;
	u64 size;			/* bytes; capacity is size / 512 */
	struct virtio_blk_config config;

	/* userspace backend */
	struct io_uring ring;
	bool ring_ready;
	pthread_t thread;
	bool thread_started;
	int stop_fd;
	pthread_mutex_t lock;
	pthread_cond_t idle;
	/* under lock: */
	bool active;
	bool broken;
	bool dead;			/* the I/O thread has quit on an error */
	bool pushed;			/* used entries added since the last notify check */
	unsigned int inflight;
	struct virtq vr;
	struct blk_req *reqs;
	u16 free[VIRTQ_MAX_SIZE];
	unsigned int nfree;
	bool head_busy[VIRTQ_MAX_SIZE];

	/* vhost backend */
	struct vhost vhost;
	int err_fd;			/* signalled when the kernel finds the ring broken */
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

static void blk_put_req(struct blk_dev *b, struct blk_req *req)
{
	b->head_busy[req->chain.head] = false;
	b->free[b->nfree++] = req - b->reqs;
}

/* Hand a request back to the driver; nothing is written after a reset. */
static void blk_finish(struct blk_dev *b, struct blk_req *req, u8 status, u32 used_len)
{
	if (b->active && !b->broken) {
		__atomic_store_n(req->status, status, __ATOMIC_RELAXED);
		virtq_push(&b->vr, req->chain.head, used_len);
		b->pushed = true;
	}
	blk_put_req(b, req);
}

static void blk_broken(struct blk_dev *b)
{
	b->broken = true;
	virtio_needs_reset(&b->vdev);
}

static bool blk_range_ok(const struct blk_dev *b, u64 sector, u64 len)
{
	u64 sectors = b->size >> SECTOR_SHIFT;

	return !(len & (SECTOR_SIZE - 1)) && sector <= sectors &&
	       (len >> SECTOR_SHIFT) <= sectors - sector;
}

static struct io_uring_sqe *blk_get_sqe(struct blk_dev *b)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&b->ring);

	if (!sqe) {
		io_uring_submit(&b->ring);
		sqe = io_uring_get_sqe(&b->ring);
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

static void blk_handle(struct blk_dev *b, struct blk_req *req)
{
	struct virtq_chain *c = &req->chain;
	const struct iovec *in = &c->iov[c->nout];
	struct virtio_blk_outhdr hdr;
	struct io_uring_sqe *sqe;
	u64 len;

	if (c->out_len < sizeof(hdr) || !c->in_len) {
		pr_guest_once("%s: request without header or status byte", b->name);
		/* Nowhere to put a status: return the chain untouched. */
		if (b->active && !b->broken) {
			virtq_push(&b->vr, c->head, 0);
			b->pushed = true;
		}
		blk_put_req(b, req);
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
		blk_finish(b, req, VIRTIO_BLK_S_OK, n + 1);
		return;
	}
	default:
		blk_finish(b, req, VIRTIO_BLK_S_UNSUPP, 1);
		return;
	}

	if ((hdr.type == VIRTIO_BLK_T_IN || hdr.type == VIRTIO_BLK_T_OUT) && !len) {
		blk_finish(b, req, VIRTIO_BLK_S_OK, req->used_len);
		return;
	}
	sqe = blk_get_sqe(b);
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
	b->inflight++;
	return;
ioerr:
	blk_finish(b, req, VIRTIO_BLK_S_IOERR, 1);
}

static void blk_io_done(struct blk_dev *b, struct blk_req *req, int res)
{
	b->inflight--;
	if (res < 0 || (u64)res != req->expected) {
		if (res < 0)
			pr_guest_once("%s: backend I/O failed: %s", b->name, strerror(-res));
		blk_finish(b, req, VIRTIO_BLK_S_IOERR, 1);
	} else {
		blk_finish(b, req, VIRTIO_BLK_S_OK, req->used_len);
	}
}

/* Take every available chain; called with the lock held. */
static void blk_process(struct blk_dev *b)
{
	if (!b->active || b->broken)
		return;
	do {
		virtq_disable_kicks(&b->vr);
		for (;;) {
			struct blk_req *req;
			int r;

			/* All slots busy: completions call us again. */
			if (!b->nfree)
				return;
			req = &b->reqs[b->free[b->nfree - 1]];
			r = virtq_pop(&b->vr, &req->chain);
			if (!r)
				break;
			if (r < 0 || b->head_busy[req->chain.head]) {
				if (r > 0)
					pr_guest_once("%s: descriptor head reused while in flight",
						      b->name);
				blk_broken(b);
				return;
			}
			b->nfree--;
			b->head_busy[req->chain.head] = true;
			blk_handle(b, req);
		}
	} while (virtq_enable_kicks(&b->vr));
}

static int blk_arm_poll(struct blk_dev *b, int fd, u64 tag)
{
	struct io_uring_sqe *sqe = blk_get_sqe(b);

	if (!sqe)
		return -EBUSY;
	io_uring_prep_poll_add(sqe, fd, POLLIN);
	io_uring_sqe_set_data64(sqe, tag);
	return 0;
}

static void *blk_io_thread(void *arg)
{
	struct blk_dev *b = arg;
	int kick_fd = b->vdev.vq[0].kick_fd;
	bool stop = false;

	blk_arm_poll(b, kick_fd, TAG_KICK);
	blk_arm_poll(b, b->stop_fd, TAG_STOP);
	io_uring_submit(&b->ring);

	while (!stop) {
		struct io_uring_cqe *cqe;
		bool kicked = false;
		unsigned int head, n = 0;
		int r;

		r = io_uring_wait_cqe(&b->ring, &cqe);
		if (r == -EINTR)
			continue;
		if (r < 0) {
			pr_err("%s: io_uring: %s", b->name, strerror(-r));
			vm_request_stop(b->vdev.vm, VMLAUNCH_EXIT_ERROR);
			/* Nobody completes what is in flight now: let a reset go on. */
			pthread_mutex_lock(&b->lock);
			b->dead = true;
			pthread_cond_broadcast(&b->idle);
			pthread_mutex_unlock(&b->lock);
			break;
		}

		pthread_mutex_lock(&b->lock);
		io_uring_for_each_cqe(&b->ring, head, cqe) {
			u64 tag = io_uring_cqe_get_data64(cqe);

			n++;
			if (tag == TAG_KICK)
				kicked = true;
			else if (tag == TAG_STOP)
				stop = true;
			else
				blk_io_done(b, (struct blk_req *)(uintptr_t)tag, cqe->res);
		}
		io_uring_cq_advance(&b->ring, n);
		if (kicked) {
			eventfd_drain(kick_fd);
			blk_arm_poll(b, kick_fd, TAG_KICK);
		}
		blk_process(b);
		if (b->pushed && b->active && !b->broken && virtq_should_notify(&b->vr))
			virtio_notify(&b->vdev, VIRTIO_ISR_USED);
		b->pushed = false;
		if (!b->inflight)
			pthread_cond_broadcast(&b->idle);
		pthread_mutex_unlock(&b->lock);
		io_uring_submit(&b->ring);
	}
	return NULL;
}

static int blk_user_activate(struct virtio_dev *vdev)
{
	struct blk_dev *b = to_blk(vdev);
	int r;

	if (!vdev->vq[0].ready) {
		pr_guest_once("%s: DRIVER_OK without a ready queue", b->name);
		return -EINVAL;
	}
	pthread_mutex_lock(&b->lock);
	r = virtq_init(&b->vr, vdev->vm, &vdev->vq[0], vdev->acked);
	if (!r) {
		b->active = true;
		b->broken = false;
		b->pushed = false;
	} else {
		pr_guest_once("%s: queue 0 is misaligned or outside guest memory", b->name);
	}
	pthread_mutex_unlock(&b->lock);
	/* Requests queued before DRIVER_OK had their kick already. */
	if (!r)
		eventfd_signal(vdev->vq[0].kick_fd);
	return r;
}

static void blk_user_reset(struct virtio_dev *vdev)
{
	struct blk_dev *b = to_blk(vdev);

	pthread_mutex_lock(&b->lock);
	b->active = false;
	while (b->inflight && !b->dead)
		pthread_cond_wait(&b->idle, &b->lock);
	pthread_mutex_unlock(&b->lock);
}

static const struct virtio_dev_ops blk_user_ops = {
	.read_config = blk_read_config,
	.activate = blk_user_activate,
	.reset = blk_user_reset,
};

static int blk_user_init(struct blk_dev *b)
{
	unsigned int i;
	int r;

	b->reqs = calloc(VIRTQ_MAX_SIZE, sizeof(*b->reqs));
	if (!b->reqs)
		return -ENOMEM;
	for (i = 0; i < VIRTQ_MAX_SIZE; i++)
		b->free[i] = VIRTQ_MAX_SIZE - 1 - i;
	b->nfree = VIRTQ_MAX_SIZE;
	b->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (b->stop_fd < 0)
		return -errno;
	r = io_uring_queue_init(BLK_RING_ENTRIES, &b->ring, 0);
	if (r) {
		pr_err("%s: io_uring_queue_init: %s", b->name, strerror(-r));
		return r;
	}
	b->ring_ready = true;
	r = pthread_create(&b->thread, NULL, blk_io_thread, b);
	if (r)
		return -r;
	b->thread_started = true;
	pthread_setname_np(b->thread, b->name);
	return 0;
}

/* ---- vhost backend ---------------------------------------------------------------- */

static int blk_vhost_activate(struct virtio_dev *vdev)
{
	struct blk_dev *b = to_blk(vdev);
	struct vhost_vring_file backend = { .index = 0, .fd = b->fd };
	int r;

	if (!vdev->vq[0].ready) {
		pr_guest_once("%s: DRIVER_OK without a ready queue", b->name);
		return -EINVAL;
	}
	r = vhost_set_features(&b->vhost, vdev->acked);
	if (!r)
		r = vhost_setup_vring(&b->vhost, vdev->vm, 0, &vdev->vq[0], vdev->acked,
				      vdev->call_fd, b->err_fd);
	if (r)
		return r;
	if (b->cfg->poll_us) {
		struct vhost_vring_state poll = { .index = 0, .num = b->cfg->poll_us };

		if (ioctl(b->vhost.fd, VHOST_SET_VRING_BUSYLOOP_TIMEOUT, &poll) < 0) {
			r = -errno;
			pr_err("%s: VHOST_SET_VRING_BUSYLOOP_TIMEOUT %u us: %s", b->name,
			       b->cfg->poll_us, strerror(-r));
			return r;
		}
	}
	if (ioctl(b->vhost.fd, VHOST_BLK_SET_BACKEND, &backend) < 0) {
		r = -errno;
		pr_err("%s: VHOST_BLK_SET_BACKEND: %s", b->name, strerror(-r));
		return r;
	}
	/* Kicks that came before the ring was attached. */
	eventfd_signal(vdev->vq[0].kick_fd);
	return 0;
}

static void blk_vhost_reset(struct virtio_dev *vdev)
{
	struct blk_dev *b = to_blk(vdev);
	struct vhost_vring_file backend = { .index = 0, .fd = -1 };

	/* Detaching waits for requests in flight and stops the ring. */
	if (ioctl(b->vhost.fd, VHOST_BLK_SET_BACKEND, &backend) < 0)
		pr_err("%s: VHOST_BLK_SET_BACKEND -1: %s", b->name, strerror(errno));
}

/* Main thread: the kernel stopped the ring because the guest broke a rule. */
static void blk_vhost_ring_error(void *opaque)
{
	struct blk_dev *b = opaque;
	struct vhost_blk_stats stats = { .index = 0 };

	eventfd_drain(b->err_fd);
	if (ioctl(b->vhost.fd, VHOST_BLK_GET_STATS, &stats) == 0)
		pr_debug("%s: vhost ring broken, last error %d", b->name, stats.last_error);
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
	int r;

	r = vhost_open(&b->vhost, "/dev/vhost-blk", b->vdev.vm);
	if (r)
		return r;
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
	int r;

	if (!b)
		return NULL;
	b->cfg = cfg;
	b->fd = b->stop_fd = b->vhost.fd = b->err_fd = -1;
	snprintf(b->name, sizeof(b->name), "vd%c", 'a' + index);
	pthread_mutex_init(&b->lock, NULL);
	pthread_cond_init(&b->idle, NULL);

	r = blk_open_backing(b);
	if (r)
		goto fail;

	b->config.capacity = b->size >> SECTOR_SHIFT;
	b->config.seg_max = BLK_SEG_MAX;
	b->config.blk_size = SECTOR_SIZE;

	b->vdev.name = b->name;
	b->vdev.vm = vm;
	b->vdev.device_id = VIRTIO_ID_BLOCK;
	b->vdev.features = BLK_FEATURES | (cfg->ro ? 1ULL << VIRTIO_BLK_F_RO : 0);
	b->vdev.config_size = sizeof(b->config);
	b->vdev.nqueues = 1;
	b->vdev.ops = cfg->backend == DISK_VHOST ? &blk_vhost_ops : &blk_user_ops;

	/* The transport creates the kick and call eventfds both backends use. */
	r = virtio_mmio_add(vm, &b->vdev, info);
	if (r) {
		pr_err("%s: cannot add a virtio-mmio device: %s", b->name, strerror(-r));
		goto fail;
	}
	r = cfg->backend == DISK_VHOST ? blk_vhost_init(b) : blk_user_init(b);
	if (r)
		goto fail;
	pr_debug("%s: %s, %llu sectors, %s backend%s", b->name, cfg->path,
		 (unsigned long long)b->config.capacity,
		 cfg->backend == DISK_VHOST ? "vhost" : "user", cfg->ro ? ", read-only" : "");
	return b;
fail:
	blk_destroy(b);
	return NULL;
}

/* After the vCPUs have stopped. */
void blk_destroy(struct blk_dev *b)
{
	if (!b)
		return;
	/* Reset with the I/O thread alive: it completes what is in flight. */
	virtio_mmio_reset(&b->vdev);
	if (b->thread_started) {
		eventfd_signal(b->stop_fd);
		pthread_join(b->thread, NULL);
	}
	virtio_mmio_remove(&b->vdev);
	if (b->ring_ready)
		io_uring_queue_exit(&b->ring);
	vhost_close(&b->vhost);
	if (b->err_fd >= 0)
		close(b->err_fd);
	if (b->stop_fd >= 0)
		close(b->stop_fd);
	if (b->fd >= 0)
		close(b->fd);
	free(b->reqs);
	pthread_cond_destroy(&b->idle);
	pthread_mutex_destroy(&b->lock);
	free(b);
}
