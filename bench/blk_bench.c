// SPDX-License-Identifier: GPL-2.0
/*
 * blk_bench: drive /dev/vhost-blk the way a virtio-blk guest driver does,
 * and report IOPS and latency. The process plays guest and VMM, with the
 * selftest library's guest memory, split rings and vhost plumbing.
 *
 * One thread per virtqueue, each virtqueue on a vhost worker of its own
 * (VHOST_NEW_WORKER + VHOST_ATTACH_VRING_WORKER). Each thread keeps
 * --iodepth requests in flight: it refills a slot as soon as its used
 * entry arrives, publishes the batch, kicks only when the device's
 * avail_event asks for it, and sleeps in poll() on the call eventfd with
 * used_event armed at the next used entry (VIRTIO_RING_F_EVENT_IDX), as
 * Linux's virtio_blk does with interrupts.
 *
 * The result is one line of key=value pairs on stdout; see usage().
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <endian.h>
#include <linux/fs.h>
#include <linux/virtio_blk.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ring.h>

#include "blk.h"
#include "cli.h"
#include "guest.h"
#include "vhost.h"
#include "vring.h"

const char bench_prog[] = "blk_bench";

#define F(bit)		(1ULL << (bit))
/* What Linux's virtio_blk acks from vhost-blk, EVENT_IDX included. */
#define F_DRIVER	(F(VIRTIO_F_VERSION_1) | F(VIRTIO_F_ANY_LAYOUT) | \
			 F(VIRTIO_RING_F_INDIRECT_DESC) | F(VIRTIO_RING_F_EVENT_IDX) | \
			 F(VIRTIO_BLK_F_SEG_MAX) | F(VIRTIO_BLK_F_BLK_SIZE) | \
			 F(VIRTIO_BLK_F_FLUSH) | F(VIRTIO_BLK_F_MQ))

#define MAX_QUEUES	(BLK_GUEST_MAX_VQS < VHOST_BLK_MAX_QUEUES ? \
			 BLK_GUEST_MAX_VQS : VHOST_BLK_MAX_QUEUES)
#define MAX_IODEPTH	1024U
#define MAX_BS		(1U << 20)
#define MAX_RING	32768U
/* How long the device may take to return the requests in flight at the end. */
#define DRAIN_MS	10000
/* Poll at least this often, so the clock is looked at. */
#define POLL_SLICE_MS	200

/* Latency histogram: 16 linear sub-buckets per power of two of nanoseconds. */
#define HIST_SUB_BITS	4
#define HIST_SUB	(1U << HIST_SUB_BITS)
#define HIST_BUCKETS	(64 * HIST_SUB)

struct opts {
	const char *backend;
	unsigned int queues;
	unsigned int iodepth;
	bool write;
	uint32_t bs;
	double runtime;
	double ramp;
	bool direct;
	bool indirect;
	bool shared_worker;
	unsigned int busyloop_us;
	unsigned int flush_every;
	uint64_t seed;
	bool verbose;
};

struct slot {
	uint64_t hdr_gpa;
	struct virtio_blk_outhdr *hdr;
	uint64_t data_gpa;
	uint64_t status_gpa;
	uint8_t *status;
	uint64_t submitted_ns;
	bool busy;
	bool flush;
};

struct queue_job {
	const struct opts *o;
	struct blk_guest *g;
	unsigned int vq;
	uint64_t nblocks;		/* of --bs in the backend */
	uint64_t submits;		/* requests queued, for --flush-every */
	struct slot *slots;
	unsigned int *head_slot;	/* ring head -> slot */
	pthread_barrier_t *start;

	/* Results. */
	uint64_t ios;			/* completed inside the measured window */
	uint64_t errors;		/* status other than OK, any time */
	double elapsed_s;		/* of the measured window */
	uint64_t lat_sum_ns;
	uint64_t hist[HIST_BUCKETS];
	uint64_t kicks;
	uint64_t wakeups;
	uint64_t flushes;		/* FLUSH requests completed, any time */
	char why[256];			/* set when the thread failed */
	bool failed;
};

static unsigned int hist_bucket(uint64_t ns)
{
	unsigned int msb, idx;

	if (ns < HIST_SUB)
		return ns;
	msb = 63 - __builtin_clzll(ns);
	idx = (msb - HIST_SUB_BITS + 1) * HIST_SUB +
	      ((ns >> (msb - HIST_SUB_BITS)) & (HIST_SUB - 1));
	return idx < HIST_BUCKETS ? idx : HIST_BUCKETS - 1;
}

/* Midpoint of a bucket's range, in nanoseconds. */
static double hist_value(unsigned int idx)
{
	unsigned int shift;
	uint64_t lo;

	if (idx < HIST_SUB)
		return idx;
	shift = idx / HIST_SUB - 1;
	lo = (uint64_t)(HIST_SUB + idx % HIST_SUB) << shift;
	return lo + ((1ULL << shift) - 1) / 2.0;
}

static double hist_percentile(const uint64_t *hist, uint64_t total, double pct)
{
	uint64_t want = (uint64_t)(total * pct / 100.0 + 0.5), seen = 0;
	unsigned int i;

	if (!total)
		return 0;
	if (!want)
		want = 1;
	for (i = 0; i < HIST_BUCKETS; i++) {
		seen += hist[i];
		if (seen >= want)
			return hist_value(i);
	}
	return hist_value(HIST_BUCKETS - 1);
}

static void fail(struct queue_job *j, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void fail(struct queue_job *j, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(j->why, sizeof(j->why), fmt, ap);
	va_end(ap);
	j->failed = true;
}

/* Queue slot @s as a new request at a random block; not yet published. */
static int submit(struct queue_job *j, struct vring_drv *vr, unsigned int s, uint64_t *rng)
{
	const struct opts *o = j->o;
	struct slot *sl = &j->slots[s];
	uint64_t block = rng_next(rng) % j->nblocks;
	struct vring_seg out[2], in[2];
	unsigned int nout = 0, nin = 0;
	int head;

	sl->flush = o->flush_every && !(++j->submits % o->flush_every);
	sl->hdr->type = htole32(sl->flush ? VIRTIO_BLK_T_FLUSH :
				o->write ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN);
	sl->hdr->ioprio = 0;
	sl->hdr->sector = htole64(sl->flush ? 0 : block * (o->bs / BLK_SECTOR_SIZE));
	*sl->status = 0xff;

	out[nout++] = (struct vring_seg){ sl->hdr_gpa, sizeof(*sl->hdr) };
	/* A FLUSH is the header and the status byte alone. */
	if (!sl->flush && o->write)
		out[nout++] = (struct vring_seg){ sl->data_gpa, o->bs };
	else if (!sl->flush)
		in[nin++] = (struct vring_seg){ sl->data_gpa, o->bs };
	in[nin++] = (struct vring_seg){ sl->status_gpa, 1 };

	head = vring_add_chain(vr, out, nout, in, nin, o->indirect);
	if (head < 0) {
		fail(j, "vq %u: cannot queue a request: %s", j->vq, strerror(-head));
		return head;
	}
	j->head_slot[head] = s;
	sl->busy = true;
	sl->submitted_ns = now_ns();
	return 0;
}

static void publish(struct queue_job *j, struct vring_drv *vr)
{
	uint16_t old = vr->published;

	if (vr->avail_idx == old)
		return;
	vring_publish(vr);
	if (vring_kick_needed(vr, old, true)) {
		vhost_kick(&j->g->dev, j->vq);
		j->kicks++;
	}
}

static void *queue_thread(void *arg)
{
	struct queue_job *j = arg;
	const struct opts *o = j->o;
	struct vring_drv *vr = &j->g->vq[j->vq];
	struct pollfd pfd[2] = {
		{ .fd = j->g->dev.vq[j->vq].call, .events = POLLIN },
		{ .fd = j->g->dev.vq[j->vq].err, .events = POLLIN },
	};
	uint64_t rng = o->seed * 0x9e3779b97f4a7c15ULL + j->vq + 1;
	uint64_t t_start, t_end, t_drain = 0, now;
	unsigned int s, inflight = 0;
	bool measuring = false, stopping = false;

	pthread_barrier_wait(j->start);
	t_start = now_ns() + (uint64_t)(o->ramp * 1e9);
	t_end = t_start + (uint64_t)(o->runtime * 1e9);
	if (!o->ramp)
		measuring = true;

	for (s = 0; s < o->iodepth; s++) {
		if (submit(j, vr, s, &rng))
			return NULL;
		inflight++;
	}
	vring_publish(vr);
	vhost_kick(&j->g->dev, j->vq);
	j->kicks++;

	for (;;) {
		struct vring_used_elem e;
		int r, timeout;

		while ((r = vring_reap(vr, &e)) == 1) {
			struct slot *sl = &j->slots[j->head_slot[e.id]];
			uint64_t done = now_ns();

			if (!sl->busy) {
				fail(j, "vq %u: used entry for head %u whose request is not in flight",
				     j->vq, e.id);
				return NULL;
			}
			sl->busy = false;
			inflight--;
			if (*sl->status != VIRTIO_BLK_S_OK)
				j->errors++;
			if (sl->flush)
				j->flushes++;
			if (measuring && done <= t_end) {
				uint64_t lat = done - sl->submitted_ns;

				j->ios++;
				j->lat_sum_ns += lat;
				j->hist[hist_bucket(lat)]++;
			}
			if (!stopping) {
				if (submit(j, vr, sl - j->slots, &rng))
					return NULL;
				inflight++;
			}
		}
		if (r < 0) {
			fail(j, "vq %u: the device returned a bad used entry", j->vq);
			return NULL;
		}
		publish(j, vr);

		now = now_ns();
		if (!measuring && now >= t_start)
			measuring = true;
		if (!stopping && now >= t_end) {
			stopping = true;
			t_drain = now + DRAIN_MS * 1000000ULL;
		}
		if (stopping && !inflight)
			break;
		if (stopping && now > t_drain) {
			fail(j, "vq %u: %u requests still in flight %d ms after the end",
			     j->vq, inflight, DRAIN_MS);
			return NULL;
		}

		/* Arm the call for the next used entry, then look once more. */
		vring_set_used_event(vr, vr->last_used);
		if (vring_used_idx(vr) != vr->last_used)
			continue;
		timeout = POLL_SLICE_MS;
		if (!stopping && t_end > now && (t_end - now) / 1000000 < (uint64_t)timeout)
			timeout = (t_end - now) / 1000000 + 1;
		if (poll(pfd, 2, timeout) < 0 && errno != EINTR) {
			fail(j, "vq %u: poll: %s", j->vq, strerror(errno));
			return NULL;
		}
		if (pfd[1].revents & POLLIN) {
			fail(j, "vq %u: the device broke the ring (error eventfd)", j->vq);
			return NULL;
		}
		if (pfd[0].revents & POLLIN) {
			eventfd_take(pfd[0].fd);
			j->wakeups++;
		}
	}
	j->elapsed_s = (t_end - t_start) / 1e9;
	return NULL;
}

static void usage(FILE *f)
{
	fprintf(f,
"Usage: blk_bench --backend PATH [OPTIONS]\n"
"\n"
"Drive /dev/vhost-blk like a virtio-blk guest driver: random --bs reads or\n"
"writes over the whole backend, --iodepth in flight on each of --queues\n"
"virtqueues, one thread and one vhost worker per queue. Prints one line:\n"
"  iops=N mbps=N lat_us=N lat_p50_us=N lat_p99_us=N ios=N errors=N kicks=N\n"
"  wakeups=N queues=N iodepth=N rw=... bs=N runtime=N flushes=N\n"
"(mbps is 10^6 bytes/s; latency is submit to reap, as the driver sees it).\n"
"\n"
"  --backend PATH     block device or regular file vhost-blk serves (required)\n"
"  --queues N         virtqueues, 1..%u (default 1)\n"
"  --iodepth D        requests in flight per queue, 1..%u (default 1)\n"
"  --rw randread|randwrite   (default randread)\n"
"  --bs BYTES         request size, a multiple of 512 up to %u; k suffix ok\n"
"                     (default 4096)\n"
"  --runtime SECONDS  measured time (default 3; fractions allowed)\n"
"  --ramp SECONDS     run this long before measuring (default 0)\n"
"  --direct           open the backend O_DIRECT (as a VMM with cache=none)\n"
"  --indirect         put each request in an indirect descriptor table\n"
"  --shared-worker    all queues on the device's default worker\n"
"  --busyloop USEC    VHOST_SET_VRING_BUSYLOOP_TIMEOUT: the worker polls the\n"
"                     ring this long before sleeping (default 0: off)\n"
"  --flush-every N    every Nth request of a queue is a FLUSH (counted in iops\n"
"                     and latency like the others; default 0: none)\n"
"  --seed N           random offsets seed (default 1)\n"
"  -v, --verbose      per-queue details on stderr\n"
"  -h, --help         this text\n"
"\n"
"Needs /dev/vhost-blk (insmod kvmx_core.ko kvmx_vhost_blk.ko) and root.\n"
"Exit status: 0, 1 on a failure or any request that did not end OK,\n"
"2 on a usage error.\n",
		MAX_QUEUES, MAX_IODEPTH, MAX_BS);
}

static void parse_args(int argc, char **argv, struct opts *o)
{
	enum { OPT_BACKEND = 256, OPT_QUEUES, OPT_IODEPTH, OPT_RW, OPT_BS, OPT_RUNTIME, OPT_RAMP,
	       OPT_DIRECT, OPT_INDIRECT, OPT_SHARED, OPT_SEED,
	       OPT_BUSYLOOP, OPT_FLUSH_EVERY };
	static const struct option longopts[] = {
		{ "backend", required_argument, NULL, OPT_BACKEND },
		{ "queues", required_argument, NULL, OPT_QUEUES },
		{ "iodepth", required_argument, NULL, OPT_IODEPTH },
		{ "rw", required_argument, NULL, OPT_RW },
		{ "bs", required_argument, NULL, OPT_BS },
		{ "runtime", required_argument, NULL, OPT_RUNTIME },
		{ "ramp", required_argument, NULL, OPT_RAMP },
		{ "direct", no_argument, NULL, OPT_DIRECT },
		{ "indirect", no_argument, NULL, OPT_INDIRECT },
		{ "shared-worker", no_argument, NULL, OPT_SHARED },
		{ "seed", required_argument, NULL, OPT_SEED },
		{ "busyloop", required_argument, NULL, OPT_BUSYLOOP },
		{ "flush-every", required_argument, NULL, OPT_FLUSH_EVERY },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ }
	};
	int c;

	*o = (struct opts){ .queues = 1, .iodepth = 1, .bs = 4096, .runtime = 3, .seed = 1 };
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":vh", longopts, NULL)) != -1) {
		switch (c) {
		case OPT_BACKEND: o->backend = optarg; break;
		case OPT_QUEUES: o->queues = parse_uint("--queues", optarg, 1, MAX_QUEUES, false); break;
		case OPT_IODEPTH:
			o->iodepth = parse_uint("--iodepth", optarg, 1, MAX_IODEPTH, false);
			break;
		case OPT_RW:
			if (!strcmp(optarg, "randread"))
				o->write = false;
			else if (!strcmp(optarg, "randwrite"))
				o->write = true;
			else
				bad("--rw: expected randread or randwrite, got '%s'", optarg);
			break;
		case OPT_BS:
			o->bs = parse_uint("--bs", optarg, BLK_SECTOR_SIZE, MAX_BS, true);
			if (o->bs % BLK_SECTOR_SIZE)
				bad("--bs: %u is not a multiple of %u", o->bs, BLK_SECTOR_SIZE);
			break;
		case OPT_RUNTIME: o->runtime = parse_seconds("--runtime", optarg, 0.001); break;
		case OPT_RAMP: o->ramp = parse_seconds("--ramp", optarg, 0); break;
		case OPT_DIRECT: o->direct = true; break;
		case OPT_INDIRECT: o->indirect = true; break;
		case OPT_SHARED: o->shared_worker = true; break;
		case OPT_BUSYLOOP:
			o->busyloop_us = parse_uint("--busyloop", optarg, 0, 1000000, false);
			break;
		case OPT_FLUSH_EVERY:
			o->flush_every = parse_uint("--flush-every", optarg, 0, 1000000, false);
			break;
		case OPT_SEED: o->seed = parse_uint("--seed", optarg, 0, ~0UL, false); break;
		case 'v': o->verbose = true; break;
		case 'h': usage(stdout); exit(0);
		case ':': bad("%s needs an argument", argv[optind - 1]);
		default: bad("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc)
		bad("unexpected argument '%s'", argv[optind]);
	if (!o->backend)
		bad("--backend PATH is required");
	/* Buffers, rings and descriptor tables share 16 MiB of guest memory. */
	if ((uint64_t)o->queues * o->iodepth * (o->bs + GUEST_PAGE_SIZE) >
	    GUEST_NR_REGIONS * GUEST_REGION_SIZE * 3 / 4)
		bad("%u queues x %u requests x %u bytes do not fit in the %llu MiB of guest memory",
		    o->queues, o->iodepth, o->bs,
		    (unsigned long long)(GUEST_NR_REGIONS * GUEST_REGION_SIZE >> 20));
}

/* Size in bytes of a regular file or block device. */
static int backend_size(int fd, const char *path, uint64_t *size)
{
	struct stat st;

	if (fstat(fd, &st)) {
		fprintf(stderr, "blk_bench: stat %s: %s\n", path, strerror(errno));
		return -1;
	}
	if (S_ISREG(st.st_mode)) {
		*size = st.st_size;
	} else if (S_ISBLK(st.st_mode)) {
		if (ioctl(fd, BLKGETSIZE64, size)) {
			fprintf(stderr, "blk_bench: BLKGETSIZE64 on %s: %s\n", path,
				strerror(errno));
			return -1;
		}
	} else {
		fprintf(stderr, "blk_bench: %s is neither a regular file nor a block device\n",
			path);
		return -1;
	}
	return 0;
}

static unsigned int ring_size(const struct opts *o)
{
	unsigned int want = o->iodepth * (o->indirect ? 1 : 3), n = 64;

	while (n < want)
		n <<= 1;
	return n;
}

/* Preallocate each slot's header, data and status in guest memory. */
static int alloc_slots(struct blk_guest *g, struct queue_job *j)
{
	const struct opts *o = j->o;
	unsigned int s;

	j->slots = calloc(o->iodepth, sizeof(*j->slots));
	j->head_slot = calloc(g->vq[j->vq].num, sizeof(*j->head_slot));
	if (!j->slots || !j->head_slot)
		return -ENOMEM;
	for (s = 0; s < o->iodepth; s++) {
		struct slot *sl = &j->slots[s];

		/* Data page-aligned, as the block layer hands it to a driver. */
		sl->data_gpa = guest_alloc(&g->mem, o->bs, GUEST_PAGE_SIZE);
		sl->hdr_gpa = guest_alloc(&g->mem, sizeof(*sl->hdr), 16);
		sl->status_gpa = guest_alloc(&g->mem, 1, 1);
		if (!sl->data_gpa || !sl->hdr_gpa || !sl->status_gpa)
			return -ENOMEM;
		sl->hdr = guest_hva(&g->mem, sl->hdr_gpa, sizeof(*sl->hdr));
		sl->status = guest_hva(&g->mem, sl->status_gpa, 1);
		if (!sl->hdr || !sl->status)
			return -EFAULT;
		/* Writes carry something other than zeroes. */
		if (o->write) {
			uint64_t rng = o->seed + s;
			uint8_t *data = guest_hva(&g->mem, sl->data_gpa, o->bs);

			if (!data)
				return -EFAULT;
			rng_fill(&rng, data, o->bs);
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct queue_job jobs[MAX_QUEUES] = {};
	pthread_t threads[MAX_QUEUES];
	pthread_barrier_t start;
	struct blk_guest g;
	struct opts o;
	uint64_t size, ios = 0, errors = 0, lat_sum = 0, kicks = 0, wakeups = 0, flushes = 0;
	uint64_t *hist;
	double iops = 0;
	unsigned int q, i;
	int fd, ret, status = 0;

	parse_args(argc, argv, &o);

	fd = open(o.backend, O_RDWR | O_CLOEXEC | (o.direct ? O_DIRECT : 0));
	if (fd < 0) {
		fprintf(stderr, "blk_bench: cannot open %s read-write%s: %s\n", o.backend,
			o.direct ? " with O_DIRECT" : "", strerror(errno));
		return 1;
	}
	if (backend_size(fd, o.backend, &size))
		return 1;
	if (size < o.bs) {
		fprintf(stderr, "blk_bench: %s holds %" PRIu64 " bytes, less than one %u-byte block\n",
			o.backend, size, o.bs);
		return 1;
	}
	ret = blk_guest_open(&g, o.queues, ring_size(&o), F_DRIVER);
	if (ret) {
		fprintf(stderr, "blk_bench: cannot set up %s with %u queues: %s%s\n", BLK_DEV_PATH,
			o.queues, strerror(-ret),
			ret == -ENOENT ? " (insmod kvmx_core.ko kvmx_vhost_blk.ko first)" : "");
		return 1;
	}
	if (pthread_barrier_init(&start, NULL, o.queues)) {
		fprintf(stderr, "blk_bench: pthread_barrier_init failed\n");
		return 1;
	}
	for (q = 0; q < o.queues; q++) {
		struct queue_job *j = &jobs[q];
		unsigned int id;

		*j = (struct queue_job){ .o = &o, .g = &g, .vq = q, .nblocks = size / o.bs,
					 .start = &start };
		if (!o.shared_worker) {
			ret = vhost_new_worker(&g.dev, &id);
			if (!ret)
				ret = vhost_attach_worker(&g.dev, q, id);
			if (ret) {
				fprintf(stderr, "blk_bench: vq %u: cannot give it a worker of its own: %s\n",
					q, strerror(-ret));
				return 1;
			}
		}
		ret = alloc_slots(&g, j);
		if (ret) {
			fprintf(stderr, "blk_bench: vq %u: cannot lay out %u requests in guest memory: %s\n",
				q, o.iodepth, strerror(-ret));
			return 1;
		}
		if (o.busyloop_us) {
			struct vhost_vring_state st = { .index = q, .num = o.busyloop_us };

			if (ioctl(g.dev.fd, VHOST_SET_VRING_BUSYLOOP_TIMEOUT, &st)) {
				fprintf(stderr, "blk_bench: VHOST_SET_VRING_BUSYLOOP_TIMEOUT on vq %u: %s\n",
					q, strerror(errno));
				return 1;
			}
		}
		ret = blk_set_backend(&g.dev, q, fd);
		if (ret) {
			fprintf(stderr, "blk_bench: VHOST_BLK_SET_BACKEND %s on vq %u: %s\n",
				o.backend, q, strerror(-ret));
			return 1;
		}
	}

	for (q = 0; q < o.queues; q++) {
		if (pthread_create(&threads[q], NULL, queue_thread, &jobs[q])) {
			fprintf(stderr, "blk_bench: cannot start the thread of vq %u\n", q);
			return 1;
		}
	}
	for (q = 0; q < o.queues; q++)
		pthread_join(threads[q], NULL);

	hist = calloc(HIST_BUCKETS, sizeof(*hist));
	if (!hist)
		return 1;
	for (q = 0; q < o.queues; q++) {
		struct queue_job *j = &jobs[q];
		struct vhost_blk_stats st;

		if (j->failed) {
			fprintf(stderr, "blk_bench: %s\n", j->why);
			status = 1;
			continue;
		}
		ios += j->ios;
		errors += j->errors;
		lat_sum += j->lat_sum_ns;
		kicks += j->kicks;
		wakeups += j->wakeups;
		flushes += j->flushes;
		iops += j->elapsed_s > 0 ? j->ios / j->elapsed_s : 0;
		for (i = 0; i < HIST_BUCKETS; i++)
			hist[i] += j->hist[i];
		if (o.verbose) {
			ret = blk_get_stats(&g.dev, q, &st);
			fprintf(stderr,
				"blk_bench: vq %u: %" PRIu64 " ios in %.3f s, %" PRIu64 " kicks, %" PRIu64
				" wakeups; device: %llu requests, %llu ioerr, broken %u%s\n",
				q, j->ios, j->elapsed_s, j->kicks, j->wakeups,
				ret ? 0ULL : (unsigned long long)st.requests,
				ret ? 0ULL : (unsigned long long)st.ioerr, ret ? 0 : st.broken,
				ret ? " (GET_STATS failed)" : "");
		}
	}
	if (errors) {
		fprintf(stderr, "blk_bench: %" PRIu64 " requests did not end with VIRTIO_BLK_S_OK\n",
			errors);
		status = 1;
	}
	if (!status && !ios) {
		fprintf(stderr, "blk_bench: no request completed in the measured window\n");
		status = 1;
	}

	printf("iops=%.0f mbps=%.1f lat_us=%.2f lat_p50_us=%.2f lat_p99_us=%.2f ios=%" PRIu64
	       " errors=%" PRIu64 " kicks=%" PRIu64 " wakeups=%" PRIu64
	       " queues=%u iodepth=%u rw=%s bs=%u runtime=%g flushes=%" PRIu64 "\n",
	       iops, iops * o.bs / 1e6, ios ? lat_sum / 1e3 / ios : 0,
	       hist_percentile(hist, ios, 50) / 1e3, hist_percentile(hist, ios, 99) / 1e3,
	       ios, errors, kicks, wakeups, o.queues, o.iodepth,
	       o.write ? "randwrite" : "randread", o.bs, o.runtime, flushes);
	fflush(stdout);

	free(hist);
	blk_guest_close(&g);
	close(fd);
	for (q = 0; q < o.queues; q++) {
		free(jobs[q].slots);
		free(jobs[q].head_slot);
	}
	pthread_barrier_destroy(&start);
	return status;
}
