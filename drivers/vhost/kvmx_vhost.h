/* SPDX-License-Identifier: GPL-2.0 */
/*
 * kvmx virtqueue core: the one place that touches guest memory.
 *
 * Devices (the loopback test device, vhost-blk, vhost-net, the vDPA
 * front-ends) speak only their protocol; the core owns the memory table,
 * the descriptor walk, the used ring, notifications, dirty logging, the
 * vhost ioctls and the workers.
 *
 * Lifetimes:
 *  - struct kvmx_dev is embedded in a device's per-open structure; the
 *    device calls kvmx_dev_init() at open and kvmx_dev_cleanup() at release.
 *  - The owner's address space is held with get_task_mm() at SET_OWNER and
 *    released at RESET_OWNER or cleanup; workers borrow it with
 *    kthread_use_mm(), so it is never torn down under a running worker.
 *  - The memory table is owned by the device; each virtqueue has a pointer
 *    to it that is only read and replaced with vq->mutex held, so a table
 *    never changes under a request being processed.
 *  - vq->worker is RCU-protected because the kick wakeup (eventfd wait
 *    queue, atomic context) reads it; it is replaced with vq->mutex held
 *    and the old worker flushed before the change returns.
 */
#ifndef _KVMX_VHOST_H
#define _KVMX_VHOST_H

#include <linux/eventfd.h>
#include <linux/hrtimer.h>
#include <linux/llist.h>
#include <linux/moduleparam.h>
#include <linux/mutex.h>
#include <linux/poll.h>
#include <linux/sched.h>
#include <linux/sched/clock.h>
#include <linux/uio.h>
#include <linux/virtio_ring.h>
#include <linux/xarray.h>
#include <uapi/linux/kvmx_vhost.h>

/* Largest queue the core accepts, as the virtio spec allows. */
#define KVMX_MAX_RING_NUM	32768
/* Segments one chain may map to; UIO_MAXIOV is what iov_iter users expect. */
#define KVMX_MAX_SEGS		UIO_MAXIOV
#define KVMX_LOG_PAGE_SHIFT	12

/* ---- guest memory table (memtable.c) ---------------------------------- */

struct kvmx_mem_region {
	u64 gpa;
	u64 size;
	u64 uaddr;
};

struct kvmx_memtable {
	u32 nregions;
	/* Sorted by gpa, non-overlapping, none empty, none wrapping. */
	struct kvmx_mem_region regions[] __counted_by(nregions);
};

struct kvmx_memtable *kvmx_memtable_build(const struct vhost_memory_region *regions,
					  u32 nregions);
const struct kvmx_mem_region *kvmx_memtable_lookup(const struct kvmx_memtable *mt,
						   u64 gpa);
int kvmx_memtable_translate(const struct kvmx_memtable *mt, u64 gpa, u64 len,
			    u64 *uaddr, u64 *contiguous);

/* ---- descriptor chains (chain.c) -------------------------------------- */

/*
 * How the walker reads descriptors. Production reads the owner's memory
 * with copy_from_user(); KUnit supplies a fake so hostile tables can be
 * built in kernel memory.
 */
struct kvmx_mem_ops {
	int (*read)(void *ctx, void *dst, u64 uaddr, size_t len);
};

struct kvmx_ring_view {
	u64 desc_uaddr;		/* userspace address of the descriptor table */
	u32 num;		/* ring size, a power of two */
	bool indirect_ok;	/* VIRTIO_RING_F_INDIRECT_DESC negotiated */
};

/* One walked chain: readable segments first, then writable ones. */
struct kvmx_chain {
	struct iovec *iov;	/* caller's array, max_segs long */
	u64 *gpa;		/* guest address of each iov, for the dirty log */
	unsigned int max_segs;
	unsigned int nout;	/* readable segments: iov[0..nout) */
	unsigned int nin;	/* writable segments: iov[nout..nout+nin) */
	u32 out_len;
	u32 in_len;
	u16 head;
	u32 ndesc;		/* descriptors visited, indirect entries included */
	bool segs_exhausted;	/* more segments than max_segs were needed */
	enum kvmx_chain_fault fault;
};

int kvmx_chain_walk(const struct kvmx_ring_view *ring, u16 head,
		    const struct kvmx_memtable *mt,
		    const struct kvmx_mem_ops *ops, void *ctx,
		    struct kvmx_chain *chain);
const char *kvmx_chain_fault_str(enum kvmx_chain_fault fault);

/* EVENT_IDX: must the other side be notified, given its event index? */
static inline bool kvmx_need_event(u16 event_idx, u16 new_idx, u16 old_idx)
{
	return (u16)(new_idx - event_idx - 1) < (u16)(new_idx - old_idx);
}

/* Dirty-log bitmap: one bit per 4 KiB guest page, bit n at byte n / 8. */
static inline u64 kvmx_log_first_page(u64 gpa)
{
	return gpa >> KVMX_LOG_PAGE_SHIFT;
}

static inline u64 kvmx_log_last_page(u64 gpa, u64 len)
{
	return (gpa + len - 1) >> KVMX_LOG_PAGE_SHIFT;
}

/* ---- workers, virtqueues, devices (core.c) ---------------------------- */

struct kvmx_work;
typedef void (*kvmx_work_fn_t)(struct kvmx_work *work);

struct kvmx_work {
	struct llist_node node;
	unsigned long flags;		/* KVMX_WORK_QUEUED */
	kvmx_work_fn_t fn;
};

struct kvmx_worker {
	struct task_struct *task;
	struct llist_head work_list;
	struct kvmx_dev *dev;
	u32 id;
	atomic_t attached_vqs;		/* a worker in use cannot be freed */
};

/* Waits on a kick eventfd and queues the virtqueue's handler. */
struct kvmx_poll {
	poll_table table;
	wait_queue_head_t *wqh;
	wait_queue_entry_t wait;
	struct kvmx_vq *vq;
};

struct kvmx_vq;
typedef void (*kvmx_handle_kick_t)(struct kvmx_vq *vq);

struct kvmx_vq {
	struct kvmx_dev *dev;
	/* Serialises the ring state below with the handler and the ioctls. */
	struct mutex mutex;
	unsigned int index;

	u32 num;
	u64 desc_uaddr;
	u64 avail_uaddr;
	u64 used_uaddr;
	u64 used_log_gpa;
	bool log_used;
	bool ring_set;			/* SET_VRING_ADDR succeeded */

	u16 last_avail_idx;		/* next avail entry to take */
	u16 avail_idx_shadow;		/* last avail->idx read */
	u16 last_used_idx;		/* next used entry to fill */
	u16 signalled_used;
	bool signalled_used_valid;
	bool broken;			/* a bad chain stopped this ring */
	int last_error;
	enum kvmx_chain_fault last_fault;
	u64 bad_chains;

	struct file *kick;
	struct eventfd_ctx *call_ctx;
	struct eventfd_ctx *error_ctx;
	struct kvmx_poll poll;
	bool polling;
	u32 busyloop_timeout;		/* µs; 0: adaptive, see kvmx_vq_poll_deadline() */
	u32 poll_ns;			/* the adaptive window */
	bool poll_asleep;		/* the handler gave up polling and slept */
	u64 poll_idle_since;		/* local_clock() when it ran out of work */
	u64 poll_work_at;		/* local_clock() when work woke it */

	struct kvmx_work kick_work;
	kvmx_handle_kick_t handle_kick;
	struct kvmx_worker __rcu *worker;

	/* Running the handler in the thread that kicked: see kvmx_vq_kick_inline(). */
	bool kick_inline;		/* the device allows it on this ring */
	struct callback_head inline_work;
	unsigned long inline_queued;	/* bit 0: inline_work is on a task */
	bool in_kicker;			/* the handler runs in the kicker, under mutex */
	u32 kicker_deep;		/* kicks still to hand over, under mutex */
	u32 kicker_since_probe;		/* kicks since the last probe, under mutex */
	u64 inline_runs;		/* handler rounds run in the kicker, under mutex */
	u64 kicker_handoffs;		/* of those, handed to the worker, under mutex */
	atomic_long_t inline_busy;	/* kicks left to the worker: ring busy */

	/* Paced calls: see kvmx_vq_signal_paced(). */
	struct hrtimer call_timer;	/* a call waiting for its turn */
	ktime_t last_call;		/* when the guest was last called */
	u64 calls_paced;		/* calls that waited for their turn, under mutex */

	/* Device state; non-NULL means "running". Under mutex. */
	void *private_data;
	u64 acked_features;		/* copy of the device's, under mutex */
	const struct kvmx_memtable *mem;
	bool log_all;			/* VHOST_F_LOG_ALL acked and a log set */
	u64 log_base;
	struct eventfd_ctx *log_ctx;

	struct iovec iov[KVMX_MAX_SEGS];
	u64 iov_gpa[KVMX_MAX_SEGS];
};

struct kvmx_dev {
	struct mutex mutex;		/* owner, features, memory, log, workers */
	struct mm_struct *mm;
	struct kvmx_vq **vqs;
	unsigned int nvqs;
	u64 device_features;		/* what the device offers */
	u64 acked_features;
	struct kvmx_memtable *mem;
	u64 log_base;			/* userspace address of the dirty bitmap */
	bool log_base_set;
	struct eventfd_ctx *log_ctx;
	struct xarray workers;		/* id -> struct kvmx_worker */
	unsigned int weight;		/* chains per handler round */
	const char *name;
	/* The device's own file, when its handlers may run in the kicker. */
	struct file *inline_file;
};

/* Features every kvmx device gets from the core. */
#define KVMX_CORE_FEATURES ((1ULL << VIRTIO_RING_F_INDIRECT_DESC) | \
			    (1ULL << VIRTIO_RING_F_EVENT_IDX) | \
			    (1ULL << VIRTIO_F_VERSION_1) | \
			    (1ULL << VIRTIO_F_ANY_LAYOUT) | \
			    (1ULL << VHOST_F_LOG_ALL))

void kvmx_dev_init(struct kvmx_dev *dev, const char *name, struct kvmx_vq **vqs,
		   unsigned int nvqs, const kvmx_handle_kick_t *handlers,
		   u64 device_features, unsigned int weight);
void kvmx_dev_allow_kick_inline(struct kvmx_dev *dev, struct file *file, u64 vq_mask);
long kvmx_dev_ioctl(struct kvmx_dev *dev, unsigned int ioctl, void __user *argp);
int kvmx_dev_check_owner(struct kvmx_dev *dev);
void kvmx_dev_stop(struct kvmx_dev *dev);
int kvmx_dev_new_vq_worker(struct kvmx_dev *dev, struct kvmx_vq *vq);
void kvmx_dev_cleanup(struct kvmx_dev *dev);

/* With vq->mutex held. */
int kvmx_vq_start(struct kvmx_vq *vq, void *private_data);
void *kvmx_vq_stop(struct kvmx_vq *vq);
int kvmx_vq_get_chain(struct kvmx_vq *vq, struct kvmx_chain *chain);
int kvmx_vq_add_used(struct kvmx_vq *vq, u16 head, u32 len);
int kvmx_vq_add_used_n(struct kvmx_vq *vq, const struct vring_used_elem *elems,
		       unsigned int n);
void kvmx_vq_discard(struct kvmx_vq *vq, unsigned int n);
bool kvmx_vq_avail_empty(struct kvmx_vq *vq);
bool kvmx_vq_has_work(struct kvmx_vq *vq);
u64 kvmx_vq_poll_deadline(struct kvmx_vq *vq);
void kvmx_vq_poll_sleep(struct kvmx_vq *vq);
u32 kvmx_poll_next_ns(u32 window_ns, u64 idle_ns, u32 max_ns);

/*
 * Is the handler running in the thread that kicked (a vCPU on its way back
 * into the guest), not in a worker? Then it must not busy-poll or hold
 * signals: the guest cannot add anything until the handler returns.
 */
static inline bool kvmx_vq_in_kicker(const struct kvmx_vq *vq)
{
	return vq->in_kicker;
}

/* Kicks handed to the worker after a busy ring, and one probe in so many. */
#define KVMX_KICKER_DEEP_ROUNDS	64
#define KVMX_KICKER_PROBE_EVERY	32

void kvmx_vq_kicker_saw_deep(struct kvmx_vq *vq);
bool kvmx_vq_kicker_hand_over(struct kvmx_vq *vq);
struct seq_file;
void kvmx_vq_show_kicker(struct seq_file *m, const char *prefix, const struct kvmx_vq *vq);

/*
 * May a handler keep spinning towards @deadline (kvmx_vq_poll_deadline())?
 * Not once it passed, nor while another task wants this CPU.
 */
static inline bool kvmx_poll_on(u64 deadline)
{
	return !need_resched() && local_clock() < deadline;
}

/* The smallest hold worth having: below it, signal at once. */
#define KVMX_HOLD_MIN_NS	2000
/* A closed hold is tried again at least once in this many signals. */
#define KVMX_HOLD_PROBE_MAX	256
/* An open hold closes after this many in a row caught nothing. */
#define KVMX_HOLD_MISSES	32

/*
 * A polling worker's hold on the guest's call for the rest of its burst
 * (see kvmx_hold_start()): what it learnt, and the hold in force. Times
 * are local_clock(): when the held call was first held (0: none is), when
 * the ring last saw work, and the longest quiet gap that still ended in
 * work during this hold. Under the ring's mutex.
 */
struct kvmx_hold {
	u32 hold_ns;		/* learnt; 0: closed, signal at once */
	u16 probe_every;	/* closed: signals from one probe to the next */
	u16 probe_in;		/* closed: signals until the next probe */
	u16 misses;		/* open: holds in a row that caught nothing */
	u32 held_ns;		/* the hold in force */
	u64 held_since;
	u64 active_at;
	u64 caught_gap_ns;
};

/*
 * A module parameter, in µs, bounding how long a thread of the VM waits on
 * the guest's behalf: a device's cap on its holds (a worker spins while it
 * holds a call, and a ring being torn down or reconfigured waits for that:
 * at most four holds), vhost-blk's kicker_wait_us (a vCPU that sleeps for
 * a completion does not run its guest). Set through kvmx_wait_us_ops.
 */
#define KVMX_WAIT_US_LIMIT	USEC_PER_SEC
extern const struct kernel_param_ops kvmx_wait_us_ops;

/* A hold cap parameter (kvmx_wait_us_ops) in nanoseconds. */
static inline u32 kvmx_hold_max_ns(const unsigned int *max_us)
{
	return min_t(u64, READ_ONCE(*max_us) * NSEC_PER_USEC, U32_MAX);
}

u32 kvmx_hold_start(struct kvmx_hold *hold, u32 max_ns);
void kvmx_hold_end(struct kvmx_hold *hold, u64 caught_gap_ns, u32 max_ns);
void kvmx_hold_activity(struct kvmx_hold *hold, u64 now);
bool kvmx_hold_begin(struct kvmx_hold *hold, u64 now, u32 max_ns);
bool kvmx_hold_ran_out(struct kvmx_hold *hold, u64 now, u32 max_ns);

/* Is a call held now? */
static inline bool kvmx_hold_held(const struct kvmx_hold *hold)
{
	return hold->held_since;
}

/* The held call went out some other way; the hold learns nothing. */
static inline void kvmx_hold_drop(struct kvmx_hold *hold)
{
	hold->held_since = 0;
}

void kvmx_vq_signal(struct kvmx_vq *vq);
void kvmx_vq_signal_paced(struct kvmx_vq *vq, u64 gap_ns);
bool kvmx_vq_enable_notify(struct kvmx_vq *vq);
bool kvmx_vq_guest_caught_up(struct kvmx_vq *vq);
int kvmx_vq_read_avail_idx(struct kvmx_vq *vq, u16 *idx);
void kvmx_vq_disable_notify(struct kvmx_vq *vq);
void kvmx_vq_queue_work(struct kvmx_vq *vq);
int kvmx_vq_log_write(struct kvmx_vq *vq, const struct kvmx_chain *chain, u32 len);
void kvmx_vq_fail(struct kvmx_vq *vq, int err, enum kvmx_chain_fault fault);
void kvmx_vq_flush(struct kvmx_vq *vq);

/* Iterators over a chain's readable (source) or writable (dest) part. */
static inline void kvmx_chain_out_iter(const struct kvmx_chain *chain,
				       struct iov_iter *iter)
{
	iov_iter_init(iter, ITER_SOURCE, chain->iov, chain->nout, chain->out_len);
}

static inline void kvmx_chain_in_iter(const struct kvmx_chain *chain,
				      struct iov_iter *iter)
{
	iov_iter_init(iter, ITER_DEST, chain->iov + chain->nout, chain->nin,
		      chain->in_len);
}

/* A used element as the ring stores it, for kvmx_vq_add_used_n(). */
static inline void kvmx_used_elem(struct vring_used_elem *elem, u16 head, u32 len)
{
	elem->id = (__force __virtio32)cpu_to_le32(head);
	elem->len = (__force __virtio32)cpu_to_le32(len);
}

static inline bool kvmx_vq_has_feature(const struct kvmx_vq *vq, unsigned int bit)
{
	return vq->acked_features & (1ULL << bit);
}

/* eventfd_signal() lost its count argument in 6.8; Kbuild probes which. */
static inline void kvmx_eventfd_signal(struct eventfd_ctx *ctx)
{
#ifdef KVMX_EVENTFD_SIGNAL_HAS_COUNT
	eventfd_signal(ctx, 1);
#else
	eventfd_signal(ctx);
#endif
}

#endif /* _KVMX_VHOST_H */
