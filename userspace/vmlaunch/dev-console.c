// SPDX-License-Identifier: GPL-2.0
/*
 * virtio-console (virtio 1.2, section 5.3) with a single port and no
 * VIRTIO_CONSOLE_F_MULTIPORT: receiveq 0 carries bytes from vmlaunch's
 * stdin to the guest (with --console), transmitq 1 the guest's bytes to
 * stdout. The guest sees it as hvc0.
 *
 * No thread of its own: console traffic is a few bytes at a time, so the
 * main thread's poll loop serves it. The transmit kick eventfd is one of
 * the fds it watches (vm_watch_fd); stdin bytes are pushed into receive
 * buffers by vcon_input(), which the loop retries while the guest has no
 * buffer posted, and the receive kick only wakes the loop for that retry.
 *
 * Lifetimes: the rings are touched only with `lock` held and `active`
 * set. activate/reset run on a vCPU thread under the transport's lock and
 * flip `active` under `lock`, so once reset returns nothing touches guest
 * memory until the next DRIVER_OK. The watched fds belong to the
 * transport and are closed by vcon_destroy(), after the loop has ended.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/virtio_config.h>
#include <linux/virtio_console.h>
#include <linux/virtio_ids.h>

#include "dev-console.h"

#define VCON_RXQ		0
#define VCON_TXQ		1
/* Chains written out before the loop looks at its other fds again. */
#define VCON_BUDGET		64

#define VCON_FEATURES		((1ULL << VIRTIO_F_VERSION_1) |			\
				 (1ULL << VIRTIO_RING_F_INDIRECT_DESC) |	\
				 (1ULL << VIRTIO_RING_F_EVENT_IDX))

struct vcon {
	struct virtio_dev vdev;
	/* Never written: no feature makes any of its fields valid. */
	struct virtio_console_config config;
	pthread_mutex_t lock;
	/* under lock: */
	bool active;
	bool broken;
	struct virtq rx, tx;
	struct virtq_chain rxc, txc;
	u64 rx_bytes, tx_bytes, tx_lost;
};

static struct vcon *to_vcon(struct virtio_dev *vdev)
{
	return (struct vcon *)vdev;
}

static void vcon_read_config(struct virtio_dev *vdev, u32 off, void *data, u32 len)
{
	memcpy(data, (u8 *)&to_vcon(vdev)->config + off, len);
}

static void vcon_broken(struct vcon *vc)
{
	vc->broken = true;
	virtio_needs_reset(&vc->vdev);
}

/*
 * stdout is shared with the UART and may be a pipe nobody reads or a
 * closed one: a write error loses the rest of the chain, it never stops
 * the guest.
 */
static void vcon_write_out(struct vcon *vc, const struct virtq_chain *c)
{
	unsigned int i;

	for (i = 0; i < c->nout; i++) {
		const u8 *p = c->iov[i].iov_base;
		size_t left = c->iov[i].iov_len;

		while (left) {
			ssize_t n = write(STDOUT_FILENO, p, left);

			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				vc->tx_lost += left;
				break;
			}
			p += n;
			left -= n;
			vc->tx_bytes += n;
		}
	}
}

/* Main thread: the guest queued output. */
static void vcon_tx_kick(void *opaque)
{
	struct vcon *vc = opaque;
	unsigned int done = 0;
	bool pushed = false;
	int r;

	eventfd_drain(vc->vdev.vq[VCON_TXQ].kick_fd);
	pthread_mutex_lock(&vc->lock);
	if (!vc->active || vc->broken)
		goto out;
	do {
		virtq_disable_kicks(&vc->tx);
		for (;;) {
			if (done == VCON_BUDGET) {
				/* Come back after the loop's other fds. */
				eventfd_signal(vc->vdev.vq[VCON_TXQ].kick_fd);
				goto notify;
			}
			r = virtq_pop(&vc->tx, &vc->txc);
			if (!r)
				break;
			if (r < 0) {
				vcon_broken(vc);
				goto notify;
			}
			if (vc->txc.nin)
				pr_guest_once("%s: transmit buffer the device may write: ignored",
					      vc->vdev.name);
			vcon_write_out(vc, &vc->txc);
			virtq_push(&vc->tx, vc->txc.head, 0);
			pushed = true;
			done++;
		}
	} while (virtq_enable_kicks(&vc->tx));
notify:
	if (pushed && virtq_should_notify(&vc->tx))
		virtio_notify_used(&vc->vdev, VCON_TXQ);
out:
	pthread_mutex_unlock(&vc->lock);
}

/* Main thread: new receive buffers; the loop retries vcon_input() next. */
static void vcon_rx_kick(void *opaque)
{
	struct vcon *vc = opaque;

	eventfd_drain(vc->vdev.vq[VCON_RXQ].kick_fd);
}

size_t vcon_input(struct vcon *vc, const u8 *buf, size_t len)
{
	struct virtq_chain *c = &vc->rxc;
	unsigned int rounds = 0;
	bool pushed = false;
	size_t done = 0;
	int r;

	pthread_mutex_lock(&vc->lock);
	if (!vc->active || vc->broken)
		goto out;
	/* Bounded: a guest refilling the ring as fast as we take must not hold us. */
	while (done < len && rounds++ < VCON_BUDGET) {
		size_t n;

		r = virtq_pop(&vc->rx, c);
		if (!r) {
			/* Ask for a kick; if buffers came meanwhile, use them now. */
			if (virtq_enable_kicks(&vc->rx))
				continue;
			break;
		}
		if (r < 0) {
			vcon_broken(vc);
			break;
		}
		if (c->nout) {
			pr_guest_once("%s: receive buffer the device may not write", vc->vdev.name);
			virtq_push(&vc->rx, c->head, 0);
			pushed = true;
			continue;
		}
		n = iov_copy_to(c->iov, c->nin, 0, buf + done, len - done);
		virtq_push(&vc->rx, c->head, n);
		pushed = true;
		done += n;
	}
	vc->rx_bytes += done;
	if (pushed && virtq_should_notify(&vc->rx))
		virtio_notify_used(&vc->vdev, VCON_RXQ);
out:
	pthread_mutex_unlock(&vc->lock);
	return done;
}

static int vcon_activate(struct virtio_dev *vdev)
{
	struct vcon *vc = to_vcon(vdev);
	int r;

	if (!vdev->vq[VCON_RXQ].ready || !vdev->vq[VCON_TXQ].ready) {
		pr_guest_once("%s: DRIVER_OK without both queues ready", vdev->name);
		return -EINVAL;
	}
	pthread_mutex_lock(&vc->lock);
	r = virtq_init(&vc->rx, vdev->vm, &vdev->vq[VCON_RXQ], vdev->acked);
	if (!r)
		r = virtq_init(&vc->tx, vdev->vm, &vdev->vq[VCON_TXQ], vdev->acked);
	if (!r) {
		vc->active = true;
		vc->broken = false;
	} else {
		pr_guest_once("%s: a queue is misaligned or outside guest memory", vdev->name);
	}
	pthread_mutex_unlock(&vc->lock);
	/* Output queued before DRIVER_OK had its kick already. */
	if (!r)
		eventfd_signal(vdev->vq[VCON_TXQ].kick_fd);
	return r;
}

static void vcon_reset(struct virtio_dev *vdev)
{
	struct vcon *vc = to_vcon(vdev);

	pthread_mutex_lock(&vc->lock);
	vc->active = false;
	pthread_mutex_unlock(&vc->lock);
}

static const struct virtio_dev_ops vcon_ops = {
	.read_config = vcon_read_config,
	.activate = vcon_activate,
	.reset = vcon_reset,
};

struct vcon *vcon_create(struct vm *vm, struct acpi_device_info *info)
{
	struct vcon *vc = calloc(1, sizeof(*vc));
	int r;

	if (!vc)
		return NULL;
	pthread_mutex_init(&vc->lock, NULL);
	vc->vdev.name = "hvc0";
	vc->vdev.vm = vm;
	vc->vdev.device_id = VIRTIO_ID_CONSOLE;
	vc->vdev.features = VCON_FEATURES;
	vc->vdev.config_size = sizeof(vc->config);
	vc->vdev.nqueues = 2;
	vc->vdev.ops = &vcon_ops;

	r = virtio_transport_add(vm, &vc->vdev, info);
	if (r) {
		pr_err("virtio-console: cannot add a virtio device: %s", strerror(-r));
		goto fail;
	}
	r = vm_watch_fd(vm, vc->vdev.vq[VCON_TXQ].kick_fd, vcon_tx_kick, vc);
	if (!r)
		r = vm_watch_fd(vm, vc->vdev.vq[VCON_RXQ].kick_fd, vcon_rx_kick, vc);
	if (r) {
		pr_err("virtio-console: cannot watch its queues: %s", strerror(-r));
		goto fail;
	}
	pr_debug("hvc0: virtio-console, features 0x%llx", (unsigned long long)vc->vdev.features);
	return vc;
fail:
	vcon_destroy(vc);
	return NULL;
}

/* After the vCPUs and the main loop have stopped. */
void vcon_destroy(struct vcon *vc)
{
	if (!vc)
		return;
	pr_debug("hvc0: %llu bytes to the guest, %llu from it, %llu lost",
		 (unsigned long long)vc->rx_bytes, (unsigned long long)vc->tx_bytes,
		 (unsigned long long)vc->tx_lost);
	virtio_transport_remove(&vc->vdev);
	pthread_mutex_destroy(&vc->lock);
	free(vc);
}
