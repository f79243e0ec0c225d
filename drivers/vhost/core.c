// SPDX-License-Identifier: GPL-2.0
/*
 * kvmx virtqueue core: vhost ioctls, workers, rings, notifications and the
 * dirty log, shared by every kvmx device through exported symbols.
 *
 * Locking: dev->mutex (owner, features, memory table, log, workers) is
 * taken before any vq->mutex. A vq's handler runs on its worker with only
 * vq->mutex held, so nothing may flush a worker while holding a vq->mutex.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/cgroup.h>
#include <linux/file.h>
#include <linux/highmem.h>
#include <linux/kthread.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/nospec.h>
#include <linux/sched/clock.h>
#include <linux/sched/mm.h>
#include <linux/seq_file.h>
#include <linux/slab.h>
#include <linux/task_work.h>
#include <linux/uaccess.h>
#include <linux/vhost_types.h>

#include "kvmx_vhost.h"

#define KVMX_WORK_QUEUED	0
#define KVMX_MAX_WORKERS	64

static unsigned int max_mem_regions = 64;
module_param(max_mem_regions, uint, 0444);
MODULE_PARM_DESC(max_mem_regions,
		 "Most regions VHOST_SET_MEM_TABLE accepts (default 64, as vhost)");

static unsigned int poll_max_us = 32;
module_param(poll_max_us, uint, 0644);
MODULE_PARM_DESC(poll_max_us,
		 "Longest adaptive busy poll, in microseconds, of a ring whose VMM set no VHOST_SET_VRING_BUSYLOOP_TIMEOUT (default 32, as QEMU's iothreads; 0: never poll unasked)");

static bool kick_inline = true;
module_param(kick_inline, bool, 0644);
MODULE_PARM_DESC(kick_inline,
		 "Run a ring's handler in the thread that kicked it, before that thread returns to the guest or to userspace, when it is a thread of the owner (devices that allow it: vhost-blk); else in the worker (default Y)");

/* The first adaptive window, as QEMU's: short enough to cost little when wrong. */
#define KVMX_POLL_FIRST_NS	4000

/* ---- workers ---------------------------------------------------------- */

static int kvmx_worker_fn(void *data)
{
	struct kvmx_worker *worker = data;
	struct kvmx_work *work, *next;
	struct llist_node *node;

	/* Guest memory is the owner's memory: work runs in its mm. */
	kthread_use_mm(worker->dev->mm);
	for (;;) {
		set_current_state(TASK_INTERRUPTIBLE);
		node = llist_del_all(&worker->work_list);
		if (!node) {
			if (kthread_should_stop()) {
				__set_current_state(TASK_RUNNING);
				break;
			}
			schedule();
			continue;
		}
		__set_current_state(TASK_RUNNING);
		/* llist is LIFO; run work in the order it was queued. */
		node = llist_reverse_order(node);
		llist_for_each_entry_safe(work, next, node, node) {
			/*
			 * Clear before running so a kick arriving while the
			 * handler runs queues it again instead of being lost.
			 */
			clear_bit(KVMX_WORK_QUEUED, &work->flags);
			/* Pairs with test_and_set_bit() in kvmx_worker_queue(). */
			smp_mb__after_atomic();
			work->fn(work);
			cond_resched();
		}
	}
	kthread_unuse_mm(worker->dev->mm);
	return 0;
}

/* Return: true if @work was not queued yet. */
static bool kvmx_worker_queue(struct kvmx_worker *worker, struct kvmx_work *work)
{
	if (test_and_set_bit(KVMX_WORK_QUEUED, &work->flags))
		return false;
	llist_add(&work->node, &worker->work_list);
	wake_up_process(worker->task);
	return true;
}

struct kvmx_flush_work {
	struct kvmx_work work;
	struct completion done;
};

static void kvmx_flush_fn(struct kvmx_work *work)
{
	complete(&container_of(work, struct kvmx_flush_work, work)->done);
}

/* Wait until everything queued on @worker before this call has run. */
static void kvmx_worker_flush(struct kvmx_worker *worker)
{
	struct kvmx_flush_work flush = { .work.fn = kvmx_flush_fn };

	init_completion(&flush.done);
	kvmx_worker_queue(worker, &flush.work);
	wait_for_completion(&flush.done);
}

static struct kvmx_worker *kvmx_worker_create(struct kvmx_dev *dev)
{
	struct kvmx_worker *worker;
	struct task_struct *task;
	u32 id;
	int err;

	worker = kzalloc(sizeof(*worker), GFP_KERNEL_ACCOUNT);
	if (!worker)
		return ERR_PTR(-ENOMEM);
	worker->dev = dev;
	init_llist_head(&worker->work_list);

	err = xa_alloc(&dev->workers, &id, worker,
		       XA_LIMIT(0, KVMX_MAX_WORKERS - 1), GFP_KERNEL);
	if (err) {
		err = err == -EBUSY ? -ENOSPC : err;
		goto free;
	}
	worker->id = id;

	task = kthread_create(kvmx_worker_fn, worker, "kvmx-%d.%u",
			      task_pid_nr(current), id);
	if (IS_ERR(task)) {
		err = PTR_ERR(task);
		goto erase;
	}
	worker->task = task;

	/* Charge the worker's CPU time to the owner's cgroups. */
	err = cgroup_attach_task_all(current, task);
	if (err)
		goto stop;
	wake_up_process(task);
	return worker;

stop:
	kthread_stop(task);
erase:
	xa_erase(&dev->workers, id);
free:
	kfree(worker);
	return ERR_PTR(err);
}

static void kvmx_worker_destroy(struct kvmx_dev *dev, struct kvmx_worker *worker)
{
	xa_erase(&dev->workers, worker->id);
	/* kthread_stop() lets the worker drain its list before it exits. */
	kthread_stop(worker->task);
	kfree(worker);
}

static struct kvmx_worker *kvmx_vq_worker(struct kvmx_vq *vq)
{
	return rcu_dereference_check(vq->worker, lockdep_is_held(&vq->dev->mutex) ||
				     lockdep_is_held(&vq->mutex));
}

/*
 * When work arrived, not when the worker got to run, is what says whether
 * a longer poll would have caught it: under load (or in an emulator) the
 * wakeup alone can outlast any window. Work run in the kicker counts too
 * (see kvmx_vq_kick_inline()).
 */
static void kvmx_vq_note_work(struct kvmx_vq *vq)
{
	if (READ_ONCE(vq->poll_asleep))
		WRITE_ONCE(vq->poll_work_at, local_clock());
}

/**
 * kvmx_vq_queue_work - run @vq's handler on its worker soon
 * @vq: the virtqueue
 *
 * Safe from any context, including the eventfd wakeup.
 */
void kvmx_vq_queue_work(struct kvmx_vq *vq)
{
	struct kvmx_worker *worker;

	rcu_read_lock();
	worker = rcu_dereference(vq->worker);
	if (worker && kvmx_worker_queue(worker, &vq->kick_work))
		kvmx_vq_note_work(vq);
	rcu_read_unlock();
}
EXPORT_SYMBOL_GPL(kvmx_vq_queue_work);

/**
 * kvmx_vq_flush - wait for work queued for @vq to finish
 * @vq: the virtqueue; its mutex must not be held
 */
void kvmx_vq_flush(struct kvmx_vq *vq)
{
	struct kvmx_worker *worker;

	mutex_lock(&vq->dev->mutex);
	worker = rcu_dereference_protected(vq->worker,
					   lockdep_is_held(&vq->dev->mutex));
	if (worker)
		kvmx_worker_flush(worker);
	mutex_unlock(&vq->dev->mutex);
}
EXPORT_SYMBOL_GPL(kvmx_vq_flush);

/**
 * kvmx_vq_has_work - is other work waiting for @vq's worker?
 * @vq: the virtqueue, mutex held
 *
 * A handler that busy-polls stops when this turns true, so it never
 * holds the worker while other rings (or its own requeue) wait.
 */
bool kvmx_vq_has_work(struct kvmx_vq *vq)
{
	struct kvmx_worker *worker;
	bool busy = false;

	rcu_read_lock();
	worker = rcu_dereference(vq->worker);
	if (worker)
		busy = !llist_empty(&worker->work_list);
	rcu_read_unlock();
	return busy;
}
EXPORT_SYMBOL_GPL(kvmx_vq_has_work);

/**
 * kvmx_poll_next_ns - the adaptive poll window after one wait
 * @window_ns: the window the handler polled for before it slept
 * @idle_ns: from running out of work to being woken again
 * @max_ns: the longest window allowed
 *
 * A wait longer than any window we would poll means the ring is idle:
 * polling only burns a CPU, so stop. A wait that ended soon after we gave
 * up means a longer window would have caught it: double it, up to @max_ns.
 */
u32 kvmx_poll_next_ns(u32 window_ns, u64 idle_ns, u32 max_ns)
{
	if (idle_ns > max_ns)
		return 0;
	if (idle_ns <= window_ns)
		return window_ns;
	if (!window_ns)
		return min_t(u32, KVMX_POLL_FIRST_NS, max_ns);
	return window_ns > max_ns / 2 ? max_ns : window_ns * 2;
}
EXPORT_SYMBOL_GPL(kvmx_poll_next_ns);

static int kvmx_wait_us_set(const char *val, const struct kernel_param *kp)
{
	return param_set_uint_minmax(val, kp, 0, KVMX_WAIT_US_LIMIT);
}

const struct kernel_param_ops kvmx_wait_us_ops = {
	.set = kvmx_wait_us_set,
	.get = param_get_uint,
};
EXPORT_SYMBOL_GPL(kvmx_wait_us_ops);

/**
 * kvmx_hold_start - used entries are ready: how long to hold their signal?
 * @hold: the queue's hold state
 * @max_ns: the longest hold allowed; below KVMX_HOLD_MIN_NS, none
 *
 * A held signal goes out once the queue has been quiet for the hold.
 * Holding pays while the guest is still adding requests: one interrupt
 * then covers its whole burst, where each costs the guest an exit. It
 * costs a guest that waits for this very completion the whole hold, so a
 * closed hold is only tried again now and then (a probe, for @max_ns),
 * less often each time a probe catches nothing.
 *
 * Return: the hold in nanoseconds; 0 to signal at once.
 */
u32 kvmx_hold_start(struct kvmx_hold *hold, u32 max_ns)
{
	if (max_ns < KVMX_HOLD_MIN_NS) {
		hold->hold_ns = 0;
		return 0;
	}
	hold->hold_ns = min(hold->hold_ns, max_ns);
	if (hold->hold_ns)
		return hold->hold_ns;
	if (hold->probe_in > 1) {
		hold->probe_in--;
		return 0;
	}
	return max_ns;
}
EXPORT_SYMBOL_GPL(kvmx_hold_start);

/**
 * kvmx_hold_end - a hold ran out: learn from it
 * @hold: the queue's hold state; a hold that ran while it was closed
 *	was a probe (kvmx_hold_start() returned @max_ns)
 * @caught_gap_ns: the longest quiet gap after which the queue still saw a
 *	request or a completion during the hold; 0 if it saw none
 * @max_ns: the longest hold allowed
 *
 * A hold that caught some of a burst grows to twice the longest gap inside
 * it, and does not shrink for a burst with shorter gaps: a hold too short
 * for the next gap costs an interrupt, too long costs nothing while the
 * guest keeps adding requests. One that caught nothing only delayed a
 * guest that was waiting for us; yet a guest deep in I/O still has many
 * such holds between those that catch (measured under nested KVM: 4 of 5
 * catch nothing, and holding still halves its interrupts per request), so
 * only KVMX_HOLD_MISSES of them in a row close the hold. A probe that
 * caught nothing doubles the signals until the next one, up to
 * KVMX_HOLD_PROBE_MAX.
 */
void kvmx_hold_end(struct kvmx_hold *hold, u64 caught_gap_ns, u32 max_ns)
{
	if (max_ns < KVMX_HOLD_MIN_NS) {
		hold->hold_ns = 0;
	} else if (caught_gap_ns) {
		u64 twice = 2 * min_t(u64, caught_gap_ns, max_ns);

		hold->hold_ns = clamp_t(u64, max_t(u64, twice, hold->hold_ns),
					KVMX_HOLD_MIN_NS, max_ns);
		hold->probe_every = 1;
		hold->misses = 0;
	} else if (!hold->hold_ns) {
		/* A probe. */
		hold->probe_every = clamp(2 * hold->probe_every, 2, KVMX_HOLD_PROBE_MAX);
	} else if (++hold->misses >= KVMX_HOLD_MISSES) {
		hold->hold_ns = 0;
		hold->misses = 0;
		hold->probe_every = 2;
	}
	if (!hold->hold_ns)
		hold->probe_in = hold->probe_every;
}
EXPORT_SYMBOL_GPL(kvmx_hold_end);

/**
 * kvmx_hold_activity - the ring saw work (a chain, a completion) at @now
 * @hold: the ring's hold
 * @now: local_clock()
 *
 * During a hold, the burst goes on: the gap since the last work is one
 * the hold caught.
 */
void kvmx_hold_activity(struct kvmx_hold *hold, u64 now)
{
	if (hold->held_since && now > hold->active_at)
		hold->caught_gap_ns = max(hold->caught_gap_ns, now - hold->active_at);
	hold->active_at = now;
}
EXPORT_SYMBOL_GPL(kvmx_hold_activity);

/**
 * kvmx_hold_begin - a call is owed: hold it, or send it now?
 * @hold: the ring's hold
 * @now: local_clock()
 * @max_ns: the longest hold allowed
 *
 * Return: true if the call is held (already, or from now on): the caller
 * keeps polling and sends it when kvmx_hold_ran_out() says so, or when it
 * stops polling; false to send it now.
 */
bool kvmx_hold_begin(struct kvmx_hold *hold, u64 now, u32 max_ns)
{
	if (hold->held_since)
		return true;
	hold->held_ns = kvmx_hold_start(hold, max_ns);
	if (!hold->held_ns)
		return false;
	hold->held_since = now;
	hold->caught_gap_ns = 0;
	hold->active_at = max(hold->active_at, now);
	return true;
}
EXPORT_SYMBOL_GPL(kvmx_hold_begin);

/**
 * kvmx_hold_ran_out - is the held call due at @now?
 * @hold: the ring's hold
 * @now: local_clock()
 * @max_ns: the longest hold allowed
 *
 * A held call goes out once the ring has been quiet for the hold, or four
 * holds after it was first held however busy the guest keeps it; either
 * way the hold learns from what it caught, and is over.
 *
 * Return: true if the caller must send the call now.
 */
bool kvmx_hold_ran_out(struct kvmx_hold *hold, u64 now, u32 max_ns)
{
	if (!hold->held_since)
		return false;
	if (now < hold->active_at + hold->held_ns &&
	    now < hold->held_since + 4ULL * hold->held_ns)
		return false;
	kvmx_hold_end(hold, hold->caught_gap_ns, max_ns);
	hold->held_since = 0;
	return true;
}
EXPORT_SYMBOL_GPL(kvmx_hold_ran_out);

static u32 kvmx_poll_max_ns(void)
{
	return min_t(u64, READ_ONCE(poll_max_us) * NSEC_PER_USEC, U32_MAX);
}

/**
 * kvmx_vq_poll_deadline - a handler ran out of work: until when may it spin?
 * @vq: the virtqueue, mutex held
 *
 * The VMM's VHOST_SET_VRING_BUSYLOOP_TIMEOUT, when it set one; else the
 * adaptive window, which grows while work keeps arriving shortly after the
 * handler gave up and drops to nothing once the ring goes quiet. A handler
 * that then sleeps says so with kvmx_vq_poll_sleep().
 *
 * Return: a local_clock() deadline; now when there is no window.
 */
u64 kvmx_vq_poll_deadline(struct kvmx_vq *vq)
{
	u64 now = local_clock();

	vq->poll_idle_since = now;
	if (vq->busyloop_timeout)
		return now + (u64)vq->busyloop_timeout * NSEC_PER_USEC;
	return now + min(vq->poll_ns, kvmx_poll_max_ns());
}
EXPORT_SYMBOL_GPL(kvmx_vq_poll_deadline);

/**
 * kvmx_vq_poll_sleep - the handler polled until its deadline and now waits
 * @vq: the virtqueue, mutex held
 *
 * How long until it runs again tunes the adaptive window.
 */
void kvmx_vq_poll_sleep(struct kvmx_vq *vq)
{
	WRITE_ONCE(vq->poll_asleep, true);
}
EXPORT_SYMBOL_GPL(kvmx_vq_poll_sleep);

static void kvmx_vq_poll_adapt(struct kvmx_vq *vq)
{
	u64 work_at = READ_ONCE(vq->poll_work_at);
	u32 max_ns = kvmx_poll_max_ns();
	u64 idle_ns;

	if (!vq->poll_asleep)
		return;
	WRITE_ONCE(vq->poll_asleep, false);
	if (vq->busyloop_timeout)
		return;
	/*
	 * A stamp older than our sleep is from an earlier round (or another
	 * CPU's clock ran a little behind): count until now instead, which
	 * can only make the window smaller.
	 */
	if (work_at < vq->poll_idle_since)
		work_at = local_clock();
	idle_ns = work_at - vq->poll_idle_since;
	WRITE_ONCE(vq->poll_ns, kvmx_poll_next_ns(min(vq->poll_ns, max_ns), idle_ns, max_ns));
}

static void kvmx_vq_kick_work(struct kvmx_work *work)
{
	struct kvmx_vq *vq = container_of(work, struct kvmx_vq, kick_work);

	mutex_lock(&vq->mutex);
	kvmx_vq_poll_adapt(vq);
	if (vq->private_data && !vq->broken)
		vq->handle_kick(vq);
	mutex_unlock(&vq->mutex);
}

/* ---- handlers in the kicking thread ------------------------------------ */

#define KVMX_INLINE_QUEUED	0

#ifdef PF_USER_WORKER
#define KVMX_PF_USER_WORKER	PF_USER_WORKER
#else
#define KVMX_PF_USER_WORKER	0
#endif

/*
 * Task work of a kicking thread: it runs before that thread enters the
 * guest again (KVM handles TIF_NOTIFY_RESUME on the way in) or returns to
 * userspace. The file reference taken at queueing keeps the device, and
 * with it this module, alive until the work is done; the final fput()
 * then defers the release past our return.
 */
static void kvmx_vq_inline_fn(struct callback_head *cb)
{
	struct kvmx_vq *vq = container_of(cb, struct kvmx_vq, inline_work);
	struct file *file = vq->dev->inline_file;

	/*
	 * Clear before running so a kick arriving while the handler runs
	 * queues us again instead of being lost.
	 */
	clear_bit(KVMX_INLINE_QUEUED, &vq->inline_queued);
	/* Pairs with test_and_set_bit() in kvmx_vq_kick_inline(). */
	smp_mb__after_atomic();

	/*
	 * A busy ring (the worker polling it, an ioctl changing it) is
	 * left to the worker rather than stalling the vCPU on its mutex.
	 */
	if (!mutex_trylock(&vq->mutex)) {
		atomic_long_inc(&vq->inline_busy);
		kvmx_vq_queue_work(vq);
		goto out;
	}
	/* Work came, wherever it runs: the worker's window learns from it. */
	kvmx_vq_poll_adapt(vq);
	/* The owner may have changed since the kick: guest memory is its. */
	if (vq->private_data && !vq->broken && READ_ONCE(vq->dev->mm) == current->mm) {
		vq->in_kicker = true;
		vq->inline_runs++;
		vq->handle_kick(vq);
		vq->in_kicker = false;
	}
	mutex_unlock(&vq->mutex);
out:
	fput(file);
}

/*
 * A kick came from a thread sharing the owner's memory: a vCPU whose
 * ioeventfd fired, or the VMM writing the eventfd. Run the handler in
 * that thread on its way out instead of waking the worker. The guest
 * then finds the request done, and the interrupt pending, when it
 * re-enters: no thread wakeup, no cross-CPU interrupt, no halt. Atomic
 * context (the eventfd's wait queue lock).
 *
 * Return: true if the handler will run in the kicker.
 */
static bool kvmx_vq_kick_inline(struct kvmx_vq *vq)
{
	struct kvmx_dev *dev = vq->dev;
	struct file *file = dev->inline_file;

	/* Kernel threads, io_uring's and vhost's among them, run no task work for us. */
	if (!file || !vq->kick_inline || !READ_ONCE(kick_inline) || !in_task() ||
	    (current->flags & (PF_KTHREAD | PF_EXITING | PF_IO_WORKER | KVMX_PF_USER_WORKER)) ||
	    current->mm != READ_ONCE(dev->mm))
		return false;
	if (test_and_set_bit(KVMX_INLINE_QUEUED, &vq->inline_queued))
		return true;
	/*
	 * The last reference may be gone already, the release on its way
	 * (it stops our polling first thing, but has not yet). The file is
	 * not freed before its release returns, so its count can be read.
	 */
	if (!atomic_long_inc_not_zero(&file->f_count)) {
		clear_bit(KVMX_INLINE_QUEUED, &vq->inline_queued);
		return false;
	}
	/*
	 * kvmx_vq_inline_fn() adapts the worker's window to this: a guest
	 * whose kicks ran here would otherwise look idle to the worker, which
	 * would stop polling for the deep queues the device hands it.
	 */
	kvmx_vq_note_work(vq);
	init_task_work(&vq->inline_work, kvmx_vq_inline_fn);
	if (!task_work_add(current, &vq->inline_work, TWA_RESUME))
		return true;
	clear_bit(KVMX_INLINE_QUEUED, &vq->inline_queued);
	fput(file);
	return false;
}

/**
 * kvmx_dev_allow_kick_inline - let handlers of this device run in the kicker
 * @dev: the device, at open, after kvmx_dev_init()
 * @file: the device's file; a pending inline run holds a reference to it
 * @vq_mask: bit i set: ring i may
 *
 * Only for handlers that neither sleep long nor spin when in the kicker
 * (kvmx_vq_in_kicker()): that thread is the guest's vCPU.
 */
void kvmx_dev_allow_kick_inline(struct kvmx_dev *dev, struct file *file, u64 vq_mask)
{
	unsigned int i;

	dev->inline_file = file;
	for (i = 0; i < dev->nvqs && i < 64; i++)
		dev->vqs[i]->kick_inline = vq_mask & BIT_ULL(i);
}
EXPORT_SYMBOL_GPL(kvmx_dev_allow_kick_inline);

/**
 * kvmx_vq_kicker_saw_deep - the guest keeps this ring busy
 * @vq: the virtqueue, mutex held
 *
 * A busy ring is served best by the worker: it polls with kicks off while
 * the guest adds more, where a vCPU handling its own kicks finishes each
 * before its guest can add the next, and exits for every one. So the next
 * KVMX_KICKER_DEEP_ROUNDS kicks go to the worker. Devices say what busy
 * is: vhost-blk, a kick with requests in flight or a round with more than
 * one; vhost-net's TX, more than one packet a round.
 */
void kvmx_vq_kicker_saw_deep(struct kvmx_vq *vq)
{
	vq->kicker_deep = KVMX_KICKER_DEEP_ROUNDS;
}
EXPORT_SYMBOL_GPL(kvmx_vq_kicker_saw_deep);

/**
 * kvmx_vq_kicker_hand_over - in the kicker: leave this kick to the worker?
 * @vq: the virtqueue, mutex held, kvmx_vq_in_kicker()
 *
 * After a busy ring, yes (kvmx_vq_kicker_saw_deep()). And one kick in
 * KVMX_KICKER_PROBE_EVERY, a probe: a guest whose every kick is finished
 * in the kicker never shows how much more it had, as its vCPU is only
 * back once done.
 *
 * Return: true if the kick was queued for the worker, which the handler
 * then returns to at once.
 */
bool kvmx_vq_kicker_hand_over(struct kvmx_vq *vq)
{
	if (vq->kicker_deep)
		vq->kicker_deep--;
	else if (++vq->kicker_since_probe >= KVMX_KICKER_PROBE_EVERY)
		vq->kicker_since_probe = 0;
	else
		return false;
	vq->kicker_handoffs++;
	kvmx_vq_queue_work(vq);
	return true;
}
EXPORT_SYMBOL_GPL(kvmx_vq_kicker_hand_over);

/**
 * kvmx_vq_show_kicker - the ring's kicker counters, for a device's fdinfo
 * @m: the fdinfo file
 * @prefix: what each key starts with ("q0_", "tx_")
 * @vq: the virtqueue; read without its mutex, a value a round stale is fine
 */
void kvmx_vq_show_kicker(struct seq_file *m, const char *prefix, const struct kvmx_vq *vq)
{
	seq_printf(m, "%skicker_runs:\t%llu\n", prefix, READ_ONCE(vq->inline_runs));
	seq_printf(m, "%skicker_busy:\t%ld\n", prefix, atomic_long_read(&vq->inline_busy));
	seq_printf(m, "%skicker_handoffs:\t%llu\n", prefix, READ_ONCE(vq->kicker_handoffs));
}
EXPORT_SYMBOL_GPL(kvmx_vq_show_kicker);

/* ---- kick polling ----------------------------------------------------- */

static int kvmx_poll_wakeup(wait_queue_entry_t *wait, unsigned int mode,
			    int sync, void *key)
{
	struct kvmx_poll *poll = container_of(wait, struct kvmx_poll, wait);

	if (!(key_to_poll(key) & EPOLLIN))
		return 0;
	if (!kvmx_vq_kick_inline(poll->vq))
		kvmx_vq_queue_work(poll->vq);
	return 0;
}

static void kvmx_poll_queue_proc(struct file *file, wait_queue_head_t *wqh,
				 poll_table *table)
{
	struct kvmx_poll *poll = container_of(table, struct kvmx_poll, table);

	/* An eventfd has one wait queue; anything else was refused earlier. */
	if (poll->wqh)
		return;
	poll->wqh = wqh;
	add_wait_queue(wqh, &poll->wait);
}

static void kvmx_poll_start(struct kvmx_vq *vq)
{
	struct kvmx_poll *poll = &vq->poll;
	__poll_t mask;

	if (vq->polling || !vq->kick)
		return;
	init_waitqueue_func_entry(&poll->wait, kvmx_poll_wakeup);
	init_poll_funcptr(&poll->table, kvmx_poll_queue_proc);
	poll->wqh = NULL;
	mask = vfs_poll(vq->kick, &poll->table);
	vq->polling = true;
	/* A kick that came before we listened must not be lost. */
	if (mask & EPOLLIN)
		kvmx_vq_queue_work(vq);
}

static void kvmx_poll_stop(struct kvmx_vq *vq)
{
	if (!vq->polling)
		return;
	if (vq->poll.wqh)
		remove_wait_queue(vq->poll.wqh, &vq->poll.wait);
	vq->poll.wqh = NULL;
	vq->polling = false;
}

/* ---- ring access (vq->mutex held, in the owner's mm) -------------------- */

static void __user *avail_ptr(struct kvmx_vq *vq, size_t off)
{
	return u64_to_user_ptr(vq->avail_uaddr + off);
}

static void __user *used_ptr(struct kvmx_vq *vq, size_t off)
{
	return u64_to_user_ptr(vq->used_uaddr + off);
}

static size_t avail_ring_off(u32 slot)
{
	return offsetof(struct vring_avail, ring) + (size_t)slot * sizeof(__virtio16);
}

static size_t used_ring_off(u32 slot)
{
	return offsetof(struct vring_used, ring) + (size_t)slot * sizeof(struct vring_used_elem);
}

static int read_avail_u16(struct kvmx_vq *vq, size_t off, u16 *val)
{
	__le16 raw;

	if (get_user(raw, (__le16 __user *)avail_ptr(vq, off)))
		return -EFAULT;
	*val = le16_to_cpu(raw);
	return 0;
}

/**
 * kvmx_vq_read_avail_idx - the guest's avail index as it is now
 * @vq: the virtqueue, mutex held
 * @idx: where it goes
 *
 * Return: 0, or -EFAULT when the ring cannot be read.
 */
int kvmx_vq_read_avail_idx(struct kvmx_vq *vq, u16 *idx)
{
	return read_avail_u16(vq, offsetof(struct vring_avail, idx), idx);
}
EXPORT_SYMBOL_GPL(kvmx_vq_read_avail_idx);

static bool kvmx_ring_access_ok(struct kvmx_vq *vq)
{
	u32 num = vq->num;

	return access_ok(u64_to_user_ptr(vq->desc_uaddr), num * sizeof(struct vring_desc)) &&
	       access_ok(avail_ptr(vq, 0), avail_ring_off(num) + sizeof(__virtio16)) &&
	       access_ok(used_ptr(vq, 0), used_ring_off(num) + sizeof(__virtio16));
}

/**
 * kvmx_vq_fail - stop a ring the guest broke
 * @vq: the virtqueue, mutex held
 * @err: negative errno
 * @fault: which check fired, KVMX_FAULT_NONE when none applies
 *
 * The ring stays stopped until userspace sets its base again; the error
 * eventfd tells the VMM, as vhost does.
 */
void kvmx_vq_fail(struct kvmx_vq *vq, int err, enum kvmx_chain_fault fault)
{
	vq->broken = true;
	vq->last_error = err;
	vq->last_fault = fault;
	vq->bad_chains++;
	pr_warn_ratelimited("%s: vq %u: %s (%d); ring stopped\n", vq->dev->name,
			    vq->index, fault == KVMX_FAULT_NONE ?
			    "ring not accessible" : kvmx_chain_fault_str(fault),
			    err);
	if (vq->error_ctx)
		kvmx_eventfd_signal(vq->error_ctx);
}
EXPORT_SYMBOL_GPL(kvmx_vq_fail);

static int kvmx_log_bits(struct kvmx_vq *vq, u64 first, u64 last)
{
	u64 bit = first;

	while (bit <= last) {
		u64 byte_addr, page_addr, nr, count, i;
		struct page *page;
		void *base;

		if (check_add_overflow(vq->log_base, bit / 8, &byte_addr))
			return -EFAULT;
		page_addr = byte_addr & PAGE_MASK;
		nr = (byte_addr - page_addr) * 8 + bit % 8;
		count = min_t(u64, last - bit + 1, PAGE_SIZE * 8 - nr);

		/* Pin, not copy: set_bit() stays atomic against the VMM clearing bits. */
		if (pin_user_pages_fast(page_addr, 1, FOLL_WRITE, &page) != 1)
			return -EFAULT;
		base = kmap_local_page(page);
		for (i = 0; i < count; i++)
			set_bit(nr + i, base);
		kunmap_local(base);
		unpin_user_pages_dirty_lock(&page, 1, true);
		bit += count;
	}
	return 0;
}

static int kvmx_log_gpa(struct kvmx_vq *vq, u64 gpa, u64 len)
{
	if (!len)
		return 0;
	return kvmx_log_bits(vq, kvmx_log_first_page(gpa),
			     kvmx_log_last_page(gpa, len));
}

static void kvmx_log_used(struct kvmx_vq *vq, size_t off, size_t len)
{
	if (!vq->log_all || !vq->log_used)
		return;
	if (kvmx_log_gpa(vq, vq->used_log_gpa + off, len))
		pr_warn_ratelimited("%s: vq %u: dirty log not writable\n",
				    vq->dev->name, vq->index);
	else if (vq->log_ctx)
		kvmx_eventfd_signal(vq->log_ctx);
}

/**
 * kvmx_vq_log_write - log the first @len bytes written into @chain
 * @vq: the virtqueue, mutex held
 * @chain: the chain written
 * @len: bytes written into its writable part, in order
 *
 * Return: 0, or -EFAULT when the log bitmap is not writable.
 */
int kvmx_vq_log_write(struct kvmx_vq *vq, const struct kvmx_chain *chain, u32 len)
{
	unsigned int i;
	int err;

	if (!vq->log_all)
		return 0;
	for (i = chain->nout; i < chain->nout + chain->nin && len; i++) {
		u64 n = min_t(u64, len, chain->iov[i].iov_len);

		err = kvmx_log_gpa(vq, chain->gpa[i], n);
		if (err) {
			pr_warn_ratelimited("%s: vq %u: dirty log not writable\n",
					    vq->dev->name, vq->index);
			return err;
		}
		len -= n;
	}
	if (vq->log_ctx)
		kvmx_eventfd_signal(vq->log_ctx);
	return 0;
}
EXPORT_SYMBOL_GPL(kvmx_vq_log_write);

static int kvmx_user_read(void *ctx, void *dst, u64 uaddr, size_t len)
{
	return copy_from_user(dst, u64_to_user_ptr(uaddr), len) ? -EFAULT : 0;
}

static const struct kvmx_mem_ops kvmx_user_mem_ops = {
	.read = kvmx_user_read,
};

/**
 * kvmx_vq_get_chain - take the next available chain
 * @vq: the virtqueue, mutex held
 * @chain: iov/gpa arrays and max_segs set by the caller, or iov NULL to use
 *         the vq's own arrays
 *
 * Return: 1 with @chain filled, 0 when the ring is empty, or a negative
 * errno after which the ring is broken (see kvmx_vq_fail()).
 */
int kvmx_vq_get_chain(struct kvmx_vq *vq, struct kvmx_chain *chain)
{
	struct kvmx_ring_view view = {
		.desc_uaddr = vq->desc_uaddr,
		.num = vq->num,
		.indirect_ok = kvmx_vq_has_feature(vq, VIRTIO_RING_F_INDIRECT_DESC),
	};
	u16 avail_idx, head;
	int err;

	if (vq->broken)
		return vq->last_error;

	if (vq->avail_idx_shadow == vq->last_avail_idx) {
		if (kvmx_vq_read_avail_idx(vq, &avail_idx)) {
			kvmx_vq_fail(vq, -EFAULT, KVMX_FAULT_NONE);
			return -EFAULT;
		}
		if ((u16)(avail_idx - vq->last_avail_idx) > vq->num) {
			kvmx_vq_fail(vq, -EINVAL, KVMX_FAULT_AVAIL_IDX);
			return -EINVAL;
		}
		vq->avail_idx_shadow = avail_idx;
		if (avail_idx == vq->last_avail_idx)
			return 0;
		/* Read the ring entries only after the index that covers them. */
		smp_rmb();
	}

	if (read_avail_u16(vq, avail_ring_off(vq->last_avail_idx & (vq->num - 1)), &head)) {
		kvmx_vq_fail(vq, -EFAULT, KVMX_FAULT_NONE);
		return -EFAULT;
	}

	if (!chain->iov) {
		chain->iov = vq->iov;
		chain->gpa = vq->iov_gpa;
		chain->max_segs = KVMX_MAX_SEGS;
	}
	err = kvmx_chain_walk(&view, head, vq->mem, &kvmx_user_mem_ops, NULL, chain);
	if (err) {
		kvmx_vq_fail(vq, err, chain->fault);
		return err;
	}
	vq->last_avail_idx++;
	return 1;
}
EXPORT_SYMBOL_GPL(kvmx_vq_get_chain);

/**
 * kvmx_vq_add_used - hand a chain back to the guest
 * @vq: the virtqueue, mutex held
 * @head: the chain's head, as kvmx_vq_get_chain() returned it
 * @len: bytes written into the chain
 *
 * Return: 0, or -EFAULT after which the ring is broken.
 */
int kvmx_vq_add_used(struct kvmx_vq *vq, u16 head, u32 len)
{
	struct vring_used_elem elem = {
		.id = (__force __virtio32)cpu_to_le32(head),
		.len = (__force __virtio32)cpu_to_le32(len),
	};
	size_t off = used_ring_off(vq->last_used_idx & (vq->num - 1));
	__le16 idx;

	if (copy_to_user(used_ptr(vq, off), &elem, sizeof(elem)))
		goto fault;
	kvmx_log_used(vq, off, sizeof(elem));
	/* The element must be visible before the index that publishes it. */
	smp_wmb();
	idx = cpu_to_le16(vq->last_used_idx + 1);
	if (put_user(idx, (__le16 __user *)used_ptr(vq, offsetof(struct vring_used, idx))))
		goto fault;
	kvmx_log_used(vq, offsetof(struct vring_used, idx), sizeof(idx));
	vq->last_used_idx++;
	return 0;

fault:
	kvmx_vq_fail(vq, -EFAULT, KVMX_FAULT_NONE);
	return -EFAULT;
}
EXPORT_SYMBOL_GPL(kvmx_vq_add_used);

/**
 * kvmx_vq_add_used_n - hand several chains back with one index update
 * @vq: the virtqueue, mutex held
 * @elems: @n used elements, already little endian (kvmx_used_elem())
 * @n: how many
 *
 * Return: 0, or -EFAULT after which the ring is broken.
 */
int kvmx_vq_add_used_n(struct kvmx_vq *vq, const struct vring_used_elem *elems,
		       unsigned int n)
{
	unsigned int done = 0;
	__le16 idx;

	while (done < n) {
		u32 slot = (u16)(vq->last_used_idx + done) & (vq->num - 1);
		/* Up to the end of the ring, then from its start. */
		unsigned int chunk = min(n - done, vq->num - slot);
		size_t off = used_ring_off(slot);

		if (copy_to_user(used_ptr(vq, off), elems + done, chunk * sizeof(*elems)))
			goto fault;
		kvmx_log_used(vq, off, chunk * sizeof(*elems));
		done += chunk;
	}
	if (!n)
		return 0;
	/* The elements must be visible before the index that publishes them. */
	smp_wmb();
	idx = cpu_to_le16(vq->last_used_idx + n);
	if (put_user(idx, (__le16 __user *)used_ptr(vq, offsetof(struct vring_used, idx))))
		goto fault;
	kvmx_log_used(vq, offsetof(struct vring_used, idx), sizeof(idx));
	vq->last_used_idx += n;
	return 0;

fault:
	kvmx_vq_fail(vq, -EFAULT, KVMX_FAULT_NONE);
	return -EFAULT;
}
EXPORT_SYMBOL_GPL(kvmx_vq_add_used_n);

/**
 * kvmx_vq_discard - give back the last @n chains taken, unprocessed
 * @vq: the virtqueue, mutex held
 * @n: chains taken by kvmx_vq_get_chain() and not yet used
 *
 * The next kvmx_vq_get_chain() walks them again from the avail ring, as
 * upstream's vhost_discard_vq_desc(): for a packet that found too few
 * buffers or a backend that cannot take it now.
 */
void kvmx_vq_discard(struct kvmx_vq *vq, unsigned int n)
{
	vq->last_avail_idx -= n;
}
EXPORT_SYMBOL_GPL(kvmx_vq_discard);

/**
 * kvmx_vq_avail_empty - has the guest made no chain available?
 * @vq: the virtqueue, mutex held
 *
 * Return: true when nothing is waiting. An unreadable ring reads as not
 * empty, so the caller's next kvmx_vq_get_chain() reports the fault.
 */
bool kvmx_vq_avail_empty(struct kvmx_vq *vq)
{
	u16 avail_idx;

	if (vq->avail_idx_shadow != vq->last_avail_idx)
		return false;
	if (kvmx_vq_read_avail_idx(vq, &avail_idx))
		return false;
	return avail_idx == vq->last_avail_idx;
}
EXPORT_SYMBOL_GPL(kvmx_vq_avail_empty);

/*
 * Without EVENT_IDX, the guest asks for calls by leaving
 * VRING_AVAIL_F_NO_INTERRUPT clear. An unreadable ring reads as asking.
 */
static bool kvmx_vq_flags_ask_for_calls(struct kvmx_vq *vq)
{
	u16 flags;

	if (read_avail_u16(vq, offsetof(struct vring_avail, flags), &flags))
		return true;
	return !(flags & VRING_AVAIL_F_NO_INTERRUPT);
}

/* With EVENT_IDX: used_event sits right after the avail ring. */
static int read_used_event(struct kvmx_vq *vq, u16 *val)
{
	return read_avail_u16(vq, avail_ring_off(vq->num), val);
}

static bool kvmx_vq_should_signal(struct kvmx_vq *vq)
{
	u16 old, new, val;
	bool valid;

	/* Our used index write must be visible before we read their wishes. */
	smp_mb();
	if (!kvmx_vq_has_feature(vq, VIRTIO_RING_F_EVENT_IDX))
		return kvmx_vq_flags_ask_for_calls(vq);

	old = vq->signalled_used;
	valid = vq->signalled_used_valid;
	new = vq->last_used_idx;
	vq->signalled_used = new;
	vq->signalled_used_valid = true;
	if (unlikely(!valid))
		return true;
	if (read_used_event(vq, &val))
		return true;
	return kvmx_need_event(val, new, old);
}

/**
 * kvmx_vq_guest_caught_up - has the guest taken every used entry and gone idle?
 * @vq: the virtqueue, mutex held
 *
 * A guest driver that finds no more used entries asks for a call again:
 * its used_event then names our used index (EVENT_IDX), or it clears
 * VRING_AVAIL_F_NO_INTERRUPT. While it polls, it asks for none. An
 * unreadable ring reads as caught up, so the caller goes on and meets
 * the fault.
 *
 * Return: true when the guest waits for a call, with nothing left to take.
 */
bool kvmx_vq_guest_caught_up(struct kvmx_vq *vq)
{
	u16 val;

	/* Our used index write must be visible before we read their wishes. */
	smp_mb();
	if (!kvmx_vq_has_feature(vq, VIRTIO_RING_F_EVENT_IDX))
		return kvmx_vq_flags_ask_for_calls(vq);
	if (read_used_event(vq, &val))
		return true;
	return val == vq->last_used_idx;
}
EXPORT_SYMBOL_GPL(kvmx_vq_guest_caught_up);

/**
 * kvmx_vq_signal - notify the guest of used buffers, unless it asked not to
 * @vq: the virtqueue, mutex held
 */
void kvmx_vq_signal(struct kvmx_vq *vq)
{
	if (vq->call_ctx && kvmx_vq_should_signal(vq))
		kvmx_eventfd_signal(vq->call_ctx);
}
EXPORT_SYMBOL_GPL(kvmx_vq_signal);

/* A call goes out now; the next one is paced from here. */
static void kvmx_vq_call_now(struct kvmx_vq *vq)
{
	WRITE_ONCE(vq->last_call, ktime_get());
	kvmx_eventfd_signal(vq->call_ctx);
}

/*
 * The paced call's time came. call_ctx is stable here: whoever changes or
 * drops it cancels this timer first (kvmx_vq_call_flush()).
 */
static enum hrtimer_restart kvmx_vq_call_timer_fn(struct hrtimer *timer)
{
	kvmx_vq_call_now(container_of(timer, struct kvmx_vq, call_timer));
	return HRTIMER_NORESTART;
}

/**
 * kvmx_vq_signal_paced - kvmx_vq_signal(), at most one call per @gap_ns
 * @vq: the virtqueue, mutex held
 * @gap_ns: the shortest time between two calls (0: call at once)
 *
 * A guest that takes a stream of small packets spends itself on the
 * interrupt of each short batch and has nothing left for the reader of
 * what it received. A call due less than @gap_ns after the last one waits
 * on a timer for the rest of that gap, and entries published meanwhile
 * ride along with it. A call after a quieter spell goes out at once, and
 * so does a waiting one when @gap_ns is 0.
 */
void kvmx_vq_signal_paced(struct kvmx_vq *vq, u64 gap_ns)
{
	/* A waiting call that is cancelled here is owed, whatever the guest asks. */
	bool owed = !gap_ns && hrtimer_try_to_cancel(&vq->call_timer) == 1;
	ktime_t due;

	if (!vq->call_ctx || (!kvmx_vq_should_signal(vq) && !owed))
		return;
	/* A call already waiting goes out after these entries: it covers them. */
	if (hrtimer_is_queued(&vq->call_timer))
		return;
	due = ktime_add_ns(READ_ONCE(vq->last_call), gap_ns);
	if (ktime_after(due, ktime_get())) {
		vq->calls_paced++;
		hrtimer_start(&vq->call_timer, due, HRTIMER_MODE_ABS_SOFT);
		return;
	}
	kvmx_vq_call_now(vq);
}
EXPORT_SYMBOL_GPL(kvmx_vq_signal_paced);

/* Before call_ctx changes or goes: a paced call still waiting goes out now. */
static void kvmx_vq_call_flush(struct kvmx_vq *vq)
{
	if (hrtimer_cancel(&vq->call_timer) && vq->call_ctx)
		kvmx_vq_call_now(vq);
}

static int kvmx_vq_write_used_u16(struct kvmx_vq *vq, size_t off, u16 val)
{
	if (put_user(cpu_to_le16(val), (__le16 __user *)used_ptr(vq, off)))
		return -EFAULT;
	kvmx_log_used(vq, off, sizeof(u16));
	return 0;
}

/**
 * kvmx_vq_disable_notify - ask the guest not to kick while we are busy
 * @vq: the virtqueue, mutex held
 */
void kvmx_vq_disable_notify(struct kvmx_vq *vq)
{
	/* With EVENT_IDX, an avail_event left behind already silences kicks. */
	if (kvmx_vq_has_feature(vq, VIRTIO_RING_F_EVENT_IDX))
		return;
	if (kvmx_vq_write_used_u16(vq, offsetof(struct vring_used, flags),
				   VRING_USED_F_NO_NOTIFY))
		pr_warn_ratelimited("%s: vq %u: used ring not writable\n",
				    vq->dev->name, vq->index);
}
EXPORT_SYMBOL_GPL(kvmx_vq_disable_notify);

/**
 * kvmx_vq_enable_notify - ask for kicks again
 * @vq: the virtqueue, mutex held
 *
 * Return: true when buffers arrived meanwhile, so the caller must process
 * them instead of waiting for a kick that will not come.
 */
bool kvmx_vq_enable_notify(struct kvmx_vq *vq)
{
	u16 avail_idx;
	int err;

	/*
	 * Ask for a kick on the first buffer after the last avail index we
	 * read, not after the next one we will take: a device that gave
	 * chains back (kvmx_vq_discard(), too few buffers for a packet)
	 * waits for more buffers, and an event index behind buffers the
	 * guest already published would never be crossed again.
	 */
	if (kvmx_vq_has_feature(vq, VIRTIO_RING_F_EVENT_IDX))
		err = kvmx_vq_write_used_u16(vq, used_ring_off(vq->num), vq->avail_idx_shadow);
	else
		err = kvmx_vq_write_used_u16(vq, offsetof(struct vring_used, flags), 0);
	if (err) {
		kvmx_vq_fail(vq, err, KVMX_FAULT_NONE);
		return false;
	}
	/* Publish the request for kicks before checking for new buffers. */
	smp_mb();
	if (kvmx_vq_read_avail_idx(vq, &avail_idx))
		return false;
	return avail_idx != vq->avail_idx_shadow;
}
EXPORT_SYMBOL_GPL(kvmx_vq_enable_notify);

/**
 * kvmx_vq_start - attach device state to a ring and start taking kicks
 * @vq: the virtqueue; dev->mutex and vq->mutex held
 * @private_data: the device's per-ring state; non-NULL
 *
 * Return: 0, or -EINVAL when the ring is not fully set up (size, addresses
 * and kick eventfd), -EFAULT when its memory is not accessible.
 */
int kvmx_vq_start(struct kvmx_vq *vq, void *private_data)
{
	lockdep_assert_held(&vq->dev->mutex);
	lockdep_assert_held(&vq->mutex);
	if (!vq->num || !vq->ring_set || !vq->kick)
		return -EINVAL;
	if (!kvmx_ring_access_ok(vq))
		return -EFAULT;
	vq->private_data = private_data;
	vq->signalled_used_valid = false;
	kvmx_poll_start(vq);
	return 0;
}
EXPORT_SYMBOL_GPL(kvmx_vq_start);

/**
 * kvmx_vq_stop - detach device state from a ring
 * @vq: the virtqueue, mutex held
 *
 * The handler runs under the same mutex, so none is running once this
 * returns, and a queued one will find no state and return.
 *
 * Return: the state given to kvmx_vq_start(), or NULL.
 */
void *kvmx_vq_stop(struct kvmx_vq *vq)
{
	void *old = vq->private_data;

	kvmx_poll_stop(vq);
	vq->private_data = NULL;
	return old;
}
EXPORT_SYMBOL_GPL(kvmx_vq_stop);

/* ---- device ----------------------------------------------------------- */

/**
 * kvmx_dev_init - initialise a device at open
 * @dev: the device, embedded in the caller's per-open state
 * @name: used in log messages
 * @vqs: @nvqs virtqueues, embedded in the caller's state
 * @nvqs: how many
 * @handlers: the kick handler of each virtqueue
 * @device_features: every feature bit the device offers, core ones included
 * @weight: chains a handler takes per round before yielding the worker
 */
void kvmx_dev_init(struct kvmx_dev *dev, const char *name, struct kvmx_vq **vqs,
		   unsigned int nvqs, const kvmx_handle_kick_t *handlers,
		   u64 device_features, unsigned int weight)
{
	unsigned int i;

	mutex_init(&dev->mutex);
	xa_init_flags(&dev->workers, XA_FLAGS_ALLOC);
	dev->name = name;
	dev->vqs = vqs;
	dev->nvqs = nvqs;
	dev->device_features = device_features;
	dev->weight = weight;

	for (i = 0; i < nvqs; i++) {
		struct kvmx_vq *vq = vqs[i];

		mutex_init(&vq->mutex);
		vq->dev = dev;
		vq->index = i;
		vq->handle_kick = handlers[i];
		vq->kick_work.fn = kvmx_vq_kick_work;
		vq->poll.vq = vq;
		hrtimer_init(&vq->call_timer, CLOCK_MONOTONIC, HRTIMER_MODE_ABS_SOFT);
		vq->call_timer.function = kvmx_vq_call_timer_fn;
	}
}
EXPORT_SYMBOL_GPL(kvmx_dev_init);

/**
 * kvmx_dev_check_owner - is current the owner?
 * @dev: the device, mutex held
 *
 * Return: 0, or -EPERM before SET_OWNER or from another process.
 */
int kvmx_dev_check_owner(struct kvmx_dev *dev)
{
	lockdep_assert_held(&dev->mutex);
	return dev->mm && dev->mm == current->mm ? 0 : -EPERM;
}
EXPORT_SYMBOL_GPL(kvmx_dev_check_owner);

static long kvmx_set_owner(struct kvmx_dev *dev)
{
	struct kvmx_worker *worker;
	unsigned int i;
	long r = 0;

	mutex_lock(&dev->mutex);
	if (dev->mm) {
		r = -EBUSY;
		goto out;
	}
	/*
	 * Hold the address space itself, not just the mm_struct: workers
	 * fault guest pages in, and an mm torn down under them (the owner
	 * killed with I/O in flight) would be repopulated behind exit_mmap().
	 * The reference goes at RESET_OWNER or close, as the owner's last
	 * file closes after its mm is released.
	 */
	dev->mm = get_task_mm(current);
	if (!dev->mm) {
		r = -EINVAL;
		goto out;
	}

	worker = kvmx_worker_create(dev);
	if (IS_ERR(worker)) {
		r = PTR_ERR(worker);
		mmput(dev->mm);
		dev->mm = NULL;
		goto out;
	}
	for (i = 0; i < dev->nvqs; i++) {
		rcu_assign_pointer(dev->vqs[i]->worker, worker);
		atomic_inc(&worker->attached_vqs);
	}
out:
	mutex_unlock(&dev->mutex);
	return r;
}

/* Stop kicks on every ring and let queued work finish. dev->mutex held. */
static void kvmx_dev_quiesce(struct kvmx_dev *dev)
{
	struct kvmx_worker *worker;
	unsigned long id;
	unsigned int i;

	for (i = 0; i < dev->nvqs; i++) {
		mutex_lock(&dev->vqs[i]->mutex);
		kvmx_poll_stop(dev->vqs[i]);
		mutex_unlock(&dev->vqs[i]->mutex);
	}
	xa_for_each(&dev->workers, id, worker)
		kvmx_worker_flush(worker);
}

/**
 * kvmx_dev_stop - stop taking kicks and wait for running handlers
 * @dev: the device
 */
void kvmx_dev_stop(struct kvmx_dev *dev)
{
	mutex_lock(&dev->mutex);
	kvmx_dev_quiesce(dev);
	mutex_unlock(&dev->mutex);
}
EXPORT_SYMBOL_GPL(kvmx_dev_stop);

/* Back to the state of a fresh open; every ring must be stopped. */
static void kvmx_dev_reset(struct kvmx_dev *dev)
{
	struct kvmx_worker *worker;
	unsigned long id;
	unsigned int i;

	lockdep_assert_held(&dev->mutex);
	kvmx_dev_quiesce(dev);

	for (i = 0; i < dev->nvqs; i++) {
		struct kvmx_vq *vq = dev->vqs[i];

		mutex_lock(&vq->mutex);
		WARN_ON_ONCE(vq->private_data);
		if (vq->kick)
			fput(vq->kick);
		kvmx_vq_call_flush(vq);
		if (vq->call_ctx)
			eventfd_ctx_put(vq->call_ctx);
		if (vq->error_ctx)
			eventfd_ctx_put(vq->error_ctx);
		RCU_INIT_POINTER(vq->worker, NULL);
		vq->kick = NULL;
		vq->call_ctx = NULL;
		vq->error_ctx = NULL;
		vq->num = 0;
		vq->ring_set = false;
		vq->log_used = false;
		vq->last_avail_idx = 0;
		vq->avail_idx_shadow = 0;
		vq->last_used_idx = 0;
		vq->signalled_used_valid = false;
		vq->broken = false;
		vq->last_error = 0;
		vq->last_fault = KVMX_FAULT_NONE;
		vq->bad_chains = 0;
		vq->busyloop_timeout = 0;
		vq->poll_ns = 0;
		vq->poll_asleep = false;
		vq->poll_work_at = 0;
		vq->acked_features = 0;
		vq->mem = NULL;
		vq->log_all = false;
		vq->log_base = 0;
		vq->log_ctx = NULL;
		mutex_unlock(&vq->mutex);
	}

	/* No ring points at a worker any more: nothing can queue work. */
	synchronize_rcu();
	xa_for_each(&dev->workers, id, worker)
		kvmx_worker_destroy(dev, worker);

	kvfree(dev->mem);
	dev->mem = NULL;
	if (dev->log_ctx)
		eventfd_ctx_put(dev->log_ctx);
	dev->log_ctx = NULL;
	dev->log_base = 0;
	dev->log_base_set = false;
	dev->acked_features = 0;
	if (dev->mm)
		mmput(dev->mm);
	dev->mm = NULL;
}

/**
 * kvmx_dev_cleanup - release everything at close
 * @dev: the device; the caller has stopped every ring
 */
void kvmx_dev_cleanup(struct kvmx_dev *dev)
{
	mutex_lock(&dev->mutex);
	kvmx_dev_reset(dev);
	mutex_unlock(&dev->mutex);
	xa_destroy(&dev->workers);
}
EXPORT_SYMBOL_GPL(kvmx_dev_cleanup);

static void kvmx_dev_update_log(struct kvmx_dev *dev)
{
	bool log_all = (dev->acked_features & (1ULL << VHOST_F_LOG_ALL)) &&
		       dev->log_base_set;
	unsigned int i;

	for (i = 0; i < dev->nvqs; i++) {
		struct kvmx_vq *vq = dev->vqs[i];

		mutex_lock(&vq->mutex);
		vq->acked_features = dev->acked_features;
		vq->log_all = log_all;
		vq->log_base = dev->log_base;
		vq->log_ctx = dev->log_ctx;
		mutex_unlock(&vq->mutex);
	}
}

static long kvmx_set_features(struct kvmx_dev *dev, u64 __user *argp)
{
	u64 features;

	if (copy_from_user(&features, argp, sizeof(features)))
		return -EFAULT;
	if (features & ~dev->device_features)
		return -EOPNOTSUPP;
	dev->acked_features = features;
	kvmx_dev_update_log(dev);
	return 0;
}

static long kvmx_set_mem_table(struct kvmx_dev *dev, struct vhost_memory __user *argp)
{
	struct vhost_memory_region *regions;
	struct kvmx_memtable *mt, *old;
	struct vhost_memory hdr;
	unsigned int i;

	if (copy_from_user(&hdr, argp, sizeof(hdr)))
		return -EFAULT;
	if (hdr.nregions > max_mem_regions)
		return -E2BIG;

	regions = kvmalloc_array(hdr.nregions, sizeof(*regions), GFP_KERNEL);
	if (!regions && hdr.nregions)
		return -ENOMEM;
	if (copy_from_user(regions, argp->regions, array_size(hdr.nregions, sizeof(*regions)))) {
		kvfree(regions);
		return -EFAULT;
	}
	mt = kvmx_memtable_build(regions, hdr.nregions);
	kvfree(regions);
	if (IS_ERR(mt))
		return PTR_ERR(mt);
	for (i = 0; i < mt->nregions; i++) {
		if (!access_ok(u64_to_user_ptr(mt->regions[i].uaddr), mt->regions[i].size)) {
			kvfree(mt);
			return -EFAULT;
		}
	}

	/* Each ring switches under its mutex: no request sees two tables. */
	old = dev->mem;
	dev->mem = mt;
	for (i = 0; i < dev->nvqs; i++) {
		mutex_lock(&dev->vqs[i]->mutex);
		dev->vqs[i]->mem = mt;
		mutex_unlock(&dev->vqs[i]->mutex);
	}
	kvfree(old);
	return 0;
}

static long kvmx_set_log_fd(struct kvmx_dev *dev, int __user *argp)
{
	struct eventfd_ctx *ctx = NULL, *old;
	int fd;

	if (get_user(fd, argp))
		return -EFAULT;
	if (fd != VHOST_FILE_UNBIND) {
		ctx = eventfd_ctx_fdget(fd);
		if (IS_ERR(ctx))
			return PTR_ERR(ctx);
	}
	old = dev->log_ctx;
	dev->log_ctx = ctx;
	kvmx_dev_update_log(dev);
	if (old)
		eventfd_ctx_put(old);
	return 0;
}

static long kvmx_new_worker(struct kvmx_dev *dev, struct vhost_worker_state __user *argp)
{
	struct vhost_worker_state state = {};
	struct kvmx_worker *worker;

	worker = kvmx_worker_create(dev);
	if (IS_ERR(worker))
		return PTR_ERR(worker);
	state.worker_id = worker->id;
	if (copy_to_user(argp, &state, sizeof(state))) {
		kvmx_worker_destroy(dev, worker);
		return -EFAULT;
	}
	return 0;
}

static long kvmx_free_worker(struct kvmx_dev *dev, struct vhost_worker_state __user *argp)
{
	struct vhost_worker_state state;
	struct kvmx_worker *worker;

	if (copy_from_user(&state, argp, sizeof(state)))
		return -EFAULT;
	worker = xa_load(&dev->workers, state.worker_id);
	if (!worker)
		return -ENODEV;
	if (atomic_read(&worker->attached_vqs))
		return -EBUSY;
	kvmx_worker_destroy(dev, worker);
	return 0;
}

/* dev->mutex held; @vq->mutex not. */
static void kvmx_vq_attach_worker(struct kvmx_vq *vq, struct kvmx_worker *worker)
{
	struct kvmx_worker *old;

	mutex_lock(&vq->mutex);
	old = rcu_dereference_protected(vq->worker, lockdep_is_held(&vq->mutex));
	if (old == worker) {
		mutex_unlock(&vq->mutex);
		return;
	}
	atomic_inc(&worker->attached_vqs);
	rcu_assign_pointer(vq->worker, worker);
	mutex_unlock(&vq->mutex);

	if (old) {
		/* Work queued on the old worker runs before it may be freed. */
		synchronize_rcu();
		kvmx_worker_flush(old);
		atomic_dec(&old->attached_vqs);
	}
}

static long kvmx_attach_worker(struct kvmx_dev *dev, struct kvmx_vq *vq,
			       struct vhost_vring_worker __user *argp)
{
	struct kvmx_worker *worker;
	struct vhost_vring_worker w;

	if (copy_from_user(&w, argp, sizeof(w)))
		return -EFAULT;
	worker = xa_load(&dev->workers, w.worker_id);
	if (!worker)
		return -ENODEV;
	kvmx_vq_attach_worker(vq, worker);
	return 0;
}

/**
 * kvmx_dev_new_vq_worker - give @vq a worker of its own
 * @dev: the device, mutex held, owned by current
 * @vq: one of its virtqueues, mutex not held
 *
 * What NEW_WORKER plus ATTACH_VRING_WORKER do, for devices that want
 * separate threads without asking the VMM (vhost-net's RX and TX).
 *
 * Return: 0 or a negative errno; on error @vq keeps its worker.
 */
int kvmx_dev_new_vq_worker(struct kvmx_dev *dev, struct kvmx_vq *vq)
{
	struct kvmx_worker *worker;

	lockdep_assert_held(&dev->mutex);
	worker = kvmx_worker_create(dev);
	if (IS_ERR(worker))
		return PTR_ERR(worker);
	kvmx_vq_attach_worker(vq, worker);
	return 0;
}
EXPORT_SYMBOL_GPL(kvmx_dev_new_vq_worker);

static int kvmx_get_eventfd(int fd, struct eventfd_ctx **ctx)
{
	*ctx = NULL;
	if (fd == VHOST_FILE_UNBIND)
		return 0;
	*ctx = eventfd_ctx_fdget(fd);
	if (IS_ERR(*ctx)) {
		int err = PTR_ERR(*ctx);

		*ctx = NULL;
		return err;
	}
	return 0;
}

static long kvmx_set_vring_kick(struct kvmx_vq *vq, int fd)
{
	struct eventfd_ctx *ctx;
	struct file *file = NULL;

	if (fd != VHOST_FILE_UNBIND) {
		file = fget(fd);
		if (!file)
			return -EBADF;
		/* Only an eventfd has the single wait queue polling relies on. */
		ctx = eventfd_ctx_fileget(file);
		if (IS_ERR(ctx)) {
			fput(file);
			return -EINVAL;
		}
		eventfd_ctx_put(ctx);
	}
	kvmx_poll_stop(vq);
	if (vq->kick)
		fput(vq->kick);
	vq->kick = file;
	if (vq->private_data)
		kvmx_poll_start(vq);
	return 0;
}

static long kvmx_vring_ioctl(struct kvmx_dev *dev, unsigned int ioctl, void __user *argp)
{
	struct vhost_vring_state state;
	struct vhost_vring_file file;
	struct vhost_vring_addr addr;
	struct eventfd_ctx *ctx;
	struct kvmx_vq *vq;
	u32 index;
	long r = 0;

	switch (ioctl) {
	case VHOST_SET_VRING_NUM:
	case VHOST_SET_VRING_BASE:
	case VHOST_GET_VRING_BASE:
	case VHOST_SET_VRING_ADDR:
	case VHOST_SET_VRING_KICK:
	case VHOST_SET_VRING_CALL:
	case VHOST_SET_VRING_ERR:
	case VHOST_SET_VRING_BUSYLOOP_TIMEOUT:
	case VHOST_GET_VRING_BUSYLOOP_TIMEOUT:
	case VHOST_ATTACH_VRING_WORKER:
	case VHOST_GET_VRING_WORKER:
		break;
	default:
		return -ENOIOCTLCMD;
	}

	/* Every vring argument starts with the ring index. */
	if (get_user(index, (u32 __user *)argp))
		return -EFAULT;
	if (index >= dev->nvqs)
		return -ENOBUFS;
	vq = dev->vqs[array_index_nospec(index, dev->nvqs)];

	if (ioctl == VHOST_ATTACH_VRING_WORKER)
		return kvmx_attach_worker(dev, vq, argp);

	mutex_lock(&vq->mutex);
	switch (ioctl) {
	case VHOST_SET_VRING_NUM:
		if (copy_from_user(&state, argp, sizeof(state))) {
			r = -EFAULT;
		} else if (vq->private_data) {
			r = -EBUSY;
		} else if (!state.num || state.num > KVMX_MAX_RING_NUM ||
			   (state.num & (state.num - 1))) {
			r = -EINVAL;
		} else {
			vq->num = state.num;
			vq->broken = false;
		}
		break;
	case VHOST_SET_VRING_BASE:
		if (copy_from_user(&state, argp, sizeof(state))) {
			r = -EFAULT;
		} else if (vq->private_data) {
			r = -EBUSY;
		} else if (state.num > 0xffff) {
			r = -EINVAL;
		} else {
			vq->last_avail_idx = state.num;
			vq->avail_idx_shadow = state.num;
			vq->last_used_idx = state.num;
			vq->signalled_used_valid = false;
			vq->broken = false;
		}
		break;
	case VHOST_GET_VRING_BASE:
		state.index = index;
		state.num = vq->last_avail_idx;
		if (copy_to_user(argp, &state, sizeof(state)))
			r = -EFAULT;
		break;
	case VHOST_SET_VRING_ADDR:
		if (copy_from_user(&addr, argp, sizeof(addr))) {
			r = -EFAULT;
			break;
		}
		if (addr.flags & ~(1U << VHOST_VRING_F_LOG)) {
			r = -EOPNOTSUPP;
			break;
		}
		if (!vq->num || (addr.desc_user_addr & 15) ||
		    (addr.avail_user_addr & 1) || (addr.used_user_addr & 3) ||
		    ((addr.flags & (1U << VHOST_VRING_F_LOG)) && (addr.log_guest_addr & 3))) {
			r = -EINVAL;
			break;
		}
		vq->desc_uaddr = addr.desc_user_addr;
		vq->avail_uaddr = addr.avail_user_addr;
		vq->used_uaddr = addr.used_user_addr;
		if (!kvmx_ring_access_ok(vq)) {
			vq->ring_set = false;
			r = -EFAULT;
			break;
		}
		vq->log_used = addr.flags & (1U << VHOST_VRING_F_LOG);
		vq->used_log_gpa = addr.log_guest_addr;
		vq->ring_set = true;
		break;
	case VHOST_SET_VRING_KICK:
		if (copy_from_user(&file, argp, sizeof(file)))
			r = -EFAULT;
		else
			r = kvmx_set_vring_kick(vq, file.fd);
		break;
	case VHOST_SET_VRING_CALL:
	case VHOST_SET_VRING_ERR:
		if (copy_from_user(&file, argp, sizeof(file))) {
			r = -EFAULT;
			break;
		}
		r = kvmx_get_eventfd(file.fd, &ctx);
		if (r)
			break;
		if (ioctl == VHOST_SET_VRING_CALL) {
			kvmx_vq_call_flush(vq);
			swap(ctx, vq->call_ctx);
		} else {
			swap(ctx, vq->error_ctx);
		}
		if (ctx)
			eventfd_ctx_put(ctx);
		break;
	case VHOST_SET_VRING_BUSYLOOP_TIMEOUT:
		if (copy_from_user(&state, argp, sizeof(state)))
			r = -EFAULT;
		else
			vq->busyloop_timeout = state.num;
		break;
	case VHOST_GET_VRING_BUSYLOOP_TIMEOUT:
		state.index = index;
		state.num = vq->busyloop_timeout;
		if (copy_to_user(argp, &state, sizeof(state)))
			r = -EFAULT;
		break;
	case VHOST_GET_VRING_WORKER: {
		struct vhost_vring_worker w = { .index = index };
		struct kvmx_worker *worker = kvmx_vq_worker(vq);

		if (!worker) {
			r = -EINVAL;
			break;
		}
		w.worker_id = worker->id;
		if (copy_to_user(argp, &w, sizeof(w)))
			r = -EFAULT;
		break;
	}
	}
	mutex_unlock(&vq->mutex);
	return r;
}

/**
 * kvmx_dev_ioctl - the vhost ioctls every kvmx device shares
 * @dev: the device
 * @ioctl: the command
 * @argp: its argument
 *
 * Devices handle their own ioctls first and pass the rest here. A device
 * with backends stops them before passing VHOST_RESET_OWNER on.
 *
 * Return: 0 or a negative errno; -ENOIOCTLCMD for an unknown command.
 */
long kvmx_dev_ioctl(struct kvmx_dev *dev, unsigned int ioctl, void __user *argp)
{
	unsigned int i;
	u64 val;
	long r;

	if (ioctl == VHOST_SET_OWNER)
		return kvmx_set_owner(dev);

	mutex_lock(&dev->mutex);
	r = kvmx_dev_check_owner(dev);
	if (r)
		goto out;

	switch (ioctl) {
	case VHOST_GET_FEATURES:
		val = dev->device_features;
		r = copy_to_user(argp, &val, sizeof(val)) ? -EFAULT : 0;
		break;
	case VHOST_SET_FEATURES:
		r = kvmx_set_features(dev, argp);
		break;
	case VHOST_GET_BACKEND_FEATURES:
		val = 0;
		r = copy_to_user(argp, &val, sizeof(val)) ? -EFAULT : 0;
		break;
	case VHOST_SET_BACKEND_FEATURES:
		if (copy_from_user(&val, argp, sizeof(val)))
			r = -EFAULT;
		else
			r = val ? -EOPNOTSUPP : 0;
		break;
	case VHOST_RESET_OWNER:
		/* Devices start rings under dev->mutex: this cannot race. */
		for (i = 0; i < dev->nvqs; i++) {
			if (dev->vqs[i]->private_data)
				r = -EBUSY;
		}
		if (!r)
			kvmx_dev_reset(dev);
		break;
	case VHOST_SET_MEM_TABLE:
		r = kvmx_set_mem_table(dev, argp);
		break;
	case VHOST_SET_LOG_BASE:
		if (copy_from_user(&val, argp, sizeof(val))) {
			r = -EFAULT;
			break;
		}
		dev->log_base = val;
		dev->log_base_set = true;
		kvmx_dev_update_log(dev);
		break;
	case VHOST_SET_LOG_FD:
		r = kvmx_set_log_fd(dev, argp);
		break;
	case VHOST_NEW_WORKER:
		r = kvmx_new_worker(dev, argp);
		break;
	case VHOST_FREE_WORKER:
		r = kvmx_free_worker(dev, argp);
		break;
	default:
		r = kvmx_vring_ioctl(dev, ioctl, argp);
		break;
	}
out:
	mutex_unlock(&dev->mutex);
	return r;
}
EXPORT_SYMBOL_GPL(kvmx_dev_ioctl);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("kvmx developers");
MODULE_DESCRIPTION("kvmx virtqueue core: shared vhost ring, memory and worker engine for kvmx devices");
