/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Guest memory for the kvmx selftests.
 *
 * The test process plays the guest and the VMM at once: guest memory is
 * anonymous memory of the process, described to the device as two memory
 * regions. Their layout is chosen so that a device confusing the address
 * spaces fails loudly instead of passing by luck:
 *
 *  - guest-physical addresses start at 1 MiB, nowhere near the process's
 *    own mappings, so a GPA used as a user address faults;
 *  - the two regions are adjacent in guest-physical space (a buffer may
 *    cross from one into the other) but swapped in the process's address
 *    space and separated by inaccessible guard pages, so a device that
 *    translates only the start of a buffer and copies linearly hits a
 *    guard page or the wrong region:
 *
 *      GPA:  [ region 0 @ 0x100000 ][ region 1 @ 0x900000 ]
 *      HVA:  guard [ region 1 ] guard [ region 0 ] guard
 *
 * A bump allocator hands out guest memory for rings, tables and buffers.
 * Allocations never straddle the region boundary unless the caller asks
 * for a fixed placement with guest_alloc_at().
 */
#ifndef KVMX_SELFTEST_GUEST_H
#define KVMX_SELFTEST_GUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GUEST_PAGE_SIZE		4096ULL
#define GUEST_NR_REGIONS	2
#define GUEST_BASE_GPA		0x100000ULL
#define GUEST_REGION_SIZE	(8ULL << 20)

struct guest_region {
	uint64_t gpa;
	uint64_t size;
	uint8_t *hva;
};

struct guest_mem {
	void *map;			/* the whole reservation, guards included */
	size_t map_size;
	struct guest_region region[GUEST_NR_REGIONS];
	uint64_t next_gpa;		/* bump allocator cursor */
};

int guest_mem_init(struct guest_mem *mem);
void guest_mem_destroy(struct guest_mem *mem);

/* First GPA past the end of guest memory. */
uint64_t guest_gpa_end(const struct guest_mem *mem);
/* GPA where region 1 starts, i.e. the end of region 0. */
uint64_t guest_region_boundary(const struct guest_mem *mem);

/*
 * Host address of [gpa, gpa + len), which must lie inside one region;
 * NULL (with a message) otherwise.
 */
void *guest_hva(const struct guest_mem *mem, uint64_t gpa, uint64_t len);
/* GPA of a host address inside guest memory; 0 (with a message) if none. */
uint64_t guest_gpa(const struct guest_mem *mem, const void *hva);

/*
 * Allocate @size bytes aligned to @align (a power of two), zero-filled.
 * Returns the GPA, or 0 (with a message) when guest memory is exhausted;
 * 0 is never a guest address here.
 */
uint64_t guest_alloc(struct guest_mem *mem, uint64_t size, uint64_t align);
/* Claim exactly [gpa, gpa + size), which must lie at or past the cursor. */
uint64_t guest_alloc_at(struct guest_mem *mem, uint64_t gpa, uint64_t size);

/* Copies that may cross the region boundary; 0 or -EFAULT (with a message). */
int guest_write(const struct guest_mem *mem, uint64_t gpa, const void *src, uint64_t len);
int guest_read(const struct guest_mem *mem, uint64_t gpa, void *dst, uint64_t len);
int guest_fill(const struct guest_mem *mem, uint64_t gpa, uint8_t byte, uint64_t len);

/*
 * Deterministic pseudo-random bytes (xorshift64*), so a failing run can be
 * repeated: the state is the seed the test logs.
 */
uint64_t rng_next(uint64_t *state);
void rng_fill(uint64_t *state, void *buf, size_t len);

#endif /* KVMX_SELFTEST_GUEST_H */
