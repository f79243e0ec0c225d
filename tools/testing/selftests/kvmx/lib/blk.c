// SPDX-License-Identifier: GPL-2.0
/*
 * virtio-blk guest driver and host storage for the kvmx selftests.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <linux/loop.h>
#include <linux/virtio_blk.h>

#include "blk.h"
#include "util.h"

int blk_req_init(struct blk_req *r, uint32_t type, uint64_t sector, const void *payload,
		 uint32_t payload_len, uint32_t in_len)
{
	struct virtio_blk_outhdr hdr = {
		.type = htole32(type),
		.ioprio = 0,
		.sector = htole64(sector),
	};

	memset(r, 0, sizeof(*r));
	r->type = type;
	r->sector = sector;
	r->head = -1;
	r->out_len = BLK_HDR_LEN + payload_len;
	r->in_len = in_len;
	r->out = malloc(r->out_len);
	if (!r->out) {
		fprintf(stderr, "# blk: no memory for a request of %u bytes\n", r->out_len);
		return -ENOMEM;
	}
	memcpy(r->out, &hdr, BLK_HDR_LEN);
	if (payload_len)
		memcpy(r->out + BLK_HDR_LEN, payload, payload_len);
	return 0;
}

void blk_req_free(struct blk_req *r)
{
	free(r->out);
	r->out = NULL;
}

static int cut_total(const char *what, const uint32_t *cuts, unsigned int n, uint32_t want)
{
	uint64_t sum = 0;
	unsigned int i;

	if (n > BLK_REQ_MAX_SEGS) {
		fprintf(stderr, "# blk: %u %s buffers, expected at most %u\n", n, what,
			BLK_REQ_MAX_SEGS);
		return -EINVAL;
	}
	for (i = 0; i < n; i++) {
		if (!cuts[i]) {
			fprintf(stderr, "# blk: %s buffer %u is empty\n", what, i);
			return -EINVAL;
		}
		sum += cuts[i];
	}
	if (sum != want) {
		fprintf(stderr, "# blk: %s buffers add up to %llu bytes, expected %u\n", what,
			(unsigned long long)sum, want);
		return -EINVAL;
	}
	return 0;
}

int blk_req_layout(struct guest_mem *mem, struct blk_req *r, const uint32_t *out_cuts,
		   unsigned int nout, const uint32_t *in_cuts, unsigned int nin,
		   unsigned int misalign)
{
	uint32_t def_out[2], def_in[2];
	unsigned int i;
	int ret;

	if (!out_cuts) {
		nout = 0;
		if (r->out_len)
			def_out[nout++] = r->out_len < BLK_HDR_LEN ? r->out_len : BLK_HDR_LEN;
		if (r->out_len > BLK_HDR_LEN)
			def_out[nout++] = r->out_len - BLK_HDR_LEN;
		out_cuts = def_out;
	}
	if (!in_cuts) {
		nin = 0;
		if (r->in_len > 1)
			def_in[nin++] = r->in_len - 1;
		if (r->in_len)
			def_in[nin++] = 1;
		in_cuts = def_in;
	}
	ret = cut_total("readable", out_cuts, nout, r->out_len);
	if (!ret)
		ret = cut_total("writable", in_cuts, nin, r->in_len);
	if (ret)
		return ret;

	r->nout = nout;
	r->nin = nin;
	for (i = 0; i < nout + nin; i++) {
		struct vring_seg *s = i < nout ? &r->out_seg[i] : &r->in_seg[i - nout];
		uint64_t gpa;

		s->len = i < nout ? out_cuts[i] : in_cuts[i - nout];
		gpa = guest_alloc(mem, (uint64_t)s->len + misalign, BLK_SECTOR_SIZE);
		if (!gpa)
			return -ENOMEM;
		s->gpa = gpa + misalign;
	}
	return blk_req_place(mem, r);
}

int blk_req_place(struct guest_mem *mem, struct blk_req *r)
{
	uint32_t off = 0;
	unsigned int i;
	int ret;

	for (i = 0; i < r->nout; i++) {
		if (off + (uint64_t)r->out_seg[i].len > r->out_len) {
			fprintf(stderr, "# blk: readable buffers exceed the %u-byte stream\n",
				r->out_len);
			return -EINVAL;
		}
		ret = guest_write(mem, r->out_seg[i].gpa, r->out + off, r->out_seg[i].len);
		if (ret)
			return ret;
		off += r->out_seg[i].len;
	}
	for (i = 0; i < r->nin; i++) {
		ret = guest_fill(mem, r->in_seg[i].gpa, BLK_POISON, r->in_seg[i].len);
		if (ret)
			return ret;
	}
	return 0;
}

int blk_req_read_in(const struct guest_mem *mem, const struct blk_req *r, void *dst)
{
	uint8_t *p = dst;
	unsigned int i;
	int ret;

	for (i = 0; i < r->nin; i++) {
		ret = guest_read(mem, r->in_seg[i].gpa, p, r->in_seg[i].len);
		if (ret)
			return ret;
		p += r->in_seg[i].len;
	}
	return 0;
}

int blk_req_status(const struct guest_mem *mem, const struct blk_req *r)
{
	const struct vring_seg *last;
	uint8_t status;

	if (!r->nin) {
		fprintf(stderr, "# blk: the request has no writable buffer for a status\n");
		return -EINVAL;
	}
	last = &r->in_seg[r->nin - 1];
	if (guest_read(mem, last->gpa + last->len - 1, &status, 1))
		return -EFAULT;
	return status;
}

int blk_req_add(struct vring_drv *vr, struct blk_req *r, bool indirect)
{
	r->head = vring_add_chain(vr, r->out_seg, r->nout, r->in_seg, r->nin, indirect);
	return r->head < 0 ? r->head : 0;
}

void blk_dwz_set(void *dst, uint64_t sector, uint32_t num_sectors, uint32_t flags)
{
	struct virtio_blk_discard_write_zeroes seg = {
		.sector = htole64(sector),
		.num_sectors = htole32(num_sectors),
		.flags = htole32(flags),
	};

	memcpy(dst, &seg, sizeof(seg));
}

/* ---- the device -------------------------------------------------------- */

int blk_set_backend(const struct vhost_dev *dev, unsigned int idx, int fd)
{
	struct vhost_vring_file f = { .index = idx, .fd = fd };

	return vhost_ioctl(dev, VHOST_BLK_SET_BACKEND, &f);
}

int blk_set_serial(const struct vhost_dev *dev, const void *id, size_t len)
{
	struct vhost_blk_serial s;

	memset(&s, 0, sizeof(s));
	memcpy(s.id, id, len < sizeof(s.id) ? len : sizeof(s.id));
	return vhost_ioctl(dev, VHOST_BLK_SET_SERIAL, &s);
}

int blk_get_stats(const struct vhost_dev *dev, unsigned int idx, struct vhost_blk_stats *st)
{
	memset(st, 0, sizeof(*st));
	st->index = idx;
	return vhost_ioctl(dev, VHOST_BLK_GET_STATS, st);
}

int blk_guest_open(struct blk_guest *g, unsigned int nvqs, unsigned int ring_num,
		   uint64_t features)
{
	unsigned int i;
	int ret;

	memset(g, 0, sizeof(*g));
	ret = vhost_open(&g->dev, BLK_DEV_PATH, nvqs);
	if (ret)
		return ret;
	g->nvqs = nvqs;
	ret = guest_mem_init(&g->mem);
	if (!ret)
		ret = vhost_set_owner(&g->dev);
	if (!ret)
		ret = vhost_set_mem_table(&g->dev, &g->mem);
	if (!ret)
		ret = vhost_set_features(&g->dev, features);
	for (i = 0; !ret && i < nvqs; i++) {
		ret = vring_drv_init(&g->vq[i], &g->mem, ring_num);
		if (!ret)
			ret = vhost_setup_vq(&g->dev, i, &g->vq[i], 0, 0);
	}
	return ret;
}

void blk_guest_close(struct blk_guest *g)
{
	unsigned int i;

	/* The device goes first: it may still be using guest memory. */
	vhost_close(&g->dev);
	for (i = 0; i < BLK_GUEST_MAX_VQS; i++)
		vring_drv_destroy(&g->vq[i]);
	guest_mem_destroy(&g->mem);
}

/*
 * Completion is seen on the used ring itself, not only through the call
 * eventfd: a device that forgets to call must fail the one test that
 * checks calls, not stall every other. A broken ring ends the wait early;
 * its error eventfd is left for the caller to consume.
 */
int blk_guest_reap(struct blk_guest *g, unsigned int vq, struct vring_used_elem *elems,
		   unsigned int n, int timeout_ms)
{
	int64_t deadline = now_ms() + timeout_ms;
	struct pollfd pfd[2] = {
		{ .fd = g->dev.vq[vq].call, .events = POLLIN },
		{ .fd = g->dev.vq[vq].err, .events = POLLIN },
	};
	unsigned int got = 0;
	int ret, left;

	while (got < n) {
		ret = vring_reap(&g->vq[vq], &elems[got]);
		if (ret < 0)
			return ret;
		if (ret) {
			got++;
			continue;
		}
		left = deadline - now_ms();
		if (left < 0) {
			fprintf(stderr,
				"# blk: expected %u used entries on vq %u within %d ms, got %u (used idx %u)\n",
				n, vq, timeout_ms, got, vring_used_idx(&g->vq[vq]));
			return -ETIMEDOUT;
		}
		if (poll(pfd, 2, left < 10 ? left : 10) < 0 && errno != EINTR)
			return -errno;
		if (pfd[1].revents & POLLIN) {
			/* Entries used before the ring broke are still there. */
			if (vring_used_idx(&g->vq[vq]) != g->vq[vq].last_used)
				continue;
			fprintf(stderr, "# blk: vq %u broke (error eventfd) with %u of %u used entries\n",
				vq, got, n);
			return -EIO;
		}
		eventfd_take(pfd[0].fd);
	}
	return 0;
}

int blk_guest_do(struct blk_guest *g, unsigned int vq, struct blk_req *r, bool indirect,
		 uint32_t *used_len)
{
	struct vring_used_elem e;
	int ret;

	ret = blk_req_add(&g->vq[vq], r, indirect);
	if (ret)
		return ret;
	vring_publish(&g->vq[vq]);
	ret = vhost_kick(&g->dev, vq);
	if (!ret)
		ret = blk_guest_reap(g, vq, &e, 1, BLK_TIMEOUT_MS);
	if (ret)
		return ret;
	if ((int)e.id != r->head) {
		fprintf(stderr, "# blk: used entry names head %u, expected %d\n", e.id, r->head);
		return -EPROTO;
	}
	if (used_len)
		*used_len = e.len;
	return blk_req_status(&g->mem, r);
}

/* ---- backends ---------------------------------------------------------- */

static void backend_reset(struct blk_backend *b, enum blk_backend_kind kind, uint64_t size)
{
	memset(b, 0, sizeof(*b));
	b->kind = kind;
	b->fd = -1;
	b->check_fd = -1;
	b->backing_fd = -1;
	b->size = size;
}

static int write_all(int fd, uint64_t off, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t n = pwrite(fd, p, len, off);

		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		p += n;
		off += n;
		len -= n;
	}
	return 0;
}

static int read_all(int fd, uint64_t off, void *buf, size_t len)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t n = pread(fd, p, len, off);

		if (n <= 0)
			return n < 0 ? -errno : -ENODATA;
		p += n;
		off += n;
		len -= n;
	}
	return 0;
}

/* A file of @size bytes of @content in @dir; its read-write fd, path in @path. */
static int make_file(char *path, size_t pathlen, const char *dir, uint64_t size,
		     const void *content)
{
	int fd, ret;

	snprintf(path, pathlen, "%s/kvmx-blk-XXXXXX", dir);
	fd = mkostemp(path, O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		fprintf(stderr, "# blk: cannot create a file in %s: %s\n", dir, strerror(errno));
		path[0] = '\0';
		return ret;
	}
	ret = content ? write_all(fd, 0, content, size) : 0;
	if (!ret && ftruncate(fd, size))
		ret = -errno;
	if (ret) {
		fprintf(stderr, "# blk: cannot fill %s with %llu bytes: %s\n", path,
			(unsigned long long)size, strerror(-ret));
		close(fd);
		unlink(path);
		path[0] = '\0';
		return ret;
	}
	return fd;
}

int blk_file_create(struct blk_backend *b, const char *dir, uint64_t size,
		    const void *content, int flags)
{
	int ret;

	backend_reset(b, BLK_BACKEND_FILE, size);
	ret = make_file(b->path, sizeof(b->path), dir, size, content);
	if (ret < 0)
		return ret;
	b->check_fd = ret;
	b->fd = open(b->path, flags | O_CLOEXEC);
	if (b->fd < 0) {
		ret = -errno;
		if (!(ret == -EINVAL && (flags & O_DIRECT)))
			fprintf(stderr, "# blk: cannot open %s: %s\n", b->path, strerror(errno));
		blk_backend_destroy(b);
		return ret;
	}
	return 0;
}

static int loop_control(void)
{
	int fd = open("/dev/loop-control", O_RDWR | O_CLOEXEC);

	if (fd < 0 && system("modprobe loop >/dev/null 2>&1") == 0)
		fd = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
	return fd < 0 ? -ENODEV : fd;
}

int blk_loop_create(struct blk_backend *b, const char *dir, uint64_t size,
		    const void *content, int flags)
{
	struct loop_config cfg;
	int ctl, n, fd, tries, ret;

	backend_reset(b, BLK_BACKEND_LOOP, size);
	ctl = loop_control();
	if (ctl < 0)
		return ctl;
	ret = make_file(b->backing_path, sizeof(b->backing_path), dir, size, content);
	if (ret < 0)
		goto out;
	b->backing_fd = ret;

	/* Another user may take the free device first: try a few. */
	for (tries = 0; tries < 8; tries++) {
		n = ioctl(ctl, LOOP_CTL_GET_FREE);
		if (n < 0) {
			ret = -errno;
			fprintf(stderr, "# blk: LOOP_CTL_GET_FREE: %s\n", strerror(errno));
			goto out;
		}
		snprintf(b->path, sizeof(b->path), "/dev/loop%d", n);
		fd = open(b->path, O_RDWR | O_CLOEXEC);
		if (fd < 0) {
			ret = -errno;
			fprintf(stderr, "# blk: cannot open %s: %s\n", b->path, strerror(errno));
			goto out;
		}
		memset(&cfg, 0, sizeof(cfg));
		cfg.fd = b->backing_fd;
		cfg.block_size = BLK_SECTOR_SIZE;
		/* Detached by the kernel at the last close, whatever happens to us. */
		cfg.info.lo_flags = LO_FLAGS_AUTOCLEAR;
		if (!ioctl(fd, LOOP_CONFIGURE, &cfg)) {
			b->check_fd = fd;
			break;
		}
		ret = -errno;
		close(fd);
		if (ret != -EBUSY) {
			fprintf(stderr, "# blk: LOOP_CONFIGURE of %s: %s\n", b->path,
				strerror(-ret));
			goto out;
		}
	}
	if (b->check_fd < 0) {
		fprintf(stderr, "# blk: no free loop device after %d tries\n", tries);
		ret = -EBUSY;
		goto out;
	}
	b->fd = open(b->path, flags | O_CLOEXEC);
	if (b->fd < 0) {
		ret = -errno;
		fprintf(stderr, "# blk: cannot open %s: %s\n", b->path, strerror(errno));
		goto out;
	}
	close(ctl);
	return 0;
out:
	close(ctl);
	blk_backend_destroy(b);
	return ret;
}

static bool nullb_memory_backed(void)
{
	char c = 0;
	int fd = open("/sys/module/null_blk/parameters/memory_backed", O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return false;
	if (read(fd, &c, 1) != 1)
		c = 0;
	close(fd);
	return c == 'Y' || c == '1';
}

int blk_nullb_open(struct blk_backend *b, uint64_t size, const void *content, int flags)
{
	uint64_t sectors = 0;
	char buf[32] = "";
	int fd, ret;

	backend_reset(b, BLK_BACKEND_NULLB, size);
	snprintf(b->path, sizeof(b->path), "/dev/nullb0");
	if (access(b->path, F_OK) &&
	    system("modprobe null_blk memory_backed=1 nr_devices=1 gb=1 >/dev/null 2>&1"))
		return -ENODEV;
	if (access(b->path, F_OK) || !nullb_memory_backed())
		return -ENODEV;
	fd = open("/sys/block/nullb0/size", O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		if (read(fd, buf, sizeof(buf) - 1) > 0)
			sectors = strtoull(buf, NULL, 10);
		close(fd);
	}
	if (sectors * BLK_SECTOR_SIZE < size)
		return -ENODEV;

	b->check_fd = open(b->path, O_RDWR | O_CLOEXEC);
	b->fd = open(b->path, flags | O_CLOEXEC);
	if (b->check_fd < 0 || b->fd < 0) {
		ret = -errno;
		fprintf(stderr, "# blk: cannot open %s: %s\n", b->path, strerror(errno));
		blk_backend_destroy(b);
		return ret;
	}
	ret = content ? write_all(b->check_fd, 0, content, size) : 0;
	if (!ret && fsync(b->check_fd))
		ret = -errno;
	if (ret) {
		fprintf(stderr, "# blk: cannot write %s: %s\n", b->path, strerror(-ret));
		blk_backend_destroy(b);
	}
	return ret;
}

void blk_backend_destroy(struct blk_backend *b)
{
	if (b->fd >= 0)
		close(b->fd);
	if (b->check_fd >= 0)
		close(b->check_fd);
	if (b->backing_fd >= 0)
		close(b->backing_fd);
	if (b->kind == BLK_BACKEND_FILE && b->path[0])
		unlink(b->path);
	if (b->backing_path[0])
		unlink(b->backing_path);
	backend_reset(b, b->kind, 0);
}

int blk_backend_read(const struct blk_backend *b, uint64_t off, void *buf, size_t len)
{
	int ret = read_all(b->check_fd, off, buf, len);

	if (ret)
		fprintf(stderr, "# blk: cannot read %zu bytes at %llu of %s: %s\n", len,
			(unsigned long long)off, b->path, strerror(-ret));
	return ret;
}

int blk_backend_write(const struct blk_backend *b, uint64_t off, const void *buf, size_t len)
{
	int ret = write_all(b->check_fd, off, buf, len);

	if (ret)
		fprintf(stderr, "# blk: cannot write %zu bytes at %llu of %s: %s\n", len,
			(unsigned long long)off, b->path, strerror(-ret));
	return ret;
}
