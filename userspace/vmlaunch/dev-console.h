/* SPDX-License-Identifier: GPL-2.0 */
#ifndef VMLAUNCH_DEV_CONSOLE_H
#define VMLAUNCH_DEV_CONSOLE_H

#include "virtio.h"

struct vcon;

/*
 * A single-port virtio-console (the guest's hvc0) on its own virtio-mmio
 * transport, served by the main thread's loop; @info is for ACPI.
 */
struct vcon *vcon_create(struct vm *vm, struct acpi_device_info *info);
/* Main thread: give stdin bytes to the guest; returns how many it took. */
size_t vcon_input(struct vcon *vc, const u8 *buf, size_t len);
void vcon_destroy(struct vcon *vc);

#endif /* VMLAUNCH_DEV_CONSOLE_H */
