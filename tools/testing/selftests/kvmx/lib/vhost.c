// SPDX-License-Identifier: GPL-2.0
/*
 * VMM side of a kvmx vhost device for the selftests.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "util.h"
#include "vhost.h"

#define vhost_do(dev, req, arg)	vhost_checked(dev, #req, req, arg)

/* vhost_ioctl() that says what it expected when the device refuses. */
static int vhost_checked(const struct vhost_dev *dev, const char *name, unsigned long req,
			 void *arg)
{
	int ret = vhost_ioctl(dev, req, arg);

	if (ret < 0)
		fprintf(stderr, "# vhost: %s: expected success, got %s (%d)\n", name,
			strerror(-ret), ret);
	return ret;
}

int vhost_ioctl(const struct vhost_dev *dev, unsigned long req, void *arg)
{
	int ret = ioctl(dev->fd, req, arg);

	return ret < 0 ? -errno : ret;
}

static int new_eventfd(void)
{
	int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);

	if (fd < 0)
		fprintf(stderr, "# vhost: eventfd: %s\n", strerror(errno));
	return fd;
}

int vhost_open(struct vhost_dev *dev, const char *path, unsigned int nvqs)
{
	unsigned int i;

	memset(dev, 0, sizeof(*dev));
	dev->fd = -1;
	dev->log_fd = -1;
	for (i = 0; i < VHOST_DEV_MAX_VQS; i++) {
		dev->vq[i].kick = -1;
		dev->vq[i].call = -1;
		dev->vq[i].err = -1;
	}
	if (nvqs > VHOST_DEV_MAX_VQS) {
		fprintf(stderr, "# vhost: %u virtqueues, expected at most %d\n", nvqs,
			VHOST_DEV_MAX_VQS);
		return -EINVAL;
	}
	dev->nvqs = nvqs;
	dev->fd = open(path, O_RDWR | O_CLOEXEC);
	if (dev->fd < 0) {
		int err = -errno;

		fprintf(stderr, "# vhost: cannot open %s: %s\n", path, strerror(errno));
		return err;
	}
	for (i = 0; i < nvqs; i++) {
		dev->vq[i].kick = new_eventfd();
		dev->vq[i].call = new_eventfd();
		dev->vq[i].err = new_eventfd();
		if (dev->vq[i].kick < 0 || dev->vq[i].call < 0 || dev->vq[i].err < 0)
			goto fail;
	}
	dev->log_fd = new_eventfd();
	if (dev->log_fd < 0)
		goto fail;
	return 0;
fail:
	vhost_close(dev);
	return -EMFILE;
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

void vhost_close(struct vhost_dev *dev)
{
	unsigned int i;

	close_fd(&dev->fd);
	for (i = 0; i < dev->nvqs; i++) {
		close_fd(&dev->vq[i].kick);
		close_fd(&dev->vq[i].call);
		close_fd(&dev->vq[i].err);
	}
	close_fd(&dev->log_fd);
}

int vhost_set_owner(const struct vhost_dev *dev)
{
	return vhost_do(dev, VHOST_SET_OWNER, NULL);
}

int vhost_get_features(const struct vhost_dev *dev, uint64_t *features)
{
	return vhost_do(dev, VHOST_GET_FEATURES, features);
}

int vhost_set_features(const struct vhost_dev *dev, uint64_t features)
{
	return vhost_do(dev, VHOST_SET_FEATURES, &features);
}

int vhost_set_mem_table(const struct vhost_dev *dev, const struct guest_mem *mem)
{
	struct vhost_memory *table;
	int i, ret;

	table = calloc(1, sizeof(*table) + GUEST_NR_REGIONS * sizeof(table->regions[0]));
	if (!table)
		return -ENOMEM;
	table->nregions = GUEST_NR_REGIONS;
	for (i = 0; i < GUEST_NR_REGIONS; i++) {
		table->regions[i].guest_phys_addr = mem->region[i].gpa;
		table->regions[i].memory_size = mem->region[i].size;
		table->regions[i].userspace_addr = (uintptr_t)mem->region[i].hva;
	}
	ret = vhost_do(dev, VHOST_SET_MEM_TABLE, table);
	free(table);
	return ret;
}

int vhost_set_log(const struct vhost_dev *dev, void *bitmap)
{
	uint64_t base = (uintptr_t)bitmap;
	int fd = dev->log_fd, ret;

	ret = vhost_do(dev, VHOST_SET_LOG_BASE, &base);
	if (!ret)
		ret = vhost_do(dev, VHOST_SET_LOG_FD, &fd);
	return ret;
}

uint8_t *vhost_log_alloc(const struct guest_mem *mem, size_t *size)
{
	/* A page of slack past the last bit: a device writing a whole word. */
	size_t len = guest_gpa_end(mem) / GUEST_PAGE_SIZE / 8 + GUEST_PAGE_SIZE;
	void *map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (map == MAP_FAILED) {
		fprintf(stderr, "# vhost: mmap of a %zu-byte dirty log: %s\n", len, strerror(errno));
		return NULL;
	}
	*size = len;
	return map;
}

void vhost_log_free(uint8_t *bitmap, size_t size)
{
	if (bitmap)
		munmap(bitmap, size);
}

bool vhost_log_page_dirty(const uint8_t *bitmap, uint64_t gpa)
{
	uint64_t pfn = gpa / GUEST_PAGE_SIZE;

	return bitmap[pfn / 8] & (1U << (pfn % 8));
}

static int set_vring_fd(const struct vhost_dev *dev, const char *name, unsigned long req,
			unsigned int idx, int fd)
{
	struct vhost_vring_file f = { .index = idx, .fd = fd };

	return vhost_checked(dev, name, req, &f);
}

int vhost_set_vring_base(const struct vhost_dev *dev, unsigned int idx, unsigned int base)
{
	struct vhost_vring_state s = { .index = idx, .num = base };

	return vhost_do(dev, VHOST_SET_VRING_BASE, &s);
}

int vhost_get_vring_base(const struct vhost_dev *dev, unsigned int idx, unsigned int *base)
{
	struct vhost_vring_state s = { .index = idx };
	int ret;

	ret = vhost_do(dev, VHOST_GET_VRING_BASE, &s);
	if (!ret)
		*base = s.num;
	return ret;
}

int vhost_setup_vq(const struct vhost_dev *dev, unsigned int idx, const struct vring_drv *vr,
		   unsigned int addr_flags, uint64_t log_gpa)
{
	struct vhost_vring_state num = { .index = idx, .num = vr->num };
	struct vhost_vring_addr addr = {
		.index = idx,
		.flags = addr_flags,
		.desc_user_addr = (uintptr_t)vr->desc,
		.avail_user_addr = (uintptr_t)vr->avail,
		.used_user_addr = (uintptr_t)vr->used,
		.log_guest_addr = log_gpa,
	};
	int ret;

	if (idx >= dev->nvqs) {
		fprintf(stderr, "# vhost: virtqueue %u, expected one of the %u opened\n", idx,
			dev->nvqs);
		return -EINVAL;
	}
	ret = vhost_do(dev, VHOST_SET_VRING_NUM, &num);
	if (!ret)
		ret = vhost_set_vring_base(dev, idx, vr->last_used);
	if (!ret)
		ret = vhost_do(dev, VHOST_SET_VRING_ADDR, &addr);
	if (!ret)
		ret = set_vring_fd(dev, "VHOST_SET_VRING_KICK", VHOST_SET_VRING_KICK, idx,
				   dev->vq[idx].kick);
	if (!ret)
		ret = set_vring_fd(dev, "VHOST_SET_VRING_CALL", VHOST_SET_VRING_CALL, idx,
				   dev->vq[idx].call);
	if (!ret)
		ret = set_vring_fd(dev, "VHOST_SET_VRING_ERR", VHOST_SET_VRING_ERR, idx,
				   dev->vq[idx].err);
	return ret;
}

int vhost_kick(const struct vhost_dev *dev, unsigned int idx)
{
	uint64_t one = 1;

	if (write(dev->vq[idx].kick, &one, sizeof(one)) != sizeof(one)) {
		fprintf(stderr, "# vhost: kick of virtqueue %u failed: %s\n", idx,
			strerror(errno));
		return -EIO;
	}
	return 0;
}

uint64_t eventfd_count(int fd)
{
	uint64_t count;

	return read(fd, &count, sizeof(count)) == sizeof(count) ? count : 0;
}

int eventfd_take(int fd)
{
	return eventfd_count(fd) != 0;
}

int64_t eventfd_wait_count(int fd, int timeout_ms)
{
	int64_t deadline = now_ms() + timeout_ms;
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	uint64_t count;
	int ret, left;

	for (;;) {
		count = eventfd_count(fd);
		if (count)
			return count;
		left = deadline - now_ms();
		if (left < 0)
			return 0;
		ret = poll(&pfd, 1, left);
		if (ret < 0 && errno != EINTR)
			return -errno;
	}
}

int eventfd_wait(int fd, int timeout_ms)
{
	int64_t ret = eventfd_wait_count(fd, timeout_ms);

	return ret > 0 ? 1 : ret;
}

static int wait_loud(int fd, const char *what, unsigned int idx, int timeout_ms)
{
	int ret = eventfd_wait(fd, timeout_ms);

	if (ret == 1)
		return 0;
	if (!ret) {
		fprintf(stderr, "# vhost: expected the %s eventfd of vq %u within %d ms\n",
			what, idx, timeout_ms);
		return -ETIMEDOUT;
	}
	fprintf(stderr, "# vhost: waiting for the %s eventfd: %s\n", what, strerror(-ret));
	return ret;
}

int vhost_wait_call(const struct vhost_dev *dev, unsigned int idx, int timeout_ms)
{
	return wait_loud(dev->vq[idx].call, "call", idx, timeout_ms);
}

int vhost_wait_err(const struct vhost_dev *dev, unsigned int idx, int timeout_ms)
{
	return wait_loud(dev->vq[idx].err, "error", idx, timeout_ms);
}

int vhost_wait_log(const struct vhost_dev *dev, int timeout_ms)
{
	int ret = eventfd_wait(dev->log_fd, timeout_ms);

	if (ret == 1)
		return 0;
	fprintf(stderr, "# vhost: expected the dirty-log eventfd within %d ms\n", timeout_ms);
	return ret ? ret : -ETIMEDOUT;
}

int vhost_new_worker(const struct vhost_dev *dev, unsigned int *id)
{
	struct vhost_worker_state w = { .worker_id = ~0U };
	int ret;

	ret = vhost_ioctl(dev, VHOST_NEW_WORKER, &w);
	if (!ret)
		*id = w.worker_id;
	return ret;
}

int vhost_free_worker(const struct vhost_dev *dev, unsigned int id)
{
	struct vhost_worker_state w = { .worker_id = id };

	return vhost_ioctl(dev, VHOST_FREE_WORKER, &w);
}

int vhost_attach_worker(const struct vhost_dev *dev, unsigned int idx, unsigned int id)
{
	struct vhost_vring_worker w = { .index = idx, .worker_id = id };

	return vhost_ioctl(dev, VHOST_ATTACH_VRING_WORKER, &w);
}

int vhost_get_worker(const struct vhost_dev *dev, unsigned int idx, unsigned int *id)
{
	struct vhost_vring_worker w = { .index = idx, .worker_id = ~0U };
	int ret;

	ret = vhost_ioctl(dev, VHOST_GET_VRING_WORKER, &w);
	if (!ret)
		*id = w.worker_id;
	return ret;
}

int kvmx_test_run(const struct vhost_dev *dev, int on)
{
	return vhost_do(dev, KVMX_VHOST_TEST_RUN, &on);
}

int kvmx_test_stats(const struct vhost_dev *dev, unsigned int idx,
		    struct kvmx_vhost_test_stats *stats)
{
	memset(stats, 0, sizeof(*stats));
	stats->index = idx;
	return vhost_do(dev, KVMX_VHOST_TEST_GET_STATS, stats);
}

const char *kvmx_fault_name(unsigned int fault)
{
	static const char * const names[] = {
		[KVMX_FAULT_NONE] = "NONE",
		[KVMX_FAULT_HEAD_RANGE] = "HEAD_RANGE",
		[KVMX_FAULT_NEXT_RANGE] = "NEXT_RANGE",
		[KVMX_FAULT_LOOP] = "LOOP",
		[KVMX_FAULT_TOO_LONG] = "TOO_LONG",
		[KVMX_FAULT_TOO_MANY_SEGS] = "TOO_MANY_SEGS",
		[KVMX_FAULT_NESTED_INDIRECT] = "NESTED_INDIRECT",
		[KVMX_FAULT_INDIRECT_NEXT] = "INDIRECT_NEXT",
		[KVMX_FAULT_INDIRECT_SIZE] = "INDIRECT_SIZE",
		[KVMX_FAULT_INDIRECT_OFF] = "INDIRECT_OFF",
		[KVMX_FAULT_ZERO_LEN] = "ZERO_LEN",
		[KVMX_FAULT_OUT_AFTER_IN] = "OUT_AFTER_IN",
		[KVMX_FAULT_LEN_OVERFLOW] = "LEN_OVERFLOW",
		[KVMX_FAULT_ADDR] = "ADDR",
		[KVMX_FAULT_READ] = "READ",
		[KVMX_FAULT_AVAIL_IDX] = "AVAIL_IDX",
	};

	if (fault < ARRAY_SIZE(names) && names[fault])
		return names[fault];
	return "unknown";
}
