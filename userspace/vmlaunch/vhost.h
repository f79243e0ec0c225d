/* SPDX-License-Identifier: GPL-2.0 */
#ifndef VMLAUNCH_VHOST_H
#define VMLAUNCH_VHOST_H

#include "virtio.h"

struct vhost {
	int fd;
	const char *path;
	u64 features;		/* what the backend offers */
};

int vhost_open(struct vhost *vh, const char *path, struct vm *vm);
/* The same on an fd opened by someone else (named @name in messages); takes it. */
int vhost_init_fd(struct vhost *vh, int fd, const char *name, struct vm *vm);
void vhost_close(struct vhost *vh);
int vhost_set_features(struct vhost *vh, u64 features);
int vhost_setup_vring(struct vhost *vh, struct vm *vm, unsigned int index,
		      const struct virtio_queue *q, u64 features, int call_fd, int err_fd);

#endif /* VMLAUNCH_VHOST_H */
