// SPDX-License-Identifier: GPL-2.0
/*
 * KUnit suite for the pure logic of kvmx vhost-blk, kvmx_blk_req:
 * kvmx_blk_classify() and kvmx_blk_check_range(), which decide from a
 * header and a chain's lengths what a virtio-blk request does and whether
 * the backend can do it.
 *
 * Lengths are given the way blk_submit() passes them: out_len is every
 * readable byte, the 16-byte header included; in_len is every writable
 * byte, the trailing status byte included.
 */
#include <kunit/test.h>
#include <linux/kernel.h>
#include <linux/limits.h>
#include <linux/module.h>
#include <linux/string.h>
#include <linux/virtio_blk.h>

#include "kvmx_blk.h"

#define HDR	KVMX_BLK_HDR_LEN
#define ST	KVMX_BLK_STATUS_LEN
#define SEG	((u32)sizeof(struct virtio_blk_discard_write_zeroes))
#define MAXSEGS	KVMX_BLK_MAX_DWZ_SEGS
#define MAXSECT	((u32)KVMX_BLK_MAX_DWZ_SECTORS)

/* A 1 MiB writable disk, the same read-only, and edge cases of size. */
static const struct kvmx_blk_backend_info disk = { .sectors = 2048 };
static const struct kvmx_blk_backend_info disk_ro = {
	.sectors = 2048, .read_only = true,
};

static const struct kvmx_blk_backend_info disk_empty = { .sectors = 0 };
/* As large as i_size (loff_t) allows: byte offsets never overflow here. */
static const struct kvmx_blk_backend_info disk_huge = {
	.sectors = (u64)LLONG_MAX >> SECTOR_SHIFT,
};

/* The fields the code under test must fill are poisoned first. */
static u8 classify(u32 type, u64 sector, u32 out_len, u32 in_len,
		   const struct kvmx_blk_backend_info *backend,
		   struct kvmx_blk_op *op)
{
	const struct kvmx_blk_hdr hdr = {
		.type = type, .ioprio = 0, .sector = sector,
	};

	memset(op, 0xa5, sizeof(*op));
	return kvmx_blk_classify(&hdr, out_len, in_len, backend, op);
}

/* A read of @data bytes: header only readable, data + status writable. */
static u8 classify_in(u64 sector, u32 data,
		      const struct kvmx_blk_backend_info *backend,
		      struct kvmx_blk_op *op)
{
	return classify(VIRTIO_BLK_T_IN, sector, HDR, data + ST, backend, op);
}

/* A write of @data bytes: header + data readable, status writable. */
static u8 classify_out(u64 sector, u32 data,
		       const struct kvmx_blk_backend_info *backend,
		       struct kvmx_blk_op *op)
{
	return classify(VIRTIO_BLK_T_OUT, sector, HDR + data, ST, backend, op);
}

static u8 check_range(u64 sector, u32 num_sectors, u32 flags, bool write_zeroes,
		      const struct kvmx_blk_backend_info *backend,
		      u64 *offset, u64 *len)
{
	const struct kvmx_blk_range seg = {
		.sector = sector, .num_sectors = num_sectors, .flags = flags,
	};

	*offset = 0xa5a5a5a5a5a5a5a5ULL;
	*len = 0xa5a5a5a5a5a5a5a5ULL;
	return kvmx_blk_check_range(&seg, write_zeroes, backend, offset, len);
}

/* ---- IN / OUT: offsets and lengths ------------------------------------- */

static void classify_test_in_first_sector(struct kunit *test)
{
	struct kvmx_blk_op op;

	KUNIT_ASSERT_EQ(test, classify_in(0, 512, &disk, &op), VIRTIO_BLK_S_OK);
	KUNIT_EXPECT_EQ(test, op.type, VIRTIO_BLK_T_IN);
	KUNIT_EXPECT_EQ(test, op.offset, 0);
	KUNIT_EXPECT_EQ(test, op.len, 512);
}

static void classify_test_in_offset_len(struct kunit *test)
{
	struct kvmx_blk_op op;

	/* len comes from in_len - 1; the readable part is the header only. */
	KUNIT_ASSERT_EQ(test, classify(VIRTIO_BLK_T_IN, 7, HDR, 4096 + ST, &disk, &op),
			VIRTIO_BLK_S_OK);
	KUNIT_EXPECT_EQ(test, op.type, VIRTIO_BLK_T_IN);
	KUNIT_EXPECT_EQ(test, op.offset, 7 * 512);
	KUNIT_EXPECT_EQ(test, op.len, 4096);
}

static void classify_test_out_offset_len(struct kunit *test)
{
	struct kvmx_blk_op op;

	/* len comes from out_len - 16; the writable part is the status only. */
	KUNIT_ASSERT_EQ(test, classify(VIRTIO_BLK_T_OUT, 100, HDR + 1536, ST, &disk, &op),
			VIRTIO_BLK_S_OK);
	KUNIT_EXPECT_EQ(test, op.type, VIRTIO_BLK_T_OUT);
	KUNIT_EXPECT_EQ(test, op.offset, 100 * 512);
	KUNIT_EXPECT_EQ(test, op.len, 1536);
}

static void classify_test_in_zero_length(struct kunit *test)
{
	struct kvmx_blk_op op;

	KUNIT_ASSERT_EQ(test, classify_in(5, 0, &disk, &op), VIRTIO_BLK_S_OK);
	KUNIT_EXPECT_EQ(test, op.offset, 5 * 512);
	KUNIT_EXPECT_EQ(test, op.len, 0);

	/* At the very end, and on a backend smaller than one sector. */
	KUNIT_ASSERT_EQ(test, classify_in(2048, 0, &disk, &op), VIRTIO_BLK_S_OK);
	KUNIT_EXPECT_EQ(test, op.offset, 2048 * 512);
	KUNIT_EXPECT_EQ(test, op.len, 0);
	KUNIT_ASSERT_EQ(test, classify_in(0, 0, &disk_empty, &op), VIRTIO_BLK_S_OK);
	KUNIT_EXPECT_EQ(test, op.len, 0);

	/* Even an empty read cannot start past the end. */
	KUNIT_EXPECT_EQ(test, classify_in(2049, 0, &disk, &op), VIRTIO_BLK_S_IOERR);
	KUNIT_EXPECT_EQ(test, classify_in(1, 0, &disk_empty, &op), VIRTIO_BLK_S_IOERR);
}

static void classify_test_out_zero_length(struct kunit *test)
{
	struct kvmx_blk_op op;

	KUNIT_ASSERT_EQ(test, classify_out(9, 0, &disk, &op), VIRTIO_BLK_S_OK);
	KUNIT_EXPECT_EQ(test, op.type, VIRTIO_BLK_T_OUT);
	KUNIT_EXPECT_EQ(test, op.offset, 9 * 512);
	KUNIT_EXPECT_EQ(test, op.len, 0);
}

static const u32 unaligned_lens[] = { 1, 16, 511, 513, 1000, 4095, 4097 };

static void classify_test_in_unaligned_len(struct kunit *test)
{
	struct kvmx_blk_op op;
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(unaligned_lens); i++)
		KUNIT_EXPECT_EQ_MSG(test, classify_in(0, unaligned_lens[i], &disk_huge, &op),
				    VIRTIO_BLK_S_IOERR, "read of %u bytes",
				    unaligned_lens[i]);
	/* The longest chain: in_len = U32_MAX. */
	KUNIT_EXPECT_EQ(test, classify_in(0, U32_MAX - ST, &disk_huge, &op),
			VIRTIO_BLK_S_IOERR);
}

static void classify_test_out_unaligned_len(struct kunit *test)
{
	struct kvmx_blk_op op;
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(unaligned_lens); i++)
		KUNIT_EXPECT_EQ_MSG(test, classify_out(0, unaligned_lens[i], &disk_huge, &op),
				    VIRTIO_BLK_S_IOERR, "write of %u bytes",
				    unaligned_lens[i]);
	/* The longest chain: out_len = U32_MAX. */
	KUNIT_EXPECT_EQ(test, classify_out(0, U32_MAX - HDR, &disk_huge, &op),
			VIRTIO_BLK_S_IOERR);
}

/* The largest multiple of 512 that fits in a chain's u32 length. */
static void classify_test_max_len(struct kunit *test)
{
	const u32 max = U32_MAX & ~(u32)(SECTOR_SIZE - 1);
	struct kvmx_blk_op op;

	KUNIT_ASSERT_EQ(test, classify_in(3, max, &disk_huge, &op), VIRTIO_BLK_S_OK);
	KUNIT_EXPECT_EQ(test, op.offset, 3 * 512);
	KUNIT_EXPECT_EQ(test, op.len, max);
	KUNIT_ASSERT_EQ(test, classify_out(3, max, &disk_huge, &op), VIRTIO_BLK_S_OK);
	KUNIT_EXPECT_EQ(test, op.len, max);

	/* 8 GiB of sectors do not fit a 1 MiB disk. */
	KUNIT_EXPECT_EQ(test, classify_in(0, max, &disk, &op), VIRTIO_BLK_S_IOERR);
	KUNIT_EXPECT_EQ(test, classify_out(0, max, &disk, &op), VIRTIO_BLK_S_IOERR);
}

/* ---- IN / OUT: the end of the backend ---------------------------------- */

static void classify_test_last_sector_accepted(struct kunit *test)
{
	struct kvmx_blk_op op;

	KUNIT_ASSERT_EQ(test, classify_in(2047, 512, &disk, &op), VIRTIO_BLK_S_OK);
	KUNIT_EXPECT_EQ(test, op.offset, 2047 * 512);
	KUNIT_EXPECT_EQ(test, op.len, 512);
	KUNIT_ASSERT_EQ(test, classify_out(2040, 4096, &disk, &op), VIRTIO_BLK_S_OK);
	KUNIT_EXPECT_EQ(test, op.offset, 2040 * 512);
	KUNIT_EXPECT_EQ(test, op.len, 4096);

	/* The whole disk in one request. */
	KUNIT_ASSERT_EQ(test, classify_in(0, 2048 * 512, &disk, &op), VIRTIO_BLK_S_OK);
	KUNIT_EXPECT_EQ(test, op.len, 2048 * 512);
	KUNIT_EXPECT_EQ(test, classify_out(0, 2048 * 512, &disk, &op), VIRTIO_BLK_S_OK);
}

static void classify_test_one_past_end(struct kunit *test)
{
	struct kvmx_blk_op op;

	KUNIT_EXPECT_EQ(test, classify_in(2048, 512, &disk, &op), VIRTIO_BLK_S_IOERR);
	KUNIT_EXPECT_EQ(test, classify_out(2048, 512, &disk, &op), VIRTIO_BLK_S_IOERR);
	/* Starts inside, ends one sector out. */
	KUNIT_EXPECT_EQ(test, classify_in(2041, 4096, &disk, &op), VIRTIO_BLK_S_IOERR);
	KUNIT_EXPECT_EQ(test, classify_out(2041, 4096, &disk, &op), VIRTIO_BLK_S_IOERR);
	KUNIT_EXPECT_EQ(test, classify_in(0, 2049 * 512, &disk, &op), VIRTIO_BLK_S_IOERR);
	KUNIT_EXPECT_EQ(test, classify_in(0, 512, &disk_empty, &op), VIRTIO_BLK_S_IOERR);
}

static void classify_test_huge_backend_last_sector(struct kunit *test)
{
	const u64 last = disk_huge.sectors - 1;
	struct kvmx_blk_op op;

	KUNIT_ASSERT_EQ(test, classify_in(last, 512, &disk_huge, &op), VIRTIO_BLK_S_OK);
	KUNIT_EXPECT_EQ(test, op.offset, last << SECTOR_SHIFT);
	KUNIT_EXPECT_EQ(test, op.len, 512);
	KUNIT_EXPECT_EQ(test, classify_out(last, 1024, &disk_huge, &op), VIRTIO_BLK_S_IOERR);
}

/* sector + len / 512 wrapping past U64_MAX must not look like a small end. */
static void classify_test_sector_overflow(struct kunit *test)
{
	struct kvmx_blk_op op;

	KUNIT_EXPECT_EQ(test, classify_in(U64_MAX, 512, &disk_huge, &op), VIRTIO_BLK_S_IOERR);
	KUNIT_EXPECT_EQ(test, classify_out(U64_MAX, 512, &disk_huge, &op), VIRTIO_BLK_S_IOERR);
	/* Ends exactly at 2^64, i.e. at sector 0 after wrapping. */
	KUNIT_EXPECT_EQ(test, classify_in(U64_MAX - 1, 1024, &disk_huge, &op),
			VIRTIO_BLK_S_IOERR);
	KUNIT_EXPECT_EQ(test, classify_out(U64_MAX - 7, 4096, &disk_huge, &op),
			VIRTIO_BLK_S_IOERR);
	KUNIT_EXPECT_EQ(test, classify_in(U64_MAX, 0, &disk_huge, &op), VIRTIO_BLK_S_IOERR);
	KUNIT_EXPECT_EQ(test, classify_in(U64_MAX - 1, 512, &disk, &op), VIRTIO_BLK_S_IOERR);
}

/* Sectors whose byte offset (sector << 9) would not fit in a u64. */
static void classify_test_offset_overflow(struct kunit *test)
{
	struct kvmx_blk_op op;

	KUNIT_EXPECT_EQ(test, classify_in(BIT_ULL(55), 512, &disk_huge, &op),
			VIRTIO_BLK_S_IOERR);
	KUNIT_EXPECT_EQ(test, classify_out(BIT_ULL(63), 512, &disk_huge, &op),
			VIRTIO_BLK_S_IOERR);
	KUNIT_EXPECT_EQ(test, classify_in(U64_MAX >> SECTOR_SHIFT, 0, &disk_huge, &op),
			VIRTIO_BLK_S_IOERR);
}

/* ---- read-only backends ------------------------------------------------- */

static void classify_test_out_read_only(struct kunit *test)
{
	struct kvmx_blk_op op;

	KUNIT_EXPECT_EQ(test, classify_out(0, 512, &disk_ro, &op), VIRTIO_BLK_S_IOERR);
	KUNIT_EXPECT_EQ(test, classify_out(2047, 512, &disk_ro, &op), VIRTIO_BLK_S_IOERR);
	/* Any write, even one that moves no data. */
	KUNIT_EXPECT_EQ(test, classify_out(0, 0, &disk_ro, &op), VIRTIO_BLK_S_IOERR);
}

static void classify_test_in_read_only(struct kunit *test)
{
	struct kvmx_blk_op op;

	KUNIT_ASSERT_EQ(test, classify_in(16, 2048, &disk_ro, &op), VIRTIO_BLK_S_OK);
	KUNIT_EXPECT_EQ(test, op.type, VIRTIO_BLK_T_IN);
	KUNIT_EXPECT_EQ(test, op.offset, 16 * 512);
	KUNIT_EXPECT_EQ(test, op.len, 2048);
	KUNIT_EXPECT_EQ(test, classify_in(2048, 512, &disk_ro, &op), VIRTIO_BLK_S_IOERR);
}

/* ---- FLUSH -------------------------------------------------------------- */

static void classify_test_flush(struct kunit *test)
{
	struct kvmx_blk_op op;

	KUNIT_ASSERT_EQ(test, classify(VIRTIO_BLK_T_FLUSH, 0, HDR, ST, &disk, &op),
			VIRTIO_BLK_S_OK);
	KUNIT_EXPECT_EQ(test, op.type, VIRTIO_BLK_T_FLUSH);
	KUNIT_EXPECT_EQ(test, op.offset, 0);
	KUNIT_EXPECT_EQ(test, op.len, 0);
}

static void classify_test_flush_read_only(struct kunit *test)
{
	struct kvmx_blk_op op;

	KUNIT_ASSERT_EQ(test, classify(VIRTIO_BLK_T_FLUSH, 0, HDR, ST, &disk_ro, &op),
			VIRTIO_BLK_S_OK);
	KUNIT_EXPECT_EQ(test, op.type, VIRTIO_BLK_T_FLUSH);
	KUNIT_EXPECT_EQ(test, op.len, 0);
}

/* ---- GET_ID ------------------------------------------------------------- */

static void classify_test_get_id_clipped(struct kunit *test)
{
	static const u32 data[] = { VIRTIO_BLK_ID_BYTES, VIRTIO_BLK_ID_BYTES + 1,
				    512, U32_MAX - ST };
	struct kvmx_blk_op op;
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(data); i++) {
		KUNIT_ASSERT_EQ_MSG(test, classify(VIRTIO_BLK_T_GET_ID, 0, HDR,
						   data[i] + ST, &disk, &op),
				    VIRTIO_BLK_S_OK, "GET_ID into %u bytes", data[i]);
		KUNIT_EXPECT_EQ(test, op.type, VIRTIO_BLK_T_GET_ID);
		KUNIT_EXPECT_EQ_MSG(test, op.len, VIRTIO_BLK_ID_BYTES,
				    "GET_ID into %u bytes", data[i]);
	}
}

static void classify_test_get_id_short(struct kunit *test)
{
	struct kvmx_blk_op op;

	KUNIT_ASSERT_EQ(test, classify(VIRTIO_BLK_T_GET_ID, 0, HDR, 1 + ST, &disk, &op),
			VIRTIO_BLK_S_OK);
	KUNIT_EXPECT_EQ(test, op.len, 1);
	KUNIT_ASSERT_EQ(test, classify(VIRTIO_BLK_T_GET_ID, 0, HDR,
				       VIRTIO_BLK_ID_BYTES - 1 + ST, &disk, &op),
			VIRTIO_BLK_S_OK);
	KUNIT_EXPECT_EQ(test, op.len, VIRTIO_BLK_ID_BYTES - 1);
}

static void classify_test_get_id_no_data(struct kunit *test)
{
	struct kvmx_blk_op op;

	/* The only writable byte is the status. */
	KUNIT_EXPECT_EQ(test, classify(VIRTIO_BLK_T_GET_ID, 0, HDR, ST, &disk, &op),
			VIRTIO_BLK_S_IOERR);
	/* Readable bytes after the header are no place for the ID either. */
	KUNIT_EXPECT_EQ(test, classify(VIRTIO_BLK_T_GET_ID, 0, HDR + 64, ST, &disk, &op),
			VIRTIO_BLK_S_IOERR);
}

static void classify_test_get_id_read_only(struct kunit *test)
{
	struct kvmx_blk_op op;

	KUNIT_ASSERT_EQ(test, classify(VIRTIO_BLK_T_GET_ID, 0, HDR, 64 + ST, &disk_ro, &op),
			VIRTIO_BLK_S_OK);
	KUNIT_EXPECT_EQ(test, op.len, VIRTIO_BLK_ID_BYTES);
}

/* ---- DISCARD / WRITE_ZEROES payloads ------------------------------------ */

static const u32 dwz_types[] = { VIRTIO_BLK_T_DISCARD, VIRTIO_BLK_T_WRITE_ZEROES };

static void classify_test_dwz_segments(struct kunit *test)
{
	static const u32 nsegs[] = { 1, 2, MAXSEGS - 1, MAXSEGS };
	struct kvmx_blk_op op;
	unsigned int t, i;

	for (t = 0; t < ARRAY_SIZE(dwz_types); t++) {
		for (i = 0; i < ARRAY_SIZE(nsegs); i++) {
			KUNIT_ASSERT_EQ_MSG(test, classify(dwz_types[t], 0,
							   HDR + nsegs[i] * SEG, ST,
							   &disk, &op),
					    VIRTIO_BLK_S_OK, "type %u, %u segments",
					    dwz_types[t], nsegs[i]);
			KUNIT_EXPECT_EQ(test, op.type, dwz_types[t]);
			KUNIT_EXPECT_EQ(test, op.len, nsegs[i] * SEG);
		}
	}
}

static void classify_test_dwz_empty(struct kunit *test)
{
	struct kvmx_blk_op op;
	unsigned int t;

	for (t = 0; t < ARRAY_SIZE(dwz_types); t++)
		KUNIT_EXPECT_EQ_MSG(test, classify(dwz_types[t], 0, HDR, ST, &disk, &op),
				    VIRTIO_BLK_S_IOERR, "type %u", dwz_types[t]);
}

static void classify_test_dwz_partial_segment(struct kunit *test)
{
	static const u32 payload[] = { 1, SEG - 1, SEG + 1, SEG + SEG / 2,
				       MAXSEGS * SEG - 1 };
	struct kvmx_blk_op op;
	unsigned int t, i;

	for (t = 0; t < ARRAY_SIZE(dwz_types); t++)
		for (i = 0; i < ARRAY_SIZE(payload); i++)
			KUNIT_EXPECT_EQ_MSG(test, classify(dwz_types[t], 0,
							   HDR + payload[i], ST,
							   &disk, &op),
					    VIRTIO_BLK_S_IOERR, "type %u, %u bytes",
					    dwz_types[t], payload[i]);
}

static void classify_test_dwz_too_many_segments(struct kunit *test)
{
	static const u32 payload[] = { (MAXSEGS + 1) * SEG, 2 * MAXSEGS * SEG,
				       (U32_MAX - HDR) & ~(SEG - 1) };
	struct kvmx_blk_op op;
	unsigned int t, i;

	for (t = 0; t < ARRAY_SIZE(dwz_types); t++)
		for (i = 0; i < ARRAY_SIZE(payload); i++)
			KUNIT_EXPECT_EQ_MSG(test, classify(dwz_types[t], 0,
							   HDR + payload[i], ST,
							   &disk, &op),
					    VIRTIO_BLK_S_IOERR, "type %u, %u bytes",
					    dwz_types[t], payload[i]);
}

static void classify_test_dwz_read_only(struct kunit *test)
{
	struct kvmx_blk_op op;
	unsigned int t;

	for (t = 0; t < ARRAY_SIZE(dwz_types); t++)
		KUNIT_EXPECT_EQ_MSG(test, classify(dwz_types[t], 0, HDR + SEG, ST,
						   &disk_ro, &op),
				    VIRTIO_BLK_S_IOERR, "type %u", dwz_types[t]);
}

/* ---- types the device does not implement -------------------------------- */

struct unknown_type_case {
	u32 type;
	const char *desc;
};

static const struct unknown_type_case unknown_types[] = {
	{ VIRTIO_BLK_T_SCSI_CMD, "SCSI_CMD (2)" },
	{ 3, "3 (SCSI_CMD_OUT)" },
	{ 5, "5 (FLUSH_OUT)" },
	{ 10, "10 (GET_LIFETIME)" },
	{ VIRTIO_BLK_T_SECURE_ERASE, "SECURE_ERASE (14)" },
	{ VIRTIO_BLK_T_ZONE_APPEND, "ZONE_APPEND (15)" },
	{ VIRTIO_BLK_T_ZONE_RESET_ALL, "ZONE_RESET_ALL (26)" },
	{ VIRTIO_BLK_T_BARRIER, "BARRIER" },
	{ VIRTIO_BLK_T_BARRIER | VIRTIO_BLK_T_OUT, "BARRIER | OUT" },
	{ 0xffffffff, "0xffffffff" },
};

KUNIT_ARRAY_PARAM_DESC(unknown_type, unknown_types, desc);

static void classify_test_unknown_type(struct kunit *test)
{
	const struct unknown_type_case *c = test->param_value;
	struct kvmx_blk_op op;

	/* Whatever the lengths, the backend mode or the sector. */
	KUNIT_EXPECT_EQ(test, classify(c->type, 0, HDR, ST, &disk, &op),
			VIRTIO_BLK_S_UNSUPP);
	KUNIT_EXPECT_EQ(test, classify(c->type, 0, HDR + 512, 512 + ST, &disk, &op),
			VIRTIO_BLK_S_UNSUPP);
	KUNIT_EXPECT_EQ(test, classify(c->type, 0, HDR + 7, 3 + ST, &disk_ro, &op),
			VIRTIO_BLK_S_UNSUPP);
	KUNIT_EXPECT_EQ(test, classify(c->type, U64_MAX, HDR, ST, &disk, &op),
			VIRTIO_BLK_S_UNSUPP);
}

/* ---- kvmx_blk_check_range() --------------------------------------------- */

static void range_test_discard_bytes(struct kunit *test)
{
	u64 offset, len;

	KUNIT_ASSERT_EQ(test, check_range(8, 3, 0, false, &disk, &offset, &len),
			VIRTIO_BLK_S_OK);
	KUNIT_EXPECT_EQ(test, offset, 8 * 512);
	KUNIT_EXPECT_EQ(test, len, 3 * 512);

	KUNIT_ASSERT_EQ(test, check_range(0, 1, 0, false, &disk, &offset, &len),
			VIRTIO_BLK_S_OK);
	KUNIT_EXPECT_EQ(test, offset, 0);
	KUNIT_EXPECT_EQ(test, len, 512);
}

static void range_test_write_zeroes_flags_ok(struct kunit *test)
{
	u64 offset, len;

	KUNIT_ASSERT_EQ(test, check_range(100, 28, 0, true, &disk, &offset, &len),
			VIRTIO_BLK_S_OK);
	KUNIT_EXPECT_EQ(test, offset, 100 * 512);
	KUNIT_EXPECT_EQ(test, len, 28 * 512);

	KUNIT_ASSERT_EQ(test, check_range(100, 28, VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP,
					  true, &disk, &offset, &len),
			VIRTIO_BLK_S_OK);
	KUNIT_EXPECT_EQ(test, offset, 100 * 512);
	KUNIT_EXPECT_EQ(test, len, 28 * 512);
}

struct range_flags_case {
	u32 flags;
	const char *desc;
};

/* Every flag a DISCARD may not carry, UNMAP included. */
static const struct range_flags_case discard_bad_flags[] = {
	{ VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP, "UNMAP" },
	{ BIT(1), "bit 1" },
	{ BIT(31), "bit 31" },
	{ U32_MAX, "all bits" },
};

KUNIT_ARRAY_PARAM_DESC(discard_bad_flags, discard_bad_flags, desc);

static void range_test_discard_flags_unsupp(struct kunit *test)
{
	const struct range_flags_case *c = test->param_value;
	u64 offset, len;

	KUNIT_EXPECT_EQ(test, check_range(0, 8, c->flags, false, &disk, &offset, &len),
			VIRTIO_BLK_S_UNSUPP);
}

/* Every flag but UNMAP, alone or alongside it. */
static const struct range_flags_case write_zeroes_bad_flags[] = {
	{ BIT(1), "bit 1" },
	{ VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP | BIT(1), "UNMAP | bit 1" },
	{ BIT(31), "bit 31" },
	{ U32_MAX, "all bits" },
};

KUNIT_ARRAY_PARAM_DESC(write_zeroes_bad_flags, write_zeroes_bad_flags, desc);

static void range_test_write_zeroes_flags_unsupp(struct kunit *test)
{
	const struct range_flags_case *c = test->param_value;
	u64 offset, len;

	KUNIT_EXPECT_EQ(test, check_range(0, 8, c->flags, true, &disk, &offset, &len),
			VIRTIO_BLK_S_UNSUPP);
}

static void range_test_zero_sectors(struct kunit *test)
{
	u64 offset, len;

	KUNIT_EXPECT_EQ(test, check_range(0, 0, 0, false, &disk, &offset, &len),
			VIRTIO_BLK_S_IOERR);
	KUNIT_EXPECT_EQ(test, check_range(10, 0, 0, true, &disk, &offset, &len),
			VIRTIO_BLK_S_IOERR);
	KUNIT_EXPECT_EQ(test, check_range(10, 0, VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP, true,
					  &disk, &offset, &len),
			VIRTIO_BLK_S_IOERR);
}

static void range_test_max_sectors(struct kunit *test)
{
	u64 offset, len;

	KUNIT_ASSERT_EQ(test, check_range(1, MAXSECT, 0, false, &disk_huge, &offset, &len),
			VIRTIO_BLK_S_OK);
	KUNIT_EXPECT_EQ(test, offset, 512);
	KUNIT_EXPECT_EQ(test, len, (u64)MAXSECT << SECTOR_SHIFT);
	KUNIT_ASSERT_EQ(test, check_range(0, MAXSECT, VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP,
					  true, &disk_huge, &offset, &len),
			VIRTIO_BLK_S_OK);
	KUNIT_EXPECT_EQ(test, len, (u64)MAXSECT << SECTOR_SHIFT);

	KUNIT_EXPECT_EQ(test, check_range(0, MAXSECT + 1, 0, false, &disk_huge, &offset, &len),
			VIRTIO_BLK_S_IOERR);
	KUNIT_EXPECT_EQ(test, check_range(0, MAXSECT + 1, 0, true, &disk_huge, &offset, &len),
			VIRTIO_BLK_S_IOERR);
	KUNIT_EXPECT_EQ(test, check_range(0, U32_MAX, 0, true, &disk_huge, &offset, &len),
			VIRTIO_BLK_S_IOERR);
}

static void range_test_end_of_backend(struct kunit *test)
{
	u64 offset, len;

	/* Ends exactly at the last sector. */
	KUNIT_ASSERT_EQ(test, check_range(2040, 8, 0, false, &disk, &offset, &len),
			VIRTIO_BLK_S_OK);
	KUNIT_EXPECT_EQ(test, offset, 2040 * 512);
	KUNIT_EXPECT_EQ(test, len, 8 * 512);
	KUNIT_ASSERT_EQ(test, check_range(0, 2048, 0, true, &disk, &offset, &len),
			VIRTIO_BLK_S_OK);
	KUNIT_EXPECT_EQ(test, len, 2048 * 512);

	/* One sector too far, or starting at the end. */
	KUNIT_EXPECT_EQ(test, check_range(2041, 8, 0, false, &disk, &offset, &len),
			VIRTIO_BLK_S_IOERR);
	KUNIT_EXPECT_EQ(test, check_range(0, 2049, 0, true, &disk, &offset, &len),
			VIRTIO_BLK_S_IOERR);
	KUNIT_EXPECT_EQ(test, check_range(2048, 1, 0, false, &disk, &offset, &len),
			VIRTIO_BLK_S_IOERR);
	KUNIT_EXPECT_EQ(test, check_range(0, 1, 0, true, &disk_empty, &offset, &len),
			VIRTIO_BLK_S_IOERR);
	/* Read-only checks are the caller's business: the range itself is valid. */
	KUNIT_EXPECT_EQ(test, check_range(0, 1, 0, false, &disk_ro, &offset, &len),
			VIRTIO_BLK_S_OK);
}

static void range_test_overflow(struct kunit *test)
{
	u64 offset, len;

	KUNIT_EXPECT_EQ(test, check_range(U64_MAX, 1, 0, false, &disk_huge, &offset, &len),
			VIRTIO_BLK_S_IOERR);
	/* Ends exactly at 2^64, i.e. at sector 0 after wrapping. */
	KUNIT_EXPECT_EQ(test, check_range(U64_MAX - 1, 2, 0, true, &disk_huge, &offset, &len),
			VIRTIO_BLK_S_IOERR);
	KUNIT_EXPECT_EQ(test, check_range(U64_MAX - MAXSECT + 1, MAXSECT, 0, false,
					  &disk_huge, &offset, &len),
			VIRTIO_BLK_S_IOERR);
	/* No wrap, but the byte offset would not fit in a u64. */
	KUNIT_EXPECT_EQ(test, check_range(BIT_ULL(55), 1, 0, true, &disk_huge, &offset, &len),
			VIRTIO_BLK_S_IOERR);
}

static void range_test_huge_backend_last_sector(struct kunit *test)
{
	const u64 last = disk_huge.sectors - 1;
	u64 offset, len;

	KUNIT_ASSERT_EQ(test, check_range(last, 1, 0, false, &disk_huge, &offset, &len),
			VIRTIO_BLK_S_OK);
	KUNIT_EXPECT_EQ(test, offset, last << SECTOR_SHIFT);
	KUNIT_EXPECT_EQ(test, len, 512);
	KUNIT_EXPECT_EQ(test, check_range(last, 2, 0, false, &disk_huge, &offset, &len),
			VIRTIO_BLK_S_IOERR);
}

static struct kunit_case kvmx_blk_req_cases[] = {
	KUNIT_CASE(classify_test_in_first_sector),
	KUNIT_CASE(classify_test_in_offset_len),
	KUNIT_CASE(classify_test_out_offset_len),
	KUNIT_CASE(classify_test_in_zero_length),
	KUNIT_CASE(classify_test_out_zero_length),
	KUNIT_CASE(classify_test_in_unaligned_len),
	KUNIT_CASE(classify_test_out_unaligned_len),
	KUNIT_CASE(classify_test_max_len),
	KUNIT_CASE(classify_test_last_sector_accepted),
	KUNIT_CASE(classify_test_one_past_end),
	KUNIT_CASE(classify_test_huge_backend_last_sector),
	KUNIT_CASE(classify_test_sector_overflow),
	KUNIT_CASE(classify_test_offset_overflow),
	KUNIT_CASE(classify_test_out_read_only),
	KUNIT_CASE(classify_test_in_read_only),
	KUNIT_CASE(classify_test_flush),
	KUNIT_CASE(classify_test_flush_read_only),
	KUNIT_CASE(classify_test_get_id_clipped),
	KUNIT_CASE(classify_test_get_id_short),
	KUNIT_CASE(classify_test_get_id_no_data),
	KUNIT_CASE(classify_test_get_id_read_only),
	KUNIT_CASE(classify_test_dwz_segments),
	KUNIT_CASE(classify_test_dwz_empty),
	KUNIT_CASE(classify_test_dwz_partial_segment),
	KUNIT_CASE(classify_test_dwz_too_many_segments),
	KUNIT_CASE(classify_test_dwz_read_only),
	KUNIT_CASE_PARAM(classify_test_unknown_type, unknown_type_gen_params),
	KUNIT_CASE(range_test_discard_bytes),
	KUNIT_CASE(range_test_write_zeroes_flags_ok),
	KUNIT_CASE_PARAM(range_test_discard_flags_unsupp, discard_bad_flags_gen_params),
	KUNIT_CASE_PARAM(range_test_write_zeroes_flags_unsupp,
			 write_zeroes_bad_flags_gen_params),
	KUNIT_CASE(range_test_zero_sectors),
	KUNIT_CASE(range_test_max_sectors),
	KUNIT_CASE(range_test_end_of_backend),
	KUNIT_CASE(range_test_overflow),
	KUNIT_CASE(range_test_huge_backend_last_sector),
	{}
};

static struct kunit_suite kvmx_blk_req_suite = {
	.name = "kvmx_blk_req",
	.test_cases = kvmx_blk_req_cases,
};

kunit_test_suites(&kvmx_blk_req_suite);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("KUnit tests for kvmx vhost-blk request validation");
