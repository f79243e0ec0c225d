// SPDX-License-Identifier: GPL-2.0
/*
 * The VM's port I/O and MMIO buses: which handler an access goes to. No
 * KVM here, so pci_test links it too, with kvm_stub.c in place of kvm.c.
 */
#include <errno.h>

#include "vmlaunch.h"

static int register_range(struct io_range *ranges, unsigned int *n, u64 base, u64 len,
			  io_handler_fn fn, void *opaque)
{
	unsigned int i;

	if (*n >= VM_MAX_RANGES || !len || base + len < base)
		return -EINVAL;
	for (i = 0; i < *n; i++) {
		if (base < ranges[i].base + ranges[i].len && ranges[i].base < base + len)
			return -EBUSY;
	}
	ranges[(*n)++] = (struct io_range){ base, len, fn, opaque };
	return 0;
}

int vm_register_pio(struct vm *vm, u64 base, u64 len, io_handler_fn fn, void *opaque)
{
	return register_range(vm->pio, &vm->npio, base, len, fn, opaque);
}

int vm_register_mmio(struct vm *vm, u64 base, u64 len, io_handler_fn fn, void *opaque)
{
	return register_range(vm->mmio, &vm->nmmio, base, len, fn, opaque);
}

/*
 * Find the range holding all of [addr, addr + len). An access that
 * straddles a range's end is not dispatched: reads see all ones (port I/O)
 * or zeroes (MMIO), writes are dropped.
 */
const struct io_range *vm_find_range(const struct io_range *ranges, unsigned int n,
				     u64 addr, u32 len)
{
	unsigned int i;

	for (i = 0; i < n; i++) {
		const struct io_range *r = &ranges[i];

		if (addr >= r->base && addr - r->base < r->len &&
		    len <= r->len - (addr - r->base))
			return r;
	}
	return NULL;
}
