// SPDX-License-Identifier: GPL-2.0
/*
 * vhost-net for the kvmx selftests: host network side and guest rings.
 */
#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <linux/if_tun.h>
#include <linux/vhost.h>
#include <linux/virtio_config.h>

#include "net.h"
#include "util.h"

#ifndef PACKET_IGNORE_OUTGOING
#define PACKET_IGNORE_OUTGOING	23
#endif

static const uint8_t mac_dst[ETH_ALEN] = { 0x02, 0x6b, 0x76, 0x6d, 0x78, 0x01 };
static const uint8_t mac_src[ETH_ALEN] = { 0x02, 0x6b, 0x76, 0x6d, 0x78, 0x02 };

static int write_str(const char *path, const char *val)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC), ret = 0;

	if (fd < 0)
		return -errno;
	if (write(fd, val, strlen(val)) < 0)
		ret = -errno;
	close(fd);
	return ret;
}

int net_ns_enter(void)
{
	if (unshare(CLONE_NEWNET)) {
		int err = -errno;

		fprintf(stderr, "# net: unshare(CLONE_NEWNET): %s (expected to run as root)\n",
			strerror(errno));
		return err;
	}
	/* A kernel without IPv6 has nothing to silence. */
	write_str("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1");
	write_str("/proc/sys/net/ipv6/conf/all/disable_ipv6", "1");
	return 0;
}

int tap_open(const char *name, int flags, int vnet_hdr_sz)
{
	struct ifreq ifr = { 0 };
	int fd, err;

	fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		err = -errno;
		fprintf(stderr, "# net: cannot open /dev/net/tun: %s (is tun loaded?)\n",
			strerror(errno));
		return err;
	}
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	ifr.ifr_flags = flags;
	if (ioctl(fd, TUNSETIFF, &ifr)) {
		err = -errno;
		fprintf(stderr, "# net: TUNSETIFF %s flags %#x: %s\n", name, flags,
			strerror(errno));
		close(fd);
		return err;
	}
	if (vnet_hdr_sz && ioctl(fd, TUNSETVNETHDRSZ, &vnet_hdr_sz)) {
		err = -errno;
		fprintf(stderr, "# net: TUNSETVNETHDRSZ %d: %s\n", vnet_hdr_sz, strerror(errno));
		close(fd);
		return err;
	}
	return fd;
}

int link_ifindex(const char *name)
{
	unsigned int idx = if_nametoindex(name);

	return idx ? (int)idx : -errno;
}

static int link_ioctl(const char *name, unsigned long req, struct ifreq *ifr)
{
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), ret = 0;

	if (s < 0)
		return -errno;
	snprintf(ifr->ifr_name, sizeof(ifr->ifr_name), "%s", name);
	if (ioctl(s, req, ifr))
		ret = -errno;
	close(s);
	return ret;
}

int link_set_up(const char *name, bool up)
{
	struct ifreq ifr = { 0 };
	int ret;

	ret = link_ioctl(name, SIOCGIFFLAGS, &ifr);
	if (!ret) {
		if (up)
			ifr.ifr_flags |= IFF_UP;
		else
			ifr.ifr_flags &= ~IFF_UP;
		ret = link_ioctl(name, SIOCSIFFLAGS, &ifr);
	}
	if (ret)
		fprintf(stderr, "# net: setting %s %s: %s\n", name, up ? "up" : "down",
			strerror(-ret));
	return ret;
}

int link_set_mtu(const char *name, int mtu)
{
	struct ifreq ifr = { .ifr_mtu = mtu };
	int ret = link_ioctl(name, SIOCSIFMTU, &ifr);

	if (ret)
		fprintf(stderr, "# net: MTU %d on %s: %s\n", mtu, name, strerror(-ret));
	return ret;
}

int pkt_open(int ifindex)
{
	struct sockaddr_ll sll = {
		.sll_family = AF_PACKET,
		.sll_protocol = htons(ETH_P_ALL),
		.sll_ifindex = ifindex,
	};
	int one = 1, rcvbuf = 8 << 20, fd, err;

	fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, htons(ETH_P_ALL));
	if (fd < 0) {
		err = -errno;
		fprintf(stderr, "# net: AF_PACKET socket: %s\n", strerror(errno));
		return err;
	}
	/* Room for a ring's worth of 64 KiB frames, so none is dropped here. */
	setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf));
	if (setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof(one)) ||
	    bind(fd, (struct sockaddr *)&sll, sizeof(sll))) {
		err = -errno;
		fprintf(stderr, "# net: packet socket on ifindex %d: %s\n", ifindex,
			strerror(errno));
		close(fd);
		return err;
	}
	/* Frames from before the bind, from any interface. */
	pkt_drain(fd);
	return fd;
}

int pkt_send(int fd, const void *frame, size_t len)
{
	ssize_t n = send(fd, frame, len, 0);

	if (n < 0) {
		int err = -errno;

		fprintf(stderr, "# net: sending a %zu-byte frame on the tap: %s\n", len,
			strerror(errno));
		return err;
	}
	if ((size_t)n != len) {
		fprintf(stderr, "# net: sent %zd of a %zu-byte frame\n", n, len);
		return -EIO;
	}
	return 0;
}

ssize_t pkt_recv(int fd, void *buf, size_t cap, int timeout_ms)
{
	int64_t deadline = now_ms() + timeout_ms;
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	ssize_t n;
	int left;

	for (;;) {
		n = recv(fd, buf, cap, MSG_TRUNC | MSG_DONTWAIT);
		if (n >= 0)
			return n;
		if (errno != EAGAIN && errno != EINTR)
			return -errno;
		left = deadline - now_ms();
		if (left < 0)
			return 0;
		if (poll(&pfd, 1, left) < 0 && errno != EINTR)
			return -errno;
	}
}

int pkt_drain(int fd)
{
	uint8_t byte;
	int n = 0;

	while (recv(fd, &byte, 1, MSG_TRUNC | MSG_DONTWAIT) >= 0)
		n++;
	return n;
}

/* ---- frames ---- */

static void eth_header(uint8_t *buf, uint16_t type)
{
	memcpy(buf, mac_dst, ETH_ALEN);
	memcpy(buf + ETH_ALEN, mac_src, ETH_ALEN);
	buf[12] = type >> 8;
	buf[13] = type & 0xff;
}

static void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = v >> 24;
	p[1] = v >> 16;
	p[2] = v >> 8;
	p[3] = v;
}

void net_frame(uint8_t *buf, size_t len, uint32_t seq, uint64_t *rng)
{
	eth_header(buf, NET_TEST_ETHERTYPE);
	put_be32(buf + ETH_HLEN, seq);
	rng_fill(rng, buf + ETH_HLEN + 4, len - ETH_HLEN - 4);
}

static uint16_t ip_csum(const uint8_t *p, size_t len)
{
	uint32_t sum = 0;
	size_t i;

	for (i = 0; i + 1 < len; i += 2)
		sum += (p[i] << 8) | p[i + 1];
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return ~sum;
}

#define UDP_PAYLOAD_OFF	(ETH_HLEN + 20 + 8)

void net_frame_udp(uint8_t *buf, size_t len, uint32_t seq, uint16_t sport, uint64_t *rng)
{
	uint8_t *ip = buf + ETH_HLEN, *udp = ip + 20;
	uint16_t csum;

	eth_header(buf, ETH_P_IP);
	memset(ip, 0, 28);
	ip[0] = 0x45;
	ip[2] = (len - ETH_HLEN) >> 8;
	ip[3] = (len - ETH_HLEN) & 0xff;
	ip[8] = 64;
	ip[9] = IPPROTO_UDP;
	ip[12] = 10; ip[15] = 1;	/* 10.0.0.1 -> 10.0.0.2 */
	ip[16] = 10; ip[19] = 2;
	csum = ip_csum(ip, 20);
	ip[10] = csum >> 8;
	ip[11] = csum & 0xff;
	udp[0] = sport >> 8;
	udp[1] = sport & 0xff;
	udp[3] = 9;			/* discard */
	udp[4] = (len - ETH_HLEN - 20) >> 8;
	udp[5] = (len - ETH_HLEN - 20) & 0xff;
	put_be32(buf + UDP_PAYLOAD_OFF, seq);
	rng_fill(rng, buf + UDP_PAYLOAD_OFF + 4, len - UDP_PAYLOAD_OFF - 4);
}

uint32_t net_frame_seq(const uint8_t *buf, size_t len)
{
	size_t off;

	if (len < ETH_HLEN + 4)
		return ~0U;
	if (buf[12] == (NET_TEST_ETHERTYPE >> 8) && buf[13] == (NET_TEST_ETHERTYPE & 0xff))
		off = ETH_HLEN;
	else if (buf[12] == 0x08 && buf[13] == 0x00 && len >= UDP_PAYLOAD_OFF + 4)
		off = UDP_PAYLOAD_OFF;
	else
		return ~0U;
	return (uint32_t)buf[off] << 24 | buf[off + 1] << 16 | buf[off + 2] << 8 | buf[off + 3];
}

long net_mismatch(const uint8_t *a, const uint8_t *b, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (a[i] != b[i])
			return i;
	return -1;
}

/* ---- guest side ---- */

int net_dev_open(struct net_dev *nd, const char *path, struct guest_mem *mem,
		 unsigned int num, uint64_t features)
{
	int ret, i;

	memset(nd, 0, sizeof(*nd));
	nd->mem = mem;
	nd->features = features;
	nd->mergeable = features & (1ULL << VIRTIO_NET_F_MRG_RXBUF);
	nd->hdr_len = features & ((1ULL << VIRTIO_NET_F_MRG_RXBUF) |
				  (1ULL << VIRTIO_F_VERSION_1)) ?
		      NET_HDR_LEN : NET_HDR_LEN_LEGACY;
	ret = vhost_open(&nd->dev, path, NET_NVQS);
	if (ret)
		return ret;
	nd->rx_gpa = calloc(num, sizeof(*nd->rx_gpa));
	nd->rx_size = calloc(num, sizeof(*nd->rx_size));
	if (!nd->rx_gpa || !nd->rx_size) {
		ret = -ENOMEM;
		goto fail;
	}
	ret = vhost_set_owner(&nd->dev);
	if (!ret)
		ret = vhost_set_features(&nd->dev, features);
	if (!ret)
		ret = vhost_set_mem_table(&nd->dev, mem);
	for (i = 0; !ret && i < NET_NVQS; i++) {
		ret = vring_drv_init(&nd->vq[i], mem, num);
		if (!ret)
			ret = vhost_setup_vq(&nd->dev, i, &nd->vq[i], 0, 0);
	}
	if (!ret)
		return 0;
fail:
	net_dev_close(nd);
	return ret;
}

void net_dev_close(struct net_dev *nd)
{
	int i;

	vhost_close(&nd->dev);
	for (i = 0; i < NET_NVQS; i++)
		vring_drv_destroy(&nd->vq[i]);
	free(nd->rx_gpa);
	free(nd->rx_size);
	nd->rx_gpa = NULL;
	nd->rx_size = NULL;
}

int net_set_backend(const struct net_dev *nd, unsigned int idx, int fd)
{
	struct vhost_vring_file f = { .index = idx, .fd = fd };

	return vhost_ioctl(&nd->dev, VHOST_NET_SET_BACKEND, &f);
}

int net_attach(const struct net_dev *nd, int fd)
{
	int i, ret;

	for (i = 0; i < NET_NVQS; i++) {
		ret = net_set_backend(nd, i, fd);
		if (ret) {
			fprintf(stderr,
				"# net: VHOST_NET_SET_BACKEND vq %d fd %d: expected success, got %s\n",
				i, fd, strerror(-ret));
			return ret;
		}
	}
	return 0;
}

int net_ring_reset(struct net_dev *nd, unsigned int idx, uint16_t at, int fd)
{
	int ret = net_set_backend(nd, idx, -1);

	if (ret) {
		fprintf(stderr, "# net: detaching vq %u: %s\n", idx, strerror(-ret));
		return ret;
	}
	vring_restart_at(&nd->vq[idx], at);
	ret = vhost_set_vring_base(&nd->dev, idx, at);
	if (ret)
		return ret;
	ret = net_set_backend(nd, idx, fd);
	if (ret)
		fprintf(stderr, "# net: re-attaching vq %u: %s\n", idx, strerror(-ret));
	return ret;
}

int net_tx_queue(struct net_dev *nd, const struct virtio_net_hdr_mrg_rxbuf *hdr,
		 const void *frame, size_t len, const uint32_t *cuts, unsigned int ncuts,
		 bool indirect)
{
	return net_tx_queue_at(nd, 0, hdr, frame, len, cuts, ncuts, indirect);
}

int net_tx_queue_at(struct net_dev *nd, uint64_t at, const struct virtio_net_hdr_mrg_rxbuf *hdr,
		    const void *frame, size_t len, const uint32_t *cuts, unsigned int ncuts,
		    bool indirect)
{
	static const struct virtio_net_hdr_mrg_rxbuf zero;
	struct vring_seg segs[VRING_INDIRECT_MAX];
	uint64_t total = nd->hdr_len + len, gpa, prev = 0;
	unsigned int i;
	int head;

	if (ncuts + 1 > VRING_INDIRECT_MAX) {
		fprintf(stderr, "# net: %u cuts, expected at most %d\n", ncuts,
			VRING_INDIRECT_MAX - 1);
		return -EINVAL;
	}
	gpa = at ? guest_alloc_at(nd->mem, at, total) : guest_alloc(nd->mem, total, 8);
	if (!gpa)
		return -ENOMEM;
	if (guest_write(nd->mem, gpa, hdr ? hdr : &zero, nd->hdr_len) ||
	    guest_write(nd->mem, gpa + nd->hdr_len, frame, len))
		return -EFAULT;
	for (i = 0; i <= ncuts; i++) {
		uint64_t end = i < ncuts ? cuts[i] : total;

		if (end <= prev || end > total) {
			fprintf(stderr,
				"# net: cut %u at %llu, expected ascending inside %llu bytes\n",
				i, (unsigned long long)end, (unsigned long long)total);
			return -EINVAL;
		}
		segs[i].gpa = gpa + prev;
		segs[i].len = end - prev;
		prev = end;
	}
	head = vring_add_chain(&nd->vq[NET_VQ_TX], segs, ncuts + 1, NULL, 0, indirect);
	if (head >= 0)
		vring_publish(&nd->vq[NET_VQ_TX]);
	return head;
}

int net_rx_post(struct net_dev *nd, unsigned int n, uint32_t size)
{
	struct vring_drv *vr = &nd->vq[NET_VQ_RX];
	uint64_t align = size % GUEST_PAGE_SIZE ? 64 : GUEST_PAGE_SIZE;
	unsigned int i;

	for (i = 0; i < n; i++) {
		struct vring_seg seg = { .len = size };
		int head;

		seg.gpa = guest_alloc(nd->mem, size, align);
		if (!seg.gpa)
			return -ENOMEM;
		head = vring_add_chain(vr, NULL, 0, &seg, 1, false);
		if (head < 0)
			return head;
		nd->rx_gpa[head] = seg.gpa;
		nd->rx_size[head] = size;
	}
	vring_publish(vr);
	return 0;
}

uint64_t net_rx_buf_gpa(const struct net_dev *nd, uint16_t head)
{
	return nd->rx_gpa[head];
}

/* The next used entry of @vr within @timeout_ms: 1, 0 on timeout, -errno. */
static int reap_wait(struct vring_drv *vr, struct vring_used_elem *e, int timeout_ms)
{
	int64_t deadline = now_ms() + timeout_ms;
	struct timespec nap = { .tv_nsec = 100 * 1000 };
	int ret;

	for (;;) {
		ret = vring_reap(vr, e);
		if (ret)
			return ret;
		if (now_ms() > deadline)
			return 0;
		nanosleep(&nap, NULL);
	}
}

int net_rx_reap(struct net_dev *nd, struct net_rx_frame *f, int timeout_ms)
{
	struct vring_drv *vr = &nd->vq[NET_VQ_RX];
	struct vring_used_elem e;
	size_t cap = 0;
	unsigned int i;
	int ret;

	memset(f, 0, sizeof(*f));
	ret = reap_wait(vr, &e, timeout_ms);
	if (ret <= 0)
		return ret;
	f->nbufs = 1;
	for (i = 0; i < f->nbufs; i++) {
		uint32_t skip = i ? 0 : nd->hdr_len;
		uint64_t gpa;

		if (i) {
			ret = reap_wait(vr, &e, timeout_ms);
			if (ret <= 0) {
				fprintf(stderr,
					"# net: expected used entry %u of %u of a merged frame within %d ms\n",
					i + 1, f->nbufs, timeout_ms);
				ret = ret ? ret : -ETIMEDOUT;
				goto fail;
			}
		}
		f->head[i] = e.id;
		f->used_len[i] = e.len;
		if (e.len > nd->rx_size[e.id] || e.len < skip) {
			fprintf(stderr,
				"# net: used entry of head %u says %u bytes, expected %u..%u\n",
				e.id, e.len, skip, nd->rx_size[e.id]);
			ret = -EPROTO;
			goto fail;
		}
		gpa = nd->rx_gpa[e.id];
		if (!i) {
			if (guest_read(nd->mem, gpa, &f->hdr, nd->hdr_len)) {
				ret = -EFAULT;
				goto fail;
			}
			if (nd->mergeable)
				f->nbufs = le16toh(f->hdr.num_buffers);
			if (!f->nbufs || f->nbufs > ARRAY_SIZE(f->head)) {
				fprintf(stderr, "# net: num_buffers %u, expected 1..%zu\n",
					f->nbufs, ARRAY_SIZE(f->head));
				ret = -EPROTO;
				goto fail;
			}
		}
		if (f->len + e.len - skip > cap) {
			uint8_t *p;

			cap = (f->len + e.len - skip) * 2 + 64;
			p = realloc(f->data, cap);
			if (!p) {
				ret = -ENOMEM;
				goto fail;
			}
			f->data = p;
		}
		if (guest_read(nd->mem, gpa + skip, f->data + f->len, e.len - skip)) {
			ret = -EFAULT;
			goto fail;
		}
		f->len += e.len - skip;
	}
	return 1;
fail:
	free(f->data);
	f->data = NULL;
	return ret;
}

int net_wait_all_used(struct net_dev *nd, unsigned int idx, int timeout_ms)
{
	return vring_wait_used_idx(&nd->vq[idx], nd->vq[idx].published, timeout_ms);
}

int net_tx_reap(struct net_dev *nd, uint32_t *lens, unsigned int max)
{
	struct vring_used_elem e;
	unsigned int n = 0;
	int ret;

	while ((ret = vring_reap(&nd->vq[NET_VQ_TX], &e)) > 0) {
		if (n < max)
			lens[n] = e.len;
		n++;
	}
	return ret < 0 ? ret : (int)n;
}
