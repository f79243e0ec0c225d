// SPDX-License-Identifier: GPL-2.0
/*
 * /dev/kvmx-vhost-test: a loopback device for driving the kvmx virtqueue
 * core from userspace, without a VM.
 *
 * Each chain is echoed: its readable bytes are copied into its writable
 * part. That exercises every core path a real device uses (chain walk,
 * guest memory reads and writes, used ring, notifications, dirty log,
 * workers) while the expected result stays trivial to check.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/fs.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/nospec.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#include "kvmx_vhost.h"

#define ECHO_WEIGHT	64	/* chains per round before other queues run */
#define ECHO_BOUNCE	PAGE_SIZE

#define ECHO_FEATURES	KVMX_CORE_FEATURES

struct echo_queue {
	struct kvmx_vq vq;
	void *bounce;		/* guest-to-guest copies go through here */
	u64 chains;
	u64 bytes;
};

struct echo_dev {
	struct kvmx_dev dev;
	struct echo_queue queues[KVMX_VHOST_TEST_NVQS];
	struct kvmx_vq *vqs[KVMX_VHOST_TEST_NVQS];
};

/* Copy the chain's readable bytes into its writable part. */
static ssize_t echo_chain(struct echo_queue *q, const struct kvmx_chain *chain)
{
	struct iov_iter from, to;
	size_t total = min(chain->out_len, chain->in_len), done = 0;

	kvmx_chain_out_iter(chain, &from);
	kvmx_chain_in_iter(chain, &to);
	while (done < total) {
		size_t n = min_t(size_t, total - done, ECHO_BOUNCE);

		if (copy_from_iter(q->bounce, n, &from) != n)
			return -EFAULT;
		if (copy_to_iter(q->bounce, n, &to) != n)
			return -EFAULT;
		done += n;
	}
	return done;
}

static void echo_handle_kick(struct kvmx_vq *vq)
{
	struct echo_queue *q = container_of(vq, struct echo_queue, vq);
	unsigned int budget = vq->dev->weight;
	bool used = false;

	kvmx_vq_disable_notify(vq);
	for (;;) {
		struct kvmx_chain chain = {};
		ssize_t len;
		int r;

		r = kvmx_vq_get_chain(vq, &chain);
		if (r < 0)
			break;
		if (!r) {
			if (kvmx_vq_enable_notify(vq)) {
				kvmx_vq_disable_notify(vq);
				continue;
			}
			break;
		}

		len = echo_chain(q, &chain);
		if (len < 0) {
			/* The VMM unmapped memory the table still names. */
			kvmx_vq_fail(vq, len, KVMX_FAULT_ADDR);
			break;
		}
		if (kvmx_vq_log_write(vq, &chain, len))
			break;
		if (kvmx_vq_add_used(vq, chain.head, len))
			break;
		used = true;
		q->chains++;
		q->bytes += len;

		if (!--budget) {
			/* Yield to the other rings on this worker; come back. */
			kvmx_vq_queue_work(vq);
			break;
		}
	}
	if (used)
		kvmx_vq_signal(vq);
}

static const kvmx_handle_kick_t echo_handlers[KVMX_VHOST_TEST_NVQS] = {
	echo_handle_kick, echo_handle_kick,
};

static int echo_open(struct inode *inode, struct file *file)
{
	struct echo_dev *e;
	unsigned int i;

	e = kvzalloc(sizeof(*e), GFP_KERNEL_ACCOUNT);
	if (!e)
		return -ENOMEM;
	for (i = 0; i < KVMX_VHOST_TEST_NVQS; i++) {
		e->queues[i].bounce = kmalloc(ECHO_BOUNCE, GFP_KERNEL_ACCOUNT);
		if (!e->queues[i].bounce)
			goto nomem;
		e->vqs[i] = &e->queues[i].vq;
	}
	kvmx_dev_init(&e->dev, "kvmx-vhost-test", e->vqs, KVMX_VHOST_TEST_NVQS,
		      echo_handlers, ECHO_FEATURES, ECHO_WEIGHT);
	file->private_data = e;
	return 0;

nomem:
	while (i--)
		kfree(e->queues[i].bounce);
	kvfree(e);
	return -ENOMEM;
}

static void echo_stop_all(struct echo_dev *e)
{
	unsigned int i;

	for (i = 0; i < KVMX_VHOST_TEST_NVQS; i++) {
		mutex_lock(&e->queues[i].vq.mutex);
		kvmx_vq_stop(&e->queues[i].vq);
		mutex_unlock(&e->queues[i].vq.mutex);
	}
}

static int echo_release(struct inode *inode, struct file *file)
{
	struct echo_dev *e = file->private_data;
	unsigned int i;

	echo_stop_all(e);
	kvmx_dev_stop(&e->dev);
	kvmx_dev_cleanup(&e->dev);
	for (i = 0; i < KVMX_VHOST_TEST_NVQS; i++)
		kfree(e->queues[i].bounce);
	kvfree(e);
	return 0;
}

/*
 * Start every ring that is fully set up; refuse if none is. dev->mutex is
 * held so a concurrent RESET_OWNER cannot find a ring half started.
 */
static long echo_run(struct echo_dev *e, int run)
{
	unsigned int i, started = 0;

	lockdep_assert_held(&e->dev.mutex);
	if (run != 0 && run != 1)
		return -EINVAL;
	if (!run) {
		echo_stop_all(e);
		return 0;
	}
	for (i = 0; i < KVMX_VHOST_TEST_NVQS; i++) {
		struct echo_queue *q = &e->queues[i];

		mutex_lock(&q->vq.mutex);
		if (q->vq.private_data || !kvmx_vq_start(&q->vq, q))
			started++;
		mutex_unlock(&q->vq.mutex);
	}
	return started ? 0 : -EINVAL;
}

static long echo_get_stats(struct echo_dev *e,
			   struct kvmx_vhost_test_stats __user *argp)
{
	struct kvmx_vhost_test_stats stats;
	struct echo_queue *q;

	if (copy_from_user(&stats, argp, sizeof(stats)))
		return -EFAULT;
	if (stats.index >= KVMX_VHOST_TEST_NVQS)
		return -ENOBUFS;
	q = &e->queues[array_index_nospec(stats.index, KVMX_VHOST_TEST_NVQS)];

	mutex_lock(&q->vq.mutex);
	stats.broken = q->vq.broken;
	stats.chains = q->chains;
	stats.bytes = q->bytes;
	stats.bad_chains = q->vq.bad_chains;
	stats.last_error = q->vq.last_error;
	stats.last_fault = q->vq.last_fault;
	mutex_unlock(&q->vq.mutex);

	return copy_to_user(argp, &stats, sizeof(stats)) ? -EFAULT : 0;
}

static long echo_ioctl(struct file *file, unsigned int ioctl, unsigned long arg)
{
	struct echo_dev *e = file->private_data;
	void __user *argp = (void __user *)arg;
	int run;
	long r;

	switch (ioctl) {
	case VHOST_RESET_OWNER:
		/* The core refuses to reset running rings: stop ours first. */
		mutex_lock(&e->dev.mutex);
		r = kvmx_dev_check_owner(&e->dev);
		if (!r)
			echo_stop_all(e);
		mutex_unlock(&e->dev.mutex);
		return r ? r : kvmx_dev_ioctl(&e->dev, ioctl, argp);
	case KVMX_VHOST_TEST_RUN:
		if (get_user(run, (int __user *)argp))
			return -EFAULT;
		mutex_lock(&e->dev.mutex);
		r = kvmx_dev_check_owner(&e->dev);
		if (!r)
			r = echo_run(e, run);
		mutex_unlock(&e->dev.mutex);
		return r;
	case KVMX_VHOST_TEST_GET_STATS:
		mutex_lock(&e->dev.mutex);
		r = kvmx_dev_check_owner(&e->dev);
		mutex_unlock(&e->dev.mutex);
		return r ? r : echo_get_stats(e, argp);
	default:
		return kvmx_dev_ioctl(&e->dev, ioctl, argp);
	}
}

static const struct file_operations echo_fops = {
	.owner = THIS_MODULE,
	.open = echo_open,
	.release = echo_release,
	.unlocked_ioctl = echo_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.llseek = noop_llseek,
};

static struct miscdevice echo_misc = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "kvmx-vhost-test",
	.fops = &echo_fops,
	.mode = 0600,
};

module_misc_device(echo_misc);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("kvmx developers");
MODULE_DESCRIPTION("kvmx loopback vhost device (/dev/kvmx-vhost-test) for testing the virtqueue core");
