/* SPDX-License-Identifier: GPL-2.0 */
#ifndef VMLAUNCH_DEV_NET_H
#define VMLAUNCH_DEV_NET_H

#include "virtio.h"

struct net_dev;

/* A virtio-net NIC on a tap, on its own virtio-mmio transport; @info is for ACPI. */
struct net_dev *net_create(struct vm *vm, const struct net_config *cfg, unsigned int index,
			   struct acpi_device_info *info);
void net_destroy(struct net_dev *n);

#endif /* VMLAUNCH_DEV_NET_H */
