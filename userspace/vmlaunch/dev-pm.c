// SPDX-License-Identifier: GPL-2.0
/*
 * Power management without firmware: the registers the FADT (acpi.c)
 * describes, plus the i8042 reset line.
 *
 * - Sleep control register (ACPI 5 hardware-reduced sleep): a write with
 *   SLP_EN set and SLP_TYP equal to \_S5's value is a poweroff. Linux's
 *   kernel_power_off() ends there (poweroff -f, or init's poweroff).
 * - Sleep status register: reads 0, writes (clearing WAK_STS) are ignored.
 * - Reset register: writing the FADT's reset value is a reboot (Linux's
 *   default reboot=acpi).
 * - i8042 command port 0x64: command 0xfe pulses the CPU reset line
 *   (reboot=k). The status register reads 0 (buffers empty) so that the
 *   kernel's keyboard-controller wait loops end at once.
 */
#include "vmlaunch.h"

#define I8042_DATA_PORT		0x60
#define I8042_COMMAND_PORT	0x64
#define I8042_CMD_RESET		0xfe

#define ACPI_X_SLEEP_TYPE_SHIFT	2
#define ACPI_X_SLEEP_TYPE_MASK	0x1c
#define ACPI_X_SLEEP_ENABLE	0x20

static void pm_io(void *opaque, u64 offset, u8 *data, u32 len, bool write)
{
	struct vm *vm = opaque;
	u16 port = PM_SLEEP_CONTROL_PORT + offset;
	u8 v = data[0];

	if (!write) {
		for (u32 i = 0; i < len; i++)
			data[i] = 0;
		return;
	}
	switch (port) {
	case PM_SLEEP_CONTROL_PORT:
		if (!(v & ACPI_X_SLEEP_ENABLE))
			break;
		if (((v & ACPI_X_SLEEP_TYPE_MASK) >> ACPI_X_SLEEP_TYPE_SHIFT) == PM_S5_SLP_TYP) {
			pr_debug("guest powered off");
			vm_request_stop(vm, VMLAUNCH_EXIT_POWEROFF);
		} else {
			pr_guest_once("sleep state %u requested; only S5 (poweroff) exists",
				      (v & ACPI_X_SLEEP_TYPE_MASK) >> ACPI_X_SLEEP_TYPE_SHIFT);
		}
		break;
	case PM_RESET_PORT:
		if (v == PM_RESET_VALUE) {
			pr_debug("guest reset (ACPI reset register)");
			vm_request_stop(vm, VMLAUNCH_EXIT_REBOOT);
		}
		break;
	}
}

static void i8042_io(void *opaque, u64 offset, u8 *data, u32 len, bool write)
{
	struct vm *vm = opaque;

	if (!write) {
		for (u32 i = 0; i < len; i++)
			data[i] = 0;
		return;
	}
	if (offset == I8042_COMMAND_PORT - I8042_DATA_PORT && data[0] == I8042_CMD_RESET) {
		pr_debug("guest reset (i8042)");
		vm_request_stop(vm, VMLAUNCH_EXIT_REBOOT);
	}
}

int pm_create(struct vm *vm)
{
	int r;

	r = vm_register_pio(vm, PM_SLEEP_CONTROL_PORT, 3, pm_io, vm);
	if (r)
		return r;
	return vm_register_pio(vm, I8042_DATA_PORT, 5, i8042_io, vm);
}
