/* SPDX-License-Identifier: GPL-2.0 */
/*
 * vhost-net for the kvmx selftests: the host's network side (a private
 * network namespace, a tap, an AF_PACKET socket bound to it) and the guest's
 * side of one vhost-net device (an RX and a TX split ring, virtio-net
 * headers, test frames).
 *
 * Direction names follow the guest: TX is guest -> tap, RX is tap -> guest.
 * With the tap attached to the device, the host sees guest TX as frames
 * the tap receives and feeds guest RX by transmitting on the tap, so both
 * directions go through the packet socket, never through the tap fd (whose
 * read and write are the device's own data path).
 *
 * Every function returns 0 (or a non-negative value) on success and a
 * negative errno on failure, and says on stderr what it expected, except
 * net_set_backend(), which is silent because tests expect errors from it.
 */
#ifndef KVMX_SELFTEST_NET_H
#define KVMX_SELFTEST_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <linux/virtio_net.h>

#include "guest.h"
#include "vhost.h"
#include "vring.h"

/* Virtqueue indices of a vhost-net device: one queue pair per device fd. */
#define NET_VQ_RX		0
#define NET_VQ_TX		1
#define NET_NVQS		2

/* Header size with MRG_RXBUF or VERSION_1, and without either. */
#define NET_HDR_LEN		sizeof(struct virtio_net_hdr_mrg_rxbuf)
#define NET_HDR_LEN_LEGACY	sizeof(struct virtio_net_hdr)

#define ETH_FRAME_MIN		60	/* without FCS */
#define ETH_FRAME_MAX		1514
/* The largest frame a tap carries: its maximum MTU plus the header. */
#define TAP_FRAME_MAX		65535
/* Test frames' EtherType (IEEE local experimental): no stack parses them. */
#define NET_TEST_ETHERTYPE	0x88b5

/* ---- host side ---- */

/*
 * Move the calling process into a network namespace of its own, with IPv6
 * off by default there so that no interface the test creates sends router
 * solicitations or MLD reports into a ring under test.
 */
int net_ns_enter(void);

/*
 * Open a queue of tap @name (created if absent) with @flags (IFF_TAP and
 * the like); returns the fd. @vnet_hdr_sz, when non-zero, is set with
 * TUNSETVNETHDRSZ.
 */
int tap_open(const char *name, int flags, int vnet_hdr_sz);
int link_ifindex(const char *name);
int link_set_up(const char *name, bool up);
int link_set_mtu(const char *name, int mtu);

/*
 * A raw packet socket bound to @ifindex that sees every frame the
 * interface receives and none it sends.
 */
int pkt_open(int ifindex);
/* Transmit @frame on the interface: the device's RX ring gets it. */
int pkt_send(int fd, const void *frame, size_t len);
/*
 * Wait up to @timeout_ms for a frame; copy up to @cap bytes of it. Returns
 * its full length, 0 on timeout, -errno on error.
 */
ssize_t pkt_recv(int fd, void *buf, size_t cap, int timeout_ms);
/* Frames waiting on the socket, consumed. */
int pkt_drain(int fd);

/* ---- frames ---- */

/*
 * A test frame of @len bytes (at least 14 + 4): unicast to a MAC nobody
 * owns, NET_TEST_ETHERTYPE, then @seq (big-endian) and bytes drawn from
 * @rng. net_frame_udp() makes an IPv4/UDP frame instead, so that the tap's
 * flow hash spreads frames of different ports over its queues.
 */
void net_frame(uint8_t *buf, size_t len, uint32_t seq, uint64_t *rng);
void net_frame_udp(uint8_t *buf, size_t len, uint32_t seq, uint16_t sport, uint64_t *rng);
/* The sequence number of a frame made by either; ~0 if too short. */
uint32_t net_frame_seq(const uint8_t *buf, size_t len);
/* Index of the first differing byte, or -1 if equal. */
long net_mismatch(const uint8_t *a, const uint8_t *b, size_t len);

/* ---- guest side of one device ---- */

struct net_dev {
	struct vhost_dev dev;
	struct vring_drv vq[NET_NVQS];
	struct guest_mem *mem;
	uint64_t features;
	/* virtio-net header the guest writes in TX and finds in RX buffers */
	unsigned int hdr_len;
	bool mergeable;
	/* the buffer behind each RX head, for reaping */
	uint64_t *rx_gpa;
	uint32_t *rx_size;
};

/*
 * Open @path, take ownership, ack @features, describe @mem, and wire both
 * rings (@num entries each) with their eventfds. No backend yet.
 */
int net_dev_open(struct net_dev *nd, const char *path, struct guest_mem *mem,
		 unsigned int num, uint64_t features);
void net_dev_close(struct net_dev *nd);

/* VHOST_NET_SET_BACKEND of @fd (-1 detaches) on ring @idx; silent. */
int net_set_backend(const struct net_dev *nd, unsigned int idx, int fd);
/* Both rings to @fd, loudly. */
int net_attach(const struct net_dev *nd, int fd);

/*
 * Detach ring @idx, forget what it held, restart it at index @at on both
 * sides (ring memory and VHOST_SET_VRING_BASE) and attach @fd again: how a
 * VMM revives a ring the device stopped on.
 */
int net_ring_reset(struct net_dev *nd, unsigned int idx, uint16_t at, int fd);

/*
 * Queue one TX chain: the header @hdr (hdr_len bytes; zeros when NULL) and
 * the frame, laid out in fresh guest memory and cut into descriptors at
 * the @ncuts byte offsets @cuts of header+frame (ascending, none at 0 or
 * at the end); @indirect puts the chain in an indirect table. Returns the
 * head; the chain is published but not kicked.
 */
int net_tx_queue(struct net_dev *nd, const struct virtio_net_hdr_mrg_rxbuf *hdr,
		 const void *frame, size_t len, const uint32_t *cuts, unsigned int ncuts,
		 bool indirect);
/* The same with header+frame placed at @at (guest_alloc_at()), 0 = anywhere. */
int net_tx_queue_at(struct net_dev *nd, uint64_t at, const struct virtio_net_hdr_mrg_rxbuf *hdr,
		    const void *frame, size_t len, const uint32_t *cuts, unsigned int ncuts,
		    bool indirect);

/* Post @n RX buffers of @size bytes each, one descriptor each; publish. */
int net_rx_post(struct net_dev *nd, unsigned int n, uint32_t size);

/* One frame as the device put it in the RX ring. */
struct net_rx_frame {
	struct virtio_net_hdr_mrg_rxbuf hdr;
	uint8_t *data;		/* the frame after the header (malloc'ed) */
	size_t len;
	unsigned int nbufs;	/* used entries it took */
	uint32_t used_len[64];	/* their lengths, the first nbufs */
	uint16_t head[64];	/* and heads */
};

/*
 * Reap one frame from the RX ring, waiting up to @timeout_ms: 1 with *@f
 * filled (free f->data), 0 on timeout, -errno when the device broke the
 * protocol (with a message). With MRG_RXBUF the frame takes num_buffers
 * used entries, which must all arrive.
 */
int net_rx_reap(struct net_dev *nd, struct net_rx_frame *f, int timeout_ms);

/* Wait for used->idx of ring @idx to reach the published avail index. */
int net_wait_all_used(struct net_dev *nd, unsigned int idx, int timeout_ms);
/* Reap used entries of the TX ring; how many (their lengths checked by caller). */
int net_tx_reap(struct net_dev *nd, uint32_t *lens, unsigned int max);

/* Guest-physical address of the buffer behind RX head @head. */
uint64_t net_rx_buf_gpa(const struct net_dev *nd, uint16_t head);

#endif /* KVMX_SELFTEST_NET_H */
