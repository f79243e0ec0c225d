// SPDX-License-Identifier: GPL-2.0
/*
 * Split virtqueues served from userspace (virtio 1.2, section 2.7).
 *
 * Everything in the rings is written by the guest at any time, so each
 * value is read once into a local (a copy followed by a compiler barrier,
 * or an atomic load), checked, and only the checked copy is used:
 * - the avail index may be at most `num` ahead of what we have taken;
 * - a head and every `next` must be inside the ring or indirect table;
 * - a chain has at most `num` descriptors, indirect ones included, which
 *   also ends any loop;
 * - an indirect table needs VIRTIO_F_INDIRECT_DESC, a non-zero multiple of
 *   16 bytes, and may not nest or carry NEXT;
 * - no zero-length buffer, no readable buffer after a writable one, and
 *   every byte of every buffer inside guest RAM.
 * A chain that breaks a rule makes virtq_pop() fail; the caller then marks
 * the device as needing a reset and stops using the queue.
 */
#include <errno.h>
#include <string.h>

#include "virtio.h"

#define barrier()	__asm__ __volatile__("" ::: "memory")

static u16 load16(const void *p)
{
	return __atomic_load_n((const u16 *)p, __ATOMIC_RELAXED);
}

static void mb(void)
{
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
}

static u16 *used_event(const struct virtq *vr)
{
	return &vr->avail->ring[vr->num];
}

static u16 *avail_event(const struct virtq *vr)
{
	return (u16 *)&vr->used->ring[vr->num];
}

int virtq_init(struct virtq *vr, const struct vm *vm, const struct virtio_queue *q, u64 features)
{
	bool event_idx = features & (1ULL << VIRTIO_RING_F_EVENT_IDX);
	u64 num = q->num;

	memset(vr, 0, sizeof(*vr));
	if (!num || num > VIRTQ_MAX_SIZE || (num & (num - 1)))
		return -EINVAL;
	if ((q->desc & 15) || (q->avail & 1) || (q->used & 3))
		return -EINVAL;
	vr->vm = vm;
	vr->num = num;
	vr->event_idx = event_idx;
	vr->indirect = features & (1ULL << VIRTIO_RING_F_INDIRECT_DESC);
	vr->desc = gpa_to_hva(vm, q->desc, 16 * num);
	vr->avail = gpa_to_hva(vm, q->avail, 4 + 2 * num + (event_idx ? 2 : 0));
	vr->used = gpa_to_hva(vm, q->used, 4 + 8 * num + (event_idx ? 2 : 0));
	if (!vr->desc || !vr->avail || !vr->used)
		return -EFAULT;
	return 0;
}

static int chain_error(const char *why)
{
	pr_guest_once("bad descriptor chain: %s", why);
	return -EINVAL;
}

/*
 * Take the next available chain. Returns 1 with @c filled, 0 if the ring
 * is empty, -EINVAL if the guest broke a rule (the queue is unusable).
 */
int virtq_pop(struct virtq *vr, struct virtq_chain *c)
{
	const struct vring_desc *table = vr->desc;
	unsigned int table_size = vr->num, budget = vr->num;
	bool in_indirect = false;
	u16 avail_idx, head, i;

	avail_idx = __atomic_load_n(&vr->avail->idx, __ATOMIC_ACQUIRE);
	if (avail_idx == vr->last_avail)
		return 0;
	if ((u16)(avail_idx - vr->last_avail) > vr->num)
		return chain_error("avail index more than the ring size ahead");

	head = load16(&vr->avail->ring[vr->last_avail & (vr->num - 1)]);
	if (head >= vr->num)
		return chain_error("head index out of the ring");

	c->head = head;
	c->nout = c->nin = 0;
	c->out_len = c->in_len = 0;
	i = head;
	for (;;) {
		struct vring_desc d;
		void *hva;

		if (!budget--)
			return chain_error("chain longer than the queue size (or a loop)");
		memcpy(&d, &table[i], sizeof(d));
		barrier();	/* d is the only copy used from here */

		if (d.flags & VRING_DESC_F_INDIRECT) {
			if (!vr->indirect)
				return chain_error("indirect descriptor not negotiated");
			if (in_indirect)
				return chain_error("nested indirect table");
			if (d.flags & VRING_DESC_F_NEXT)
				return chain_error("indirect descriptor with NEXT");
			if (!d.len || d.len % sizeof(struct vring_desc))
				return chain_error("indirect table size not a multiple of 16");
			table = gpa_to_hva(vr->vm, d.addr, d.len);
			if (!table)
				return chain_error("indirect table outside guest memory");
			table_size = d.len / sizeof(struct vring_desc);
			in_indirect = true;
			i = 0;
			continue;
		}

		if (!d.len)
			return chain_error("zero-length buffer");
		hva = gpa_to_hva(vr->vm, d.addr, d.len);
		if (!hva)
			return chain_error("buffer outside guest memory");
		if (c->nout + c->nin >= VIRTQ_MAX_SIZE)
			return chain_error("too many buffers");
		if (d.flags & VRING_DESC_F_WRITE) {
			c->iov[c->nout + c->nin] = (struct iovec){ hva, d.len };
			c->nin++;
			c->in_len += d.len;
		} else {
			if (c->nin)
				return chain_error("readable buffer after a writable one");
			c->iov[c->nout] = (struct iovec){ hva, d.len };
			c->nout++;
			c->out_len += d.len;
		}

		if (!(d.flags & VRING_DESC_F_NEXT))
			break;
		if (d.next >= table_size)
			return chain_error("next index out of the table");
		i = d.next;
	}
	vr->last_avail++;
	return 1;
}

void virtq_push(struct virtq *vr, u16 head, u32 len)
{
	struct vring_used_elem *e = &vr->used->ring[vr->used_idx & (vr->num - 1)];

	e->id = head;
	e->len = len;
	vr->used_idx++;
	/* The element before the index that publishes it. */
	__atomic_store_n(&vr->used->idx, vr->used_idx, __ATOMIC_RELEASE);
}

/* After pushing: does the driver want an interrupt for what we added? */
bool virtq_should_notify(struct virtq *vr)
{
	u16 old, new;
	bool valid;

	/* Our used index must be visible before we look at the driver's wish. */
	mb();
	if (!vr->event_idx)
		return !(load16(&vr->avail->flags) & VRING_AVAIL_F_NO_INTERRUPT);

	old = vr->signalled_used;
	valid = vr->signalled_valid;
	new = vr->signalled_used = vr->used_idx;
	vr->signalled_valid = true;
	return !valid || vring_need_event(load16(used_event(vr)), new, old);
}

void virtq_disable_kicks(struct virtq *vr)
{
	if (!vr->event_idx)
		__atomic_store_n(&vr->used->flags, VRING_USED_F_NO_NOTIFY, __ATOMIC_RELAXED);
}

/* Has the driver added a chain we have not taken? (No kick state changes.) */
bool virtq_has_avail(const struct virtq *vr)
{
	return __atomic_load_n(&vr->avail->idx, __ATOMIC_ACQUIRE) != vr->last_avail;
}

/*
 * Ask for a kick on the next avail entry. Returns true if entries arrived
 * meanwhile: the caller must process them (it may have missed their kick).
 */
bool virtq_enable_kicks(struct virtq *vr)
{
	if (vr->event_idx)
		__atomic_store_n(avail_event(vr), vr->last_avail, __ATOMIC_RELAXED);
	else
		__atomic_store_n(&vr->used->flags, 0, __ATOMIC_RELAXED);
	mb();
	return virtq_has_avail(vr);
}

size_t iov_copy_from(const struct iovec *iov, unsigned int n, size_t skip, void *buf, size_t len)
{
	size_t done = 0;
	unsigned int i;

	for (i = 0; i < n && done < len; i++) {
		size_t seg = iov[i].iov_len, chunk;

		if (skip >= seg) {
			skip -= seg;
			continue;
		}
		chunk = seg - skip < len - done ? seg - skip : len - done;
		memcpy((u8 *)buf + done, (u8 *)iov[i].iov_base + skip, chunk);
		done += chunk;
		skip = 0;
	}
	return done;
}

size_t iov_copy_to(const struct iovec *iov, unsigned int n, size_t skip, const void *buf, size_t len)
{
	size_t done = 0;
	unsigned int i;

	for (i = 0; i < n && done < len; i++) {
		size_t seg = iov[i].iov_len, chunk;

		if (skip >= seg) {
			skip -= seg;
			continue;
		}
		chunk = seg - skip < len - done ? seg - skip : len - done;
		memcpy((u8 *)iov[i].iov_base + skip, (const u8 *)buf + done, chunk);
		done += chunk;
		skip = 0;
	}
	return done;
}
