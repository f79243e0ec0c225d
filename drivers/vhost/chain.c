// SPDX-License-Identifier: GPL-2.0
/*
 * kvmx descriptor chain walk for split virtqueues.
 *
 * Every field of every descriptor is written by the guest and may change
 * while we look at it, so each descriptor is copied once into a local and
 * only the copy is used. Every loop is bounded by the ring or table size,
 * and every buffer is translated through the memory table before it becomes
 * an iovec: nothing outside the table is ever addressed.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/export.h>
#include <linux/overflow.h>
#include <linux/uio.h>

#include "kvmx_vhost.h"

/* The split-ring descriptor as it sits in memory: always little endian. */
struct kvmx_desc {
	__le64 addr;
	__le32 len;
	__le16 flags;
	__le16 next;
};

static_assert(sizeof(struct kvmx_desc) == 16);

static const char * const fault_names[KVMX_FAULT_MAX] = {
	[KVMX_FAULT_NONE] = "no fault",
	[KVMX_FAULT_HEAD_RANGE] = "head index beyond the ring",
	[KVMX_FAULT_NEXT_RANGE] = "next index beyond the ring or table",
	[KVMX_FAULT_LOOP] = "descriptor loop",
	[KVMX_FAULT_TOO_LONG] = "chain longer than the ring",
	[KVMX_FAULT_TOO_MANY_SEGS] = "more segments than the device takes",
	[KVMX_FAULT_NESTED_INDIRECT] = "indirect table inside an indirect table",
	[KVMX_FAULT_INDIRECT_NEXT] = "indirect descriptor with NEXT set",
	[KVMX_FAULT_INDIRECT_SIZE] = "indirect table size zero or not a multiple of 16",
	[KVMX_FAULT_INDIRECT_OFF] = "indirect descriptor without INDIRECT_DESC",
	[KVMX_FAULT_ZERO_LEN] = "zero-length buffer",
	[KVMX_FAULT_OUT_AFTER_IN] = "device-readable buffer after a writable one",
	[KVMX_FAULT_LEN_OVERFLOW] = "buffer length overflows",
	[KVMX_FAULT_ADDR] = "buffer outside guest memory",
	[KVMX_FAULT_READ] = "descriptor unreadable",
	[KVMX_FAULT_AVAIL_IDX] = "avail index moved beyond the ring",
};

const char *kvmx_chain_fault_str(enum kvmx_chain_fault fault)
{
	if ((unsigned int)fault >= KVMX_FAULT_MAX)
		return "unknown fault";
	return fault_names[fault];
}
EXPORT_SYMBOL_GPL(kvmx_chain_fault_str);

static int chain_fault(struct kvmx_chain *chain, enum kvmx_chain_fault fault,
		       int err)
{
	chain->fault = fault;
	return err;
}

/*
 * Read @len bytes of guest memory at @gpa, which may span regions. Says
 * whether the address was outside the table or the memory unreadable.
 */
static enum kvmx_chain_fault read_guest(const struct kvmx_memtable *mt,
					const struct kvmx_mem_ops *ops, void *ctx,
					u64 gpa, void *dst, size_t len)
{
	u64 uaddr, chunk;

	while (len) {
		if (kvmx_memtable_translate(mt, gpa, len, &uaddr, &chunk))
			return KVMX_FAULT_ADDR;
		if (ops->read(ctx, dst, uaddr, chunk))
			return KVMX_FAULT_READ;
		dst += chunk;
		gpa += chunk;
		len -= chunk;
	}
	return KVMX_FAULT_NONE;
}

static int add_segment(struct kvmx_chain *chain, const struct kvmx_memtable *mt,
		       u64 gpa, u32 len, bool writable)
{
	u32 *total = writable ? &chain->in_len : &chain->out_len;
	u64 last, uaddr, chunk;

	if (chain->segs_exhausted)
		return 0;
	if (!len)
		return chain_fault(chain, KVMX_FAULT_ZERO_LEN, -EINVAL);
	if (!writable && chain->nin)
		return chain_fault(chain, KVMX_FAULT_OUT_AFTER_IN, -EINVAL);
	if (check_add_overflow(gpa, (u64)len - 1, &last) ||
	    check_add_overflow(*total, len, total))
		return chain_fault(chain, KVMX_FAULT_LEN_OVERFLOW, -EOVERFLOW);

	while (len) {
		unsigned int seg = chain->nout + chain->nin;

		if (kvmx_memtable_translate(mt, gpa, len, &uaddr, &chunk))
			return chain_fault(chain, KVMX_FAULT_ADDR, -EFAULT);
		if (seg >= chain->max_segs) {
			/*
			 * Keep walking without segments: a loop must still be
			 * reported as a loop, and the walk stays bounded by
			 * the descriptor count.
			 */
			chain->segs_exhausted = true;
			return 0;
		}
		chain->iov[seg].iov_base = u64_to_user_ptr(uaddr);
		chain->iov[seg].iov_len = chunk;
		chain->gpa[seg] = gpa;
		if (writable)
			chain->nin++;
		else
			chain->nout++;
		gpa += chunk;
		len -= chunk;
	}
	return 0;
}

/* A chain that ended normally may still have been too big to map. */
static int chain_end(struct kvmx_chain *chain)
{
	if (chain->segs_exhausted)
		return chain_fault(chain, KVMX_FAULT_TOO_MANY_SEGS, -E2BIG);
	return 0;
}

static int walk_indirect(const struct kvmx_ring_view *ring,
			 const struct kvmx_memtable *mt,
			 const struct kvmx_mem_ops *ops, void *ctx,
			 u64 table_gpa, u32 table_len, struct kvmx_chain *chain)
{
	u32 entries, idx = 0, seen = 0;
	enum kvmx_chain_fault fault;
	struct kvmx_desc desc;
	u64 last;
	int err;

	if (!table_len || table_len % sizeof(desc))
		return chain_fault(chain, KVMX_FAULT_INDIRECT_SIZE, -EINVAL);
	if (check_add_overflow(table_gpa, (u64)table_len - 1, &last))
		return chain_fault(chain, KVMX_FAULT_LEN_OVERFLOW, -EOVERFLOW);
	entries = table_len / sizeof(desc);

	for (;;) {
		u16 flags;

		if (++seen > entries)
			return chain_fault(chain, KVMX_FAULT_LOOP, -ELOOP);
		if (++chain->ndesc > ring->num)
			return chain_fault(chain, KVMX_FAULT_TOO_LONG, -E2BIG);
		fault = read_guest(mt, ops, ctx, table_gpa + (u64)idx * sizeof(desc),
				   &desc, sizeof(desc));
		if (fault != KVMX_FAULT_NONE)
			return chain_fault(chain, fault, -EFAULT);

		flags = le16_to_cpu(desc.flags);
		if (flags & VRING_DESC_F_INDIRECT)
			return chain_fault(chain, KVMX_FAULT_NESTED_INDIRECT, -EINVAL);
		err = add_segment(chain, mt, le64_to_cpu(desc.addr),
				  le32_to_cpu(desc.len), flags & VRING_DESC_F_WRITE);
		if (err)
			return err;
		if (!(flags & VRING_DESC_F_NEXT))
			return chain_end(chain);
		idx = le16_to_cpu(desc.next);
		if (idx >= entries)
			return chain_fault(chain, KVMX_FAULT_NEXT_RANGE, -ERANGE);
	}
}

/**
 * kvmx_chain_walk - turn the descriptor chain at @head into iovecs
 * @ring: where the descriptor table is and how big the ring is
 * @head: the head index, as read from the avail ring (untrusted)
 * @mt: the memory table every buffer is translated through
 * @ops: how descriptors are read from the owner's memory
 * @ctx: passed to @ops
 * @chain: the caller's iovec arrays in, the walked chain out
 *
 * A direct chain may end in one indirect descriptor, as the virtio spec
 * allows. Counting every descriptor against the ring size bounds the walk
 * even when the guest rewrites the table under us.
 *
 * Return: 0, or a negative errno with @chain->fault saying which check
 * fired (the mapping is documented in include/uapi/linux/kvmx_vhost.h).
 */
int kvmx_chain_walk(const struct kvmx_ring_view *ring, u16 head,
		    const struct kvmx_memtable *mt,
		    const struct kvmx_mem_ops *ops, void *ctx,
		    struct kvmx_chain *chain)
{
	u32 idx = head, direct = 0;
	struct kvmx_desc desc;
	int err;

	chain->nout = 0;
	chain->nin = 0;
	chain->out_len = 0;
	chain->in_len = 0;
	chain->ndesc = 0;
	chain->segs_exhausted = false;
	chain->head = head;
	chain->fault = KVMX_FAULT_NONE;

	if (idx >= ring->num)
		return chain_fault(chain, KVMX_FAULT_HEAD_RANGE, -ERANGE);

	for (;;) {
		u16 flags;

		/* Only num distinct descriptors exist: one more is a loop. */
		if (++direct > ring->num)
			return chain_fault(chain, KVMX_FAULT_LOOP, -ELOOP);
		if (++chain->ndesc > ring->num)
			return chain_fault(chain, KVMX_FAULT_TOO_LONG, -E2BIG);
		if (ops->read(ctx, &desc, ring->desc_uaddr + (u64)idx * sizeof(desc),
			      sizeof(desc)))
			return chain_fault(chain, KVMX_FAULT_READ, -EFAULT);

		flags = le16_to_cpu(desc.flags);
		if (flags & VRING_DESC_F_INDIRECT) {
			if (!ring->indirect_ok)
				return chain_fault(chain, KVMX_FAULT_INDIRECT_OFF, -EINVAL);
			if (flags & VRING_DESC_F_NEXT)
				return chain_fault(chain, KVMX_FAULT_INDIRECT_NEXT, -EINVAL);
			/* The indirect descriptor itself is not a buffer. */
			chain->ndesc--;
			return walk_indirect(ring, mt, ops, ctx, le64_to_cpu(desc.addr),
					     le32_to_cpu(desc.len), chain);
		}

		err = add_segment(chain, mt, le64_to_cpu(desc.addr),
				  le32_to_cpu(desc.len), flags & VRING_DESC_F_WRITE);
		if (err)
			return err;
		if (!(flags & VRING_DESC_F_NEXT))
			return chain_end(chain);
		idx = le16_to_cpu(desc.next);
		if (idx >= ring->num)
			return chain_fault(chain, KVMX_FAULT_NEXT_RANGE, -ERANGE);
	}
}
EXPORT_SYMBOL_GPL(kvmx_chain_walk);
