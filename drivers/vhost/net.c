// SPDX-License-Identifier: GPL-2.0
/*
 * kvmx vhost-net: a virtio-net device backend in the host kernel, with the
 * ioctl ABI of /dev/vhost-net, on a tun/tap (or AF_PACKET) socket.
 *
 * Two virtqueues, RX (0) and TX (1), each with its own worker so the two
 * directions run on different CPUs. TX copies up to NET_BATCH small frames
 * into page fragments and hands them to tun/tap in one sendmsg()
 * (TUN_MSG_PTR); bigger frames go through a plain sendmsg(). RX takes up to
 * NET_BATCH packets at a time out of tun/tap's ring and spreads each over
 * as many guest buffers as it needs (VIRTIO_NET_F_MRG_RXBUF). Used entries
 * are published and the guest notified once per batch, not per packet.
 *
 * Lifetimes: a queue's socket (and the file behind it) is referenced from
 * VHOST_NET_SET_BACKEND until it is replaced, detached, or the device is
 * reset or closed; it only changes with vq.mutex held, which the handler
 * also holds, so a handler never sees a socket go away. The wait entry on
 * the socket's wait queue (struct net_sock_poll) is removed before the
 * reference is dropped. RX packets taken out of tun's ring but not yet
 * received are put back into it (or freed) when the socket is detached.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/file.h>
#include <linux/fs.h>
#include <linux/gfp.h>
#include <linux/hrtimer.h>
#include <linux/if_tap.h>
#include <linux/if_tun.h>
#include <linux/if_vlan.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/net.h>
#include <linux/nospec.h>
#include <linux/ptr_ring.h>
#include <linux/seq_file.h>
#include <linux/skb_array.h>
#include <linux/skbuff.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/vhost.h>
#include <linux/virtio_byteorder.h>
#include <linux/virtio_net.h>
#include <net/sock.h>
#include <net/xdp.h>

#include "kvmx_vhost.h"

/*
 * Work one handler round may do before it requeues itself and lets the
 * other rings on its worker run: packets (small frames) and bytes (big
 * ones). The values are upstream vhost_net's, so fairness compares.
 */
#define NET_PKT_WEIGHT		256
#define NET_BYTE_WEIGHT		0x80000
/* Packets per tun batch, in both directions; also used entries per signal. */
#define NET_BATCH		64
/* Largest frame after the vnet header: a 64 KiB GSO frame plus a VLAN header. */
#define NET_MAX_FRAME		(SZ_64K + VLAN_ETH_HLEN)
/* Headroom tun's build_skb() path expects in front of a batched frame. */
#define NET_RX_PAD		(NET_IP_ALIGN + NET_SKB_PAD)
/* get_rx_bufs() result: the packet does not fit the buffers the guest gave. */
#define NET_RX_OVERRUN		INT_MAX

#define NET_FEATURES	(KVMX_CORE_FEATURES | \
			 BIT_ULL(VHOST_NET_F_VIRTIO_NET_HDR) | \
			 BIT_ULL(VIRTIO_NET_F_MRG_RXBUF))

enum {
	NET_VQ_RX = 0,
	NET_VQ_TX = 1,
	NET_NVQS = 2,
};

/* Waits on the backend socket for room (TX) or packets (RX). */
struct net_sock_poll {
	poll_table table;
	wait_queue_head_t *wqh;
	wait_queue_entry_t wait;
	__poll_t events;
	struct kvmx_vq *vq;
};

/* Where the guest buffers of one RX packet sit in rx_iov. */
struct net_rx_buf {
	u32 seg;
	u32 nseg;
	u32 len;
	u16 head;
};

struct net_queue {
	struct kvmx_vq vq;
	/* Under vq.mutex. */
	struct socket *sock;
	bool tun;			/* tun or tap: ring and batch paths */
	struct ptr_ring *rx_ring;	/* RX only: tun/tap's queue to us */
	struct net_sock_poll poll;
	size_t vhost_hlen;		/* header we add/strip (VIRTIO_NET_HDR) */
	size_t sock_hlen;		/* header the socket adds/strips */

	/* Used entries not yet published: one signal per batch. */
	struct vring_used_elem *heads;
	unsigned int nheads;
	bool call_owed;			/* published, the guest not yet called */
	struct kvmx_hold hold;		/* TX: the call held while we poll */
	u64 tx_packets_at_call;		/* RX: TX's packets at our last call */
	/* RX: giving a guest short of buffers time to catch up. */
	struct hrtimer refill_timer;	/* brings the handler back to look */
	ktime_t refill_until;		/* the wait's end at the latest; 0: none */
	u16 refill_avail;		/* the guest's avail index at the last look */
	bool refill_waited;		/* this shortage had its wait */
	unsigned long tx_jiffies;	/* TX: when the guest last sent anything */
	/*
	 * A backend swap, reset or close waits for vq.mutex, which a polling
	 * handler keeps: this ends its poll and any hold at once.
	 */
	bool quiescing;

	/* RX: packets taken from rx_ring, [rxq_head, rxq_tail) not received. */
	void **rxq;
	unsigned int rxq_head;
	unsigned int rxq_tail;
	struct iovec *rx_iov;		/* one packet's buffers, several chains */
	u64 *rx_gpa;
	struct net_rx_buf *rx_bufs;

	/* TX: frames copied out of the guest, sent with one sendmsg(). */
	struct xdp_buff *xdp;
	unsigned int nxdp;
	struct page_frag_cache frags;
	unsigned int frag_left;		/* bytes below the last fragment */

	/* Shown in fdinfo; bytes are Ethernet frame bytes, no header. */
	u64 packets;
	u64 bytes;
	u64 dropped;			/* malformed, oversize, or no buffer */
	u64 errors;			/* the backend refused or faulted */
	u64 refill_waits;		/* RX: waits for a guest short of buffers */
	u64 refill_caught_up;		/* RX: waits that ended as the guest caught up */
	u64 refill_idle;		/* RX: waits that ended as it posted nothing */
};

struct net_dev {
	struct kvmx_dev dev;
	struct net_queue queues[NET_NVQS];
	struct kvmx_vq *vqs[NET_NVQS];
};

static inline struct net_queue *to_queue(struct kvmx_vq *vq)
{
	return container_of(vq, struct net_queue, vq);
}

/* Header fields are in the guest's byte order: LE for VERSION_1. */
static bool net_is_le(struct kvmx_vq *vq)
{
	return kvmx_vq_has_feature(vq, VIRTIO_F_VERSION_1) ||
	       virtio_legacy_is_little_endian();
}

/* ---- socket polling ---------------------------------------------------- */

static int net_poll_wakeup(wait_queue_entry_t *wait, unsigned int mode,
			   int sync, void *key)
{
	struct net_sock_poll *poll = container_of(wait, struct net_sock_poll, wait);

	if (key_to_poll(key) & poll->events)
		kvmx_vq_queue_work(poll->vq);
	return 0;
}

static void net_poll_queue_proc(struct file *file, wait_queue_head_t *wqh,
				poll_table *table)
{
	struct net_sock_poll *poll = container_of(table, struct net_sock_poll, table);

	/* tun, tap and packet sockets all sleep on one queue. */
	if (poll->wqh)
		return;
	poll->wqh = wqh;
	add_wait_queue(wqh, &poll->wait);
}

static void net_poll_stop(struct net_queue *q)
{
	if (q->poll.wqh) {
		remove_wait_queue(q->poll.wqh, &q->poll.wait);
		q->poll.wqh = NULL;
	}
}

/* Ask the socket to requeue us; vq.mutex held. */
static void net_poll_start(struct net_queue *q)
{
	struct net_sock_poll *poll = &q->poll;
	__poll_t mask;

	if (poll->wqh || !q->sock)
		return;
	init_waitqueue_func_entry(&poll->wait, net_poll_wakeup);
	init_poll_funcptr(&poll->table, net_poll_queue_proc);
	mask = vfs_poll(q->sock->file, &poll->table);
	/*
	 * A tun file whose device is gone polls as an error forever; waking
	 * on it would spin. The guest's next kick tries the socket again.
	 */
	if (mask & EPOLLERR) {
		net_poll_stop(q);
		return;
	}
	if (mask & poll->events)
		kvmx_vq_queue_work(&q->vq);
}

/* ---- used entries ------------------------------------------------------ */

static void net_add_head(struct net_queue *q, u16 head, u32 len)
{
	kvmx_used_elem(&q->heads[q->nheads++], head, len);
}

static unsigned int rx_call_gap_us = 100;
module_param_cb(rx_call_gap_us, &kvmx_wait_us_ops, &rx_call_gap_us, 0644);
MODULE_PARM_DESC(rx_call_gap_us,
		 "Shortest time between two RX calls while the guest sends nothing (us, 0-1000000): a call due sooner waits for the rest of it on a timer, and packets received meanwhile share it (default 100; 0: call at once)");

/*
 * A guest that sent anything this recently is in a conversation, not a
 * flood: a TCP sender waiting for the ACKs it is owed, a TCP receiver
 * (which ACKs at least every 40-200 ms), a request and its reply.
 */
#define NET_TALK_MS	100

/* Did the guest send anything in the last NET_TALK_MS? */
static bool net_guest_talked_lately(struct net_queue *rx)
{
	struct net_dev *n = container_of(rx->vq.dev, struct net_dev, dev);

	return time_before(jiffies, READ_ONCE(n->queues[NET_VQ_TX].tx_jiffies) +
				    msecs_to_jiffies(NET_TALK_MS));
}

/*
 * How long this RX call may wait (see kvmx_vq_signal_paced()). Only a
 * guest that just receives is paced. One that sent something since its
 * last RX call answers what it receives, and one that sent anything in
 * the last NET_TALK_MS may be waiting for this very packet (a TCP sender
 * out of window does not send again until its ACKs arrive): either is
 * called at once, whatever the gap.
 */
static u64 net_rx_call_gap_ns(struct net_queue *rx)
{
	struct net_dev *n = container_of(rx->vq.dev, struct net_dev, dev);
	u64 tx_packets = READ_ONCE(n->queues[NET_VQ_TX].packets);
	bool talking = tx_packets != rx->tx_packets_at_call || net_guest_talked_lately(rx);

	rx->tx_packets_at_call = tx_packets;
	return talking ? 0 : (u64)READ_ONCE(rx_call_gap_us) * NSEC_PER_USEC;
}

/*
 * A wait for a guest short of RX buffers (net_rx_wait_for_refill()) lasts
 * as long as the guest is busy taking what it was given, and no longer
 * than this. A fast guest that only fell behind for a burst ends it within
 * a look or two; the limit matters for a slow one.
 */
static unsigned int rx_refill_wait_us = 1000;
module_param_cb(rx_refill_wait_us, &kvmx_wait_us_ops, &rx_refill_wait_us, 0644);
MODULE_PARM_DESC(rx_refill_wait_us,
		 "When a guest that sends nothing runs out of RX buffers, the longest (us, 0-1000000) to leave the buffers it posts empty while it takes what it has; the wait ends sooner when the guest caught up or posted nothing for rx_refill_look_us; tun drops what comes in meanwhile (default 1000; 0: fill them at once)");

/* Below this, a look on a timer would cost more than the wait saves. */
#define NET_REFILL_LOOK_MIN_US	10

static int net_refill_look_us_set(const char *val, const struct kernel_param *kp)
{
	return param_set_uint_minmax(val, kp, NET_REFILL_LOOK_MIN_US, KVMX_WAIT_US_LIMIT);
}

static const struct kernel_param_ops net_refill_look_us_ops = {
	.set = net_refill_look_us_set,
	.get = param_get_uint,
};

static unsigned int rx_refill_look_us = 50;
module_param_cb(rx_refill_look_us, &net_refill_look_us_ops, &rx_refill_look_us, 0644);
MODULE_PARM_DESC(rx_refill_look_us,
		 "How often (us, 10-1000000) an RX refill wait looks at the guest; a guest that posted no buffer since the last look is not busy, and the wait ends (default 50)");

/* The next look of a refill wait that has @left_ns to run at most. */
static void net_rx_refill_look_later(struct net_queue *q, u64 left_ns)
{
	u64 look_ns = (u64)READ_ONCE(rx_refill_look_us) * NSEC_PER_USEC;

	hrtimer_start(&q->refill_timer, ns_to_ktime(min(left_ns, look_ns)),
		      HRTIMER_MODE_REL_SOFT);
}

/*
 * RX ran out of the guest's buffers: the guest does not keep up. Filling
 * each buffer the moment it is posted keeps its NAPI poll from ever
 * finding the ring empty: all its CPU goes to receiving packets that its
 * full socket then drops (receive livelock), and its reader starves. A
 * guest that only receives is left alone instead, its kicks off, while it
 * takes what it has: its poll completes, its reader drains the socket,
 * and tun drops the excess in the host, where a drop costs the guest
 * nothing. A guest that talks may be waiting for this very packet (see
 * net_rx_call_gap_ns()) and is not made to wait. Once per shortage: if no
 * buffers came by its end, the guest's kick brings us back as usual.
 *
 * Return: true if the refill timer will bring the handler back.
 */
static bool net_rx_wait_for_refill(struct net_queue *q)
{
	u64 wait_ns = (u64)READ_ONCE(rx_refill_wait_us) * NSEC_PER_USEC;

	if (!wait_ns || q->refill_waited || net_guest_talked_lately(q))
		return false;
	if (kvmx_vq_read_avail_idx(&q->vq, &q->refill_avail))
		return false;
	q->refill_waited = true;
	q->refill_waits++;
	q->refill_until = ktime_add_ns(ktime_get(), wait_ns);
	net_rx_refill_look_later(q, wait_ns);
	return true;
}

/*
 * Is the refill wait over? Only while the guest is busy taking what it was
 * given is there anything to wait for. It is not once it has caught up
 * (taken every used entry and asked for a call again), nor when it posted
 * no buffer since the last look: a driver that polls with calls off for
 * good (DPDK's) shows it has nothing left to take only so, and a ring
 * whose every buffer is posted can take no more. A fast guest that fell
 * behind for a burst thus loses a look or two, which tun's queue absorbs.
 * Otherwise the wait ends at refill_until.
 *
 * Return: true when the handler may go on; otherwise the timer brings it
 * back for another look.
 */
static bool net_rx_refill_wait_over(struct net_queue *q)
{
	ktime_t now;
	u16 avail;

	/* Run by a kick or wakeup before the look that is due. */
	if (hrtimer_is_queued(&q->refill_timer))
		return false;
	now = ktime_get();
	if (!ktime_before(now, q->refill_until))
		goto over;
	if (kvmx_vq_guest_caught_up(&q->vq)) {
		q->refill_caught_up++;
		goto over;
	}
	if (kvmx_vq_read_avail_idx(&q->vq, &avail) || avail == q->refill_avail) {
		q->refill_idle++;
		goto over;
	}
	q->refill_avail = avail;
	net_rx_refill_look_later(q, ktime_to_ns(ktime_sub(q->refill_until, now)));
	return false;
over:
	q->refill_until = 0;
	return true;
}

static enum hrtimer_restart net_rx_refill_timer_fn(struct hrtimer *timer)
{
	struct net_queue *q = container_of(timer, struct net_queue, refill_timer);

	kvmx_vq_queue_work(&q->vq);
	return HRTIMER_NORESTART;
}

/* Call the guest for what was published, held or not. */
static void net_call(struct net_queue *q)
{
	kvmx_hold_drop(&q->hold);
	if (!q->call_owed)
		return;
	q->call_owed = false;
	if (q->vq.index == NET_VQ_RX)
		kvmx_vq_signal_paced(&q->vq, net_rx_call_gap_ns(q));
	else
		kvmx_vq_signal(&q->vq);
}

/*
 * Publish the pending used entries; net_flush_used() also calls the guest
 * once for all, unless the TX poll holds the call (see net_poll()).
 */
static void net_publish_used(struct net_queue *q)
{
	if (!q->nheads)
		return;
	if (!kvmx_vq_add_used_n(&q->vq, q->heads, q->nheads))
		q->call_owed = true;
	q->nheads = 0;
}

static void net_flush_used(struct net_queue *q)
{
	net_publish_used(q);
	if (!kvmx_hold_held(&q->hold))
		net_call(q);
}

/*
 * The ring ran dry (TX) or short of buffers (RX): ask for a kick. Return
 * true if chains came in meanwhile and the round may go on. Chains added
 * while kicks were off get no kick of their own, so when the round's
 * budget is spent the handler requeues itself for them instead: else the
 * ring would wait for a kick that never comes.
 */
static bool net_rearm_or_go_on(struct kvmx_vq *vq, unsigned int *pkts)
{
	if (!kvmx_vq_enable_notify(vq))
		return false;
	kvmx_vq_disable_notify(vq);
	if (++*pkts < NET_PKT_WEIGHT)
		return true;
	kvmx_vq_queue_work(vq);
	return false;
}

/*
 * The TX ring or the RX socket ran dry with the used entries so far
 * published: spin until @ready says there is more, for as long as the
 * core allows (the VMM's busyloop timeout, or the adaptive window),
 * unless something else wants the worker. TX also holds the guest's call
 * meanwhile, for up to @hold_max_ns (0: none), while the guest is still
 * sending: a guest that streams frames learns of the sent ones from its
 * next call, whenever that comes, and each call it takes costs it an
 * exit, each kick too, so one call per burst is what it wants. How long
 * to hold is the core's (kvmx_hold_start()), learnt from the gaps between
 * the guest's frames. The call goes out when the hold runs out, when
 * other work waits for the worker, or on the way out of the handler.
 *
 * Return: true if there is more to take, with the call maybe still held.
 */
static bool net_poll(struct net_queue *q, bool (*ready)(struct net_queue *q), u32 hold_max_ns)
{
	struct kvmx_vq *vq = &q->vq;
	u64 end = kvmx_vq_poll_deadline(vq);
	u64 now = local_clock();

	if (q->call_owed && !kvmx_hold_begin(&q->hold, now, hold_max_ns))
		net_call(q);
	while (kvmx_hold_held(&q->hold) || kvmx_poll_on(end)) {
		now = local_clock();
		if (kvmx_hold_ran_out(&q->hold, now, hold_max_ns))
			net_call(q);
		if (ready(q)) {
			kvmx_hold_activity(&q->hold, now);
			return true;
		}
		if (kvmx_vq_has_work(vq) || READ_ONCE(q->quiescing))
			break;
		/* A hold outlasts a preemption, which is no quiet guest. */
		if (kvmx_hold_held(&q->hold))
			cond_resched();
		cpu_relax();
	}
	net_call(q);
	return false;
}

/* ---- TX ---------------------------------------------------------------- */

static void net_tx_free_batch(struct net_queue *q)
{
	unsigned int i;

	for (i = 0; i < q->nxdp; i++)
		put_page(virt_to_head_page(q->xdp[i].data));
}

/* Hand the batched frames to tun/tap in one sendmsg(). */
static void net_tx_send_batch(struct net_queue *q)
{
	if (q->nxdp) {
		struct tun_msg_ctl ctl = {
			.type = TUN_MSG_PTR,
			.num = q->nxdp,
			.ptr = q->xdp,
		};
		struct msghdr msg = {
			.msg_control = &ctl,
			.msg_controllen = sizeof(ctl),
			.msg_flags = MSG_DONTWAIT,
		};
		int err;

		/* tun/tap own every frame they accepted, whatever became of it. */
		err = q->sock->ops->sendmsg(q->sock, &msg, 0);
		if (unlikely(err < 0)) {
			pr_debug("vq %u: batch of %u frames refused: %d\n",
				 q->vq.index, q->nxdp, err);
			net_tx_free_batch(q);
			q->errors += q->nxdp;
		}
		q->nxdp = 0;
	}
}

/* Send the batched frames, then publish every used entry so far. */
static void net_tx_flush(struct net_queue *q)
{
	net_tx_send_batch(q);
	net_flush_used(q);
}

static bool net_tx_ready(struct net_queue *q)
{
	return !kvmx_vq_avail_empty(&q->vq);
}

static unsigned int signal_hold_max_us = 128;
module_param_cb(signal_hold_max_us, &kvmx_wait_us_ops, &signal_hold_max_us, 0644);
MODULE_PARM_DESC(signal_hold_max_us,
		 "Cap on the adaptive TX call hold (us, 0-1000000): how long the TX ring must stay quiet before the worker calls the guest for the frames it sent, at most four holds in all (default 128; 0: call at once)");

/*
 * Copy one frame (socket header included) into a page fragment laid out
 * as tun's TUN_MSG_PTR path wants it: struct tun_xdp_hdr at the start,
 * the frame after NET_RX_PAD, skb_shared_info room at the end.
 *
 * Return: 0 with the frame batched, -ENOSPC when it does not fit a page
 * (send it alone), -ENOMEM, -EFAULT (guest memory unreadable), or -EINVAL
 * (a header tun would reject anyway).
 */
static int net_tx_build_xdp(struct net_queue *q, struct iov_iter *from)
{
	struct socket *sock = q->sock;
	size_t len = iov_iter_count(from) - q->sock_hlen;
	int headroom = sock_flag(sock->sk, SOCK_XDP) ? XDP_PACKET_HEADROOM : 0;
	unsigned int pad = SKB_DATA_ALIGN(NET_RX_PAD + headroom + q->sock_hlen);
	unsigned int tail = SKB_DATA_ALIGN(sizeof(struct skb_shared_info));
	struct virtio_net_hdr *gso;
	struct xdp_buff *xdp;
	struct tun_xdp_hdr *hdr;
	unsigned int buflen;
	void *buf;

	if (SKB_DATA_ALIGN(len + pad) + tail > PAGE_SIZE)
		return -ENOSPC;
	buflen = SKB_DATA_ALIGN(len + pad) + tail;
	/*
	 * The cache carves its page from the top down and takes a new one
	 * when the rest is too small, unless every fragment of the old one
	 * has come back. Batched frames pin theirs, so send them first: where
	 * tun's receive path frees the frames at once (a drop, a forward to a
	 * device that copies), the page is reused whole instead of a new one
	 * being allocated, and zeroed with init_on_alloc, per page of frames.
	 */
	if (q->nxdp && buflen > q->frag_left)
		net_tx_send_batch(q);
	/* Every size is a multiple of SMP_CACHE_BYTES, so is every start. */
	buf = page_frag_alloc(&q->frags, buflen, GFP_KERNEL);
	if (unlikely(!buf))
		return -ENOMEM;
	q->frag_left = buf - page_address(virt_to_head_page(buf));
	/* Only now: the send above empties the batch. */
	xdp = &q->xdp[q->nxdp];

	hdr = buf;
	gso = &hdr->gso;
	memset(hdr, 0, sizeof(*hdr));
	/* The socket header may be 12 bytes: pad is room enough past gso. */
	if (copy_from_iter(gso, q->sock_hlen, from) != q->sock_hlen)
		goto fault;

	if (gso->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) {
		bool le = net_is_le(&q->vq);
		u32 need = __virtio16_to_cpu(le, gso->csum_start) +
			   __virtio16_to_cpu(le, gso->csum_offset) + 2;

		/* tun checks hdr_len covers the checksum; so do we, on our copy. */
		if (need > __virtio16_to_cpu(le, gso->hdr_len)) {
			if (need > len) {
				page_frag_free(buf);
				return -EINVAL;
			}
			gso->hdr_len = __cpu_to_virtio16(le, need);
		}
	}

	if (copy_from_iter(buf + pad, len, from) != len)
		goto fault;

	xdp_init_buff(xdp, buflen, NULL);
	xdp_prepare_buff(xdp, buf, pad, len, true);
	hdr->buflen = buflen;
	q->nxdp++;
	return 0;

fault:
	page_frag_free(buf);
	return -EFAULT;
}

/*
 * Whether a TX chain can be a packet at all; counted and dropped if not.
 * Return: the bytes to send (socket header and frame), or 0.
 */
static size_t net_tx_check(struct net_queue *q, const struct kvmx_chain *chain)
{
	size_t hlen = q->vhost_hlen + q->sock_hlen;

	if (unlikely(chain->nin)) {
		pr_warn_ratelimited("vq %u: TX chain %u has %u device-writable buffers; dropped\n",
				    q->vq.index, chain->head, chain->nin);
		return 0;
	}
	if (unlikely(chain->out_len <= hlen)) {
		pr_warn_ratelimited("vq %u: TX chain %u of %u bytes, no frame after the %zu-byte header; dropped\n",
				    q->vq.index, chain->head, chain->out_len, hlen);
		return 0;
	}
	if (unlikely(chain->out_len - hlen > NET_MAX_FRAME)) {
		pr_warn_ratelimited("vq %u: TX frame of %zu bytes over %u; dropped\n",
				    q->vq.index, chain->out_len - hlen, NET_MAX_FRAME);
		return 0;
	}
	return chain->out_len - q->vhost_hlen;
}

/*
 * A chain that is no packet: returned unused, counted, and reported on the
 * error eventfd as vhost_net does; the ring goes on with the next chain.
 */
static void net_tx_bad_chain(struct net_queue *q)
{
	q->dropped++;
	if (q->vq.error_ctx)
		kvmx_eventfd_signal(q->vq.error_ctx);
}

static void net_handle_tx(struct kvmx_vq *vq)
{
	struct net_queue *q = to_queue(vq);
	struct socket *sock = q->sock;
	struct msghdr msg = { .msg_flags = MSG_DONTWAIT };
	unsigned int pkts = 0;
	size_t bytes = 0;
	bool batch;

	if (!sock)
		return;
	/*
	 * In the vCPU that kicked (see kvmx_vq_kick_inline()): a frame or
	 * two, as a guest that waits for an answer sends, go out before it
	 * re-enters; a guest that streams is the worker's.
	 */
	if (kvmx_vq_in_kicker(vq) && kvmx_vq_kicker_hand_over(vq))
		return;
	/* tun's batch path ignores sndbuf accounting: only where it is off. */
	batch = q->tun && READ_ONCE(sock->sk->sk_sndbuf) == INT_MAX;
	kvmx_vq_disable_notify(vq);
	/* The socket only wakes us after it said "full"; see below. */
	net_poll_stop(q);

	for (;;) {
		struct kvmx_chain chain = {};
		size_t len;
		int r, err;

		if (q->nxdp == NET_BATCH || q->nheads >= NET_BATCH)
			net_tx_flush(q);

		r = kvmx_vq_get_chain(vq, &chain);
		if (r < 0)
			break;
		if (!r) {
			/* Idle: what is batched goes out before we wait. */
			net_tx_send_batch(q);
			net_publish_used(q);
			/* A vCPU never spins: its guest cannot send more meanwhile. */
			if (!kvmx_vq_in_kicker(vq) &&
			    net_poll(q, net_tx_ready, kvmx_hold_max_ns(&signal_hold_max_us)))
				continue;
			if (net_rearm_or_go_on(vq, &pkts))
				continue;
			/* Till a kick, or our own requeue: either tunes the window. */
			if (!kvmx_vq_in_kicker(vq))
				kvmx_vq_poll_sleep(vq);
			break;
		}

		len = net_tx_check(q, &chain);
		if (!len) {
			net_tx_bad_chain(q);
			goto done;
		}
		kvmx_chain_out_iter(&chain, &msg.msg_iter);
		iov_iter_advance(&msg.msg_iter, q->vhost_hlen);

		if (batch) {
			err = net_tx_build_xdp(q, &msg.msg_iter);
			if (!err)
				goto sent;
			if (err == -EFAULT || err == -EINVAL) {
				pr_warn_ratelimited("vq %u: TX chain %u: %s; dropped\n",
						    vq->index, chain.head, err == -EFAULT ?
						    "guest memory unreadable" :
						    "checksum offset beyond the frame");
				net_tx_bad_chain(q);
				goto done;
			}
			/* Too big for a fragment (or none to be had): alone, in order. */
			net_tx_flush(q);
			kvmx_chain_out_iter(&chain, &msg.msg_iter);
			iov_iter_advance(&msg.msg_iter, q->vhost_hlen);
		}

		msg.msg_control = NULL;
		msg.msg_controllen = 0;
		err = sock->ops->sendmsg(sock, &msg, len);
		if (unlikely(err == -EAGAIN || err == -ENOMEM || err == -ENOBUFS)) {
			/* Full: retry this chain when the socket has room. */
			kvmx_vq_discard(vq, 1);
			net_poll_start(q);
			break;
		}
		if (unlikely(err < 0)) {
			/*
			 * The tap is down, detached or refused the header, or
			 * (worth a line: the VMM's or the guest's doing) the
			 * frame's guest memory faulted.
			 */
			if (err == -EFAULT)
				pr_warn_ratelimited("vq %u: TX chain %u: guest memory unreadable; dropped\n",
						    vq->index, chain.head);
			else
				pr_debug("vq %u: sendmsg of %zu bytes: %d\n", vq->index, len, err);
			q->errors++;
			goto done;
		}
sent:
		q->packets++;
		/* Frame bytes, as the tap's own counters: no header. */
		q->bytes += len - q->sock_hlen;
done:
		net_add_head(q, chain.head, 0);
		bytes += len;
		if (++pkts >= NET_PKT_WEIGHT || bytes >= NET_BYTE_WEIGHT) {
			kvmx_vq_queue_work(vq);
			break;
		}
	}
	net_tx_flush(q);
	if (pkts)
		WRITE_ONCE(q->tx_jiffies, jiffies);
	/* However the round ended, no call stays held past it. */
	net_call(q);
	/* More than a frame a round: a guest that streams. */
	if (pkts > 1)
		kvmx_vq_kicker_saw_deep(vq);
}

/* ---- RX ---------------------------------------------------------------- */

static int net_ptr_len(void *ptr)
{
	if (tun_is_xdp_frame(ptr))
		return tun_ptr_to_xdp(ptr)->len;
	return __skb_array_len_with_tag(ptr);
}

/* Put packets taken from tun's ring but not received back in front of it. */
static void net_rx_unconsume(struct net_queue *q)
{
	if (q->rx_ring && q->rxq_head != q->rxq_tail)
		ptr_ring_unconsume(q->rx_ring, q->rxq + q->rxq_head,
				   q->rxq_tail - q->rxq_head, tun_ptr_free);
	q->rxq_head = 0;
	q->rxq_tail = 0;
}

/* Length of the next packet without its socket header; 0 if none. */
static int net_rx_peek(struct net_queue *q)
{
	struct sock *sk = q->sock->sk;
	struct sk_buff *skb;
	unsigned long flags;
	int len = 0;

	if (q->rx_ring) {
		if (q->rxq_head == q->rxq_tail) {
			q->rxq_head = 0;
			q->rxq_tail = ptr_ring_consume_batched(q->rx_ring, q->rxq, NET_BATCH);
			if (!q->rxq_tail)
				return 0;
		}
		return net_ptr_len(q->rxq[q->rxq_head]);
	}

	spin_lock_irqsave(&sk->sk_receive_queue.lock, flags);
	skb = skb_peek(&sk->sk_receive_queue);
	if (skb)
		len = skb->len + (skb_vlan_tag_present(skb) ? VLAN_HLEN : 0);
	spin_unlock_irqrestore(&sk->sk_receive_queue.lock, flags);
	return len;
}

static bool net_rx_ready(struct net_queue *q)
{
	if (q->rx_ring)
		return !ptr_ring_empty(q->rx_ring);
	return !skb_queue_empty_lockless(&q->sock->sk->sk_receive_queue);
}

/*
 * Take enough guest buffers for @datalen bytes, at most @quota chains
 * (1 without MRG_RXBUF). Their segments go one after the other into
 * rx_iov, each chain getting a full KVMX_MAX_SEGS of room, so a legal
 * chain is never refused for lack of space.
 *
 * Return: the number of chains, 0 when the guest has not given enough
 * (nothing is kept), NET_RX_OVERRUN when the packet cannot fit (nothing
 * is kept), or a negative errno when the ring broke.
 */
static int net_rx_get_bufs(struct net_queue *q, u32 datalen, unsigned int quota,
			   unsigned int *nsegs)
{
	struct kvmx_vq *vq = &q->vq;
	unsigned int n = 0, seg = 0, taken = 0;
	s64 left = datalen;
	int r;

	while (left > 0) {
		struct kvmx_chain chain = {
			.iov = q->rx_iov + seg,
			.gpa = q->rx_gpa + seg,
			.max_segs = KVMX_MAX_SEGS,
		};

		/* Bounds the loop even when every chain is a bad one. */
		if (n == quota || seg >= KVMX_MAX_SEGS || ++taken > KVMX_MAX_SEGS) {
			kvmx_vq_discard(vq, n);
			return NET_RX_OVERRUN;
		}
		r = kvmx_vq_get_chain(vq, &chain);
		if (r <= 0) {
			kvmx_vq_discard(vq, n);
			return r;
		}
		if (unlikely(chain.nout)) {
			/* Not a receive buffer: give it back empty, keep going. */
			pr_warn_ratelimited("vq %u: RX chain %u has %u device-readable buffers; returned unused\n",
					    vq->index, chain.head, chain.nout);
			q->dropped++;
			if (vq->error_ctx)
				kvmx_eventfd_signal(vq->error_ctx);
			if (kvmx_vq_add_used(vq, chain.head, 0)) {
				kvmx_vq_discard(vq, n);
				return -EFAULT;
			}
			continue;
		}
		q->rx_bufs[n].seg = seg;
		q->rx_bufs[n].nseg = chain.nin;
		q->rx_bufs[n].len = chain.in_len;
		q->rx_bufs[n].head = chain.head;
		seg += chain.nin;
		left -= chain.in_len;
		n++;
	}
	/* The last buffer holds only what is left of the packet. */
	q->rx_bufs[n - 1].len += left;
	for (r = 0; r < n; r++)
		kvmx_used_elem(&q->heads[q->nheads + r], q->rx_bufs[r].head,
			       q->rx_bufs[r].len);
	*nsegs = seg;
	return n;
}

/* Write the virtio-net header (or patch num_buffers into the socket's). */
static int net_rx_fix_header(struct net_queue *q, struct iov_iter *fixup,
			     unsigned int nbufs)
{
	bool le = net_is_le(&q->vq);
	struct virtio_net_hdr_mrg_rxbuf hdr = {
		.hdr.gso_type = VIRTIO_NET_HDR_GSO_NONE,
		/* Always 1 without MRG_RXBUF, as the virtio spec asks. */
		.num_buffers = __cpu_to_virtio16(le, nbufs),
	};
	size_t hlen = q->vhost_hlen ? q->vhost_hlen : q->sock_hlen;

	if (q->vhost_hlen)
		return copy_to_iter(&hdr, hlen, fixup) == hlen ? 0 : -EFAULT;
	if (hlen < sizeof(hdr))
		return 0;
	iov_iter_advance(fixup, sizeof(hdr.hdr));
	return copy_to_iter(&hdr.num_buffers, sizeof(hdr.num_buffers), fixup) ==
	       sizeof(hdr.num_buffers) ? 0 : -EFAULT;
}

static void net_rx_log(struct net_queue *q, unsigned int nbufs)
{
	unsigned int i;

	for (i = 0; i < nbufs; i++) {
		struct kvmx_chain chain = {
			.iov = q->rx_iov + q->rx_bufs[i].seg,
			.gpa = q->rx_gpa + q->rx_bufs[i].seg,
			.nin = q->rx_bufs[i].nseg,
		};

		if (kvmx_vq_log_write(&q->vq, &chain, q->rx_bufs[i].len))
			return;
	}
}

/* Drop the next packet: it cannot fit what the guest gave us. */
static void net_rx_drop(struct net_queue *q, struct msghdr *msg, size_t len)
{
	int err;

	iov_iter_discard(&msg->msg_iter, ITER_DEST, len);
	err = q->sock->ops->recvmsg(q->sock, msg, len, MSG_DONTWAIT | MSG_TRUNC);
	pr_warn_ratelimited("vq %u: RX packet of %zu bytes does not fit the guest's buffers; dropped (%d)\n",
			    q->vq.index, len, err);
	q->dropped++;
}

static void net_handle_rx(struct kvmx_vq *vq)
{
	struct net_queue *q = to_queue(vq);
	struct socket *sock = q->sock;
	bool mergeable = kvmx_vq_has_feature(vq, VIRTIO_NET_F_MRG_RXBUF);
	struct msghdr msg = { .msg_flags = MSG_DONTWAIT };
	unsigned int pkts = 0;
	size_t bytes = 0;
	bool rearm = false;

	if (!sock)
		return;
	/* Leaving a guest time to catch up: the refill timer calls us back. */
	if (q->refill_until && !net_rx_refill_wait_over(q))
		return;
	kvmx_vq_disable_notify(vq);
	/* We are draining the socket: its wakeups would only requeue us. */
	net_poll_stop(q);

	for (;;) {
		size_t sock_len, vhost_len;
		struct iov_iter fixup;
		unsigned int nsegs;
		int n, err;

		sock_len = net_rx_peek(q);
		if (!sock_len) {
			/*
			 * The guest gets what we have before we spin. No hold:
			 * tried, a receiving guest gained nothing measurable
			 * from it (Documentation/vhost-net.rst).
			 */
			net_flush_used(q);
			if (net_poll(q, net_rx_ready, 0))
				sock_len = net_rx_peek(q);
		}
		if (!sock_len) {
			rearm = true;
			break;
		}
		sock_len += q->sock_hlen;
		vhost_len = sock_len + q->vhost_hlen;

		n = net_rx_get_bufs(q, vhost_len, mergeable ? KVMX_MAX_SEGS : 1, &nsegs);
		if (n < 0)
			break;
		if (!n) {
			if (net_rx_wait_for_refill(q))
				break;
			/* Out of buffers: the guest's kick brings us back. */
			if (net_rearm_or_go_on(vq, &pkts))
				continue;
			break;
		}

		msg.msg_control = q->rx_ring ? q->rxq[q->rxq_head++] : NULL;
		if (n == NET_RX_OVERRUN) {
			net_rx_drop(q, &msg, sock_len);
			goto next;
		}

		iov_iter_init(&msg.msg_iter, ITER_DEST, q->rx_iov, nsegs, vhost_len);
		fixup = msg.msg_iter;
		iov_iter_advance(&msg.msg_iter, q->vhost_hlen);
		err = sock->ops->recvmsg(sock, &msg, sock_len, MSG_DONTWAIT | MSG_TRUNC);
		if (unlikely(err != sock_len)) {
			/*
			 * Someone else read the socket, the backend went away,
			 * or guest memory faulted: the packet is gone, the
			 * buffers stay the guest's. Only the fault is the
			 * VMM's or the guest's doing, and worth a line.
			 */
			if (err == -EFAULT)
				pr_warn_ratelimited("vq %u: RX buffers not writable (guest memory faulted); packet of %zu bytes dropped\n",
						    vq->index, sock_len);
			else
				pr_debug("vq %u: recvmsg of %zu bytes: %d\n", vq->index, sock_len,
					 err);
			kvmx_vq_discard(vq, n);
			q->errors++;
			goto next;
		}
		if (unlikely(net_rx_fix_header(q, &fixup, n))) {
			kvmx_vq_discard(vq, n);
			kvmx_vq_fail(vq, -EFAULT, KVMX_FAULT_ADDR);
			break;
		}
		net_rx_log(q, n);
		q->nheads += n;
		if (q->nheads >= NET_BATCH)
			net_flush_used(q);
		q->packets++;
		q->refill_waited = false;
		q->bytes += sock_len - q->sock_hlen;
next:
		bytes += vhost_len;
		if (++pkts >= NET_PKT_WEIGHT || bytes >= NET_BYTE_WEIGHT) {
			kvmx_vq_queue_work(vq);
			break;
		}
	}
	if (rearm) {
		net_poll_start(q);
		kvmx_vq_poll_sleep(vq);
	}
	net_flush_used(q);
}

/* ---- backends ---------------------------------------------------------- */

static struct socket *net_get_packet_socket(int fd)
{
	struct socket *sock;
	int err;

	sock = sockfd_lookup(fd, &err);
	if (!sock)
		return ERR_PTR(-ENOTSOCK);
	if (sock->sk->sk_type != SOCK_RAW || sock->sk->sk_family != AF_PACKET) {
		sockfd_put(sock);
		return ERR_PTR(-ENOTSOCK);
	}
	return sock;
}

/*
 * The socket behind a tun, tap (macvtap/ipvtap) or raw AF_PACKET fd. The
 * returned socket holds a reference on its file; sockfd_put() drops it.
 * Anything else, a closed fd included, is -ENOTSOCK, as with vhost_net.
 */
static struct socket *net_get_socket(int fd, bool *tun, struct ptr_ring **ring)
{
	struct socket *sock;
	struct file *file;

	file = fget(fd);
	if (!file)
		return ERR_PTR(-ENOTSOCK);
	*tun = true;
	sock = tun_get_socket(file);
	if (!IS_ERR(sock)) {
		*ring = tun_get_tx_ring(file);
		return sock;
	}
	sock = tap_get_socket(file);
	if (!IS_ERR(sock)) {
		*ring = tap_get_ptr_ring(file);
		return sock;
	}
	fput(file);

	*tun = false;
	*ring = NULL;
	return net_get_packet_socket(fd);
}

/* Stop @q and take its socket away; vq.mutex held. */
static struct socket *net_queue_detach(struct net_queue *q)
{
	struct socket *sock = q->sock;

	net_poll_stop(q);
	/* After this no handler runs with a socket, so none restarts it. */
	hrtimer_cancel(&q->refill_timer);
	q->refill_until = 0;
	q->refill_waited = false;
	kvmx_vq_stop(&q->vq);
	net_rx_unconsume(q);
	/*
	 * Handlers send and publish everything before they return, so there
	 * is nothing left here; and this may run in a process other than the
	 * owner (close), where guest memory must not be touched.
	 */
	WARN_ON_ONCE(q->nxdp || q->nheads);
	q->sock = NULL;
	q->rx_ring = NULL;
	q->tun = false;
	return sock;
}

/*
 * Take a ring's mutex to detach its backend. A polling handler keeps the
 * mutex for its poll and any call it holds: the flag ends both at once,
 * and the handler calls the guest on its way out.
 */
static void net_queue_lock_quiesced(struct net_queue *q)
{
	WRITE_ONCE(q->quiescing, true);
	mutex_lock(&q->vq.mutex);
	WRITE_ONCE(q->quiescing, false);
}

static long net_set_backend(struct net_dev *n, struct vhost_vring_file __user *argp)
{
	struct socket *sock = NULL, *old = NULL;
	struct ptr_ring *ring = NULL;
	struct vhost_vring_file f;
	struct net_queue *q;
	bool tun = false;
	long r;

	if (copy_from_user(&f, argp, sizeof(f)))
		return -EFAULT;
	if (f.index >= NET_NVQS)
		return -ENOBUFS;
	q = &n->queues[array_index_nospec(f.index, NET_NVQS)];
	if (f.fd != -1) {
		sock = net_get_socket(f.fd, &tun, &ring);
		if (IS_ERR(sock))
			return PTR_ERR(sock);
		if (IS_ERR(ring))
			ring = NULL;
	}

	mutex_lock(&n->dev.mutex);
	r = kvmx_dev_check_owner(&n->dev);
	if (r)
		goto unlock_dev;

	net_queue_lock_quiesced(q);
	if (sock && sock == q->sock) {
		/* Same backend: nothing changes but our extra reference. */
		old = sock;
		goto unlock_vq;
	}
	old = net_queue_detach(q);
	if (sock) {
		q->sock = sock;
		q->tun = tun;
		q->rx_ring = f.index == NET_VQ_RX ? ring : NULL;
		r = kvmx_vq_start(&q->vq, q);
		if (r) {
			/* The ring is not set up; it stays without a backend. */
			q->sock = NULL;
			q->rx_ring = NULL;
			q->tun = false;
			goto unlock_vq;
		}
		sock = NULL;
		if (f.index == NET_VQ_RX)
			net_poll_start(q);
		else
			kvmx_vq_queue_work(&q->vq);
	}
unlock_vq:
	mutex_unlock(&q->vq.mutex);
unlock_dev:
	mutex_unlock(&n->dev.mutex);
	if (old)
		sockfd_put(old);
	if (sock && sock != old)
		sockfd_put(sock);
	return r;
}

/* dev.mutex held. */
static void net_update_hlen(struct net_dev *n)
{
	u64 features = n->dev.acked_features;
	size_t hlen, vhost_hlen, sock_hlen;
	unsigned int i;

	hlen = features & (BIT_ULL(VIRTIO_NET_F_MRG_RXBUF) | BIT_ULL(VIRTIO_F_VERSION_1)) ?
	       sizeof(struct virtio_net_hdr_mrg_rxbuf) : sizeof(struct virtio_net_hdr);
	/* VHOST_NET_F_VIRTIO_NET_HDR: we add and strip it, else the socket. */
	if (features & BIT_ULL(VHOST_NET_F_VIRTIO_NET_HDR)) {
		vhost_hlen = hlen;
		sock_hlen = 0;
	} else {
		vhost_hlen = 0;
		sock_hlen = hlen;
	}
	for (i = 0; i < NET_NVQS; i++) {
		mutex_lock(&n->queues[i].vq.mutex);
		n->queues[i].vhost_hlen = vhost_hlen;
		n->queues[i].sock_hlen = sock_hlen;
		mutex_unlock(&n->queues[i].vq.mutex);
	}
}

static long net_detach_all(struct net_dev *n, struct socket **old)
{
	unsigned int i;
	long r;

	mutex_lock(&n->dev.mutex);
	r = kvmx_dev_check_owner(&n->dev);
	for (i = 0; i < NET_NVQS; i++) {
		old[i] = NULL;
		if (r)
			continue;
		net_queue_lock_quiesced(&n->queues[i]);
		old[i] = net_queue_detach(&n->queues[i]);
		mutex_unlock(&n->queues[i].vq.mutex);
	}
	mutex_unlock(&n->dev.mutex);
	return r;
}

static long net_reset_owner(struct net_dev *n, void __user *argp)
{
	struct socket *old[NET_NVQS];
	unsigned int i;
	long r;

	r = net_detach_all(n, old);
	if (!r)
		r = kvmx_dev_ioctl(&n->dev, VHOST_RESET_OWNER, argp);
	if (!r) {
		mutex_lock(&n->dev.mutex);
		net_update_hlen(n);
		mutex_unlock(&n->dev.mutex);
	}
	for (i = 0; i < NET_NVQS; i++)
		if (old[i])
			sockfd_put(old[i]);
	return r;
}

/*
 * One thread per queue pair by default, as vhost_net: on a host whose CPUs
 * are all taken (the guest's vCPU, the peer), a third runnable thread per
 * device cost a TCP stream in the guest more than the parallel directions
 * gained (Documentation/vhost-net.rst, Performance). Where CPUs are spare,
 * a VMM gives TX its own with VHOST_NEW_WORKER + VHOST_ATTACH_VRING_WORKER,
 * or this parameter does it for every device.
 */
static bool tx_worker;
module_param(tx_worker, bool, 0644);
MODULE_PARM_DESC(tx_worker,
		 "Give TX a worker thread of its own at SET_OWNER (default: RX and TX share one, as vhost_net)");

static long net_set_owner(struct net_dev *n, void __user *argp)
{
	long r;

	r = kvmx_dev_ioctl(&n->dev, VHOST_SET_OWNER, argp);
	if (r || !READ_ONCE(tx_worker))
		return r;
	mutex_lock(&n->dev.mutex);
	if (!kvmx_dev_check_owner(&n->dev) &&
	    kvmx_dev_new_vq_worker(&n->dev, &n->queues[NET_VQ_TX].vq))
		pr_warn_ratelimited("no TX worker; RX and TX share one\n");
	mutex_unlock(&n->dev.mutex);
	return 0;
}

static long net_ioctl(struct file *file, unsigned int ioctl, unsigned long arg)
{
	struct net_dev *n = file->private_data;
	void __user *argp = (void __user *)arg;
	long r;

	switch (ioctl) {
	case VHOST_NET_SET_BACKEND:
		return net_set_backend(n, argp);
	case VHOST_SET_OWNER:
		return net_set_owner(n, argp);
	case VHOST_RESET_OWNER:
		return net_reset_owner(n, argp);
	case VHOST_GET_FEATURES:
		/*
		 * vhost_net answers before SET_OWNER and to any process holding
		 * the fd; a VMM may probe what the device offers before it
		 * commits to it. The offer is fixed at open, so no lock.
		 */
		return copy_to_user(argp, &n->dev.device_features,
				    sizeof(n->dev.device_features)) ? -EFAULT : 0;
	case VHOST_SET_FEATURES:
		r = kvmx_dev_ioctl(&n->dev, ioctl, argp);
		if (!r) {
			/* From what the core kept, not a second read of userspace. */
			mutex_lock(&n->dev.mutex);
			net_update_hlen(n);
			mutex_unlock(&n->dev.mutex);
		}
		return r;
	default:
		return kvmx_dev_ioctl(&n->dev, ioctl, argp);
	}
}

static const kvmx_handle_kick_t net_handlers[NET_NVQS] = {
	[NET_VQ_RX] = net_handle_rx,
	[NET_VQ_TX] = net_handle_tx,
};

static void net_free(struct net_dev *n)
{
	unsigned int i;

	for (i = 0; i < NET_NVQS; i++) {
		struct net_queue *q = &n->queues[i];

		kvfree(q->heads);
		kfree(q->rxq);
		kvfree(q->rx_iov);
		kvfree(q->rx_gpa);
		kvfree(q->rx_bufs);
		kfree(q->xdp);
	}
	kvfree(n);
}

static int net_open(struct inode *inode, struct file *file)
{
	struct net_dev *n;
	unsigned int i;

	n = kvzalloc(sizeof(*n), GFP_KERNEL_ACCOUNT);
	if (!n)
		return -ENOMEM;
	for (i = 0; i < NET_NVQS; i++) {
		struct net_queue *q = &n->queues[i];

		hrtimer_init(&q->refill_timer, CLOCK_MONOTONIC, HRTIMER_MODE_REL_SOFT);
		q->refill_timer.function = net_rx_refill_timer_fn;

		/* RX publishes a batch plus at most one packet's buffers. */
		q->heads = kvmalloc_array(NET_BATCH + KVMX_MAX_SEGS + 1, sizeof(*q->heads),
					  GFP_KERNEL_ACCOUNT);
		if (!q->heads)
			goto nomem;
		q->poll.vq = &q->vq;
		q->poll.events = i == NET_VQ_RX ? EPOLLIN : EPOLLOUT;
		n->vqs[i] = &q->vq;
	}

	{
		struct net_queue *rx = &n->queues[NET_VQ_RX];
		struct net_queue *tx = &n->queues[NET_VQ_TX];

		rx->rxq = kmalloc_array(NET_BATCH, sizeof(*rx->rxq), GFP_KERNEL_ACCOUNT);
		rx->rx_iov = kvmalloc_array(2 * KVMX_MAX_SEGS, sizeof(*rx->rx_iov),
					    GFP_KERNEL_ACCOUNT);
		rx->rx_gpa = kvmalloc_array(2 * KVMX_MAX_SEGS, sizeof(*rx->rx_gpa),
					    GFP_KERNEL_ACCOUNT);
		rx->rx_bufs = kvmalloc_array(KVMX_MAX_SEGS + 1, sizeof(*rx->rx_bufs),
					     GFP_KERNEL_ACCOUNT);
		tx->xdp = kmalloc_array(NET_BATCH, sizeof(*tx->xdp), GFP_KERNEL_ACCOUNT);
		if (!rx->rxq || !rx->rx_iov || !rx->rx_gpa || !rx->rx_bufs || !tx->xdp)
			goto nomem;
		/* A new guest has said nothing yet. */
		tx->tx_jiffies = jiffies - msecs_to_jiffies(NET_TALK_MS) - 1;
	}

	kvmx_dev_init(&n->dev, "kvmx-vhost-net", n->vqs, NET_NVQS, net_handlers,
		      NET_FEATURES, NET_PKT_WEIGHT);
	/* RX kicks only say buffers were added: the copying is the worker's. */
	kvmx_dev_allow_kick_inline(&n->dev, file, BIT_ULL(NET_VQ_TX));
	file->private_data = n;
	return 0;

nomem:
	net_free(n);
	return -ENOMEM;
}

static void net_frags_drain(struct page_frag_cache *frags)
{
#ifdef KVMX_HAS_PAGE_FRAG_CACHE_DRAIN
	page_frag_cache_drain(frags);
#else
	if (frags->va)
		__page_frag_cache_drain(virt_to_head_page(frags->va), frags->pagecnt_bias);
	frags->va = NULL;
#endif
}

static int net_release(struct inode *inode, struct file *file)
{
	struct net_dev *n = file->private_data;
	struct socket *old[NET_NVQS];
	unsigned int i;

	for (i = 0; i < NET_NVQS; i++) {
		net_queue_lock_quiesced(&n->queues[i]);
		old[i] = net_queue_detach(&n->queues[i]);
		mutex_unlock(&n->queues[i].vq.mutex);
	}
	kvmx_dev_stop(&n->dev);
	kvmx_dev_cleanup(&n->dev);
	for (i = 0; i < NET_NVQS; i++) {
		if (old[i])
			sockfd_put(old[i]);
		if (n->queues[i].packets || n->queues[i].dropped || n->queues[i].errors)
			pr_debug("vq %u: %llu packets, %llu bytes, %llu dropped, %llu errors\n",
				 i, n->queues[i].packets, n->queues[i].bytes,
				 n->queues[i].dropped, n->queues[i].errors);
	}
	net_frags_drain(&n->queues[NET_VQ_TX].frags);
	net_free(n);
	return 0;
}

/*
 * /proc/PID/fdinfo/FD of a VMM: the counters an operator needs to see a
 * guest's drops without tracing. Read without the rings' locks while the
 * workers update them; a figure a few packets stale is fine here.
 */
static void net_show_fdinfo(struct seq_file *m, struct file *file)
{
	static const char * const names[NET_NVQS] = {
		[NET_VQ_RX] = "rx",
		[NET_VQ_TX] = "tx",
	};
	struct net_dev *n = file->private_data;
	unsigned int i;

	for (i = 0; i < NET_NVQS; i++) {
		const struct net_queue *q = &n->queues[i];

		seq_printf(m, "%s_backend:\t%s\n", names[i],
			   READ_ONCE(q->sock) ? "attached" : "none");
		seq_printf(m, "%s_packets:\t%llu\n", names[i], READ_ONCE(q->packets));
		seq_printf(m, "%s_bytes:\t%llu\n", names[i], READ_ONCE(q->bytes));
		seq_printf(m, "%s_dropped:\t%llu\n", names[i], READ_ONCE(q->dropped));
		seq_printf(m, "%s_errors:\t%llu\n", names[i], READ_ONCE(q->errors));
		seq_printf(m, "%s_poll_ns:\t%u\n", names[i], READ_ONCE(q->vq.poll_ns));
		if (i == NET_VQ_RX) {
			seq_printf(m, "rx_calls_paced:\t%llu\n", READ_ONCE(q->vq.calls_paced));
			seq_printf(m, "rx_refill_waits:\t%llu\n", READ_ONCE(q->refill_waits));
			seq_printf(m, "rx_refill_caught_up:\t%llu\n",
				   READ_ONCE(q->refill_caught_up));
			seq_printf(m, "rx_refill_idle:\t%llu\n", READ_ONCE(q->refill_idle));
		}
		if (i != NET_VQ_TX)
			continue;
		seq_printf(m, "%s_hold_ns:\t%u\n", names[i], READ_ONCE(q->hold.hold_ns));
		kvmx_vq_show_kicker(m, "tx_", &q->vq);
	}
}

static const struct file_operations net_fops = {
	.owner = THIS_MODULE,
	.open = net_open,
	.release = net_release,
	.show_fdinfo = net_show_fdinfo,
	.unlocked_ioctl = net_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.llseek = noop_llseek,
};

static struct miscdevice net_misc = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "kvmx-vhost-net",
	.fops = &net_fops,
	.mode = 0600,
};

module_misc_device(net_misc);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("kvmx developers");
MODULE_DESCRIPTION("kvmx vhost-net: in-kernel virtio-net backend on tun/tap (/dev/kvmx-vhost-net)");
