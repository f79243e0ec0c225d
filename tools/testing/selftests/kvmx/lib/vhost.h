/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The VMM side of a kvmx vhost device for the selftests: open the device,
 * take ownership, describe guest memory, wire each virtqueue to its rings
 * and to kick/call/err eventfds, and wait for the device to call back.
 *
 * Conventions: every function returns 0 (or a non-negative value) on
 * success and a negative errno on failure. vhost_ioctl() is silent, for
 * tests that expect an error; every other helper says on stderr what it
 * expected when the device does something else.
 */
#ifndef KVMX_SELFTEST_VHOST_H
#define KVMX_SELFTEST_VHOST_H

#include <stdbool.h>
#include <stdint.h>
#include <linux/kvmx_vhost.h>

#include "guest.h"
#include "vring.h"

#define VHOST_DEV_MAX_VQS	8

/* How long a helper waits for the device before declaring it stuck. */
#define VHOST_TIMEOUT_MS	3000

struct vhost_vq_fds {
	int kick;
	int call;
	int err;
};

struct vhost_dev {
	int fd;
	unsigned int nvqs;
	struct vhost_vq_fds vq[VHOST_DEV_MAX_VQS];
	int log_fd;
};

/*
 * Open @path and create the eventfds of @nvqs virtqueues and of the dirty
 * log. Returns -errno of open() as is (so a caller can skip on ENOENT).
 */
int vhost_open(struct vhost_dev *dev, const char *path, unsigned int nvqs);
/* Close the device and every eventfd; safe to call twice. */
void vhost_close(struct vhost_dev *dev);

/* ioctl() returning -errno instead of -1; never prints. */
int vhost_ioctl(const struct vhost_dev *dev, unsigned long req, void *arg);

int vhost_set_owner(const struct vhost_dev *dev);
int vhost_get_features(const struct vhost_dev *dev, uint64_t *features);
int vhost_set_features(const struct vhost_dev *dev, uint64_t features);
int vhost_set_mem_table(const struct vhost_dev *dev, const struct guest_mem *mem);
/* VHOST_SET_LOG_BASE to @bitmap and VHOST_SET_LOG_FD to the log eventfd. */
int vhost_set_log(const struct vhost_dev *dev, void *bitmap);
/*
 * A zeroed dirty-log bitmap (one bit per guest page) covering @mem, and
 * its size in *@size for memset()/vhost_log_free(); NULL with a message
 * if it cannot be mapped.
 */
uint8_t *vhost_log_alloc(const struct guest_mem *mem, size_t *size);
void vhost_log_free(uint8_t *bitmap, size_t size);
/* Whether the page holding @gpa is marked dirty in @bitmap. */
bool vhost_log_page_dirty(const uint8_t *bitmap, uint64_t gpa);

/*
 * Wire virtqueue @idx to @vr: SET_VRING_NUM, SET_VRING_BASE (the ring's
 * next used index), SET_VRING_ADDR (with @addr_flags and @log_gpa), and
 * the kick, call and err eventfds.
 */
int vhost_setup_vq(const struct vhost_dev *dev, unsigned int idx, const struct vring_drv *vr,
		   unsigned int addr_flags, uint64_t log_gpa);
int vhost_set_vring_base(const struct vhost_dev *dev, unsigned int idx, unsigned int base);
int vhost_get_vring_base(const struct vhost_dev *dev, unsigned int idx, unsigned int *base);

/* Signal the kick eventfd of virtqueue @idx. */
int vhost_kick(const struct vhost_dev *dev, unsigned int idx);

/*
 * Wait up to @timeout_ms for an eventfd to fire and consume its count.
 * Returns 1 if it fired, 0 on timeout, -errno on error.
 */
int eventfd_wait(int fd, int timeout_ms);
/* Consume a pending signal without waiting: 1 if there was one, else 0. */
int eventfd_take(int fd);
/*
 * The same two, counting: how many times the eventfd was signalled since
 * its last read (0 if not, or on timeout; -errno on error).
 */
uint64_t eventfd_count(int fd);
int64_t eventfd_wait_count(int fd, int timeout_ms);

/* The same, on the call/err eventfd of @idx or the log eventfd, but loud. */
int vhost_wait_call(const struct vhost_dev *dev, unsigned int idx, int timeout_ms);
int vhost_wait_err(const struct vhost_dev *dev, unsigned int idx, int timeout_ms);
int vhost_wait_log(const struct vhost_dev *dev, int timeout_ms);

/* Workers: ids through @id; all silent, the tests check the errors. */
int vhost_new_worker(const struct vhost_dev *dev, unsigned int *id);
int vhost_free_worker(const struct vhost_dev *dev, unsigned int id);
int vhost_attach_worker(const struct vhost_dev *dev, unsigned int idx, unsigned int id);
int vhost_get_worker(const struct vhost_dev *dev, unsigned int idx, unsigned int *id);

/* /dev/kvmx-vhost-test */
#define KVMX_TEST_DEV_PATH	"/dev/kvmx-vhost-test"
#define KVMX_TEST_MODULE	"kvmx_vhost_test"

int kvmx_test_run(const struct vhost_dev *dev, int on);
int kvmx_test_stats(const struct vhost_dev *dev, unsigned int idx,
		    struct kvmx_vhost_test_stats *stats);
const char *kvmx_fault_name(unsigned int fault);

#endif /* KVMX_SELFTEST_VHOST_H */
