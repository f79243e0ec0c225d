// SPDX-License-Identifier: GPL-2.0
/*
 * Driver side of a split virtqueue for the kvmx selftests.
 *
 * Ordering: descriptors and avail ring entries are plain stores; the store
 * of avail->idx is a release, so the device never sees an index before the
 * entries it covers. used->idx is read with acquire before the entries it
 * covers. Suppression fields are followed by a full fence, as a driver must
 * do before it looks at the ring again.
 */
#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util.h"
#include "vring.h"

static uint16_t *used_event_ptr(const struct vring_drv *vr)
{
	return (uint16_t *)&vr->avail->ring[vr->num];
}

void desc_set(struct vring_desc *d, uint64_t gpa, uint32_t len, uint16_t flags,
	      uint16_t next)
{
	d->addr = htole64(gpa);
	d->len = htole32(len);
	d->flags = htole16(flags);
	d->next = htole16(next);
}

static void free_list_reset(struct vring_drv *vr)
{
	unsigned int i;

	for (i = 0; i < vr->num; i++) {
		vr->free_next[i] = i + 1;
		vr->inflight[i].busy = false;
		vr->inflight[i].raw = false;
		vr->inflight[i].ndesc = 0;
	}
	vr->free_head = 0;
	vr->num_free = vr->num;
}

static int desc_pop(struct vring_drv *vr)
{
	uint16_t i;

	if (!vr->num_free)
		return -ENOSPC;
	i = vr->free_head;
	vr->free_head = vr->free_next[i];
	vr->num_free--;
	return i;
}

static void desc_push(struct vring_drv *vr, uint16_t i)
{
	vr->free_next[i] = vr->free_head;
	vr->free_head = i;
	vr->num_free++;
}

int vring_drv_init(struct vring_drv *vr, struct guest_mem *mem, unsigned int num)
{
	memset(vr, 0, sizeof(*vr));
	if (!num || num > 32768 || (num & (num - 1))) {
		fprintf(stderr, "# vring: expected a power-of-two size up to 32768, got %u\n",
			num);
		return -EINVAL;
	}
	vr->mem = mem;
	vr->num = num;
	vr->desc_gpa = guest_alloc(mem, sizeof(struct vring_desc) * num,
				   VRING_DESC_ALIGN_SIZE);
	/* flags, idx, ring[num], used_event */
	vr->avail_gpa = guest_alloc(mem, 2 * (3 + num), VRING_AVAIL_ALIGN_SIZE);
	/* flags, idx, ring[num], avail_event; on a page of its own */
	vr->used_gpa = guest_alloc(mem, 6 + sizeof(struct vring_used_elem) * num,
				   GUEST_PAGE_SIZE);
	if (!vr->desc_gpa || !vr->avail_gpa || !vr->used_gpa)
		return -ENOMEM;
	vr->desc = guest_hva(mem, vr->desc_gpa, sizeof(struct vring_desc) * num);
	vr->avail = guest_hva(mem, vr->avail_gpa, 2 * (3 + num));
	vr->used = guest_hva(mem, vr->used_gpa, 6 + sizeof(struct vring_used_elem) * num);
	vr->free_next = calloc(num, sizeof(*vr->free_next));
	vr->inflight = calloc(num, sizeof(*vr->inflight));
	if (!vr->free_next || !vr->inflight) {
		vring_drv_destroy(vr);
		return -ENOMEM;
	}
	free_list_reset(vr);
	return 0;
}

void vring_drv_destroy(struct vring_drv *vr)
{
	free(vr->free_next);
	free(vr->inflight);
	memset(vr, 0, sizeof(*vr));
}

static void avail_put(struct vring_drv *vr, uint16_t head)
{
	vr->avail->ring[vr->avail_idx & (vr->num - 1)] = htole16(head);
	vr->avail_idx++;
}

static int add_indirect(struct vring_drv *vr, uint16_t head, const struct vring_seg *out,
			unsigned int nout, const struct vring_seg *in, unsigned int nin)
{
	struct vring_inflight *st = &vr->inflight[head];
	unsigned int total = nout + nin, i;
	struct vring_desc *table;

	if (!st->indirect_gpa) {
		st->indirect_gpa = guest_alloc(vr->mem,
					       VRING_INDIRECT_MAX * sizeof(struct vring_desc),
					       VRING_DESC_ALIGN_SIZE);
		if (!st->indirect_gpa)
			return -ENOMEM;
	}
	table = guest_hva(vr->mem, st->indirect_gpa, total * sizeof(*table));
	for (i = 0; i < total; i++) {
		const struct vring_seg *s = i < nout ? &out[i] : &in[i - nout];
		uint16_t flags = i < nout ? 0 : VRING_DESC_F_WRITE;

		if (i + 1 < total)
			flags |= VRING_DESC_F_NEXT;
		desc_set(&table[i], s->gpa, s->len, flags, i + 1 < total ? i + 1 : 0);
	}
	desc_set(&vr->desc[head], st->indirect_gpa, total * sizeof(*table),
		 VRING_DESC_F_INDIRECT, 0);
	st->ndesc = 1;
	return 0;
}

int vring_add_chain(struct vring_drv *vr, const struct vring_seg *out, unsigned int nout,
		    const struct vring_seg *in, unsigned int nin, bool indirect)
{
	unsigned int total = nout + nin, need = indirect ? 1 : total, i;
	uint16_t head, cur;
	int ret;

	if (!total || (indirect && total > VRING_INDIRECT_MAX)) {
		fprintf(stderr, "# vring: expected 1..%u buffers in a%s chain, got %u\n",
			indirect ? VRING_INDIRECT_MAX : vr->num,
			indirect ? "n indirect" : "", total);
		return -EINVAL;
	}
	if (vr->num_free < need) {
		fprintf(stderr,
			"# vring: ring full: chain needs %u descriptors, %u of %u free\n",
			need, vr->num_free, vr->num);
		return -ENOSPC;
	}
	head = desc_pop(vr);
	if (indirect) {
		ret = add_indirect(vr, head, out, nout, in, nin);
		if (ret) {
			desc_push(vr, head);
			return ret;
		}
	} else {
		cur = head;
		for (i = 0; i < total; i++) {
			const struct vring_seg *s = i < nout ? &out[i] : &in[i - nout];
			uint16_t flags = i < nout ? 0 : VRING_DESC_F_WRITE;
			uint16_t next = 0;

			if (i + 1 < total) {
				next = desc_pop(vr);
				flags |= VRING_DESC_F_NEXT;
			}
			desc_set(&vr->desc[cur], s->gpa, s->len, flags, next);
			cur = next;
		}
		vr->inflight[head].ndesc = total;
	}
	vr->inflight[head].busy = true;
	vr->inflight[head].raw = false;
	avail_put(vr, head);
	return head;
}

void vring_publish(struct vring_drv *vr)
{
	__atomic_store_n(&vr->avail->idx, htole16(vr->avail_idx), __ATOMIC_RELEASE);
	vr->published = vr->avail_idx;
}

void vring_store_avail_idx(struct vring_drv *vr, uint16_t idx)
{
	__atomic_store_n(&vr->avail->idx, htole16(idx), __ATOMIC_RELEASE);
}

uint16_t vring_used_idx(const struct vring_drv *vr)
{
	return le16toh(__atomic_load_n(&vr->used->idx, __ATOMIC_ACQUIRE));
}

int vring_reap(struct vring_drv *vr, struct vring_used_elem *elem)
{
	uint16_t idx = vring_used_idx(vr), ahead = idx - vr->last_used;
	struct vring_used_elem *e;
	struct vring_inflight *st;
	uint16_t cur, next;
	unsigned int i;

	if (!ahead)
		return 0;
	if (ahead > vr->num) {
		fprintf(stderr,
			"# vring: used->idx %u is %u entries past %u, expected at most the ring size %u\n",
			idx, ahead, vr->last_used, vr->num);
		return -EPROTO;
	}
	e = &vr->used->ring[vr->last_used & (vr->num - 1)];
	elem->id = le32toh(e->id);
	elem->len = le32toh(e->len);
	vr->last_used++;
	if (elem->id >= vr->num || !vr->inflight[elem->id].busy) {
		fprintf(stderr,
			"# vring: used entry %u names head %u, expected a head in flight\n",
			(uint16_t)(vr->last_used - 1), elem->id);
		return -EPROTO;
	}
	st = &vr->inflight[elem->id];
	st->busy = false;
	if (st->raw)
		return 1;
	/* Our own table: the device never writes descriptors. */
	cur = elem->id;
	for (i = 0; i < st->ndesc; i++) {
		next = le16toh(vr->desc[cur].next) & (vr->num - 1);
		desc_push(vr, cur);
		cur = next;
	}
	return 1;
}

int vring_wait_used_idx(const struct vring_drv *vr, uint16_t idx, int timeout_ms)
{
	int64_t deadline = now_ms() + timeout_ms;
	struct timespec nap = { .tv_nsec = 50 * 1000 };
	uint16_t seen;

	for (;;) {
		seen = vring_used_idx(vr);
		if ((int16_t)(seen - idx) >= 0)
			return 0;
		if (now_ms() > deadline)
			break;
		nanosleep(&nap, NULL);
	}
	fprintf(stderr, "# vring: expected used->idx to reach %u within %d ms, it is %u\n",
		idx, timeout_ms, seen);
	return -ETIMEDOUT;
}

void vring_set_used_event(struct vring_drv *vr, uint16_t idx)
{
	__atomic_store_n(used_event_ptr(vr), htole16(idx), __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
}

void vring_set_avail_flags(struct vring_drv *vr, uint16_t flags)
{
	__atomic_store_n(&vr->avail->flags, htole16(flags), __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
}

bool vring_kick_needed(const struct vring_drv *vr, uint16_t old, bool event_idx)
{
	uint16_t event;

	/* Our avail->idx store must be visible before we read their wish. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (!event_idx)
		return !(le16toh(__atomic_load_n(&vr->used->flags, __ATOMIC_RELAXED)) &
			 VRING_USED_F_NO_NOTIFY);
	event = le16toh(__atomic_load_n((uint16_t *)&vr->used->ring[vr->num],
					__ATOMIC_RELAXED));
	return vring_need_event(event, vr->published, old);
}

void vring_restart_at(struct vring_drv *vr, uint16_t idx)
{
	free_list_reset(vr);
	vr->avail_idx = idx;
	vr->published = idx;
	vr->last_used = idx;
	vr->avail->flags = 0;
	vr->used->flags = 0;
	__atomic_store_n(&vr->used->idx, htole16(idx), __ATOMIC_RELAXED);
	vring_store_avail_idx(vr, idx);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
}

int vring_take_desc(struct vring_drv *vr)
{
	int i = desc_pop(vr);

	if (i < 0)
		fprintf(stderr, "# vring: no free descriptor to reserve (ring size %u)\n",
			vr->num);
	return i;
}

void vring_write_desc(struct vring_drv *vr, uint16_t idx, uint64_t gpa, uint32_t len,
		      uint16_t flags, uint16_t next)
{
	desc_set(&vr->desc[idx & (vr->num - 1)], gpa, len, flags, next);
}

void vring_push_head(struct vring_drv *vr, uint16_t head)
{
	if (head < vr->num) {
		vr->inflight[head].busy = true;
		vr->inflight[head].raw = true;
	}
	avail_put(vr, head);
}
