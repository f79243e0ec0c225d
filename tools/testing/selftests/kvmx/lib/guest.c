// SPDX-License-Identifier: GPL-2.0
/*
 * Guest memory for the kvmx selftests: two regions of anonymous memory,
 * adjacent in guest-physical space, swapped and guarded in host space.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "guest.h"

#define GUARD_SIZE	GUEST_PAGE_SIZE

int guest_mem_init(struct guest_mem *mem)
{
	uint8_t *p;
	int i;

	memset(mem, 0, sizeof(*mem));
	/* guard | region 1 | guard | region 0 | guard */
	mem->map_size = 3 * GUARD_SIZE + GUEST_NR_REGIONS * GUEST_REGION_SIZE;
	mem->map = mmap(NULL, mem->map_size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS,
			-1, 0);
	if (mem->map == MAP_FAILED) {
		fprintf(stderr, "# guest: cannot reserve %zu bytes of guest memory: %s\n",
			mem->map_size, strerror(errno));
		mem->map = NULL;
		return -ENOMEM;
	}
	p = mem->map;
	mem->region[1].hva = p + GUARD_SIZE;
	mem->region[0].hva = p + 2 * GUARD_SIZE + GUEST_REGION_SIZE;
	for (i = 0; i < GUEST_NR_REGIONS; i++) {
		mem->region[i].gpa = GUEST_BASE_GPA + i * GUEST_REGION_SIZE;
		mem->region[i].size = GUEST_REGION_SIZE;
		if (mprotect(mem->region[i].hva, GUEST_REGION_SIZE,
			     PROT_READ | PROT_WRITE)) {
			fprintf(stderr, "# guest: cannot map region %d: %s\n", i,
				strerror(errno));
			guest_mem_destroy(mem);
			return -ENOMEM;
		}
	}
	mem->next_gpa = GUEST_BASE_GPA;
	return 0;
}

void guest_mem_destroy(struct guest_mem *mem)
{
	if (mem->map)
		munmap(mem->map, mem->map_size);
	memset(mem, 0, sizeof(*mem));
}

uint64_t guest_gpa_end(const struct guest_mem *mem)
{
	const struct guest_region *last = &mem->region[GUEST_NR_REGIONS - 1];

	return last->gpa + last->size;
}

uint64_t guest_region_boundary(const struct guest_mem *mem)
{
	return mem->region[1].gpa;
}

static const struct guest_region *region_of(const struct guest_mem *mem, uint64_t gpa)
{
	int i;

	for (i = 0; i < GUEST_NR_REGIONS; i++) {
		const struct guest_region *r = &mem->region[i];

		if (gpa >= r->gpa && gpa - r->gpa < r->size)
			return r;
	}
	return NULL;
}

void *guest_hva(const struct guest_mem *mem, uint64_t gpa, uint64_t len)
{
	const struct guest_region *r = region_of(mem, gpa);

	if (!r || len > r->size - (gpa - r->gpa)) {
		fprintf(stderr,
			"# guest: expected [%#llx, +%#llx) inside one guest memory region\n",
			(unsigned long long)gpa, (unsigned long long)len);
		return NULL;
	}
	return r->hva + (gpa - r->gpa);
}

uint64_t guest_gpa(const struct guest_mem *mem, const void *hva)
{
	const uint8_t *p = hva;
	int i;

	for (i = 0; i < GUEST_NR_REGIONS; i++) {
		const struct guest_region *r = &mem->region[i];

		if (p >= r->hva && (uint64_t)(p - r->hva) < r->size)
			return r->gpa + (p - r->hva);
	}
	fprintf(stderr, "# guest: host address %p is not guest memory\n", hva);
	return 0;
}

uint64_t guest_alloc(struct guest_mem *mem, uint64_t size, uint64_t align)
{
	uint64_t gpa;
	int i;

	if (!size || !align || (align & (align - 1))) {
		fprintf(stderr, "# guest: bad allocation of %#llx bytes aligned to %#llx\n",
			(unsigned long long)size, (unsigned long long)align);
		return 0;
	}
	for (i = 0; i < GUEST_NR_REGIONS; i++) {
		const struct guest_region *r = &mem->region[i];
		uint64_t end = r->gpa + r->size;

		gpa = mem->next_gpa > r->gpa ? mem->next_gpa : r->gpa;
		gpa = (gpa + align - 1) & ~(align - 1);
		if (gpa < end && size <= end - gpa) {
			mem->next_gpa = gpa + size;
			memset(r->hva + (gpa - r->gpa), 0, size);
			return gpa;
		}
	}
	fprintf(stderr, "# guest: out of guest memory allocating %#llx bytes\n",
		(unsigned long long)size);
	return 0;
}

uint64_t guest_alloc_at(struct guest_mem *mem, uint64_t gpa, uint64_t size)
{
	if (gpa < mem->next_gpa || gpa < GUEST_BASE_GPA || !size ||
	    size > guest_gpa_end(mem) - gpa) {
		fprintf(stderr,
			"# guest: cannot place [%#llx, +%#llx): expected a free range at or past %#llx\n",
			(unsigned long long)gpa, (unsigned long long)size,
			(unsigned long long)mem->next_gpa);
		return 0;
	}
	mem->next_gpa = gpa + size;
	if (guest_fill(mem, gpa, 0, size))
		return 0;
	return gpa;
}

/* Walk [gpa, gpa + len) one region-contiguous piece at a time. */
static int guest_walk(const struct guest_mem *mem, uint64_t gpa, uint64_t len,
		      void (*fn)(uint8_t *hva, uint64_t off, uint64_t n, void *arg),
		      void *arg)
{
	uint64_t off = 0;

	while (off < len) {
		const struct guest_region *r = region_of(mem, gpa + off);
		uint64_t n;

		if (!r) {
			fprintf(stderr,
				"# guest: [%#llx, +%#llx) leaves guest memory at %#llx\n",
				(unsigned long long)gpa, (unsigned long long)len,
				(unsigned long long)(gpa + off));
			return -EFAULT;
		}
		n = r->size - (gpa + off - r->gpa);
		if (n > len - off)
			n = len - off;
		fn(r->hva + (gpa + off - r->gpa), off, n, arg);
		off += n;
	}
	return 0;
}

static void copy_in(uint8_t *hva, uint64_t off, uint64_t n, void *arg)
{
	memcpy(hva, (const uint8_t *)arg + off, n);
}

static void copy_out(uint8_t *hva, uint64_t off, uint64_t n, void *arg)
{
	memcpy((uint8_t *)arg + off, hva, n);
}

static void fill(uint8_t *hva, uint64_t off, uint64_t n, void *arg)
{
	(void)off;
	memset(hva, *(const uint8_t *)arg, n);
}

int guest_write(const struct guest_mem *mem, uint64_t gpa, const void *src, uint64_t len)
{
	return guest_walk(mem, gpa, len, copy_in, (void *)src);
}

int guest_read(const struct guest_mem *mem, uint64_t gpa, void *dst, uint64_t len)
{
	return guest_walk(mem, gpa, len, copy_out, dst);
}

int guest_fill(const struct guest_mem *mem, uint64_t gpa, uint8_t byte, uint64_t len)
{
	return guest_walk(mem, gpa, len, fill, &byte);
}

uint64_t rng_next(uint64_t *state)
{
	uint64_t x = *state ? *state : 0x9e3779b97f4a7c15ULL;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*state = x;
	return x * 0x2545f4914f6cdd1dULL;
}

void rng_fill(uint64_t *state, void *buf, size_t len)
{
	uint8_t *p = buf;
	size_t i;

	for (i = 0; i < len; i += 8) {
		uint64_t v = rng_next(state);
		size_t n = len - i < 8 ? len - i : 8;

		memcpy(p + i, &v, n);
	}
}
