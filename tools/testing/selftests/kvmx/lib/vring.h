/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The driver side of one split virtqueue, little-endian (VIRTIO_F_VERSION_1),
 * living in guest memory.
 *
 * Descriptor bookkeeping (the free list, which heads are in flight) is kept
 * in ordinary process memory, not in the ring, so a test may scribble
 * hostile descriptors into the table without corrupting the driver.
 * Hostile tests take descriptor slots with vring_take_desc(), write them
 * with vring_write_desc() and publish a head with vring_push_head();
 * everything else goes through vring_add_chain().
 */
#ifndef KVMX_SELFTEST_VRING_H
#define KVMX_SELFTEST_VRING_H

#include <stdbool.h>
#include <stdint.h>
#include <linux/virtio_ring.h>

#include "guest.h"

/* Entries of the per-head indirect table vring_add_chain() uses. */
#define VRING_INDIRECT_MAX	128

/* One buffer of a chain: guest-physical address and length. */
struct vring_seg {
	uint64_t gpa;
	uint32_t len;
};

struct vring_inflight {
	bool busy;
	bool raw;		/* published with vring_push_head() */
	uint16_t ndesc;		/* ring descriptors the chain holds */
	uint64_t indirect_gpa;	/* this head's indirect table, 0 until needed */
};

struct vring_drv {
	struct guest_mem *mem;
	unsigned int num;

	struct vring_desc *desc;
	struct vring_avail *avail;
	struct vring_used *used;
	uint64_t desc_gpa;
	uint64_t avail_gpa;
	uint64_t used_gpa;

	uint16_t avail_idx;	/* next avail index to hand out (shadow) */
	uint16_t published;	/* avail index last stored to the ring */
	uint16_t last_used;	/* next used entry to reap */

	uint16_t free_head;
	unsigned int num_free;
	uint16_t *free_next;
	struct vring_inflight *inflight;
};

/*
 * Lay out a ring of @num entries (a power of two) in guest memory. The
 * used ring starts on its own page, so dirty-log tests know which page the
 * device's used-ring writes land on.
 */
int vring_drv_init(struct vring_drv *vr, struct guest_mem *mem, unsigned int num);
void vring_drv_destroy(struct vring_drv *vr);

/*
 * Queue a chain of @nout device-readable then @nin device-writable buffers,
 * directly in the ring or (@indirect) through an indirect table. The chain
 * is not visible to the device until vring_publish(). Returns the head or a
 * negative errno (with a message).
 */
int vring_add_chain(struct vring_drv *vr, const struct vring_seg *out, unsigned int nout,
		    const struct vring_seg *in, unsigned int nin, bool indirect);
/* Make every queued head visible: store avail->idx with release order. */
void vring_publish(struct vring_drv *vr);

/*
 * Take the next used entry: 1 if one was there, 0 if the ring is empty,
 * -EPROTO (with a message) if the device returned a head that is not in
 * flight.
 */
int vring_reap(struct vring_drv *vr, struct vring_used_elem *elem);
/* used->idx as the device last published it (acquire). */
uint16_t vring_used_idx(const struct vring_drv *vr);
/* Spin until used->idx reaches @idx; 0 or -ETIMEDOUT (with a message). */
int vring_wait_used_idx(const struct vring_drv *vr, uint16_t idx, int timeout_ms);

/*
 * Notification suppression, driver side. Nothing here moves used_event
 * behind the test's back: with VIRTIO_RING_F_EVENT_IDX acked, a driver that
 * wants a call per completion must advance it itself.
 */
void vring_set_used_event(struct vring_drv *vr, uint16_t idx);
void vring_set_avail_flags(struct vring_drv *vr, uint16_t flags);
/*
 * After vring_publish(): whether the device asked for a kick for the
 * entries published since avail index @old, as Linux's virtio_ring decides
 * it: the device's avail_event with @event_idx (VIRTIO_RING_F_EVENT_IDX
 * acked), else the used ring's VRING_USED_F_NO_NOTIFY flag.
 */
bool vring_kick_needed(const struct vring_drv *vr, uint16_t old, bool event_idx);

/*
 * Forget everything in flight and restart the ring at index @idx: both
 * avail->idx and used->idx in memory are set to it, so the device sees the
 * same state whether it takes its used index from the ring or from
 * VHOST_SET_VRING_BASE.
 */
void vring_restart_at(struct vring_drv *vr, uint16_t idx);

/* ---- raw access for hostile chains ---- */

/* Reserve one descriptor slot for raw use; -ENOSPC if none is free. */
int vring_take_desc(struct vring_drv *vr);
void vring_write_desc(struct vring_drv *vr, uint16_t idx, uint64_t gpa, uint32_t len,
		      uint16_t flags, uint16_t next);
/* Put any head value (even out of range) in the next avail slot. */
void vring_push_head(struct vring_drv *vr, uint16_t head);
/* Store @idx as avail->idx without any bookkeeping. */
void vring_store_avail_idx(struct vring_drv *vr, uint16_t idx);

/* Fill one descriptor of a table in guest memory (little-endian). */
void desc_set(struct vring_desc *d, uint64_t gpa, uint32_t len, uint16_t flags,
	      uint16_t next);

#endif /* KVMX_SELFTEST_VRING_H */
