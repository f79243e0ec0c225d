/* SPDX-License-Identifier: GPL-2.0 */
#ifndef VMLAUNCH_DEV_BLK_H
#define VMLAUNCH_DEV_BLK_H

#include "virtio.h"

struct blk_dev;

/* A virtio-blk disk on its own virtio-mmio transport; @info is for ACPI. */
struct blk_dev *blk_create(struct vm *vm, const struct disk_config *cfg, unsigned int index,
			   struct acpi_device_info *info);
void blk_destroy(struct blk_dev *b);

#endif /* VMLAUNCH_DEV_BLK_H */
