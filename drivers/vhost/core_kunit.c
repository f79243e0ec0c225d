// SPDX-License-Identifier: GPL-2.0
/*
 * KUnit suites for the pure logic of the kvmx virtqueue core: the guest
 * memory table, the descriptor chain walk, EVENT_IDX and the dirty-log
 * page maths, the adaptive poll window, and the call hold
 * (kvmx_hold_start() / kvmx_hold_end(): how long a polling worker holds
 * the guest's call for the rest of its burst).
 *
 * The chain walk reads descriptors through struct kvmx_mem_ops; here that
 * is a fake whose "userspace address" is an offset into one kernel buffer,
 * bounds-checked, so hostile descriptor tables can be built and walked
 * without a VM or any user mapping. The memory table of the chain fixture
 * maps guest-physical ranges onto the same buffer:
 *
 *   uaddr 0x0000-0x0fff  direct descriptor table (ring->desc_uaddr)
 *   uaddr 0x1000-0x1fff  region A, gpa 0x10000-0x10fff
 *   uaddr 0x3000-0x3fff  region B, gpa 0x11000-0x11fff (adjacent to A)
 *   uaddr 0x2000-0x2fff  region C, gpa 0x20000-0x20fff
 *   region BIG: 4 GiB at gpa 4 GiB, never read, for length overflows
 *
 * Everything a test allocates is released by KUnit when the test ends.
 */
#include <kunit/resource.h>
#include <kunit/test.h>
#include <linux/err.h>
#include <linux/kernel.h>
#include <linux/limits.h>
#include <linux/module.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/vhost_types.h>

#include "kvmx_vhost.h"

KUNIT_DEFINE_ACTION_WRAPPER(kvfree_action, kvfree, const void *);

/* Memory the test owns until it ends: vmalloc-backed when large. */
static void *test_kvcalloc(struct kunit *test, size_t n, size_t size)
{
	void *p = kvcalloc(n, size, GFP_KERNEL);

	KUNIT_ASSERT_NOT_NULL(test, p);
	KUNIT_ASSERT_EQ(test, kunit_add_action_or_reset(test, kvfree_action, p), 0);
	return p;
}

/* kvmx_memtable_build(), with the table freed when the test ends. */
static struct kvmx_memtable *build_table(struct kunit *test,
					 const struct vhost_memory_region *r,
					 u32 n)
{
	struct kvmx_memtable *mt = kvmx_memtable_build(r, n);

	if (!IS_ERR(mt))
		KUNIT_ASSERT_EQ(test,
				kunit_add_action_or_reset(test, kvfree_action, mt), 0);
	return mt;
}

#define REGION(g, s, u) { .guest_phys_addr = (g), .memory_size = (s), \
			  .userspace_addr = (u) }

/* ---- kvmx_core_memtable ------------------------------------------------ */

static void memtable_test_empty(struct kunit *test)
{
	struct kvmx_memtable *mt = build_table(test, NULL, 0);
	u64 uaddr = 0, contig = 0;

	KUNIT_ASSERT_NOT_ERR_OR_NULL(test, mt);
	KUNIT_EXPECT_EQ(test, mt->nregions, 0);
	KUNIT_EXPECT_NULL(test, kvmx_memtable_lookup(mt, 0));
	KUNIT_EXPECT_NULL(test, kvmx_memtable_lookup(mt, U64_MAX));
	KUNIT_EXPECT_EQ(test, kvmx_memtable_translate(mt, 0, 1, &uaddr, &contig),
			-EFAULT);
}

static void memtable_test_rejects_zero_size(struct kunit *test)
{
	const struct vhost_memory_region r[] = {
		REGION(0x0, 0x1000, 0x10000),
		REGION(0x2000, 0, 0x20000),
		REGION(0x0, 0, 0x0),	/* "size - 1" alone would not catch it */
	};

	KUNIT_EXPECT_EQ(test, PTR_ERR_OR_ZERO(build_table(test, r, 2)), -EINVAL);
	KUNIT_EXPECT_EQ(test, PTR_ERR_OR_ZERO(build_table(test, r + 1, 1)), -EINVAL);
	KUNIT_EXPECT_EQ(test, PTR_ERR_OR_ZERO(build_table(test, r + 2, 1)), -EINVAL);
	/* The same table without the empty region is fine. */
	KUNIT_EXPECT_EQ(test, PTR_ERR_OR_ZERO(build_table(test, r, 1)), 0);
}

static void memtable_test_rejects_flags_padding(struct kunit *test)
{
	struct vhost_memory_region r[] = {
		REGION(0x0, 0x1000, 0x10000),
		REGION(0x2000, 0x1000, 0x20000),
	};

	r[1].flags_padding = 1;
	KUNIT_EXPECT_EQ(test, PTR_ERR_OR_ZERO(build_table(test, r, 2)), -EINVAL);
	r[1].flags_padding = 1ULL << 63;
	KUNIT_EXPECT_EQ(test, PTR_ERR_OR_ZERO(build_table(test, r, 2)), -EINVAL);
	r[1].flags_padding = 0;
	KUNIT_EXPECT_EQ(test, PTR_ERR_OR_ZERO(build_table(test, r, 2)), 0);
}

static void memtable_test_rejects_gpa_wrap(struct kunit *test)
{
	const struct vhost_memory_region r[] = {
		REGION(U64_MAX - 0xfff, 0x1001, 0x10000),
		REGION(0x1000, U64_MAX, 0x0),
		REGION(U64_MAX, 2, 0x10000),
	};
	u32 i;

	for (i = 0; i < ARRAY_SIZE(r); i++)
		KUNIT_EXPECT_EQ_MSG(test, PTR_ERR_OR_ZERO(build_table(test, &r[i], 1)),
				    -EINVAL, "region %u wraps the guest space", i);
}

static void memtable_test_accepts_region_ending_at_top(struct kunit *test)
{
	const struct vhost_memory_region r = REGION(U64_MAX - 0xfff, 0x1000, 0x5000);
	struct kvmx_memtable *mt = build_table(test, &r, 1);
	u64 uaddr = 0, contig = 0;

	/* Its last byte is U64_MAX: nothing wraps. */
	KUNIT_ASSERT_NOT_ERR_OR_NULL(test, mt);
	KUNIT_EXPECT_PTR_EQ(test, kvmx_memtable_lookup(mt, U64_MAX), &mt->regions[0]);
	KUNIT_EXPECT_NULL(test, kvmx_memtable_lookup(mt, U64_MAX - 0x1000));
	KUNIT_ASSERT_EQ(test, kvmx_memtable_translate(mt, U64_MAX, 1, &uaddr, &contig), 0);
	KUNIT_EXPECT_EQ(test, uaddr, 0x5fffULL);
	KUNIT_EXPECT_EQ(test, contig, 1ULL);
}

static void memtable_test_rejects_uaddr_wrap(struct kunit *test)
{
	const struct vhost_memory_region bad = REGION(0x0, 0x2000, U64_MAX - 0xfff);
	const struct vhost_memory_region top = REGION(0x0, 0x1000, U64_MAX - 0xfff);

	KUNIT_EXPECT_EQ(test, PTR_ERR_OR_ZERO(build_table(test, &bad, 1)), -EINVAL);
	KUNIT_EXPECT_EQ(test, PTR_ERR_OR_ZERO(build_table(test, &top, 1)), 0);
}

static void memtable_test_rejects_overlap(struct kunit *test)
{
	const struct vhost_memory_region r[] = {
		REGION(0x1000, 0x2000, 0x10000),
		REGION(0x2fff, 0x1000, 0x20000),	/* shares byte 0x2fff */
	};

	KUNIT_EXPECT_EQ(test, PTR_ERR_OR_ZERO(build_table(test, r, 2)), -EINVAL);
}

static void memtable_test_rejects_overlap_after_sort(struct kunit *test)
{
	/*
	 * Neighbours in the input never overlap; regions 1 and 3 do, and
	 * only become neighbours once sorted.
	 */
	const struct vhost_memory_region r[] = {
		REGION(0x40000, 0x1000, 0x10000),
		REGION(0x0, 0x1000, 0x20000),
		REGION(0x80000, 0x1000, 0x30000),
		REGION(0x800, 0x1000, 0x40000),
	};

	KUNIT_EXPECT_EQ(test, PTR_ERR_OR_ZERO(build_table(test, r, 4)), -EINVAL);
}

static void memtable_test_rejects_same_start(struct kunit *test)
{
	const struct vhost_memory_region r[] = {
		REGION(0x4000, 0x1000, 0x10000),
		REGION(0x4000, 0x1000, 0x20000),
	};

	KUNIT_EXPECT_EQ(test, PTR_ERR_OR_ZERO(build_table(test, r, 2)), -EINVAL);
}

static void memtable_test_rejects_contained(struct kunit *test)
{
	const struct vhost_memory_region r[] = {
		REGION(0x6000, 0x1000, 0x20000),
		REGION(0x0, 0x100000, 0x10000),
	};

	KUNIT_EXPECT_EQ(test, PTR_ERR_OR_ZERO(build_table(test, r, 2)), -EINVAL);
}

static void memtable_test_touching_accepted(struct kunit *test)
{
	const struct vhost_memory_region r[] = {
		REGION(0x1000, 0x1000, 0x90000),
		REGION(0x0, 0x1000, 0x70000),
		REGION(0x2000, 0x1000, 0x50000),
	};
	struct kvmx_memtable *mt = build_table(test, r, 3);

	KUNIT_ASSERT_NOT_ERR_OR_NULL(test, mt);
	KUNIT_ASSERT_EQ(test, mt->nregions, 3);
	KUNIT_EXPECT_PTR_EQ(test, kvmx_memtable_lookup(mt, 0xfff), &mt->regions[0]);
	KUNIT_EXPECT_PTR_EQ(test, kvmx_memtable_lookup(mt, 0x1000), &mt->regions[1]);
	KUNIT_EXPECT_PTR_EQ(test, kvmx_memtable_lookup(mt, 0x1fff), &mt->regions[1]);
	KUNIT_EXPECT_PTR_EQ(test, kvmx_memtable_lookup(mt, 0x2000), &mt->regions[2]);
	KUNIT_EXPECT_NULL(test, kvmx_memtable_lookup(mt, 0x3000));
}

static void memtable_test_sorts(struct kunit *test)
{
	const struct vhost_memory_region r[] = {
		REGION(0x300000, 0x3000, 0xc000),
		REGION(0x100000, 0x1000, 0xa000),
		REGION(0x400000, 0x4000, 0xd000),
		REGION(0x200000, 0x2000, 0xb000),
	};
	struct kvmx_memtable *mt = build_table(test, r, 4);
	u32 i;

	KUNIT_ASSERT_NOT_ERR_OR_NULL(test, mt);
	KUNIT_ASSERT_EQ(test, mt->nregions, 4);
	/* Sorted by gpa, and each region keeps its own size and uaddr. */
	for (i = 0; i < 4; i++) {
		KUNIT_EXPECT_EQ(test, mt->regions[i].gpa, (i + 1) * 0x100000ULL);
		KUNIT_EXPECT_EQ(test, mt->regions[i].size, (i + 1) * 0x1000ULL);
		KUNIT_EXPECT_EQ(test, mt->regions[i].uaddr, 0xa000ULL + i * 0x1000);
	}
}

/* Regions with holes around and between them, in unsorted order. */
static const struct vhost_memory_region lookup_regions[] = {
	REGION(0x200000, 0x4000, 0x7f0000200000ULL),
	REGION(0x1000, 0x1000, 0x7f0000001000ULL),
	REGION(0x100000000ULL, 0x10000, 0x7f1000000000ULL),
};

static void memtable_test_lookup_boundaries(struct kunit *test)
{
	struct kvmx_memtable *mt = build_table(test, lookup_regions, 3);
	u32 i;

	KUNIT_ASSERT_NOT_ERR_OR_NULL(test, mt);
	KUNIT_ASSERT_EQ(test, mt->nregions, 3);
	for (i = 0; i < 3; i++) {
		const struct kvmx_mem_region *r = &mt->regions[i];

		KUNIT_EXPECT_PTR_EQ_MSG(test, kvmx_memtable_lookup(mt, r->gpa), r,
					"first byte of region %u", i);
		KUNIT_EXPECT_PTR_EQ_MSG(test,
					kvmx_memtable_lookup(mt, r->gpa + r->size - 1),
					r, "last byte of region %u", i);
		KUNIT_EXPECT_NULL_MSG(test, kvmx_memtable_lookup(mt, r->gpa + r->size),
				      "one past region %u is a hole", i);
		KUNIT_EXPECT_NULL_MSG(test, kvmx_memtable_lookup(mt, r->gpa - 1),
				      "one before region %u is a hole", i);
	}
	KUNIT_EXPECT_NULL(test, kvmx_memtable_lookup(mt, 0));
	KUNIT_EXPECT_NULL(test, kvmx_memtable_lookup(mt, 0x100000));
	KUNIT_EXPECT_NULL(test, kvmx_memtable_lookup(mt, 0xffffffffULL));
	KUNIT_EXPECT_NULL(test, kvmx_memtable_lookup(mt, U64_MAX));
}

static void memtable_test_lookup_null_table(struct kunit *test)
{
	u64 uaddr = 0, contig = 0;

	KUNIT_EXPECT_NULL(test, kvmx_memtable_lookup(NULL, 0x1000));
	KUNIT_EXPECT_EQ(test, kvmx_memtable_translate(NULL, 0x1000, 1, &uaddr, &contig),
			-EFAULT);
}

static void memtable_test_translate_inside(struct kunit *test)
{
	struct kvmx_memtable *mt = build_table(test, lookup_regions, 3);
	u64 uaddr = 0, contig = 0;

	KUNIT_ASSERT_NOT_ERR_OR_NULL(test, mt);
	KUNIT_ASSERT_EQ(test, kvmx_memtable_translate(mt, 0x201234, 0x100, &uaddr,
						      &contig), 0);
	KUNIT_EXPECT_EQ(test, uaddr, 0x7f0000201234ULL);
	KUNIT_EXPECT_EQ(test, contig, 0x100ULL);

	/* The whole region in one go. */
	KUNIT_ASSERT_EQ(test, kvmx_memtable_translate(mt, 0x1000, 0x1000, &uaddr,
						      &contig), 0);
	KUNIT_EXPECT_EQ(test, uaddr, 0x7f0000001000ULL);
	KUNIT_EXPECT_EQ(test, contig, 0x1000ULL);
}

static void memtable_test_translate_clipped(struct kunit *test)
{
	struct kvmx_memtable *mt = build_table(test, lookup_regions, 3);
	u64 uaddr = 0, contig = 0;

	KUNIT_ASSERT_NOT_ERR_OR_NULL(test, mt);
	KUNIT_ASSERT_EQ(test, kvmx_memtable_translate(mt, 0x203ff0, 0x100, &uaddr,
						      &contig), 0);
	KUNIT_EXPECT_EQ(test, uaddr, 0x7f0000203ff0ULL);
	KUNIT_EXPECT_EQ(test, contig, 0x10ULL);

	/* The last byte, asked for with a huge length. */
	KUNIT_ASSERT_EQ(test, kvmx_memtable_translate(mt, 0x100000000ULL + 0xffff,
						      U64_MAX, &uaddr, &contig), 0);
	KUNIT_EXPECT_EQ(test, uaddr, 0x7f100000ffffULL);
	KUNIT_EXPECT_EQ(test, contig, 1ULL);
}

static void memtable_test_translate_adjacent(struct kunit *test)
{
	/* Adjacent in guest space, far apart in userspace. */
	const struct vhost_memory_region r[] = {
		REGION(0x11000, 0x1000, 0x900000),
		REGION(0x10000, 0x1000, 0x500000),
	};
	struct kvmx_memtable *mt = build_table(test, r, 2);
	u64 uaddr = 0, contig = 0;

	KUNIT_ASSERT_NOT_ERR_OR_NULL(test, mt);
	KUNIT_ASSERT_EQ(test, kvmx_memtable_translate(mt, 0x10f00, 0x200, &uaddr,
						      &contig), 0);
	KUNIT_EXPECT_EQ(test, uaddr, 0x500f00ULL);
	KUNIT_EXPECT_EQ(test, contig, 0x100ULL);
	KUNIT_ASSERT_EQ(test, kvmx_memtable_translate(mt, 0x11000, 0x100, &uaddr,
						      &contig), 0);
	KUNIT_EXPECT_EQ(test, uaddr, 0x900000ULL);
	KUNIT_EXPECT_EQ(test, contig, 0x100ULL);
}

static void memtable_test_translate_hole(struct kunit *test)
{
	struct kvmx_memtable *mt = build_table(test, lookup_regions, 3);
	u64 uaddr = 0, contig = 0;

	KUNIT_ASSERT_NOT_ERR_OR_NULL(test, mt);
	KUNIT_EXPECT_EQ(test, kvmx_memtable_translate(mt, 0x0, 1, &uaddr, &contig),
			-EFAULT);
	KUNIT_EXPECT_EQ(test, kvmx_memtable_translate(mt, 0x2000, 1, &uaddr, &contig),
			-EFAULT);
	KUNIT_EXPECT_EQ(test, kvmx_memtable_translate(mt, 0x204000, 0x10, &uaddr,
						      &contig), -EFAULT);
	KUNIT_EXPECT_EQ(test, kvmx_memtable_translate(mt, U64_MAX, 1, &uaddr, &contig),
			-EFAULT);
}

static struct kunit_case memtable_cases[] = {
	KUNIT_CASE(memtable_test_empty),
	KUNIT_CASE(memtable_test_rejects_zero_size),
	KUNIT_CASE(memtable_test_rejects_flags_padding),
	KUNIT_CASE(memtable_test_rejects_gpa_wrap),
	KUNIT_CASE(memtable_test_accepts_region_ending_at_top),
	KUNIT_CASE(memtable_test_rejects_uaddr_wrap),
	KUNIT_CASE(memtable_test_rejects_overlap),
	KUNIT_CASE(memtable_test_rejects_overlap_after_sort),
	KUNIT_CASE(memtable_test_rejects_same_start),
	KUNIT_CASE(memtable_test_rejects_contained),
	KUNIT_CASE(memtable_test_touching_accepted),
	KUNIT_CASE(memtable_test_sorts),
	KUNIT_CASE(memtable_test_lookup_boundaries),
	KUNIT_CASE(memtable_test_lookup_null_table),
	KUNIT_CASE(memtable_test_translate_inside),
	KUNIT_CASE(memtable_test_translate_clipped),
	KUNIT_CASE(memtable_test_translate_adjacent),
	KUNIT_CASE(memtable_test_translate_hole),
	{}
};

static struct kunit_suite memtable_suite = {
	.name = "kvmx_core_memtable",
	.test_cases = memtable_cases,
};

/* ---- kvmx_core_chain --------------------------------------------------- */

/* The split-ring descriptor as the guest writes it. */
struct test_desc {
	__le64 addr;
	__le32 len;
	__le16 flags;
	__le16 next;
};

#define DESC_SIZE	sizeof(struct test_desc)

#define FAKE_SIZE	0x4000
#define DESC_UADDR	0x0
#define A_GPA		0x10000ULL
#define A_UADDR		0x1000ULL
#define B_GPA		0x11000ULL
#define B_UADDR		0x3000ULL
#define C_GPA		0x20000ULL
#define C_UADDR		0x2000ULL
#define REG_SIZE	0x1000ULL
#define HOLE_GPA	0x15000ULL
#define BIG_GPA		0x100000000ULL
#define BIG_SIZE	0x100000000ULL

#define RING_NUM	16
#define MAX_SEGS	64

#define F_NEXT		VRING_DESC_F_NEXT
#define F_WRITE		VRING_DESC_F_WRITE
#define F_INDIRECT	VRING_DESC_F_INDIRECT

/* The owner's memory, as the fake read() sees it. */
struct fake_mem {
	u8 *buf;
	size_t size;
	unsigned int calls;	/* every read() call, failed ones included */
};

struct chain_fixture {
	struct fake_mem mem;
	struct kvmx_memtable *mt;
	struct kvmx_ring_view ring;
	struct kvmx_chain chain;
};

static int fake_read(void *ctx, void *dst, u64 uaddr, size_t len)
{
	struct fake_mem *mem = ctx;

	mem->calls++;
	if (uaddr > mem->size || len > mem->size - uaddr)
		return -EFAULT;
	memcpy(dst, mem->buf + uaddr, len);
	return 0;
}

static const struct kvmx_mem_ops fake_ops = {
	.read = fake_read,
};

static int chain_test_init(struct kunit *test)
{
	const struct vhost_memory_region r[] = {
		REGION(C_GPA, REG_SIZE, C_UADDR),
		REGION(B_GPA, REG_SIZE, B_UADDR),
		REGION(BIG_GPA, BIG_SIZE, BIG_GPA),
		REGION(A_GPA, REG_SIZE, A_UADDR),
	};
	struct chain_fixture *fx;

	fx = kunit_kzalloc(test, sizeof(*fx), GFP_KERNEL);
	if (!fx)
		return -ENOMEM;
	fx->mem.size = FAKE_SIZE;
	fx->mem.buf = kunit_kzalloc(test, FAKE_SIZE, GFP_KERNEL);
	if (!fx->mem.buf)
		return -ENOMEM;
	fx->mt = build_table(test, r, ARRAY_SIZE(r));
	if (IS_ERR(fx->mt))
		return PTR_ERR(fx->mt);
	fx->ring.desc_uaddr = DESC_UADDR;
	fx->ring.num = RING_NUM;
	fx->ring.indirect_ok = true;
	fx->chain.max_segs = MAX_SEGS;
	fx->chain.iov = kunit_kcalloc(test, MAX_SEGS, sizeof(*fx->chain.iov),
				      GFP_KERNEL);
	fx->chain.gpa = kunit_kcalloc(test, MAX_SEGS, sizeof(*fx->chain.gpa),
				      GFP_KERNEL);
	if (!fx->chain.iov || !fx->chain.gpa)
		return -ENOMEM;
	test->priv = fx;
	return 0;
}

static void put_desc(void *where, u64 addr, u32 len, u16 flags, u16 next)
{
	const struct test_desc d = {
		.addr = cpu_to_le64(addr),
		.len = cpu_to_le32(len),
		.flags = cpu_to_le16(flags),
		.next = cpu_to_le16(next),
	};

	memcpy(where, &d, sizeof(d));
}

/* Write entry @idx of the ring's descriptor table. */
static void ring_desc(struct kunit *test, struct chain_fixture *fx, u32 idx,
		      u64 addr, u32 len, u16 flags, u16 next)
{
	u64 off = fx->ring.desc_uaddr + (u64)idx * DESC_SIZE;

	KUNIT_ASSERT_LE(test, off + DESC_SIZE, (u64)fx->mem.size);
	put_desc(fx->mem.buf + off, addr, len, flags, next);
}

/* Write entry @idx of an indirect table in guest memory, maybe split. */
static void table_desc(struct kunit *test, struct chain_fixture *fx, u64 table,
		       u32 idx, u64 addr, u32 len, u16 flags, u16 next)
{
	u64 gpa = table + (u64)idx * DESC_SIZE, uaddr, chunk;
	u8 bytes[DESC_SIZE];
	size_t done = 0;

	put_desc(bytes, addr, len, flags, next);
	while (done < DESC_SIZE) {
		KUNIT_ASSERT_EQ(test, kvmx_memtable_translate(fx->mt, gpa, DESC_SIZE - done,
							      &uaddr, &chunk), 0);
		KUNIT_ASSERT_LE(test, uaddr + chunk, (u64)fx->mem.size);
		memcpy(fx->mem.buf + uaddr, bytes + done, chunk);
		done += chunk;
		gpa += chunk;
	}
}

static int walk(struct chain_fixture *fx, u16 head)
{
	fx->mem.calls = 0;
	return kvmx_chain_walk(&fx->ring, head, fx->mt, &fake_ops, &fx->mem,
			       &fx->chain);
}

static u64 iov_uaddr(const struct kvmx_chain *chain, unsigned int i)
{
	return (u64)(unsigned long)chain->iov[i].iov_base;
}

static void expect_seg(struct kunit *test, const struct kvmx_chain *chain,
		       unsigned int i, u64 uaddr, u64 len, u64 gpa)
{
	KUNIT_EXPECT_EQ_MSG(test, iov_uaddr(chain, i), uaddr, "iov[%u].iov_base", i);
	KUNIT_EXPECT_EQ_MSG(test, (u64)chain->iov[i].iov_len, len, "iov[%u].iov_len", i);
	KUNIT_EXPECT_EQ_MSG(test, chain->gpa[i], gpa, "gpa[%u]", i);
}

/* The walk must fail with @err and say @fault. */
static void expect_fault(struct kunit *test, struct chain_fixture *fx, u16 head,
			 int err, enum kvmx_chain_fault fault)
{
	KUNIT_EXPECT_EQ(test, walk(fx, head), err);
	KUNIT_EXPECT_EQ_MSG(test, fx->chain.fault, fault, "expected \"%s\", got \"%s\"",
			    kvmx_chain_fault_str(fault),
			    kvmx_chain_fault_str(fx->chain.fault));
}

static void chain_test_direct_out_in(struct kunit *test)
{
	struct chain_fixture *fx = test->priv;

	/* head 3 -> 7 -> 1: one readable buffer, two writable ones. */
	ring_desc(test, fx, 3, A_GPA + 0x10, 100, F_NEXT, 7);
	ring_desc(test, fx, 7, C_GPA, 200, F_NEXT | F_WRITE, 1);
	ring_desc(test, fx, 1, C_GPA + 0x800, 50, F_WRITE, 0);

	KUNIT_ASSERT_EQ(test, walk(fx, 3), 0);
	KUNIT_EXPECT_EQ(test, fx->chain.fault, KVMX_FAULT_NONE);
	KUNIT_EXPECT_EQ(test, fx->chain.head, 3);
	KUNIT_EXPECT_EQ(test, fx->chain.nout, 1);
	KUNIT_EXPECT_EQ(test, fx->chain.nin, 2);
	KUNIT_EXPECT_EQ(test, fx->chain.out_len, 100);
	KUNIT_EXPECT_EQ(test, fx->chain.in_len, 250);
	KUNIT_EXPECT_EQ(test, fx->chain.ndesc, 3);
	expect_seg(test, &fx->chain, 0, A_UADDR + 0x10, 100, A_GPA + 0x10);
	expect_seg(test, &fx->chain, 1, C_UADDR, 200, C_GPA);
	expect_seg(test, &fx->chain, 2, C_UADDR + 0x800, 50, C_GPA + 0x800);
	KUNIT_EXPECT_EQ(test, fx->mem.calls, 3);
}

static void chain_test_single_writable(struct kunit *test)
{
	struct chain_fixture *fx = test->priv;

	ring_desc(test, fx, RING_NUM - 1, B_GPA + 0xfff, 1, F_WRITE, 0);

	KUNIT_ASSERT_EQ(test, walk(fx, RING_NUM - 1), 0);
	KUNIT_EXPECT_EQ(test, fx->chain.nout, 0);
	KUNIT_EXPECT_EQ(test, fx->chain.nin, 1);
	KUNIT_EXPECT_EQ(test, fx->chain.out_len, 0);
	KUNIT_EXPECT_EQ(test, fx->chain.in_len, 1);
	KUNIT_EXPECT_EQ(test, fx->chain.ndesc, 1);
	expect_seg(test, &fx->chain, 0, B_UADDR + 0xfff, 1, B_GPA + 0xfff);
}

static void chain_test_buffer_spans_regions(struct kunit *test)
{
	struct chain_fixture *fx = test->priv;

	/* 0x100 bytes at the end of A, 0x100 at the start of B. */
	ring_desc(test, fx, 0, A_GPA + 0xf00, 0x200, F_NEXT, 1);
	ring_desc(test, fx, 1, B_GPA + 0xff0, 0x10, F_WRITE, 0);

	KUNIT_ASSERT_EQ(test, walk(fx, 0), 0);
	KUNIT_EXPECT_EQ(test, fx->chain.nout, 2);
	KUNIT_EXPECT_EQ(test, fx->chain.nin, 1);
	KUNIT_EXPECT_EQ(test, fx->chain.out_len, 0x200);
	KUNIT_EXPECT_EQ(test, fx->chain.in_len, 0x10);
	KUNIT_EXPECT_EQ(test, fx->chain.ndesc, 2);
	expect_seg(test, &fx->chain, 0, A_UADDR + 0xf00, 0x100, A_GPA + 0xf00);
	expect_seg(test, &fx->chain, 1, B_UADDR, 0x100, B_GPA);
	expect_seg(test, &fx->chain, 2, B_UADDR + 0xff0, 0x10, B_GPA + 0xff0);
}

static void chain_test_indirect(struct kunit *test)
{
	struct chain_fixture *fx = test->priv;
	const u64 table = A_GPA + 0x800;

	ring_desc(test, fx, 5, table, 3 * DESC_SIZE, F_INDIRECT, 0);
	table_desc(test, fx, table, 0, C_GPA + 0x100, 64, F_NEXT, 2);
	table_desc(test, fx, table, 2, C_GPA + 0x200, 128, F_NEXT | F_WRITE, 1);
	table_desc(test, fx, table, 1, BIG_GPA + 0x1000, 4096, F_WRITE, 0);

	KUNIT_ASSERT_EQ(test, walk(fx, 5), 0);
	KUNIT_EXPECT_EQ(test, fx->chain.head, 5);
	KUNIT_EXPECT_EQ(test, fx->chain.nout, 1);
	KUNIT_EXPECT_EQ(test, fx->chain.nin, 2);
	KUNIT_EXPECT_EQ(test, fx->chain.out_len, 64);
	KUNIT_EXPECT_EQ(test, fx->chain.in_len, 128 + 4096);
	/* The indirect descriptor is not a buffer and does not count. */
	KUNIT_EXPECT_EQ(test, fx->chain.ndesc, 3);
	expect_seg(test, &fx->chain, 0, C_UADDR + 0x100, 64, C_GPA + 0x100);
	expect_seg(test, &fx->chain, 1, C_UADDR + 0x200, 128, C_GPA + 0x200);
	expect_seg(test, &fx->chain, 2, BIG_GPA + 0x1000, 4096, BIG_GPA + 0x1000);
}

static void chain_test_direct_then_indirect(struct kunit *test)
{
	struct chain_fixture *fx = test->priv;
	const u64 table = C_GPA + 0x400;

	ring_desc(test, fx, 2, A_GPA, 16, F_NEXT, 9);
	ring_desc(test, fx, 9, table, 2 * DESC_SIZE, F_INDIRECT, 0);
	table_desc(test, fx, table, 0, A_GPA + 0x100, 32, F_NEXT, 1);
	table_desc(test, fx, table, 1, A_GPA + 0x200, 512, F_WRITE, 0);

	KUNIT_ASSERT_EQ(test, walk(fx, 2), 0);
	KUNIT_EXPECT_EQ(test, fx->chain.nout, 2);
	KUNIT_EXPECT_EQ(test, fx->chain.nin, 1);
	KUNIT_EXPECT_EQ(test, fx->chain.out_len, 48);
	KUNIT_EXPECT_EQ(test, fx->chain.in_len, 512);
	KUNIT_EXPECT_EQ(test, fx->chain.ndesc, 3);
	expect_seg(test, &fx->chain, 0, A_UADDR, 16, A_GPA);
	expect_seg(test, &fx->chain, 1, A_UADDR + 0x100, 32, A_GPA + 0x100);
	expect_seg(test, &fx->chain, 2, A_UADDR + 0x200, 512, A_GPA + 0x200);
}

static void chain_test_indirect_spans_regions(struct kunit *test)
{
	struct chain_fixture *fx = test->priv;
	/* Entry 0 is split 8 + 8 between A and B; entry 1 lies in B. */
	const u64 table = B_GPA - 8;

	ring_desc(test, fx, 0, table, 2 * DESC_SIZE, F_INDIRECT, 0);
	table_desc(test, fx, table, 0, C_GPA + 0x10, 0x20, F_NEXT, 1);
	table_desc(test, fx, table, 1, C_GPA + 0x40, 0x30, F_WRITE, 0);

	KUNIT_ASSERT_EQ(test, walk(fx, 0), 0);
	KUNIT_EXPECT_EQ(test, fx->chain.nout, 1);
	KUNIT_EXPECT_EQ(test, fx->chain.nin, 1);
	KUNIT_EXPECT_EQ(test, fx->chain.out_len, 0x20);
	KUNIT_EXPECT_EQ(test, fx->chain.in_len, 0x30);
	KUNIT_EXPECT_EQ(test, fx->chain.ndesc, 2);
	expect_seg(test, &fx->chain, 0, C_UADDR + 0x10, 0x20, C_GPA + 0x10);
	expect_seg(test, &fx->chain, 1, C_UADDR + 0x40, 0x30, C_GPA + 0x40);
	/* Ring descriptor, split entry (two reads), entry 1. */
	KUNIT_EXPECT_EQ(test, fx->mem.calls, 4);
}

static void chain_test_indirect_write_flag_ignored(struct kunit *test)
{
	struct chain_fixture *fx = test->priv;
	const u64 table = A_GPA;

	/* The spec says WRITE on the descriptor naming a table is ignored. */
	ring_desc(test, fx, 0, table, DESC_SIZE, F_INDIRECT | F_WRITE, 0);
	table_desc(test, fx, table, 0, C_GPA, 8, 0, 0);

	KUNIT_ASSERT_EQ(test, walk(fx, 0), 0);
	KUNIT_EXPECT_EQ(test, fx->chain.nout, 1);
	KUNIT_EXPECT_EQ(test, fx->chain.nin, 0);
	KUNIT_EXPECT_EQ(test, fx->chain.out_len, 8);
}

static void chain_test_exactly_num(struct kunit *test)
{
	struct chain_fixture *fx = test->priv;
	u32 i;

	for (i = 0; i < RING_NUM; i++)
		ring_desc(test, fx, i, A_GPA + i * 0x10, 0x10,
			  i < RING_NUM - 1 ? F_NEXT : 0, i + 1);

	KUNIT_ASSERT_EQ(test, walk(fx, 0), 0);
	KUNIT_EXPECT_EQ(test, fx->chain.ndesc, RING_NUM);
	KUNIT_EXPECT_EQ(test, fx->chain.nout, RING_NUM);
	KUNIT_EXPECT_EQ(test, fx->chain.out_len, RING_NUM * 0x10);
	expect_seg(test, &fx->chain, RING_NUM - 1, A_UADDR + (RING_NUM - 1) * 0x10,
		   0x10, A_GPA + (RING_NUM - 1) * 0x10);
}

static void chain_test_direct_plus_indirect_exactly_num(struct kunit *test)
{
	struct chain_fixture *fx = test->priv;
	const u64 table = C_GPA;
	u32 i;

	fx->ring.num = 4;
	ring_desc(test, fx, 0, A_GPA, 1, F_NEXT, 1);
	ring_desc(test, fx, 1, table, 3 * DESC_SIZE, F_INDIRECT, 0);
	for (i = 0; i < 3; i++)
		table_desc(test, fx, table, i, A_GPA + 0x100 * (i + 1), 1,
			   F_WRITE | (i < 2 ? F_NEXT : 0), i + 1);

	KUNIT_ASSERT_EQ(test, walk(fx, 0), 0);
	KUNIT_EXPECT_EQ(test, fx->chain.ndesc, 4);
	KUNIT_EXPECT_EQ(test, fx->chain.nout, 1);
	KUNIT_EXPECT_EQ(test, fx->chain.nin, 3);
}

static void chain_test_segs_exactly_max(struct kunit *test)
{
	struct chain_fixture *fx = test->priv;

	/* Two descriptors, three segments: the first spans A and B. */
	fx->chain.max_segs = 3;
	ring_desc(test, fx, 0, B_GPA - 4, 8, F_NEXT, 1);
	ring_desc(test, fx, 1, C_GPA, 8, F_WRITE, 0);

	KUNIT_ASSERT_EQ(test, walk(fx, 0), 0);
	KUNIT_EXPECT_EQ(test, fx->chain.nout, 2);
	KUNIT_EXPECT_EQ(test, fx->chain.nin, 1);
}

static void chain_test_in_len_max(struct kunit *test)
{
	struct chain_fixture *fx = test->priv;

	ring_desc(test, fx, 0, BIG_GPA, U32_MAX, F_WRITE, 0);

	KUNIT_ASSERT_EQ(test, walk(fx, 0), 0);
	KUNIT_EXPECT_EQ(test, fx->chain.in_len, U32_MAX);
	expect_seg(test, &fx->chain, 0, BIG_GPA, U32_MAX, BIG_GPA);
}

static void chain_test_state_reset(struct kunit *test)
{
	struct chain_fixture *fx = test->priv;

	ring_desc(test, fx, 0, A_GPA, 8, F_NEXT, 1);
	ring_desc(test, fx, 1, HOLE_GPA, 8, F_WRITE, 0);
	ring_desc(test, fx, 2, C_GPA, 4, F_WRITE, 0);
	expect_fault(test, fx, 0, -EFAULT, KVMX_FAULT_ADDR);

	/* A good chain after a bad one reports nothing of the bad one. */
	KUNIT_ASSERT_EQ(test, walk(fx, 2), 0);
	KUNIT_EXPECT_EQ(test, fx->chain.fault, KVMX_FAULT_NONE);
	KUNIT_EXPECT_EQ(test, fx->chain.head, 2);
	KUNIT_EXPECT_EQ(test, fx->chain.nout, 0);
	KUNIT_EXPECT_EQ(test, fx->chain.nin, 1);
	KUNIT_EXPECT_EQ(test, fx->chain.out_len, 0);
	KUNIT_EXPECT_EQ(test, fx->chain.in_len, 4);
	KUNIT_EXPECT_EQ(test, fx->chain.ndesc, 1);
}

static void chain_test_head_range(struct kunit *test)
{
	struct chain_fixture *fx = test->priv;

	expect_fault(test, fx, RING_NUM, -ERANGE, KVMX_FAULT_HEAD_RANGE);
	KUNIT_EXPECT_EQ(test, fx->mem.calls, 0);
	expect_fault(test, fx, U16_MAX, -ERANGE, KVMX_FAULT_HEAD_RANGE);
	KUNIT_EXPECT_EQ(test, fx->mem.calls, 0);
}

static void chain_test_next_range(struct kunit *test)
{
	struct chain_fixture *fx = test->priv;

	ring_desc(test, fx, 0, A_GPA, 8, F_NEXT, RING_NUM);
	expect_fault(test, fx, 0, -ERANGE, KVMX_FAULT_NEXT_RANGE);
	KUNIT_EXPECT_EQ(test, fx->mem.calls, 1);

	ring_desc(test, fx, 0, A_GPA, 8, F_NEXT, U16_MAX);
	expect_fault(test, fx, 0, -ERANGE, KVMX_FAULT_NEXT_RANGE);
}

static void chain_test_loop_two(struct kunit *test)
{
	struct chain_fixture *fx = test->priv;

	ring_desc(test, fx, 4, A_GPA, 8, F_NEXT, 6);
	ring_desc(test, fx, 6, A_GPA + 8, 8, F_NEXT, 4);

	expect_fault(test, fx, 4, -ELOOP, KVMX_FAULT_LOOP);
	KUNIT_EXPECT_LE(test, fx->mem.calls, RING_NUM + 1);
}

static void chain_test_self_loop(struct kunit *test)
{
	struct chain_fixture *fx = test->priv;

	ring_desc(test, fx, 0, A_GPA, 8, F_NEXT, 1);
	ring_desc(test, fx, 1, C_GPA, 8, F_NEXT | F_WRITE, 1);

	expect_fault(test, fx, 0, -ELOOP, KVMX_FAULT_LOOP);
	KUNIT_EXPECT_LE(test, fx->mem.calls, RING_NUM + 1);
}

static void chain_test_indirect_loop(struct kunit *test)
{
	struct chain_fixture *fx = test->priv;
	const u64 table = A_GPA;

	/* 0 -> 1 -> 2 -> 1 inside a three-entry table. */
	ring_desc(test, fx, 0, table, 3 * DESC_SIZE, F_INDIRECT, 0);
	table_desc(test, fx, table, 0, C_GPA, 8, F_NEXT, 1);
	table_desc(test, fx, table, 1, C_GPA + 8, 8, F_NEXT, 2);
	table_desc(test, fx, table, 2, C_GPA + 16, 8, F_NEXT, 1);

	expect_fault(test, fx, 0, -ELOOP, KVMX_FAULT_LOOP);
	/* One ring read, then at most one read per table entry. */
	KUNIT_EXPECT_LE(test, fx->mem.calls, 1 + 3);
}

static void chain_test_indirect_next_range(struct kunit *test)
{
	struct chain_fixture *fx = test->priv;
	const u64 table = A_GPA;

	/* next = 2 is inside the ring but outside the two-entry table. */
	ring_desc(test, fx, 0, table, 2 * DESC_SIZE, F_INDIRECT, 0);
	table_desc(test, fx, table, 0, C_GPA, 8, F_NEXT, 2);
	table_desc(test, fx, table, 1, C_GPA, 8, 0, 0);
	table_desc(test, fx, table, 2, C_GPA, 8, 0, 0);

	expect_fault(test, fx, 0, -ERANGE, KVMX_FAULT_NEXT_RANGE);
}

static void chain_test_too_long(struct kunit *test)
{
	struct chain_fixture *fx = test->priv;
	const u64 table = C_GPA;
	u32 i;

	/* One direct buffer and four indirect ones in a ring of four. */
	fx->ring.num = 4;
	ring_desc(test, fx, 0, A_GPA, 1, F_NEXT, 1);
	ring_desc(test, fx, 1, table, 4 * DESC_SIZE, F_INDIRECT, 0);
	for (i = 0; i < 4; i++)
		table_desc(test, fx, table, i, A_GPA + 0x100 * (i + 1), 1,
			   F_WRITE | (i < 3 ? F_NEXT : 0), i + 1);

	expect_fault(test, fx, 0, -E2BIG, KVMX_FAULT_TOO_LONG);
}

static void chain_test_indirect_longer_than_ring(struct kunit *test)
{
	struct chain_fixture *fx = test->priv;
	const u64 table = C_GPA;
	u32 i;

	fx->ring.num = 4;
	ring_desc(test, fx, 3, table, 5 * DESC_SIZE, F_INDIRECT, 0);
	for (i = 0; i < 5; i++)
		table_desc(test, fx, table, i, A_GPA + 0x100 * i, 1,
			   i < 4 ? F_NEXT : 0, i + 1);

	expect_fault(test, fx, 3, -E2BIG, KVMX_FAULT_TOO_LONG);
}

static void chain_test_too_many_segs(struct kunit *test)
{
	struct chain_fixture *fx = test->priv;

	fx->chain.max_segs = 2;
	ring_desc(test, fx, 0, A_GPA, 8, F_NEXT, 1);
	ring_desc(test, fx, 1, A_GPA + 8, 8, F_NEXT, 2);
	ring_desc(test, fx, 2, C_GPA, 8, F_WRITE, 0);

	expect_fault(test, fx, 0, -E2BIG, KVMX_FAULT_TOO_MANY_SEGS);
	KUNIT_EXPECT_LE(test, fx->chain.nout + fx->chain.nin, 2);
}

static void chain_test_too_many_segs_split(struct kunit *test)
{
	struct chain_fixture *fx = test->priv;

	/* One descriptor, but two segments because it spans A and B. */
	fx->chain.max_segs = 1;
	ring_desc(test, fx, 0, B_GPA - 8, 16, 0, 0);

	expect_fault(test, fx, 0, -E2BIG, KVMX_FAULT_TOO_MANY_SEGS);
	KUNIT_EXPECT_LE(test, fx->chain.nout + fx->chain.nin, 1);
}

static void chain_test_nested_indirect(struct kunit *test)
{
	struct chain_fixture *fx = test->priv;
	const u64 table = A_GPA, inner = C_GPA;

	ring_desc(test, fx, 0, table, DESC_SIZE, F_INDIRECT, 0);
	table_desc(test, fx, table, 0, inner, DESC_SIZE, F_INDIRECT, 0);
	table_desc(test, fx, inner, 0, A_GPA + 0x100, 8, 0, 0);

	expect_fault(test, fx, 0, -EINVAL, KVMX_FAULT_NESTED_INDIRECT);
}

static void chain_test_indirect_next(struct kunit *test)
{
	struct chain_fixture *fx = test->priv;
	const u64 table = A_GPA;

	ring_desc(test, fx, 0, table, DESC_SIZE, F_INDIRECT | F_NEXT, 1);
	ring_desc(test, fx, 1, C_GPA, 8, F_WRITE, 0);
	table_desc(test, fx, table, 0, C_GPA + 0x100, 8, 0, 0);

	expect_fault(test, fx, 0, -EINVAL, KVMX_FAULT_INDIRECT_NEXT);
}

static void chain_test_indirect_size_zero(struct kunit *test)
{
	struct chain_fixture *fx = test->priv;

	ring_desc(test, fx, 0, A_GPA, 0, F_INDIRECT, 0);
	table_desc(test, fx, A_GPA, 0, C_GPA, 8, 0, 0);

	expect_fault(test, fx, 0, -EINVAL, KVMX_FAULT_INDIRECT_SIZE);
}

static void chain_test_indirect_size_unaligned(struct kunit *test)
{
	struct chain_fixture *fx = test->priv;

	/* 24 bytes: one and a half descriptors. */
	ring_desc(test, fx, 0, A_GPA, 24, F_INDIRECT, 0);
	table_desc(test, fx, A_GPA, 0, C_GPA, 8, 0, 0);
	table_desc(test, fx, A_GPA, 1, C_GPA, 8, 0, 0);

	expect_fault(test, fx, 0, -EINVAL, KVMX_FAULT_INDIRECT_SIZE);
}

static void chain_test_indirect_off(struct kunit *test)
{
	struct chain_fixture *fx = test->priv;

	fx->ring.indirect_ok = false;
	ring_desc(test, fx, 0, A_GPA, DESC_SIZE, F_INDIRECT, 0);
	table_desc(test, fx, A_GPA, 0, C_GPA, 8, 0, 0);

	expect_fault(test, fx, 0, -EINVAL, KVMX_FAULT_INDIRECT_OFF);
	/* The table is never read. */
	KUNIT_EXPECT_EQ(test, fx->mem.calls, 1);
}

static void chain_test_zero_len(struct kunit *test)
{
	struct chain_fixture *fx = test->priv;

	ring_desc(test, fx, 0, A_GPA, 8, F_NEXT, 1);
	ring_desc(test, fx, 1, C_GPA, 0, F_WRITE, 0);

	expect_fault(test, fx, 0, -EINVAL, KVMX_FAULT_ZERO_LEN);
}

static void chain_test_zero_len_indirect(struct kunit *test)
{
	struct chain_fixture *fx = test->priv;

	ring_desc(test, fx, 0, A_GPA, 2 * DESC_SIZE, F_INDIRECT, 0);
	table_desc(test, fx, A_GPA, 0, C_GPA, 8, F_NEXT, 1);
	table_desc(test, fx, A_GPA, 1, C_GPA + 8, 0, 0, 0);

	expect_fault(test, fx, 0, -EINVAL, KVMX_FAULT_ZERO_LEN);
}

static void chain_test_out_after_in(struct kunit *test)
{
	struct chain_fixture *fx = test->priv;

	ring_desc(test, fx, 0, A_GPA, 8, F_NEXT, 1);
	ring_desc(test, fx, 1, C_GPA, 8, F_NEXT | F_WRITE, 2);
	ring_desc(test, fx, 2, A_GPA + 8, 8, 0, 0);

	expect_fault(test, fx, 0, -EINVAL, KVMX_FAULT_OUT_AFTER_IN);
}

static void chain_test_out_after_in_indirect(struct kunit *test)
{
	struct chain_fixture *fx = test->priv;

	/* Writable direct buffer, then a readable one in the table. */
	ring_desc(test, fx, 0, C_GPA, 8, F_NEXT | F_WRITE, 1);
	ring_desc(test, fx, 1, A_GPA, DESC_SIZE, F_INDIRECT, 0);
	table_desc(test, fx, A_GPA, 0, C_GPA + 8, 8, 0, 0);

	expect_fault(test, fx, 0, -EINVAL, KVMX_FAULT_OUT_AFTER_IN);
}

static void chain_test_addr_len_wraps(struct kunit *test)
{
	struct chain_fixture *fx = test->priv;

	ring_desc(test, fx, 0, U64_MAX - 0xfff, 0x1001, 0, 0);
	expect_fault(test, fx, 0, -EOVERFLOW, KVMX_FAULT_LEN_OVERFLOW);

	ring_desc(test, fx, 0, U64_MAX, 2, F_WRITE, 0);
	expect_fault(test, fx, 0, -EOVERFLOW, KVMX_FAULT_LEN_OVERFLOW);

	/* Ending exactly at U64_MAX does not wrap; it is just not memory. */
	ring_desc(test, fx, 0, U64_MAX - 0xfff, 0x1000, 0, 0);
	expect_fault(test, fx, 0, -EFAULT, KVMX_FAULT_ADDR);
}

static void chain_test_in_len_overflow(struct kunit *test)
{
	struct chain_fixture *fx = test->priv;

	/* Each buffer is valid; together they pass U32_MAX. */
	ring_desc(test, fx, 0, BIG_GPA, U32_MAX, F_NEXT | F_WRITE, 1);
	ring_desc(test, fx, 1, BIG_GPA, 1, F_WRITE, 0);

	expect_fault(test, fx, 0, -EOVERFLOW, KVMX_FAULT_LEN_OVERFLOW);
}

static void chain_test_out_len_overflow(struct kunit *test)
{
	struct chain_fixture *fx = test->priv;

	ring_desc(test, fx, 0, BIG_GPA, 0x80000000, F_NEXT, 1);
	ring_desc(test, fx, 1, BIG_GPA, 0x80000000, 0, 0);

	expect_fault(test, fx, 0, -EOVERFLOW, KVMX_FAULT_LEN_OVERFLOW);
}

static void chain_test_addr_outside(struct kunit *test)
{
	struct chain_fixture *fx = test->priv;

	ring_desc(test, fx, 0, HOLE_GPA, 8, 0, 0);
	expect_fault(test, fx, 0, -EFAULT, KVMX_FAULT_ADDR);

	ring_desc(test, fx, 0, 0, 1, 0, 0);
	expect_fault(test, fx, 0, -EFAULT, KVMX_FAULT_ADDR);

	/* One past the end of C. */
	ring_desc(test, fx, 0, C_GPA + REG_SIZE, 1, F_WRITE, 0);
	expect_fault(test, fx, 0, -EFAULT, KVMX_FAULT_ADDR);
}

static void chain_test_addr_ends_outside(struct kunit *test)
{
	struct chain_fixture *fx = test->priv;

	/* Starts in C, runs one byte past its end. */
	ring_desc(test, fx, 0, C_GPA + 0x800, 0x801, F_WRITE, 0);
	expect_fault(test, fx, 0, -EFAULT, KVMX_FAULT_ADDR);

	/* Starts in A, crosses into B, runs past B's end. */
	ring_desc(test, fx, 0, A_GPA + 0xf00, 0x1200, 0, 0);
	expect_fault(test, fx, 0, -EFAULT, KVMX_FAULT_ADDR);
}

static void chain_test_table_unreadable(struct kunit *test)
{
	struct chain_fixture *fx = test->priv;

	fx->ring.desc_uaddr = FAKE_SIZE;
	expect_fault(test, fx, 0, -EFAULT, KVMX_FAULT_READ);

	fx->ring.desc_uaddr = U64_MAX - 0xf;
	expect_fault(test, fx, 0, -EFAULT, KVMX_FAULT_READ);
}

static void chain_test_table_unreadable_next(struct kunit *test)
{
	struct chain_fixture *fx = test->priv;

	/* Only entry 0 of the table is inside the owner's memory. */
	fx->ring.desc_uaddr = FAKE_SIZE - DESC_SIZE;
	ring_desc(test, fx, 0, A_GPA, 8, F_NEXT, 1);

	expect_fault(test, fx, 0, -EFAULT, KVMX_FAULT_READ);
	KUNIT_EXPECT_EQ(test, fx->mem.calls, 2);
}

static void chain_test_indirect_outside(struct kunit *test)
{
	struct chain_fixture *fx = test->priv;

	ring_desc(test, fx, 0, HOLE_GPA, 2 * DESC_SIZE, F_INDIRECT, 0);
	expect_fault(test, fx, 0, -EFAULT, KVMX_FAULT_ADDR);
}

static void chain_test_indirect_ends_outside(struct kunit *test)
{
	struct chain_fixture *fx = test->priv;
	const u64 table = C_GPA + REG_SIZE - DESC_SIZE;

	/* Entry 0 is the last 16 bytes of C; entry 1 is past its end. */
	ring_desc(test, fx, 0, table, 2 * DESC_SIZE, F_INDIRECT, 0);
	table_desc(test, fx, table, 0, A_GPA, 8, F_NEXT, 1);

	expect_fault(test, fx, 0, -EFAULT, KVMX_FAULT_ADDR);
}

static void chain_test_indirect_wraps(struct kunit *test)
{
	struct chain_fixture *fx = test->priv;

	ring_desc(test, fx, 0, U64_MAX - 0xf, 2 * DESC_SIZE, F_INDIRECT, 0);
	expect_fault(test, fx, 0, -EOVERFLOW, KVMX_FAULT_LEN_OVERFLOW);
}

/*
 * The largest ring, every descriptor in one chain. The fixture's buffer
 * is swapped for one that holds a 32768-entry table (512 KiB) and the
 * segment arrays for ones that can take a segment per descriptor, so
 * nothing but the ring size can stop the walk.
 */
static void big_ring_setup(struct kunit *test, struct chain_fixture *fx,
			   bool loop)
{
	const u32 num = KVMX_MAX_RING_NUM;
	u32 i;

	fx->mem.size = (size_t)num * DESC_SIZE;
	fx->mem.buf = test_kvcalloc(test, num, DESC_SIZE);
	fx->ring.desc_uaddr = 0;
	fx->ring.num = num;
	fx->chain.max_segs = num;
	fx->chain.iov = test_kvcalloc(test, num, sizeof(*fx->chain.iov));
	fx->chain.gpa = test_kvcalloc(test, num, sizeof(*fx->chain.gpa));

	for (i = 0; i < num; i++)
		ring_desc(test, fx, i, A_GPA + i % REG_SIZE, 1,
			  loop || i < num - 1 ? F_NEXT : 0, (i + 1) % num);
}

static void chain_test_big_ring_full_chain(struct kunit *test)
{
	struct chain_fixture *fx = test->priv;

	big_ring_setup(test, fx, false);

	KUNIT_ASSERT_EQ(test, walk(fx, 0), 0);
	KUNIT_EXPECT_EQ(test, fx->chain.ndesc, KVMX_MAX_RING_NUM);
	KUNIT_EXPECT_EQ(test, fx->chain.nout, KVMX_MAX_RING_NUM);
	KUNIT_EXPECT_EQ(test, fx->chain.out_len, KVMX_MAX_RING_NUM);
	KUNIT_EXPECT_EQ(test, fx->mem.calls, KVMX_MAX_RING_NUM);
}

static void chain_test_big_ring_loop_terminates(struct kunit *test)
{
	struct chain_fixture *fx = test->priv;

	/* 0 -> 1 -> ... -> 32767 -> 0, starting half-way round. */
	big_ring_setup(test, fx, true);

	expect_fault(test, fx, KVMX_MAX_RING_NUM / 2, -ELOOP, KVMX_FAULT_LOOP);
	KUNIT_EXPECT_LE(test, fx->mem.calls, KVMX_MAX_RING_NUM + 1);
	KUNIT_EXPECT_LE(test, fx->chain.nout, KVMX_MAX_RING_NUM);
}

static void chain_test_big_ring_self_loop(struct kunit *test)
{
	struct chain_fixture *fx = test->priv;
	const u16 last = KVMX_MAX_RING_NUM - 1;

	big_ring_setup(test, fx, true);
	ring_desc(test, fx, last, A_GPA, 1, F_NEXT, last);

	expect_fault(test, fx, last, -ELOOP, KVMX_FAULT_LOOP);
	KUNIT_EXPECT_LE(test, fx->mem.calls, KVMX_MAX_RING_NUM + 1);
	expect_fault(test, fx, KVMX_MAX_RING_NUM, -ERANGE, KVMX_FAULT_HEAD_RANGE);
}

static void chain_test_fault_str(struct kunit *test)
{
	unsigned int i, j;

	for (i = 0; i < KVMX_FAULT_MAX; i++) {
		const char *name = kvmx_chain_fault_str(i);

		KUNIT_ASSERT_NOT_NULL_MSG(test, name, "fault %u has no name", i);
		KUNIT_EXPECT_STRNEQ_MSG(test, name, "unknown fault",
					"fault %u has no name", i);
		KUNIT_EXPECT_NE_MSG(test, name[0], '\0', "fault %u has an empty name", i);
		for (j = 0; j < i; j++)
			KUNIT_EXPECT_STRNEQ_MSG(test, name, kvmx_chain_fault_str(j),
						"faults %u and %u share a name", j, i);
	}
}

static void chain_test_fault_str_unknown(struct kunit *test)
{
	KUNIT_EXPECT_STREQ(test, kvmx_chain_fault_str(KVMX_FAULT_MAX), "unknown fault");
	KUNIT_EXPECT_STREQ(test, kvmx_chain_fault_str(KVMX_FAULT_MAX + 1),
			   "unknown fault");
	KUNIT_EXPECT_STREQ(test, kvmx_chain_fault_str((enum kvmx_chain_fault)-1),
			   "unknown fault");
}

static struct kunit_case chain_cases[] = {
	KUNIT_CASE(chain_test_direct_out_in),
	KUNIT_CASE(chain_test_single_writable),
	KUNIT_CASE(chain_test_buffer_spans_regions),
	KUNIT_CASE(chain_test_indirect),
	KUNIT_CASE(chain_test_direct_then_indirect),
	KUNIT_CASE(chain_test_indirect_spans_regions),
	KUNIT_CASE(chain_test_indirect_write_flag_ignored),
	KUNIT_CASE(chain_test_exactly_num),
	KUNIT_CASE(chain_test_direct_plus_indirect_exactly_num),
	KUNIT_CASE(chain_test_segs_exactly_max),
	KUNIT_CASE(chain_test_in_len_max),
	KUNIT_CASE(chain_test_state_reset),
	KUNIT_CASE(chain_test_head_range),
	KUNIT_CASE(chain_test_next_range),
	KUNIT_CASE(chain_test_loop_two),
	KUNIT_CASE(chain_test_self_loop),
	KUNIT_CASE(chain_test_indirect_loop),
	KUNIT_CASE(chain_test_indirect_next_range),
	KUNIT_CASE(chain_test_too_long),
	KUNIT_CASE(chain_test_indirect_longer_than_ring),
	KUNIT_CASE(chain_test_too_many_segs),
	KUNIT_CASE(chain_test_too_many_segs_split),
	KUNIT_CASE(chain_test_nested_indirect),
	KUNIT_CASE(chain_test_indirect_next),
	KUNIT_CASE(chain_test_indirect_size_zero),
	KUNIT_CASE(chain_test_indirect_size_unaligned),
	KUNIT_CASE(chain_test_indirect_off),
	KUNIT_CASE(chain_test_zero_len),
	KUNIT_CASE(chain_test_zero_len_indirect),
	KUNIT_CASE(chain_test_out_after_in),
	KUNIT_CASE(chain_test_out_after_in_indirect),
	KUNIT_CASE(chain_test_addr_len_wraps),
	KUNIT_CASE(chain_test_in_len_overflow),
	KUNIT_CASE(chain_test_out_len_overflow),
	KUNIT_CASE(chain_test_addr_outside),
	KUNIT_CASE(chain_test_addr_ends_outside),
	KUNIT_CASE(chain_test_table_unreadable),
	KUNIT_CASE(chain_test_table_unreadable_next),
	KUNIT_CASE(chain_test_indirect_outside),
	KUNIT_CASE(chain_test_indirect_ends_outside),
	KUNIT_CASE(chain_test_indirect_wraps),
	KUNIT_CASE(chain_test_big_ring_full_chain),
	KUNIT_CASE(chain_test_big_ring_loop_terminates),
	KUNIT_CASE(chain_test_big_ring_self_loop),
	KUNIT_CASE(chain_test_fault_str),
	KUNIT_CASE(chain_test_fault_str_unknown),
	{}
};

static struct kunit_suite chain_suite = {
	.name = "kvmx_core_chain",
	.init = chain_test_init,
	.test_cases = chain_cases,
};

/* ---- kvmx_core_notify -------------------------------------------------- */

/* One kvmx_need_event() question and the answer virtio expects. */
struct need_event_case {
	u16 event;
	u16 new;
	u16 old;
	bool want;
};

static void check_need_event(struct kunit *test, const struct need_event_case *c,
			     unsigned int n)
{
	unsigned int i;

	for (i = 0; i < n; i++, c++)
		KUNIT_EXPECT_EQ_MSG(test, kvmx_need_event(c->event, c->new, c->old),
				    c->want, "event %#x, old %#x, new %#x",
				    c->event, c->old, c->new);
}

static void notify_test_event_passed(struct kunit *test)
{
	/* old 10, new 15: every event index in [10, 14] was just crossed. */
	static const struct need_event_case cases[] = {
		{ 10, 15, 10, true },
		{ 12, 15, 10, true },
		{ 14, 15, 10, true },
	};

	check_need_event(test, cases, ARRAY_SIZE(cases));
}

static void notify_test_event_not_reached(struct kunit *test)
{
	static const struct need_event_case cases[] = {
		{ 15, 15, 10, false },
		{ 100, 15, 10, false },
		/* Crossed before this batch: already notified. */
		{ 9, 15, 10, false },
		/* Nothing new at all. */
		{ 10, 10, 10, false },
	};

	check_need_event(test, cases, ARRAY_SIZE(cases));
}

static void notify_test_event_exactly_reached(struct kunit *test)
{
	/* One entry added; the event names exactly that entry. */
	static const struct need_event_case cases[] = {
		{ 41, 42, 41, true },
		{ 42, 42, 41, false },
		{ 40, 42, 41, false },
	};

	check_need_event(test, cases, ARRAY_SIZE(cases));
}

static void notify_test_event_wrap(struct kunit *test)
{
	/* old 0xfffe, new 0x0002: entries 0xfffe, 0xffff, 0, 1 were added. */
	static const struct need_event_case cases[] = {
		{ 0xfffe, 0x0002, 0xfffe, true },
		{ 0xffff, 0x0002, 0xfffe, true },
		{ 0x0000, 0x0002, 0xfffe, true },
		{ 0x0001, 0x0002, 0xfffe, true },
		{ 0x0002, 0x0002, 0xfffe, false },
		{ 0xfffd, 0x0002, 0xfffe, false },
		{ 0x8000, 0x0002, 0xfffe, false },
	};

	check_need_event(test, cases, ARRAY_SIZE(cases));
}

static void notify_test_event_wrap_to_zero(struct kunit *test)
{
	static const struct need_event_case cases[] = {
		/* The one entry 0xffff, taking the index from 0xffff to 0. */
		{ 0xffff, 0x0000, 0xffff, true },
		{ 0x0000, 0x0000, 0xffff, false },
		{ 0xfffe, 0x0000, 0xffff, false },
		/* A 65535-entry batch crosses every event but the new index. */
		{ 0x1234, 0xffff, 0x0000, true },
		{ 0xffff, 0xffff, 0x0000, false },
	};

	check_need_event(test, cases, ARRAY_SIZE(cases));
}

static void notify_test_log_first_page(struct kunit *test)
{
	KUNIT_EXPECT_EQ(test, kvmx_log_first_page(0), 0ULL);
	KUNIT_EXPECT_EQ(test, kvmx_log_first_page(0xfff), 0ULL);
	KUNIT_EXPECT_EQ(test, kvmx_log_first_page(0x1000), 1ULL);
	KUNIT_EXPECT_EQ(test, kvmx_log_first_page(0x1fff), 1ULL);
	KUNIT_EXPECT_EQ(test, kvmx_log_first_page(0x123456789ULL), 0x123456ULL);
	KUNIT_EXPECT_EQ(test, kvmx_log_first_page(U64_MAX), U64_MAX >> 12);
}

static void notify_test_log_last_page_len1(struct kunit *test)
{
	/* One byte stays on its own page, whichever byte of it. */
	KUNIT_EXPECT_EQ(test, kvmx_log_last_page(0, 1), 0ULL);
	KUNIT_EXPECT_EQ(test, kvmx_log_last_page(0xfff, 1), 0ULL);
	KUNIT_EXPECT_EQ(test, kvmx_log_last_page(0x1000, 1), 1ULL);
	KUNIT_EXPECT_EQ(test, kvmx_log_last_page(U64_MAX, 1), U64_MAX >> 12);
}

static void notify_test_log_last_page_boundaries(struct kunit *test)
{
	/* A whole page, exactly. */
	KUNIT_EXPECT_EQ(test, kvmx_log_last_page(0x1000, 0x1000), 1ULL);
	KUNIT_EXPECT_EQ(test, kvmx_log_last_page(0, 0x1000), 0ULL);
	/* One byte more reaches the next page. */
	KUNIT_EXPECT_EQ(test, kvmx_log_last_page(0x1000, 0x1001), 2ULL);
	/* The last page of the address space, ending at U64_MAX. */
	KUNIT_EXPECT_EQ(test, kvmx_log_last_page(U64_MAX - 0xfff, 0x1000),
			U64_MAX >> 12);
}

static void notify_test_log_crossing(struct kunit *test)
{
	/* Two bytes straddling a page boundary dirty both pages. */
	KUNIT_EXPECT_EQ(test, kvmx_log_first_page(0xfff), 0ULL);
	KUNIT_EXPECT_EQ(test, kvmx_log_last_page(0xfff, 2), 1ULL);
	/* 8 KiB from the middle of page 0 touches pages 0, 1 and 2. */
	KUNIT_EXPECT_EQ(test, kvmx_log_first_page(0x800), 0ULL);
	KUNIT_EXPECT_EQ(test, kvmx_log_last_page(0x800, 0x2000), 2ULL);
	/* 1 MiB from page 16: pages 16..271. */
	KUNIT_EXPECT_EQ(test, kvmx_log_first_page(0x10000), 16ULL);
	KUNIT_EXPECT_EQ(test, kvmx_log_last_page(0x10000, 0x100000), 271ULL);
}

static struct kunit_case notify_cases[] = {
	KUNIT_CASE(notify_test_event_passed),
	KUNIT_CASE(notify_test_event_not_reached),
	KUNIT_CASE(notify_test_event_exactly_reached),
	KUNIT_CASE(notify_test_event_wrap),
	KUNIT_CASE(notify_test_event_wrap_to_zero),
	KUNIT_CASE(notify_test_log_first_page),
	KUNIT_CASE(notify_test_log_last_page_len1),
	KUNIT_CASE(notify_test_log_last_page_boundaries),
	KUNIT_CASE(notify_test_log_crossing),
	{}
};

static struct kunit_suite notify_suite = {
	.name = "kvmx_core_notify",
	.test_cases = notify_cases,
};

/* ---- adaptive polling --------------------------------------------------- */

#define POLL_MAX_NS	32000

/* Work came back soon after we gave up: the window grows from 4 µs. */
static void poll_test_grows_from_nothing(struct kunit *test)
{
	KUNIT_EXPECT_EQ(test, kvmx_poll_next_ns(0, 1000, POLL_MAX_NS), 4000);
	KUNIT_EXPECT_EQ(test, kvmx_poll_next_ns(4000, 5000, POLL_MAX_NS), 8000);
	KUNIT_EXPECT_EQ(test, kvmx_poll_next_ns(8000, POLL_MAX_NS, POLL_MAX_NS), 16000);
}

/* Doubling never passes the cap, even from odd windows. */
static void poll_test_grows_to_the_cap_only(struct kunit *test)
{
	KUNIT_EXPECT_EQ(test, kvmx_poll_next_ns(16000, 20000, POLL_MAX_NS), POLL_MAX_NS);
	KUNIT_EXPECT_EQ(test, kvmx_poll_next_ns(20000, 25000, POLL_MAX_NS), POLL_MAX_NS);
	KUNIT_EXPECT_EQ(test, kvmx_poll_next_ns(0, 10, 1000), 1000);
	KUNIT_EXPECT_EQ(test, kvmx_poll_next_ns(U32_MAX / 2 + 1, U32_MAX, U32_MAX), U32_MAX);
}

/* A wait longer than the cap is an idle ring: stop spinning at once. */
static void poll_test_idle_ring_stops_polling(struct kunit *test)
{
	KUNIT_EXPECT_EQ(test, kvmx_poll_next_ns(POLL_MAX_NS, POLL_MAX_NS + 1, POLL_MAX_NS), 0);
	KUNIT_EXPECT_EQ(test, kvmx_poll_next_ns(4000, U64_MAX, POLL_MAX_NS), 0);
}

/* Woken within the window we polled: it is the right size, keep it. */
static void poll_test_right_window_is_kept(struct kunit *test)
{
	KUNIT_EXPECT_EQ(test, kvmx_poll_next_ns(8000, 8000, POLL_MAX_NS), 8000);
	KUNIT_EXPECT_EQ(test, kvmx_poll_next_ns(8000, 0, POLL_MAX_NS), 8000);
}

/* poll_max_us=0 turns adaptive polling off whatever the history. */
static void poll_test_zero_cap_never_polls(struct kunit *test)
{
	KUNIT_EXPECT_EQ(test, kvmx_poll_next_ns(0, 0, 0), 0);
	KUNIT_EXPECT_EQ(test, kvmx_poll_next_ns(0, 1, 0), 0);
}

static struct kunit_case poll_cases[] = {
	KUNIT_CASE(poll_test_grows_from_nothing),
	KUNIT_CASE(poll_test_grows_to_the_cap_only),
	KUNIT_CASE(poll_test_idle_ring_stops_polling),
	KUNIT_CASE(poll_test_right_window_is_kept),
	KUNIT_CASE(poll_test_zero_cap_never_polls),
	{}
};

static struct kunit_suite poll_suite = {
	.name = "kvmx_core_poll",
	.test_cases = poll_cases,
};

/* ---- kvmx_hold_start/end(): the call hold's adaptation ----------------- */

#define US	1000U
#define HOLD_MAX	(64 * US)

/* Start a hold and end it having caught @gap (0: nothing); the hold it ran. */
static u32 hold_round(struct kvmx_hold *hold, u64 gap, u32 max_ns)
{
	u32 held = kvmx_hold_start(hold, max_ns);

	if (held)
		kvmx_hold_end(hold, gap, max_ns);
	return held;
}

/* A new queue probes at its first signal; a probe holds for the cap. */
static void hold_test_first_signal_probes(struct kunit *test)
{
	struct kvmx_hold hold = {};

	KUNIT_EXPECT_EQ(test, kvmx_hold_start(&hold, HOLD_MAX), HOLD_MAX);
	KUNIT_EXPECT_EQ(test, hold.hold_ns, 0U);
}

/* A probe that caught a request 10 us in opens to twice that. */
static void hold_test_caught_probe_opens_to_twice_the_gap(struct kunit *test)
{
	struct kvmx_hold hold = {};

	KUNIT_EXPECT_EQ(test, hold_round(&hold, 10 * US, HOLD_MAX), HOLD_MAX);
	KUNIT_EXPECT_EQ(test, hold.hold_ns, 20 * US);
	KUNIT_EXPECT_EQ(test, kvmx_hold_start(&hold, HOLD_MAX), 20 * US);
}

/* Probes that catch nothing come ever rarer, down to one in PROBE_MAX. */
static void hold_test_wasted_probes_back_off(struct kunit *test)
{
	struct kvmx_hold hold = {};
	unsigned int signals, probes = 0, gap = 0, last = 0;

	for (signals = 1; signals <= 4 * KVMX_HOLD_PROBE_MAX; signals++) {
		if (!hold_round(&hold, 0, HOLD_MAX))
			continue;
		probes++;
		if (last)
			gap = signals - last;
		last = signals;
		KUNIT_EXPECT_EQ(test, hold.hold_ns, 0U);
	}
	/* Signals 1, 3, 7, 15, ..., 255, then every 256th: 8 + 3 probes. */
	KUNIT_EXPECT_EQ(test, probes, 11U);
	KUNIT_EXPECT_EQ(test, gap, KVMX_HOLD_PROBE_MAX);
}

/* Open, it grows to twice a burst's longest gap, and shorter gaps keep it. */
static void hold_test_grows_with_the_gap(struct kunit *test)
{
	struct kvmx_hold hold = { .hold_ns = 10 * US };

	hold_round(&hold, 25 * US, HOLD_MAX);
	KUNIT_EXPECT_EQ(test, hold.hold_ns, 50 * US);
	hold_round(&hold, 1 * US, HOLD_MAX);
	KUNIT_EXPECT_EQ(test, hold.hold_ns, 50 * US);
	/* Wasted holds short of closing it change nothing either. */
	hold_round(&hold, 0, HOLD_MAX);
	KUNIT_EXPECT_EQ(test, hold.hold_ns, 50 * US);
	hold_round(&hold, 30 * US, HOLD_MAX);
	KUNIT_EXPECT_EQ(test, hold.hold_ns, 60 * US);
}

/* Never past the cap, never under the floor, however long or short the gap. */
static void hold_test_cap_and_floor(struct kunit *test)
{
	struct kvmx_hold hold = {};

	hold_round(&hold, 40 * US, HOLD_MAX);
	KUNIT_EXPECT_EQ(test, hold.hold_ns, HOLD_MAX);
	hold_round(&hold, U64_MAX, HOLD_MAX);
	KUNIT_EXPECT_EQ(test, hold.hold_ns, HOLD_MAX);
	hold = (struct kvmx_hold){ .hold_ns = KVMX_HOLD_MIN_NS };
	hold_round(&hold, 1, HOLD_MAX);
	KUNIT_EXPECT_EQ(test, hold.hold_ns, KVMX_HOLD_MIN_NS);
	/* The largest cap there is: twice a huge gap must not wrap. */
	hold = (struct kvmx_hold){};
	hold_round(&hold, U64_MAX / 2 + 1, U32_MAX);
	KUNIT_EXPECT_EQ(test, hold.hold_ns, U32_MAX);
}

/* MISSES holds in a row that catch nothing close it; a probe follows two signals on. */
static void hold_test_wasted_holds_close(struct kunit *test)
{
	struct kvmx_hold hold = { .hold_ns = 20 * US };
	unsigned int i;

	for (i = 0; i < KVMX_HOLD_MISSES - 1; i++)
		KUNIT_EXPECT_EQ(test, hold_round(&hold, 0, HOLD_MAX), 20 * US);
	/* One catch starts the count again. */
	KUNIT_EXPECT_EQ(test, hold_round(&hold, 10 * US, HOLD_MAX), 20 * US);
	for (i = 0; i < KVMX_HOLD_MISSES; i++)
		KUNIT_EXPECT_EQ(test, hold_round(&hold, 0, HOLD_MAX), 20 * US);
	KUNIT_EXPECT_EQ(test, hold.hold_ns, 0U);
	KUNIT_EXPECT_EQ(test, kvmx_hold_start(&hold, HOLD_MAX), 0U);
	KUNIT_EXPECT_EQ(test, kvmx_hold_start(&hold, HOLD_MAX), HOLD_MAX);
}

/* A lowered cap clips a learnt hold; one below the floor turns holding off. */
static void hold_test_cap_lowered_or_off(struct kunit *test)
{
	struct kvmx_hold hold = { .hold_ns = HOLD_MAX };
	unsigned int i;

	KUNIT_EXPECT_EQ(test, kvmx_hold_start(&hold, 16 * US), 16 * US);
	KUNIT_EXPECT_EQ(test, hold.hold_ns, 16 * US);
	for (i = 0; i < 2 * KVMX_HOLD_PROBE_MAX; i++)
		KUNIT_EXPECT_EQ(test, kvmx_hold_start(&hold, 0), 0U);
	KUNIT_EXPECT_EQ(test, kvmx_hold_start(&hold, KVMX_HOLD_MIN_NS - 1), 0U);
	kvmx_hold_end(&hold, 10 * US, 0);
	KUNIT_EXPECT_EQ(test, hold.hold_ns, 0U);
}

static struct kunit_case kvmx_hold_cases[] = {
	KUNIT_CASE(hold_test_first_signal_probes),
	KUNIT_CASE(hold_test_caught_probe_opens_to_twice_the_gap),
	KUNIT_CASE(hold_test_wasted_probes_back_off),
	KUNIT_CASE(hold_test_grows_with_the_gap),
	KUNIT_CASE(hold_test_cap_and_floor),
	KUNIT_CASE(hold_test_wasted_holds_close),
	KUNIT_CASE(hold_test_cap_lowered_or_off),
	{}
};

static struct kunit_suite kvmx_hold_suite = {
	.name = "kvmx_core_hold",
	.test_cases = kvmx_hold_cases,
};

/* ---- kicks in the kicking thread: when to hand one to the worker -------- */

/*
 * A ring with no worker attached: kvmx_vq_kicker_hand_over() queues
 * nothing then, and only its decisions are left to check.
 */
static struct kvmx_vq *kicker_vq(struct kunit *test)
{
	struct kvmx_vq *vq = kunit_kzalloc(test, sizeof(*vq), GFP_KERNEL);

	KUNIT_ASSERT_NOT_ERR_OR_NULL(test, vq);
	return vq;
}

/* Kicks until the next hand-over, counting it; 0 if none in @limit. */
static unsigned int kicks_to_hand_over(struct kvmx_vq *vq, unsigned int limit)
{
	unsigned int i;

	for (i = 1; i <= limit; i++) {
		if (kvmx_vq_kicker_hand_over(vq))
			return i;
	}
	return 0;
}

static void kicker_test_one_probe_in_so_many(struct kunit *test)
{
	struct kvmx_vq *vq = kicker_vq(test);

	KUNIT_EXPECT_EQ(test, kicks_to_hand_over(vq, 1000), KVMX_KICKER_PROBE_EVERY);
	KUNIT_EXPECT_EQ(test, kicks_to_hand_over(vq, 1000), KVMX_KICKER_PROBE_EVERY);
	KUNIT_EXPECT_EQ(test, vq->kicker_handoffs, 2ULL);
}

static void kicker_test_a_busy_ring_goes_to_the_worker(struct kunit *test)
{
	struct kvmx_vq *vq = kicker_vq(test);
	unsigned int i;

	kvmx_vq_kicker_saw_deep(vq);
	for (i = 0; i < KVMX_KICKER_DEEP_ROUNDS; i++)
		KUNIT_EXPECT_TRUE(test, kvmx_vq_kicker_hand_over(vq));
	/* Over: the kicker takes kicks again, up to the next probe. */
	KUNIT_EXPECT_FALSE(test, kvmx_vq_kicker_hand_over(vq));
	KUNIT_EXPECT_EQ(test, vq->kicker_handoffs, (u64)KVMX_KICKER_DEEP_ROUNDS);
}

static void kicker_test_busy_again_starts_the_count_again(struct kunit *test)
{
	struct kvmx_vq *vq = kicker_vq(test);
	unsigned int i;

	kvmx_vq_kicker_saw_deep(vq);
	for (i = 0; i < KVMX_KICKER_DEEP_ROUNDS - 1; i++)
		KUNIT_EXPECT_TRUE(test, kvmx_vq_kicker_hand_over(vq));
	kvmx_vq_kicker_saw_deep(vq);
	for (i = 0; i < KVMX_KICKER_DEEP_ROUNDS; i++)
		KUNIT_EXPECT_TRUE(test, kvmx_vq_kicker_hand_over(vq));
	KUNIT_EXPECT_FALSE(test, kvmx_vq_kicker_hand_over(vq));
}

static struct kunit_case kicker_cases[] = {
	KUNIT_CASE(kicker_test_one_probe_in_so_many),
	KUNIT_CASE(kicker_test_a_busy_ring_goes_to_the_worker),
	KUNIT_CASE(kicker_test_busy_again_starts_the_count_again),
	{}
};

static struct kunit_suite kicker_suite = {
	.name = "kvmx_core_kicker",
	.test_cases = kicker_cases,
};

kunit_test_suites(&memtable_suite, &chain_suite, &notify_suite, &poll_suite, &kvmx_hold_suite,
		  &kicker_suite);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("KUnit tests for the kvmx virtqueue core");
