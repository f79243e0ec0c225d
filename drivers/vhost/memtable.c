// SPDX-License-Identifier: GPL-2.0
/*
 * kvmx guest memory table: guest-physical ranges to VMM userspace addresses.
 *
 * The table comes from VHOST_SET_MEM_TABLE, i.e. from userspace, so every
 * region is checked once here and the lookups that follow may rely on the
 * table being sorted, non-overlapping and free of wrapping ranges.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/bsearch.h>
#include <linux/export.h>
#include <linux/overflow.h>
#include <linux/slab.h>
#include <linux/sort.h>
#include <linux/vhost_types.h>

#include "kvmx_vhost.h"

static int region_cmp(const void *a, const void *b)
{
	const struct kvmx_mem_region *ra = a, *rb = b;

	if (ra->gpa < rb->gpa)
		return -1;
	return ra->gpa > rb->gpa;
}

static bool region_valid(const struct vhost_memory_region *r)
{
	u64 end;

	if (!r->memory_size || r->flags_padding)
		return false;
	if (check_add_overflow(r->guest_phys_addr, r->memory_size - 1, &end))
		return false;
	if (check_add_overflow(r->userspace_addr, r->memory_size - 1, &end))
		return false;
	return true;
}

/**
 * kvmx_memtable_build - validate userspace regions and build a lookup table
 * @regions: a kernel copy of the regions userspace passed
 * @nregions: how many; the caller has bounded it
 *
 * Return: the table, or ERR_PTR(-EINVAL) for an empty, wrapping, flagged or
 * overlapping region, ERR_PTR(-ENOMEM).
 */
struct kvmx_memtable *kvmx_memtable_build(const struct vhost_memory_region *regions,
					  u32 nregions)
{
	struct kvmx_memtable *mt;
	u32 i;

	mt = kvzalloc(struct_size(mt, regions, nregions), GFP_KERNEL_ACCOUNT);
	if (!mt)
		return ERR_PTR(-ENOMEM);
	mt->nregions = nregions;

	for (i = 0; i < nregions; i++) {
		if (!region_valid(&regions[i]))
			goto invalid;
		mt->regions[i].gpa = regions[i].guest_phys_addr;
		mt->regions[i].size = regions[i].memory_size;
		mt->regions[i].uaddr = regions[i].userspace_addr;
	}

	sort(mt->regions, nregions, sizeof(mt->regions[0]), region_cmp, NULL);

	/* Sorted by start, so an overlap can only be with the next one. */
	for (i = 1; i < nregions; i++) {
		const struct kvmx_mem_region *prev = &mt->regions[i - 1];

		if (mt->regions[i].gpa - prev->gpa < prev->size)
			goto invalid;
	}
	return mt;

invalid:
	kvfree(mt);
	return ERR_PTR(-EINVAL);
}
EXPORT_SYMBOL_GPL(kvmx_memtable_build);

static int region_find(const void *key, const void *elt)
{
	u64 gpa = *(const u64 *)key;
	const struct kvmx_mem_region *r = elt;

	if (gpa < r->gpa)
		return -1;
	return gpa - r->gpa >= r->size;
}

/**
 * kvmx_memtable_lookup - the region holding one guest-physical address
 * @mt: the table
 * @gpa: the address
 *
 * Return: the region, or NULL when no region holds @gpa.
 */
const struct kvmx_mem_region *kvmx_memtable_lookup(const struct kvmx_memtable *mt,
						   u64 gpa)
{
	if (!mt)
		return NULL;
	return bsearch(&gpa, mt->regions, mt->nregions, sizeof(mt->regions[0]),
		       region_find);
}
EXPORT_SYMBOL_GPL(kvmx_memtable_lookup);

/**
 * kvmx_memtable_translate - map the start of a guest range to userspace
 * @mt: the table
 * @gpa: start of the range
 * @len: its length, at least 1; the caller has checked gpa + len - 1 does
 *       not wrap
 * @uaddr: set to the userspace address of @gpa
 * @contiguous: set to how many bytes from @gpa on are contiguous in that
 *              region, at most @len; callers loop for ranges that span
 *              adjacent regions
 *
 * Return: 0, or -EFAULT when @gpa is in no region.
 */
int kvmx_memtable_translate(const struct kvmx_memtable *mt, u64 gpa, u64 len,
			    u64 *uaddr, u64 *contiguous)
{
	const struct kvmx_mem_region *r = kvmx_memtable_lookup(mt, gpa);
	u64 off;

	if (!r)
		return -EFAULT;
	off = gpa - r->gpa;
	*uaddr = r->uaddr + off;
	*contiguous = min(len, r->size - off);
	return 0;
}
EXPORT_SYMBOL_GPL(kvmx_memtable_translate);
