// SPDX-License-Identifier: GPL-2.0
/*
 * net_bench: drive a vhost-net device node (/dev/vhost-net or
 * /dev/kvmx-vhost-net, same ABI) the way a virtio-net guest driver does,
 * against a tap in a network namespace of its own, and report packets per
 * second or round trips. The process plays guest, VMM and the host's side
 * of the tap, with the selftest library's guest memory, split rings and
 * vhost plumbing.
 *
 * Cases (--case):
 *  tx  the guest thread keeps the TX ring full of --len byte frames; the
 *      rate is what the tap received, from its own counters (rtnetlink
 *      link stats), so nothing on the host side spends CPU on counting.
 *  rx  the host's side transmits --len byte frames on the tap (AF_PACKET,
 *      qdisc bypassed, SEND_BATCH per sendmmsg()), keeping at most --window
 *      of them between it and the guest so tun's queue never overflows; the
 *      guest keeps the RX ring full of buffers and counts the frames in used
 *      entries. Both sides are one thread, so the pipeline is that thread
 *      and the device's RX worker, as tx is the guest thread and the TX
 *      worker, and no sender can run ahead by sleeping less.
 *  rr  one frame out through TX, an echo thread sends it back on the tap,
 *      the guest waits for it on RX: round trips per second and latency.
 *
 * The guest side behaves like Linux's virtio_net with EVENT_IDX: it kicks
 * only when avail_event asks, sleeps in poll() on the call eventfd with
 * used_event armed, and reaps TX completions lazily.
 *
 * The result is one line of key=value pairs on stdout; see usage().
 */
#include <errno.h>
#include <getopt.h>
#include <ifaddrs.h>
#include <inttypes.h>
#include <net/if.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <linux/if_ether.h>
#include <linux/if_link.h>
#include <linux/if_packet.h>
#include <linux/if_tun.h>
#include <linux/vhost.h>
#include <linux/virtio_config.h>
#include <linux/virtio_net.h>
#include <linux/virtio_ring.h>

#include "cli.h"
#include "guest.h"
#include "net.h"
#include "vhost.h"
#include "vring.h"

const char bench_prog[] = "net_bench";

#define F(bit)		(1ULL << (bit))
/*
 * What a VMM acks on a vhost-net fd for a Linux virtio_net guest on a
 * vnet_hdr tap. Not ANY_LAYOUT: on vhost-net its bit is
 * VHOST_NET_F_VIRTIO_NET_HDR, "the device adds the header, not the tap".
 */
#define F_DRIVER	(F(VIRTIO_F_VERSION_1) | F(VIRTIO_RING_F_INDIRECT_DESC) | \
			 F(VIRTIO_RING_F_EVENT_IDX) | F(VIRTIO_NET_F_MRG_RXBUF))

#define TAP_NAME	"nbench0"
/* RX buffer size: a full Ethernet frame and the header in one buffer. */
#define RX_BUF		2048
#define MAX_RING	4096U
/* Poll at least this often, so the clock is looked at. */
#define POLL_SLICE_MS	100
/* Frames per sendmmsg() of the RX sender. */
#define SEND_BATCH	32

enum bench_case { CASE_TX, CASE_RX, CASE_RR };

struct opts {
	const char *dev;
	enum bench_case bcase;
	unsigned int len;
	unsigned int ring;
	unsigned int window;
	double runtime;
	double ramp;
	unsigned int busyloop_us;
	bool verbose;
};

static struct opts o;
static struct guest_mem mem;
static struct net_dev nd;
static int tap_fd, ifindex;
static uint8_t frame[ETH_FRAME_MAX];

/* Shared with the helper thread. */
static atomic_bool stop;
static char thread_err[256];

/* Guest-side counters. */
static uint64_t kicks, wakeups;

static void __attribute__((noreturn, format(printf, 1, 2))) die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "net_bench: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

/* The driver side of EVENT_IDX kick suppression. */
static void publish(unsigned int idx)
{
	struct vring_drv *vr = &nd.vq[idx];
	uint16_t old = vr->published;

	if (vr->avail_idx == old)
		return;
	vring_publish(vr);
	if (vring_kick_needed(vr, old, true)) {
		vhost_kick(&nd.dev, idx);
		kicks++;
	}
}

/*
 * Sleep until ring @idx has a used entry past last_used (armed with
 * used_event first, as a driver enabling its interrupt) or @timeout_ms.
 */
static void wait_used(unsigned int idx, uint16_t want, int timeout_ms)
{
	struct vring_drv *vr = &nd.vq[idx];
	struct pollfd pfd[2] = {
		{ .fd = nd.dev.vq[idx].call, .events = POLLIN },
		{ .fd = nd.dev.vq[idx].err, .events = POLLIN },
	};

	vring_set_used_event(vr, want);
	if ((uint16_t)(vring_used_idx(vr) - vr->last_used) >
	    (uint16_t)(want - vr->last_used))
		return;
	if (poll(pfd, 2, timeout_ms) < 0 && errno != EINTR)
		die("poll: %s", strerror(errno));
	if (pfd[1].revents & POLLIN)
		die("the device broke ring %u (error eventfd)", idx);
	if (pfd[0].revents & POLLIN) {
		eventfd_take(pfd[0].fd);
		wakeups++;
	}
}

/*
 * Busy time of all CPUs so far, in clock ticks (/proc/stat): the device's
 * cost per frame shows in it even where the guest thread bounds the rate.
 */
static uint64_t cpu_busy(void)
{
	unsigned long long v[8] = { 0 };
	FILE *f = fopen("/proc/stat", "r");
	int n;

	if (!f)
		die("cannot open /proc/stat: %s", strerror(errno));
	n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2],
		   &v[3], &v[4], &v[5], &v[6], &v[7]);
	fclose(f);
	if (n != 8)
		die("cannot parse /proc/stat");
	/* user nice system [idle iowait] irq softirq steal */
	return v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
}

static uint64_t busy_start;

/* Link counters of the tap, from rtnetlink in our namespace. */
static void tap_stats(uint64_t *rx_packets, uint64_t *tx_dropped)
{
	struct ifaddrs *ifa, *i;

	if (getifaddrs(&ifa))
		die("getifaddrs: %s", strerror(errno));
	for (i = ifa; i; i = i->ifa_next) {
		const struct rtnl_link_stats *st = i->ifa_data;

		if (!i->ifa_addr || i->ifa_addr->sa_family != AF_PACKET || !st ||
		    strcmp(i->ifa_name, TAP_NAME))
			continue;
		*rx_packets = st->rx_packets;
		*tx_dropped = st->tx_dropped;
		freeifaddrs(ifa);
		return;
	}
	freeifaddrs(ifa);
	die("no link stats for %s", TAP_NAME);
}

/* ---- TX: guest -> tap --------------------------------------------------- */

struct tx_slots {
	uint64_t *gpa;		/* header + frame, written once */
	unsigned int n;
};

static void tx_slots_init(struct tx_slots *s, unsigned int n, size_t len)
{
	static const struct virtio_net_hdr_mrg_rxbuf hdr;
	unsigned int i;

	s->n = n;
	s->gpa = calloc(n, sizeof(*s->gpa));
	if (!s->gpa)
		die("out of memory");
	for (i = 0; i < n; i++) {
		s->gpa[i] = guest_alloc(&mem, nd.hdr_len + len, 64);
		if (!s->gpa[i] ||
		    guest_write(&mem, s->gpa[i], &hdr, nd.hdr_len) ||
		    guest_write(&mem, s->gpa[i] + nd.hdr_len, frame, len))
			die("cannot lay out %u TX buffers of %zu bytes in guest memory", n, len);
	}
}

/* Queue one frame; header and frame in one descriptor (ANY_LAYOUT). */
static void tx_add(const struct tx_slots *s, unsigned int slot, size_t len)
{
	struct vring_seg seg = { s->gpa[slot % s->n], nd.hdr_len + len };

	if (vring_add_chain(&nd.vq[NET_VQ_TX], &seg, 1, NULL, 0, false) < 0)
		die("cannot queue a TX frame");
}

static unsigned int tx_reap(void)
{
	struct vring_used_elem e;
	unsigned int n = 0;
	int r;

	while ((r = vring_reap(&nd.vq[NET_VQ_TX], &e)) == 1)
		n++;
	if (r < 0)
		die("the device returned a bad TX used entry");
	return n;
}

static void run_tx(double *pps, uint64_t *host_pkts)
{
	struct vring_drv *vr = &nd.vq[NET_VQ_TX];
	uint64_t t0, t_meas = 0, t_end, p0 = 0, p1, dummy;
	unsigned int slot = 0;
	struct tx_slots s;
	bool measuring = false;

	tx_slots_init(&s, vr->num, o.len);
	t0 = now_ns();
	t_end = t0 + (uint64_t)((o.ramp + o.runtime) * 1e9);
	for (;;) {
		uint64_t now;

		tx_reap();
		while (vr->num_free)
			tx_add(&s, slot++, o.len);
		publish(NET_VQ_TX);

		now = now_ns();
		if (!measuring && now >= t0 + (uint64_t)(o.ramp * 1e9)) {
			measuring = true;
			t_meas = now;
			busy_start = cpu_busy();
			tap_stats(&p0, &dummy);
		}
		if (now >= t_end)
			break;
		/* Full: sleep until three quarters of it came back. */
		wait_used(NET_VQ_TX, vr->last_used + vr->num * 3 / 4 - 1, POLL_SLICE_MS);
	}
	tap_stats(&p1, &dummy);
	/* 32-bit counters: a difference over seconds is still exact. */
	*host_pkts = (uint32_t)(p1 - p0);
	*pps = *host_pkts / ((now_ns() - t_meas) / 1e9);
}

/* ---- RX: tap -> guest --------------------------------------------------- */

/* The host's side of rx: up to SEND_BATCH frames out on the tap, if the window has room. */
static unsigned int rx_send(int fd, struct mmsghdr *m, uint64_t inflight)
{
	int n;

	if (inflight + SEND_BATCH > o.window)
		return 0;
	n = sendmmsg(fd, m, SEND_BATCH, MSG_DONTWAIT);
	if (n < 0) {
		if (errno == EINTR || errno == ENOBUFS || errno == EAGAIN)
			return 0;
		die("sendmmsg on the tap: %s", strerror(errno));
	}
	return n;
}

static void rx_post(unsigned int n, uint64_t base)
{
	struct vring_drv *vr = &nd.vq[NET_VQ_RX];
	unsigned int i;

	for (i = 0; i < n; i++) {
		/* Buffer i of the ring is reused by whichever head gets it. */
		struct vring_seg seg = { base + (uint64_t)(vr->avail_idx % vr->num) * RX_BUF,
					 RX_BUF };
		int head = vring_add_chain(vr, NULL, 0, &seg, 1, false);

		if (head < 0)
			die("cannot post an RX buffer");
	}
}

/* Reap RX used entries; each must be one whole frame of @len. */
static unsigned int rx_reap(size_t len)
{
	struct vring_drv *vr = &nd.vq[NET_VQ_RX];
	struct vring_used_elem e;
	unsigned int n = 0;
	int r;

	while ((r = vring_reap(vr, &e)) == 1) {
		if (e.len != nd.hdr_len + len)
			die("RX used entry of %u bytes, expected %zu (a %zu-byte frame)",
			    e.len, nd.hdr_len + len, len);
		n++;
	}
	if (r < 0)
		die("the device returned a bad RX used entry");
	return n;
}

static uint64_t rx_buffers(void)
{
	uint64_t base = guest_alloc(&mem, (uint64_t)nd.vq[NET_VQ_RX].num * RX_BUF, 64);

	if (!base)
		die("cannot lay out RX buffers in guest memory");
	return base;
}

static void run_rx(double *pps, uint64_t *frames, uint64_t *drops)
{
	struct vring_drv *vr = &nd.vq[NET_VQ_RX];
	uint64_t base = rx_buffers(), t0, t_meas = 0, t_end, f0 = 0, total = 0, sent = 0;
	uint64_t p, d0 = 0, d1;
	struct mmsghdr m[SEND_BATCH];
	struct iovec v = { frame, o.len };
	uint64_t progress;
	bool measuring = false;
	int pfd, one = 1, i;

	pfd = pkt_open(ifindex);
	if (pfd < 0)
		die("cannot open a packet socket on the tap");
	/* Straight to tun's xmit: the tap's qdisc is not what is measured. */
	setsockopt(pfd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof(one));
	memset(m, 0, sizeof(m));
	for (i = 0; i < SEND_BATCH; i++) {
		m[i].msg_hdr.msg_iov = &v;
		m[i].msg_hdr.msg_iovlen = 1;
	}
	rx_post(vr->num_free, base);
	publish(NET_VQ_RX);
	t0 = now_ns();
	progress = t0;
	t_end = t0 + (uint64_t)((o.ramp + o.runtime) * 1e9);
	for (;;) {
		unsigned int n, queued;
		uint64_t now;

		queued = rx_send(pfd, m, sent - total);
		sent += queued;
		n = rx_reap(o.len);
		if (n) {
			total += n;
			rx_post(n, base);
			publish(NET_VQ_RX);
		}
		now = now_ns();
		if (!measuring && now >= t0 + (uint64_t)(o.ramp * 1e9)) {
			measuring = true;
			t_meas = now;
			busy_start = cpu_busy();
			f0 = total;
			tap_stats(&p, &d0);
		}
		if (now >= t_end)
			break;
		if (n || queued)
			progress = now;
		else if (now - progress > 1000000000ULL)
			die("rx: %" PRIu64 " frames sent, %" PRIu64 " received, none for 1 s",
			    sent, total);
		else
			wait_used(NET_VQ_RX, vr->last_used, POLL_SLICE_MS);
	}
	*frames = total - f0;
	*pps = *frames / ((now_ns() - t_meas) / 1e9);
	tap_stats(&p, &d1);
	/* A frame tun dropped never comes: the window would shrink for good. */
	*drops = (uint32_t)(d1 - d0);
	close(pfd);
}

/* ---- RR: guest -> tap -> echo -> tap -> guest ------------------------- */

static void *echo_thread(void *arg)
{
	int fd = *(int *)arg;
	uint8_t buf[ETH_FRAME_MAX];
	struct pollfd pfd = { .fd = fd, .events = POLLIN };

	while (!atomic_load(&stop)) {
		ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);

		if (n < 0) {
			if (errno != EAGAIN && errno != EINTR) {
				snprintf(thread_err, sizeof(thread_err), "echo recv: %s",
					 strerror(errno));
				break;
			}
			poll(&pfd, 1, POLL_SLICE_MS);
			continue;
		}
		if (send(fd, buf, n, 0) != n) {
			snprintf(thread_err, sizeof(thread_err), "echo send: %s", strerror(errno));
			break;
		}
	}
	return NULL;
}

static void run_rr(double *rate, double *lat_us, uint64_t *trips)
{
	struct vring_drv *rx = &nd.vq[NET_VQ_RX];
	uint64_t base = rx_buffers(), t0, t_meas = 0, t_end, lat_sum = 0, n = 0;
	unsigned int slot = 0, timeouts = 0;
	bool measuring = false;
	struct tx_slots s;
	pthread_t t;
	int pfd;

	pfd = pkt_open(ifindex);
	if (pfd < 0)
		die("cannot open a packet socket on the tap");
	tx_slots_init(&s, 64, o.len);
	rx_post(rx->num_free, base);
	publish(NET_VQ_RX);
	if (pthread_create(&t, NULL, echo_thread, &pfd))
		die("cannot start the echo thread");
	t0 = now_ns();
	t_end = t0 + (uint64_t)((o.ramp + o.runtime) * 1e9);
	for (;;) {
		uint64_t start = now_ns(), got = 0;

		if (!measuring && start >= t0 + (uint64_t)(o.ramp * 1e9)) {
			measuring = true;
			t_meas = start;
			busy_start = cpu_busy();
		}
		if (start >= t_end || thread_err[0])
			break;
		tx_reap();
		if (!nd.vq[NET_VQ_TX].num_free)
			die("TX ring full: the device does not return TX buffers");
		tx_add(&s, slot++, o.len);
		publish(NET_VQ_TX);
		while (!got) {
			got = rx_reap(o.len);
			if (!got) {
				wait_used(NET_VQ_RX, rx->last_used, POLL_SLICE_MS);
				if (now_ns() - start > 1000000000ULL) {
					if (++timeouts > 3)
						die("no echo within 1 s, %u times", timeouts);
					break;
				}
			}
		}
		if (!got)
			continue;
		rx_post(got, base);
		publish(NET_VQ_RX);
		if (measuring) {
			n++;
			lat_sum += now_ns() - start;
		}
	}
	*trips = n;
	*rate = n / ((now_ns() - t_meas) / 1e9);
	*lat_us = n ? lat_sum / 1e3 / n : 0;
	atomic_store(&stop, true);
	pthread_join(t, NULL);
	close(pfd);
	if (thread_err[0])
		die("%s", thread_err);
}

/* ---- setup -------------------------------------------------------------- */

static void usage(FILE *f)
{
	fprintf(f,
"Usage: net_bench --dev PATH --case tx|rx|rr [OPTIONS]\n"
"\n"
"Drive a vhost-net device node like a virtio-net guest driver, against a tap\n"
"in a network namespace of its own. Prints one line:\n"
"  case=... dev=... len=N pps=N mbps=N [rtt_us=N] cpu_us=N pkts=N drops=N\n"
"  kicks=N wakeups=N runtime=N\n"
"(pps is frames/s, or round trips/s for rr; mbps is 10^6 frame bytes/s;\n"
"cpu_us: busy time of all CPUs per frame or round trip, everything included;\n"
"drops: rx only, frames tun dropped on a full queue, 0 with the window).\n"
"\n"
"  --dev PATH         /dev/vhost-net or /dev/kvmx-vhost-net (required)\n"
"  --case tx|rx|rr    guest->tap rate, tap->guest rate, or ping-pong (required)\n"
"  --len BYTES        Ethernet frame length without FCS, %d..%d (default 60)\n"
"  --ring N           entries per ring, a power of two 64..%u (default 256)\n"
"  --window N         rx: frames in flight between sender and guest (default 256)\n"
"  --runtime SECONDS  measured time (default 2; fractions allowed)\n"
"  --ramp SECONDS     run this long before measuring (default 0.3)\n"
"  --busyloop USEC    VHOST_SET_VRING_BUSYLOOP_TIMEOUT on both rings (default 0)\n"
"  -v, --verbose      details on stderr\n"
"  -h, --help         this text\n"
"\n"
"Needs root (a network namespace), tun, and the device node.\n"
"Exit status: 0, 1 on a failure, 2 on a usage error.\n",
		ETH_FRAME_MIN, ETH_FRAME_MAX, MAX_RING);
}

static void parse_args(int argc, char **argv)
{
	enum { OPT_DEV = 256, OPT_CASE, OPT_LEN, OPT_RING, OPT_WINDOW, OPT_RUNTIME, OPT_RAMP,
	       OPT_BUSYLOOP };
	static const struct option longopts[] = {
		{ "dev", required_argument, NULL, OPT_DEV },
		{ "case", required_argument, NULL, OPT_CASE },
		{ "len", required_argument, NULL, OPT_LEN },
		{ "ring", required_argument, NULL, OPT_RING },
		{ "window", required_argument, NULL, OPT_WINDOW },
		{ "runtime", required_argument, NULL, OPT_RUNTIME },
		{ "ramp", required_argument, NULL, OPT_RAMP },
		{ "busyloop", required_argument, NULL, OPT_BUSYLOOP },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ }
	};
	bool have_case = false;
	int c;

	o = (struct opts){ .len = ETH_FRAME_MIN, .ring = 256, .window = 256, .runtime = 2,
			   .ramp = 0.3 };
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":vh", longopts, NULL)) != -1) {
		switch (c) {
		case OPT_DEV: o.dev = optarg; break;
		case OPT_CASE:
			have_case = true;
			if (!strcmp(optarg, "tx"))
				o.bcase = CASE_TX;
			else if (!strcmp(optarg, "rx"))
				o.bcase = CASE_RX;
			else if (!strcmp(optarg, "rr"))
				o.bcase = CASE_RR;
			else
				bad("--case: expected tx, rx or rr, got '%s'", optarg);
			break;
		case OPT_LEN: o.len = parse_uint("--len", optarg, ETH_FRAME_MIN, ETH_FRAME_MAX, false); break;
		case OPT_RING:
			o.ring = parse_uint("--ring", optarg, 64, MAX_RING, false);
			if (o.ring & (o.ring - 1))
				bad("--ring: %u is not a power of two", o.ring);
			break;
		case OPT_WINDOW: o.window = parse_uint("--window", optarg, SEND_BATCH, 1 << 20, false); break;
		case OPT_RUNTIME: o.runtime = parse_seconds("--runtime", optarg, 0.001); break;
		case OPT_RAMP: o.ramp = parse_seconds("--ramp", optarg, 0); break;
		case OPT_BUSYLOOP:
			o.busyloop_us = parse_uint("--busyloop", optarg, 0, 1000000, false);
			break;
		case 'v': o.verbose = true; break;
		case 'h': usage(stdout); exit(0);
		case ':': bad("%s needs an argument", argv[optind - 1]);
		default: bad("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc)
		bad("unexpected argument '%s'", argv[optind]);
	if (!o.dev || !have_case)
		bad("--dev PATH and --case are required");
	/* Buffers and rings share 16 MiB of guest memory. */
	if ((uint64_t)o.ring * (RX_BUF + NET_HDR_LEN + o.len) >
	    GUEST_NR_REGIONS * GUEST_REGION_SIZE * 3 / 4)
		bad("a ring of %u does not fit in guest memory", o.ring);
}

static void setup(void)
{
	static const char *const names[] = { "tx", "rx", "rr" };
	uint64_t rng = 1;
	int ret, i;

	if (net_ns_enter())
		exit(1);
	tap_fd = tap_open(TAP_NAME, IFF_TAP | IFF_NO_PI | IFF_VNET_HDR, NET_HDR_LEN);
	if (tap_fd < 0)
		exit(1);
	if (link_set_up(TAP_NAME, true))
		exit(1);
	ifindex = link_ifindex(TAP_NAME);
	if (ifindex < 0)
		die("no ifindex for %s", TAP_NAME);
	if (guest_mem_init(&mem))
		die("cannot set up guest memory");

	/* The features a Linux guest acks; SET_FEATURES fails on any it lacks. */
	ret = net_dev_open(&nd, o.dev, &mem, o.ring, F_DRIVER);
	if (ret)
		die("cannot set up %s: %s%s", o.dev, strerror(-ret),
		    ret == -ENOENT ? " (modprobe vhost_net, or insmod kvmx_core.ko kvmx_vhost_net.ko)" : "");
	for (i = 0; o.busyloop_us && i < NET_NVQS; i++) {
		struct vhost_vring_state st = { .index = i, .num = o.busyloop_us };

		if (ioctl(nd.dev.fd, VHOST_SET_VRING_BUSYLOOP_TIMEOUT, &st))
			die("VHOST_SET_VRING_BUSYLOOP_TIMEOUT: %s", strerror(errno));
	}
	if (net_attach(&nd, tap_fd))
		exit(1);
	net_frame(frame, o.len, 0, &rng);
	if (o.verbose)
		fprintf(stderr, "net_bench: %s, case %s, %u-byte frames, ring %u\n", o.dev,
			names[o.bcase], o.len, o.ring);
}

int main(int argc, char **argv)
{
	static const char *const names[] = { "tx", "rx", "rr" };
	uint64_t pkts = 0, drops = 0, busy;
	double pps = 0, lat = 0;

	parse_args(argc, argv);
	setup();
	switch (o.bcase) {
	case CASE_TX:
		run_tx(&pps, &pkts);
		break;
	case CASE_RX:
		run_rx(&pps, &pkts, &drops);
		break;
	case CASE_RR:
		run_rr(&pps, &lat, &pkts);
		break;
	}
	busy = cpu_busy() - busy_start;
	if (!pkts)
		die("no frame moved in the measured window");
	printf("case=%s dev=%s len=%u pps=%.0f mbps=%.2f", names[o.bcase], o.dev, o.len, pps,
	       pps * o.len / 1e6);
	if (o.bcase == CASE_RR)
		printf(" rtt_us=%.2f", lat);
	printf(" cpu_us=%.2f pkts=%" PRIu64 " drops=%" PRIu64 " kicks=%" PRIu64 " wakeups=%"
	       PRIu64 " runtime=%g\n", busy * 1e6 / sysconf(_SC_CLK_TCK) / pkts, pkts, drops,
	       kicks, wakeups, o.runtime);
	fflush(stdout);
	net_dev_close(&nd);
	close(tap_fd);
	guest_mem_destroy(&mem);
	return 0;
}
