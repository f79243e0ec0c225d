// SPDX-License-Identifier: GPL-2.0
/*
 * virtio-net (virtio 1.2, section 5.1) on a tap device, with one receive
 * and one transmit queue and two backends:
 *
 * - userspace ("user"): a thread owns both virtqueues and the tap fd. A
 *   transmit chain (virtio_net_hdr_v1 + frame) is written to the tap as it
 *   is, with one writev(); a received frame is read with one readv()
 *   straight into a receive chain. The tap does the header work: it is
 *   opened with IFF_VNET_HDR and a 12-byte header (TUNSETVNETHDRSZ), the
 *   layout of a VERSION_1 device's header, so vmlaunch never copies a
 *   payload byte.
 * - vhost ("vhost"): a vhost-net device (/dev/vhost-net, kvmx's
 *   /dev/kvmx-vhost-net, or an fd) serves both virtqueues in the kernel on
 *   the same tap; vmlaunch sets it up at DRIVER_OK and detaches it at
 *   reset. As QEMU does with vhost-net, the guest's 12-byte header goes
 *   through the tap (its vnet header size is the guest's) and the vhost
 *   device is not asked to add or strip one (no VHOST_NET_F_VIRTIO_NET_HDR).
 *
 * Receive buffers. With the userspace backend there is no
 * VIRTIO_NET_F_MRG_RXBUF: a frame must then fit one chain, so the driver
 * posts "big" buffers of about 64 KiB when it accepted GUEST_TSO4/6 and
 * 1.5 KiB ones otherwise, and the tap never hands over a frame larger than
 * what the driver accepted, because TUNSETOFFLOAD follows the driver's
 * GUEST_* features. One readv() per frame into guest memory then suffices,
 * with no bounce buffer and no copy; the price is guest memory held in
 * half-empty buffers, which does not matter for a test launcher. Mergeable
 * buffers would need a copy through a 64 KiB buffer here (a frame spread
 * over chains that are only known after reading it). The kernel's vhost-net
 * does mergeable buffers itself, so a vhost NIC also offers MRG_RXBUF.
 *
 * Offloads, the same for both backends when the tap can do them:
 * CSUM/HOST_TSO4/HOST_TSO6 (the tap takes partial checksums and GSO frames
 * from the guest) and GUEST_CSUM/GUEST_TSO4/GUEST_TSO6 (the tap may hand
 * them to the guest, as TUNSETOFFLOAD allows).
 *
 * Lifetimes (userspace backend): the thread lives from net_create() to
 * net_destroy() and touches guest memory only with `lock` held and
 * `active` set; reset clears `active` under the lock, after which nothing
 * touches guest memory until the next activation. A receive chain taken
 * from the ring but not filled yet (the tap was empty) stays `rx_held`
 * until a frame arrives or the device is reset.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <net/if.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <linux/if_tun.h>
#include <linux/vhost.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ids.h>
#include <linux/virtio_net.h>

#include "dev-net.h"
#include "vhost.h"

#define NET_RXQ			0
#define NET_TXQ			1
#define NET_HDR_LEN		sizeof(struct virtio_net_hdr_v1)
/* Frames moved per direction before the thread looks at its fds again. */
#define NET_BUDGET		64

#define NET_OFFLOADS		((1ULL << VIRTIO_NET_F_CSUM) |			\
				 (1ULL << VIRTIO_NET_F_HOST_TSO4) |		\
				 (1ULL << VIRTIO_NET_F_HOST_TSO6) |		\
				 (1ULL << VIRTIO_NET_F_GUEST_CSUM) |		\
				 (1ULL << VIRTIO_NET_F_GUEST_TSO4) |		\
				 (1ULL << VIRTIO_NET_F_GUEST_TSO6))
/* What the device itself does, whoever serves the rings. */
#define NET_DEVICE_FEATURES	((1ULL << VIRTIO_NET_F_MAC) | NET_OFFLOADS)
#define NET_FEATURES		((1ULL << VIRTIO_F_VERSION_1) |			\
				 (1ULL << VIRTIO_RING_F_INDIRECT_DESC) |	\
				 (1ULL << VIRTIO_RING_F_EVENT_IDX) |		\
				 NET_DEVICE_FEATURES)

enum rx_state {
	RX_TAP_EMPTY,		/* wait for the tap */
	RX_NO_BUFFERS,		/* wait for the driver's kick */
	RX_BUDGET,		/* more to do at once */
};

struct net_dev {
	struct virtio_dev vdev;
	char name[8];
	const struct net_config *cfg;
	int tap_fd;
	struct virtio_net_config config;

	/* userspace backend */
	pthread_t thread;
	bool thread_started;
	int stop_fd;
	pthread_mutex_t lock;
	/* under lock: */
	bool active;
	bool broken;
	bool tap_dead;		/* the tap failed: stop polling it */
	bool rx_held;		/* rxc was taken from the ring, not used yet */
	struct virtq rx, tx;
	struct virtq_chain rxc, txc;
	u64 rx_frames, rx_bytes, rx_dropped;
	u64 tx_frames, tx_bytes, tx_dropped;

	/* vhost backend */
	struct vhost vhost;
	char vhost_label[24];	/* "vhostfd=N", the vhost's name in messages */
	int err_fd;		/* signalled when the kernel finds a ring broken */
};

static struct net_dev *to_net(struct virtio_dev *vdev)
{
	return (struct net_dev *)vdev;
}

static void net_read_config(struct virtio_dev *vdev, u32 off, void *data, u32 len)
{
	memcpy(data, (u8 *)&to_net(vdev)->config + off, len);
}

/* Let the tap hand over what the driver accepted, and nothing more. */
static int net_set_offloads(struct net_dev *n, u64 acked)
{
	unsigned int off = 0;

	if (acked & (1ULL << VIRTIO_NET_F_GUEST_CSUM)) {
		off |= TUN_F_CSUM;
		if (acked & (1ULL << VIRTIO_NET_F_GUEST_TSO4))
			off |= TUN_F_TSO4;
		if (acked & (1ULL << VIRTIO_NET_F_GUEST_TSO6))
			off |= TUN_F_TSO6;
	}
	if (ioctl(n->tap_fd, TUNSETOFFLOAD, off) < 0) {
		int r = -errno;

		pr_err("%s: TUNSETOFFLOAD 0x%x: %s", n->name, off, strerror(-r));
		return r;
	}
	return 0;
}

static bool queues_ready(struct net_dev *n)
{
	if (n->vdev.vq[NET_RXQ].ready && n->vdev.vq[NET_TXQ].ready)
		return true;
	pr_guest_once("%s: DRIVER_OK without both queues ready", n->name);
	return false;
}

/* ---- userspace backend ----------------------------------------------------- */

static void net_broken(struct net_dev *n)
{
	n->broken = true;
	virtio_needs_reset(&n->vdev);
}

/* A tap error other than "nothing to read": say it once, stop using the tap. */
static void net_tap_failed(struct net_dev *n, const char *op, int err)
{
	if (!n->tap_dead)
		pr_err("%s: %s on the tap: %s; the NIC stops receiving", n->name, op,
		       strerror(err));
	n->tap_dead = true;
}

static void net_tx_one(struct net_dev *n, const struct virtq_chain *c)
{
	ssize_t r;

	if (c->nin || c->out_len < NET_HDR_LEN) {
		pr_guest_once("%s: transmit chain without a header or with writable buffers",
			      n->name);
		n->tx_dropped++;
		return;
	}
	r = writev(n->tap_fd, c->iov, c->nout);
	if (r < 0) {
		/* EINVAL: a header the tap refuses (bad GSO fields): the guest's. */
		if (errno == EINVAL)
			pr_guest_once("%s: the tap refused a frame's virtio-net header", n->name);
		n->tx_dropped++;
		return;
	}
	n->tx_frames++;
	n->tx_bytes += c->out_len - NET_HDR_LEN;
}

/* Send what the driver queued; true if the budget ran out first. */
static bool net_tx(struct net_dev *n)
{
	unsigned int done = 0;
	bool pushed = false, more = false;
	int r;

	do {
		virtq_disable_kicks(&n->tx);
		for (;;) {
			if (done == NET_BUDGET) {
				more = true;
				goto out;
			}
			r = virtq_pop(&n->tx, &n->txc);
			if (!r)
				break;
			if (r < 0) {
				net_broken(n);
				return false;
			}
			net_tx_one(n, &n->txc);
			virtq_push(&n->tx, n->txc.head, 0);
			pushed = true;
			done++;
		}
	} while (virtq_enable_kicks(&n->tx));
out:
	if (pushed && virtq_should_notify(&n->tx))
		virtio_notify_used(&n->vdev, NET_TXQ);
	return more;
}

/* Fill receive buffers from the tap. */
static enum rx_state net_rx(struct net_dev *n)
{
	struct virtq_chain *c = &n->rxc;
	enum rx_state state = RX_BUDGET;
	unsigned int done = 0;
	bool pushed = false;

	virtq_disable_kicks(&n->rx);
	while (done < NET_BUDGET) {
		const __le16 one = htole16(1);
		ssize_t len;
		int r;

		if (!n->rx_held) {
			r = virtq_pop(&n->rx, c);
			if (!r) {
				if (virtq_enable_kicks(&n->rx)) {
					virtq_disable_kicks(&n->rx);
					continue;
				}
				state = RX_NO_BUFFERS;
				break;
			}
			if (r < 0) {
				net_broken(n);
				state = RX_NO_BUFFERS;
				break;
			}
			if (c->nout || c->in_len < NET_HDR_LEN) {
				pr_guest_once("%s: receive chain too small or not writable", n->name);
				virtq_push(&n->rx, c->head, 0);
				pushed = true;
				done++;
				continue;
			}
			n->rx_held = true;
		}
		if (n->tap_dead) {
			state = RX_NO_BUFFERS;
			break;
		}
		len = readv(n->tap_fd, c->iov, c->nin);
		if (len < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				net_tap_failed(n, "read", errno);
			state = errno == EAGAIN ? RX_TAP_EMPTY : RX_NO_BUFFERS;
			break;
		}
		done++;
		/*
		 * The tap returns the frame's full length even when it had to
		 * cut it: a frame that did not fit is dropped and the chain
		 * kept for the next one.
		 */
		if ((size_t)len < NET_HDR_LEN || (u64)len > c->in_len) {
			n->rx_dropped++;
			continue;
		}
		/* The tap leaves num_buffers alone; without MRG_RXBUF it is 1. */
		iov_copy_to(c->iov, c->nin, offsetof(struct virtio_net_hdr_v1, num_buffers),
			    &one, sizeof(one));
		virtq_push(&n->rx, c->head, len);
		n->rx_held = false;
		pushed = true;
		n->rx_frames++;
		n->rx_bytes += len - NET_HDR_LEN;
	}
	if (pushed && virtq_should_notify(&n->rx))
		virtio_notify_used(&n->vdev, NET_RXQ);
	return state;
}

static void *net_thread(void *arg)
{
	struct net_dev *n = arg;
	int rx_kick = n->vdev.vq[NET_RXQ].kick_fd, tx_kick = n->vdev.vq[NET_TXQ].kick_fd;
	bool more = false, want_tap = false;

	for (;;) {
		struct pollfd fds[] = {
			{ .fd = n->stop_fd, .events = POLLIN },
			{ .fd = rx_kick, .events = POLLIN },
			{ .fd = tx_kick, .events = POLLIN },
			{ .fd = want_tap ? n->tap_fd : -1, .events = POLLIN },
		};

		if (poll(fds, ARRAY_SIZE(fds), more ? 0 : -1) < 0) {
			if (errno == EINTR)
				continue;
			pr_err("%s: poll: %s", n->name, strerror(errno));
			vm_request_stop(n->vdev.vm, VMLAUNCH_EXIT_ERROR);
			break;
		}
		if (fds[0].revents)
			break;
		if (fds[1].revents & POLLIN)
			eventfd_drain(rx_kick);
		if (fds[2].revents & POLLIN)
			eventfd_drain(tx_kick);

		pthread_mutex_lock(&n->lock);
		more = false;
		want_tap = false;
		if (n->active && !n->broken) {
			more = net_tx(n);
			switch (n->broken ? RX_NO_BUFFERS : net_rx(n)) {
			case RX_BUDGET:
				more = true;
				break;
			case RX_TAP_EMPTY:
				want_tap = true;
				break;
			case RX_NO_BUFFERS:
				break;
			}
		}
		pthread_mutex_unlock(&n->lock);
	}
	return NULL;
}

static int net_user_activate(struct virtio_dev *vdev)
{
	struct net_dev *n = to_net(vdev);
	int r;

	if (!queues_ready(n))
		return -EINVAL;
	r = net_set_offloads(n, vdev->acked);
	if (r)
		return r;
	pthread_mutex_lock(&n->lock);
	r = virtq_init(&n->rx, vdev->vm, &vdev->vq[NET_RXQ], vdev->acked);
	if (!r)
		r = virtq_init(&n->tx, vdev->vm, &vdev->vq[NET_TXQ], vdev->acked);
	if (!r) {
		n->active = true;
		n->broken = false;
		n->rx_held = false;
	} else {
		pr_guest_once("%s: a queue is misaligned or outside guest memory", n->name);
	}
	pthread_mutex_unlock(&n->lock);
	/* Buffers and frames queued before DRIVER_OK had their kicks already. */
	if (!r) {
		eventfd_signal(vdev->vq[NET_RXQ].kick_fd);
		eventfd_signal(vdev->vq[NET_TXQ].kick_fd);
	}
	return r;
}

/* The thread holds the lock whenever it touches the rings: after this, it won't. */
static void net_user_reset(struct virtio_dev *vdev)
{
	struct net_dev *n = to_net(vdev);

	pthread_mutex_lock(&n->lock);
	n->active = false;
	n->rx_held = false;
	pthread_mutex_unlock(&n->lock);
}

static const struct virtio_dev_ops net_user_ops = {
	.read_config = net_read_config,
	.activate = net_user_activate,
	.reset = net_user_reset,
};

static int net_user_init(struct net_dev *n)
{
	int r;

	n->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (n->stop_fd < 0)
		return -errno;
	r = pthread_create(&n->thread, NULL, net_thread, n);
	if (r)
		return -r;
	n->thread_started = true;
	pthread_setname_np(n->thread, n->name);
	return 0;
}

/* ---- vhost backend --------------------------------------------------------------- */

static void net_vhost_detach(struct net_dev *n)
{
	unsigned int i;

	/* Detaching waits for the workers and stops the rings. */
	for (i = 0; i < 2; i++) {
		struct vhost_vring_file backend = { .index = i, .fd = -1 };

		if (ioctl(n->vhost.fd, VHOST_NET_SET_BACKEND, &backend) < 0)
			pr_err("%s: VHOST_NET_SET_BACKEND %u -1: %s", n->name, i, strerror(errno));
	}
}

static int net_vhost_activate(struct virtio_dev *vdev)
{
	struct net_dev *n = to_net(vdev);
	unsigned int i;
	int r;

	if (!queues_ready(n))
		return -EINVAL;
	r = net_set_offloads(n, vdev->acked);
	if (r)
		return r;
	/* The offloads are the tap's business; vhost-net knows only ring features. */
	r = vhost_set_features(&n->vhost, vdev->acked & n->vhost.features);
	for (i = 0; !r && i < 2; i++)
		r = vhost_setup_vring(&n->vhost, vdev->vm, i, &vdev->vq[i], vdev->acked,
				      vdev->vq[i].call_fd, n->err_fd);
	if (r)
		return r;
	for (i = 0; i < 2; i++) {
		struct vhost_vring_file backend = { .index = i, .fd = n->tap_fd };

		if (ioctl(n->vhost.fd, VHOST_NET_SET_BACKEND, &backend) < 0) {
			r = -errno;
			pr_err("%s: VHOST_NET_SET_BACKEND %u: %s", n->name, i, strerror(-r));
			if (i)
				net_vhost_detach(n);
			return r;
		}
	}
	eventfd_signal(vdev->vq[NET_RXQ].kick_fd);
	eventfd_signal(vdev->vq[NET_TXQ].kick_fd);
	return 0;
}

static void net_vhost_reset(struct virtio_dev *vdev)
{
	net_vhost_detach(to_net(vdev));
}

/* Main thread: the kernel stopped a ring because the guest broke a rule. */
static void net_vhost_ring_error(void *opaque)
{
	struct net_dev *n = opaque;

	eventfd_drain(n->err_fd);
	virtio_needs_reset(&n->vdev);
}

static const struct virtio_dev_ops net_vhost_ops = {
	.read_config = net_read_config,
	.activate = net_vhost_activate,
	.reset = net_vhost_reset,
};

static int net_vhost_init(struct net_dev *n)
{
	const u64 needed = 1ULL << VIRTIO_F_VERSION_1;
	int r;

	if (n->cfg->vhost_path) {
		r = vhost_open(&n->vhost, n->cfg->vhost_path, n->vdev.vm);
	} else {
		snprintf(n->vhost_label, sizeof(n->vhost_label), "vhostfd=%d", n->cfg->vhost_fd);
		r = vhost_init_fd(&n->vhost, n->cfg->vhost_fd, n->vhost_label, n->vdev.vm);
	}
	if (r)
		return r;
	if ((n->vhost.features & needed) != needed) {
		pr_err("%s: %s does not offer VIRTIO_F_VERSION_1", n->name, n->vhost.path);
		return -EOPNOTSUPP;
	}
	n->err_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (n->err_fd < 0)
		return -errno;
	r = vm_watch_fd(n->vdev.vm, n->err_fd, net_vhost_ring_error, n);
	if (r)
		return r;
	/* Ring features as vhost offers them; the rest is the device's own. */
	n->vdev.features = (n->vdev.features | (1ULL << VIRTIO_NET_F_MRG_RXBUF)) &
			   (n->vhost.features | NET_DEVICE_FEATURES);
	/* A vhost worker raises the interrupt without telling us. */
	n->vdev.isr_always_used = true;
	return 0;
}

/* ---- device ---------------------------------------------------------------------- */

static int net_open_tap(struct net_dev *n)
{
	const struct net_config *cfg = n->cfg;
	int hdr_len = NET_HDR_LEN, r;
	struct ifreq ifr;

	memset(&ifr, 0, sizeof(ifr));
	if (cfg->tap) {
		n->tap_fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK);
		if (n->tap_fd < 0) {
			r = -errno;
			pr_err("%s: /dev/net/tun: %s%s", n->name, strerror(-r),
			       r == -ENOENT ? " (is the tun module loaded?)" : "");
			return r;
		}
		ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
		snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", cfg->tap);
		if (ioctl(n->tap_fd, TUNSETIFF, &ifr) < 0) {
			r = -errno;
			pr_err("--net tap=%s: TUNSETIFF: %s", cfg->tap, strerror(-r));
			return r;
		}
	} else {
		n->tap_fd = cfg->tap_fd;
		if (ioctl(n->tap_fd, TUNGETIFF, &ifr) < 0) {
			r = -errno;
			pr_err("--net tapfd=%d: not a tap (TUNGETIFF: %s)", cfg->tap_fd,
			       strerror(-r));
			return r;
		}
		if (!(ifr.ifr_flags & IFF_TAP) || !(ifr.ifr_flags & IFF_NO_PI) ||
		    !(ifr.ifr_flags & IFF_VNET_HDR)) {
			pr_err("--net tapfd=%d: needs a tap opened with IFF_TAP, IFF_NO_PI and IFF_VNET_HDR",
			       cfg->tap_fd);
			return -EINVAL;
		}
		if (fcntl(n->tap_fd, F_SETFL, fcntl(n->tap_fd, F_GETFL) | O_NONBLOCK) < 0 ||
		    fcntl(n->tap_fd, F_SETFD, FD_CLOEXEC) < 0)
			return -errno;
	}
	if (ioctl(n->tap_fd, TUNSETVNETHDRSZ, &hdr_len) < 0) {
		r = -errno;
		pr_err("%s: TUNSETVNETHDRSZ %d: %s", n->name, hdr_len, strerror(-r));
		return r;
	}
	/* Offer the offloads only if the tap takes them; none until DRIVER_OK. */
	if (ioctl(n->tap_fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6) < 0) {
		pr_warn("%s: the tap has no checksum/TSO offloads: %s", n->name, strerror(errno));
		n->vdev.features &= ~NET_OFFLOADS;
	}
	if (ioctl(n->tap_fd, TUNSETOFFLOAD, 0) < 0)
		return -errno;
	return 0;
}

struct net_dev *net_create(struct vm *vm, const struct net_config *cfg, unsigned int index,
			   struct acpi_device_info *info)
{
	struct net_dev *n = calloc(1, sizeof(*n));
	int r;

	if (!n)
		return NULL;
	n->cfg = cfg;
	n->tap_fd = n->stop_fd = n->vhost.fd = n->err_fd = -1;
	snprintf(n->name, sizeof(n->name), "net%u", index);
	pthread_mutex_init(&n->lock, NULL);

	n->vdev.name = n->name;
	n->vdev.vm = vm;
	n->vdev.device_id = VIRTIO_ID_NET;
	n->vdev.features = NET_FEATURES;
	n->vdev.config_size = sizeof(n->config);
	n->vdev.nqueues = 2;
	n->vdev.ops = cfg->backend == NET_VHOST ? &net_vhost_ops : &net_user_ops;
	memcpy(n->config.mac, cfg->mac, sizeof(n->config.mac));

	r = net_open_tap(n);
	if (r)
		goto fail;
	r = virtio_transport_add(vm, &n->vdev, info);
	if (r) {
		pr_err("%s: cannot add a virtio device: %s", n->name, strerror(-r));
		goto fail;
	}
	r = cfg->backend == NET_VHOST ? net_vhost_init(n) : net_user_init(n);
	if (r)
		goto fail;
	pr_debug("%s: tap %s, mac %02x:%02x:%02x:%02x:%02x:%02x, %s backend, features 0x%llx",
		 n->name, cfg->tap ? cfg->tap : "(fd)", cfg->mac[0], cfg->mac[1], cfg->mac[2],
		 cfg->mac[3], cfg->mac[4], cfg->mac[5],
		 cfg->backend == NET_VHOST ? n->vhost.path : "user",
		 (unsigned long long)n->vdev.features);
	return n;
fail:
	net_destroy(n);
	return NULL;
}

/* After the vCPUs have stopped. */
void net_destroy(struct net_dev *n)
{
	if (!n)
		return;
	virtio_transport_reset(&n->vdev);
	if (n->thread_started) {
		eventfd_signal(n->stop_fd);
		pthread_join(n->thread, NULL);
		pr_debug("%s: rx %llu frames %llu bytes %llu dropped, tx %llu frames %llu bytes %llu dropped",
			 n->name, (unsigned long long)n->rx_frames,
			 (unsigned long long)n->rx_bytes, (unsigned long long)n->rx_dropped,
			 (unsigned long long)n->tx_frames, (unsigned long long)n->tx_bytes,
			 (unsigned long long)n->tx_dropped);
	}
	virtio_transport_remove(&n->vdev);
	vhost_close(&n->vhost);
	if (n->err_fd >= 0)
		close(n->err_fd);
	if (n->stop_fd >= 0)
		close(n->stop_fd);
	if (n->tap_fd >= 0)
		close(n->tap_fd);
	pthread_mutex_destroy(&n->lock);
	free(n);
}
