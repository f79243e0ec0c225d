// SPDX-License-Identifier: GPL-2.0
/*
 * The one place that wires a virtio device to an in-kernel vhost backend.
 *
 * At creation: open the device node (or take an fd the caller opened),
 * VHOST_SET_OWNER (the backend's
 * workers then run in this process's mm), read the features it offers and
 * hand it the guest memory map (VHOST_SET_MEM_TABLE: the same two regions
 * KVM has). At the driver's DRIVER_OK: VHOST_SET_FEATURES with what the
 * driver accepted, then per queue SET_VRING_NUM, SET_VRING_BASE (0: a
 * freshly reset ring), SET_VRING_ADDR (host addresses of the three ring
 * parts, checked to lie in guest RAM), SET_VRING_KICK (the queue's KVM
 * ioeventfd), SET_VRING_CALL (the device's KVM irqfd) and SET_VRING_ERR
 * (an eventfd the main thread watches: the backend signals it when the
 * guest broke the ring). Neither kick nor call passes through vmlaunch.
 * The device-specific ioctl that starts the ring (VHOST_BLK_SET_BACKEND,
 * VHOST_NET_SET_BACKEND) is the caller's.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <linux/vhost.h>

#include "vhost.h"

/* Which module provides a device node, for the "no such file" message. */
static const char *vhost_module(const char *path)
{
	if (!strcmp(path, "/dev/vhost-blk"))
		return "kvmx_vhost_blk";
	if (!strcmp(path, "/dev/vhost-net"))
		return "vhost_net";
	if (!strcmp(path, "/dev/kvmx-vhost-net"))
		return "kvmx_vhost_net";
	return NULL;
}

int vhost_open(struct vhost *vh, const char *path, struct vm *vm)
{
	const char *module = vhost_module(path);
	int fd, r;

	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		r = -errno;
		if (r == -ENOENT && module)
			pr_err("%s: %s (is the %s module loaded?)", path, strerror(-r), module);
		else
			pr_err("%s: %s", path, strerror(-r));
		vh->fd = -1;
		return r;
	}
	return vhost_init_fd(vh, fd, path, vm);
}

int vhost_init_fd(struct vhost *vh, int fd, const char *name, struct vm *vm)
{
	const char *path = name;
	struct vhost_memory *mem;
	unsigned int n = 0;
	int r;

	vh->path = name;
	vh->fd = fd;
	if (ioctl(vh->fd, VHOST_SET_OWNER, NULL) < 0) {
		r = -errno;
		pr_err("%s: VHOST_SET_OWNER: %s", path, strerror(-r));
		goto fail;
	}
	if (ioctl(vh->fd, VHOST_GET_FEATURES, &vh->features) < 0) {
		r = -errno;
		pr_err("%s: VHOST_GET_FEATURES: %s", path, strerror(-r));
		goto fail;
	}

	mem = calloc(1, sizeof(*mem) + 2 * sizeof(mem->regions[0]));
	if (!mem) {
		r = -ENOMEM;
		goto fail;
	}
	mem->regions[n++] = (struct vhost_memory_region) {
		.guest_phys_addr = 0,
		.memory_size = vm->mem.low_size,
		.userspace_addr = (unsigned long)vm->mem.host,
	};
	if (vm->mem.size > vm->mem.low_size)
		mem->regions[n++] = (struct vhost_memory_region) {
			.guest_phys_addr = GUEST_HIGH_START,
			.memory_size = vm->mem.size - vm->mem.low_size,
			.userspace_addr = (unsigned long)(vm->mem.host + vm->mem.low_size),
		};
	mem->nregions = n;
	r = ioctl(vh->fd, VHOST_SET_MEM_TABLE, mem) < 0 ? -errno : 0;
	free(mem);
	if (r) {
		pr_err("%s: VHOST_SET_MEM_TABLE: %s", path, strerror(-r));
		goto fail;
	}
	return 0;
fail:
	close(vh->fd);
	vh->fd = -1;
	return r;
}

void vhost_close(struct vhost *vh)
{
	if (vh->fd >= 0)
		close(vh->fd);
	vh->fd = -1;
}

int vhost_set_features(struct vhost *vh, u64 features)
{
	if (ioctl(vh->fd, VHOST_SET_FEATURES, &features) < 0) {
		int r = -errno;

		pr_err("%s: VHOST_SET_FEATURES 0x%llx: %s", vh->path,
		       (unsigned long long)features, strerror(-r));
		return r;
	}
	return 0;
}

static int vring_ioctl(struct vhost *vh, unsigned long req, const char *name, void *arg,
		       unsigned int index)
{
	if (ioctl(vh->fd, req, arg) < 0) {
		int r = -errno;

		pr_err("%s: %s on queue %u: %s", vh->path, name, index, strerror(-r));
		return r;
	}
	return 0;
}

int vhost_setup_vring(struct vhost *vh, struct vm *vm, unsigned int index,
		      const struct virtio_queue *q, u64 features, int call_fd, int err_fd)
{
	struct vhost_vring_file err = { .index = index, .fd = err_fd };
	bool event_idx = features & (1ULL << VIRTIO_RING_F_EVENT_IDX);
	struct vhost_vring_state num = { .index = index, .num = q->num };
	struct vhost_vring_state base = { .index = index, .num = 0 };
	struct vhost_vring_file kick = { .index = index, .fd = q->kick_fd };
	struct vhost_vring_file call = { .index = index, .fd = call_fd };
	struct vhost_vring_addr addr = { .index = index };
	void *desc, *avail, *used;
	int r;

	/* The same checks a userspace ring gets (virtio.c), before the kernel's. */
	desc = gpa_to_hva(vm, q->desc, 16ULL * q->num);
	avail = gpa_to_hva(vm, q->avail, 4 + 2ULL * q->num + (event_idx ? 2 : 0));
	used = gpa_to_hva(vm, q->used, 4 + 8ULL * q->num + (event_idx ? 2 : 0));
	if (!desc || !avail || !used || (q->desc & 15) || (q->avail & 1) || (q->used & 3)) {
		pr_guest_once("queue %u: ring outside guest memory or misaligned", index);
		return -EFAULT;
	}
	addr.desc_user_addr = (unsigned long)desc;
	addr.avail_user_addr = (unsigned long)avail;
	addr.used_user_addr = (unsigned long)used;

	r = vring_ioctl(vh, VHOST_SET_VRING_NUM, "VHOST_SET_VRING_NUM", &num, index);
	if (!r)
		r = vring_ioctl(vh, VHOST_SET_VRING_BASE, "VHOST_SET_VRING_BASE", &base, index);
	if (!r)
		r = vring_ioctl(vh, VHOST_SET_VRING_ADDR, "VHOST_SET_VRING_ADDR", &addr, index);
	if (!r)
		r = vring_ioctl(vh, VHOST_SET_VRING_KICK, "VHOST_SET_VRING_KICK", &kick, index);
	if (!r)
		r = vring_ioctl(vh, VHOST_SET_VRING_CALL, "VHOST_SET_VRING_CALL", &call, index);
	if (!r && err_fd >= 0)
		r = vring_ioctl(vh, VHOST_SET_VRING_ERR, "VHOST_SET_VRING_ERR", &err, index);
	return r;
}
