// SPDX-License-Identifier: GPL-2.0
/*
 * core_test: the kvmx virtqueue core, driven from userspace through the
 * loopback device /dev/kvmx-vhost-test.
 *
 * The test process is the guest driver and the VMM at once (see lib/):
 * it lays split rings out in its own memory, presents that memory to the
 * device as two regions at guest-physical addresses unlike their host
 * addresses, and checks what the device echoes back byte for byte. Hostile
 * chains must be rejected with the documented errno and fault, never
 * followed.
 *
 * Every wait is bounded (VHOST_TIMEOUT_MS), so a stuck device fails a test
 * rather than hanging the run.
 *
 * Note: ASSERT_*() and EXPECT_*() expand to two statements (the check and
 * the optional TH_LOG handler), so as the body of an if or a for they are
 * always braced here.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <linux/kvmx_vhost.h>
#include <linux/vhost.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ring.h>

/*
 * The harness trips -Wextra on its own: an unused signal-handler argument,
 * and -Wclobbered on the locals of the setjmp() in every TEST_F() wrapper
 * (none of our code uses setjmp).
 */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter"
#include "kselftest_harness.h"
#pragma GCC diagnostic pop
#pragma GCC diagnostic ignored "-Wclobbered"

#include "guest.h"
#include "util.h"
#include "vhost.h"
#include "vring.h"

#define NVQS		KVMX_VHOST_TEST_NVQS
#define RING_NUM	256U
#define MAX_SEGS	32U
#define POISON		0xa5

#define F(bit)		(1ULL << (bit))
/* What every test acks: modern little-endian rings. */
#define F_BASE		(F(VIRTIO_F_VERSION_1) | F(VIRTIO_F_ANY_LAYOUT))
#define F_INDIRECT	F(VIRTIO_RING_F_INDIRECT_DESC)
#define F_EVENT_IDX	F(VIRTIO_RING_F_EVENT_IDX)
#define F_LOG_ALL	F(VHOST_F_LOG_ALL)
#define F_OFFERED	(F_BASE | F_INDIRECT | F_EVENT_IDX | F_LOG_ALL)

/* A chain as the test sees it: its buffers and the bytes it reads. */
struct chain {
	unsigned int nout;
	unsigned int nin;
	struct vring_seg out[MAX_SEGS];
	struct vring_seg in[MAX_SEGS];
	uint32_t out_len;
	uint32_t in_len;
	uint8_t *expect;	/* the readable bytes, concatenated */
	int head;
};

FIXTURE(core) {
	struct guest_mem mem;
	struct vhost_dev dev;
	struct vring_drv vq[NVQS];
	uint64_t rng;
};

static uint64_t name_seed(const char *name)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	while (*name)
		h = (h ^ (uint8_t)*name++) * 0x100000001b3ULL;
	return h;
}

/* Open the test device, or skip when this kernel does not have it. */
static bool open_test_dev(struct __test_metadata *_metadata, struct vhost_dev *dev)
{
	int ret = vhost_open(dev, KVMX_TEST_DEV_PATH, NVQS);

	if (ret == -ENOENT || ret == -ENXIO || ret == -ENODEV) {
		SKIP(return false, "%s is missing: load %s.ko", KVMX_TEST_DEV_PATH,
		     KVMX_TEST_MODULE);
	}
	if (ret == -EACCES || ret == -EPERM)
		SKIP(return false, "%s needs root", KVMX_TEST_DEV_PATH);
	EXPECT_EQ(0, ret) TH_LOG("expected to open %s", KVMX_TEST_DEV_PATH);
	return !ret;
}

FIXTURE_SETUP(core)
{
	unsigned int i;

	if (!open_test_dev(_metadata, &self->dev))
		return;
	ASSERT_EQ(0, vhost_set_owner(&self->dev));
	ASSERT_EQ(0, guest_mem_init(&self->mem));
	ASSERT_EQ(0, vhost_set_mem_table(&self->dev, &self->mem));
	for (i = 0; i < NVQS; i++) {
		ASSERT_EQ(0, vring_drv_init(&self->vq[i], &self->mem, RING_NUM));
	}
	self->rng = name_seed(_metadata->name);
}

FIXTURE_TEARDOWN(core)
{
	unsigned int i;

	/* The device goes first: it may still be using guest memory. */
	vhost_close(&self->dev);
	for (i = 0; i < NVQS; i++)
		vring_drv_destroy(&self->vq[i]);
	guest_mem_destroy(&self->mem);
}

/* ---- helpers ----------------------------------------------------------- */

/* Ack @features, wire virtqueues 0..@nvqs-1 to their rings and start. */
static void start(struct __test_metadata *_metadata, FIXTURE_DATA(core) *self,
		  uint64_t features, unsigned int nvqs)
{
	unsigned int i;

	ASSERT_EQ(0, vhost_set_features(&self->dev, features));
	for (i = 0; i < nvqs; i++) {
		ASSERT_EQ(0, vhost_setup_vq(&self->dev, i, &self->vq[i], 0, 0));
	}
	ASSERT_EQ(0, kvmx_test_run(&self->dev, 1));
}

static uint64_t alloc_buf(struct __test_metadata *_metadata, FIXTURE_DATA(core) *self,
			  uint32_t len, unsigned int misalign)
{
	uint64_t gpa = guest_alloc(&self->mem, (uint64_t)len + misalign, 64);

	ASSERT_NE(0ULL, gpa) TH_LOG("expected %u bytes of guest memory", len);
	return gpa + misalign;
}

/* Describe a chain of freshly allocated buffers of the given lengths. */
static void chain_alloc(struct __test_metadata *_metadata, FIXTURE_DATA(core) *self,
			struct chain *c, const uint32_t *out_lens, unsigned int nout,
			const uint32_t *in_lens, unsigned int nin, unsigned int misalign)
{
	unsigned int i;

	ASSERT_LE(nout, MAX_SEGS);
	ASSERT_LE(nin, MAX_SEGS);
	memset(c, 0, sizeof(*c));
	c->nout = nout;
	c->nin = nin;
	for (i = 0; i < nout; i++) {
		c->out[i].len = out_lens[i];
		c->out[i].gpa = alloc_buf(_metadata, self, out_lens[i], misalign);
	}
	for (i = 0; i < nin; i++) {
		c->in[i].len = in_lens[i];
		c->in[i].gpa = alloc_buf(_metadata, self, in_lens[i], (misalign * 3 + 1) % 64);
	}
}

/* Random bytes into the readable buffers, poison into the writable ones. */
static void chain_fill(struct __test_metadata *_metadata, FIXTURE_DATA(core) *self,
		       struct chain *c)
{
	uint32_t off = 0;
	unsigned int i;

	c->out_len = 0;
	c->in_len = 0;
	for (i = 0; i < c->nout; i++)
		c->out_len += c->out[i].len;
	for (i = 0; i < c->nin; i++)
		c->in_len += c->in[i].len;
	free(c->expect);
	c->expect = malloc(c->out_len + 1);
	ASSERT_NE(NULL, c->expect);
	rng_fill(&self->rng, c->expect, c->out_len);
	for (i = 0; i < c->nout; i++) {
		ASSERT_EQ(0, guest_write(&self->mem, c->out[i].gpa, c->expect + off,
					 c->out[i].len));
		off += c->out[i].len;
	}
	for (i = 0; i < c->nin; i++) {
		ASSERT_EQ(0, guest_fill(&self->mem, c->in[i].gpa, POISON, c->in[i].len));
	}
}

static void chain_add(struct __test_metadata *_metadata, FIXTURE_DATA(core) *self,
		      unsigned int vq, struct chain *c, bool indirect)
{
	c->head = vring_add_chain(&self->vq[vq], c->out, c->nout, c->in, c->nin, indirect);
	ASSERT_LE(0, c->head) TH_LOG("expected room in vq %u for a chain of %u+%u buffers",
				     vq, c->nout, c->nin);
}

static void chain_release(struct chain *c)
{
	free(c->expect);
	c->expect = NULL;
}

/*
 * The echo contract: used.id is the head, used.len the shorter side, the
 * writable buffers hold the readable bytes in order and nothing past them.
 */
static void chain_check(struct __test_metadata *_metadata, FIXTURE_DATA(core) *self,
			const struct chain *c, const struct vring_used_elem *e)
{
	uint32_t want = c->out_len < c->in_len ? c->out_len : c->in_len;
	uint32_t off = 0, i, j;
	uint8_t *got;

	ASSERT_EQ(c->head, (int)e->id) TH_LOG("expected used.id to be the chain's head");
	ASSERT_EQ(want, e->len) TH_LOG("chain of %u readable and %u writable bytes",
				       c->out_len, c->in_len);
	for (i = 0; i < c->nin; i++) {
		const struct vring_seg *s = &c->in[i];

		got = malloc(s->len);
		ASSERT_NE(NULL, got);
		ASSERT_EQ(0, guest_read(&self->mem, s->gpa, got, s->len));
		for (j = 0; j < s->len; j++) {
			uint8_t exp = off + j < want ? c->expect[off + j] : POISON;

			if (got[j] != exp)
				break;
		}
		ASSERT_EQ(s->len, j) TH_LOG("writable buffer %u (gpa %#llx, %u bytes): byte %u is %#x, expected %#x (%s)",
					    i, (unsigned long long)s->gpa, s->len, j,
					    got[j], off + j < want ? c->expect[off + j] : POISON,
					    off + j < want ? "echoed data" : "untouched poison");
		off += s->len;
		free(got);
	}
}

/* Say why a virtqueue stopped answering, if the device knows. */
static void log_stuck_vq(struct __test_metadata *_metadata, FIXTURE_DATA(core) *self,
			 unsigned int vq)
{
	struct kvmx_vhost_test_stats st;

	if (kvmx_test_stats(&self->dev, vq, &st))
		return;
	TH_LOG("vq %u: broken %u, last_error %d (%s), fault %s, %llu chains echoed, used idx %u",
	       vq, st.broken, st.last_error, strerror(-st.last_error),
	       kvmx_fault_name(st.last_fault), (unsigned long long)st.chains,
	       vring_used_idx(&self->vq[vq]));
}

/* Reap @n used entries of @vq, waiting on its call eventfd in between. */
static void reap_n(struct __test_metadata *_metadata, FIXTURE_DATA(core) *self,
		   unsigned int vq, struct vring_used_elem *elems, unsigned int n)
{
	int64_t deadline = now_ms() + VHOST_TIMEOUT_MS;
	unsigned int got = 0;
	int ret;

	while (got < n) {
		ret = vring_reap(&self->vq[vq], &elems[got]);
		ASSERT_LE(0, ret) TH_LOG("expected a well-formed used ring on vq %u", vq);
		if (ret) {
			got++;
			continue;
		}
		ret = eventfd_wait(self->dev.vq[vq].call, deadline - now_ms());
		if (ret != 1)
			log_stuck_vq(_metadata, self, vq);
		ASSERT_EQ(1, ret) TH_LOG("expected %u used entries on vq %u within %d ms, got %u",
					 n, vq, VHOST_TIMEOUT_MS, got);
	}
}

/* Fill, queue, publish, kick, wait and check a single chain. */
static void echo_one(struct __test_metadata *_metadata, FIXTURE_DATA(core) *self,
		     unsigned int vq, struct chain *c, bool indirect)
{
	struct vring_used_elem e;

	chain_fill(_metadata, self, c);
	chain_add(_metadata, self, vq, c, indirect);
	vring_publish(&self->vq[vq]);
	ASSERT_EQ(0, vhost_kick(&self->dev, vq));
	reap_n(_metadata, self, vq, &e, 1);
	chain_check(_metadata, self, c, &e);
}

/* Echo one chain of one readable and one writable buffer of @len bytes. */
static void echo_simple(struct __test_metadata *_metadata, FIXTURE_DATA(core) *self,
			unsigned int vq, uint32_t len)
{
	struct chain c;

	chain_alloc(_metadata, self, &c, &len, 1, &len, 1, 0);
	echo_one(_metadata, self, vq, &c, false);
	chain_release(&c);
}

/*
 * Let the device finish whatever it is doing on @vq: the stats ioctl takes
 * the virtqueue's lock, which the handler holds while it signals.
 */
static void settle(struct __test_metadata *_metadata, FIXTURE_DATA(core) *self,
		   unsigned int vq)
{
	struct kvmx_vhost_test_stats st;
	struct timespec nap = { .tv_nsec = 20 * 1000 * 1000 };

	ASSERT_EQ(0, kvmx_test_stats(&self->dev, vq, &st));
	nanosleep(&nap, NULL);
}

/* Publish @head as it is (any value) and kick. */
static void push_raw(struct __test_metadata *_metadata, FIXTURE_DATA(core) *self,
		     unsigned int vq, uint16_t head)
{
	vring_push_head(&self->vq[vq], head);
	vring_publish(&self->vq[vq]);
	ASSERT_EQ(0, vhost_kick(&self->dev, vq));
}

static int take_desc(struct __test_metadata *_metadata, FIXTURE_DATA(core) *self,
		     unsigned int vq)
{
	int d = vring_take_desc(&self->vq[vq]);

	ASSERT_LE(0, d);
	return d;
}

/* A table of @n descriptors in guest memory; its GPA through @gpa. */
static struct vring_desc *alloc_table(struct __test_metadata *_metadata,
				      FIXTURE_DATA(core) *self, unsigned int n, uint64_t *gpa)
{
	struct vring_desc *t;

	*gpa = guest_alloc(&self->mem, n * sizeof(*t), 16);
	ASSERT_NE(0ULL, *gpa);
	t = guest_hva(&self->mem, *gpa, n * sizeof(*t));
	ASSERT_NE(NULL, t);
	return t;
}

/*
 * The rejection contract: the error eventfd fires, the queue is broken,
 * the stats name the errno and the check that fired, and nothing was used.
 */
static void expect_rejected(struct __test_metadata *_metadata, FIXTURE_DATA(core) *self,
			    unsigned int vq, int err, unsigned int fault)
{
	struct kvmx_vhost_test_stats st;
	uint16_t used_before = self->vq[vq].last_used;

	if (vhost_wait_err(&self->dev, vq, VHOST_TIMEOUT_MS)) {
		log_stuck_vq(_metadata, self, vq);
		ASSERT_TRUE(false) TH_LOG("expected the error eventfd after a chain the core must reject with %s",
					  strerror(err));
	}
	ASSERT_EQ(0, kvmx_test_stats(&self->dev, vq, &st));
	EXPECT_EQ(1U, st.broken) TH_LOG("expected vq %u to be marked broken", vq);
	EXPECT_EQ(1ULL, st.bad_chains);
	EXPECT_EQ(-err, st.last_error) TH_LOG("expected last_error -%s, got %d (%s)",
					      strerror(err), st.last_error,
					      strerror(-st.last_error));
	EXPECT_EQ(fault, st.last_fault) TH_LOG("expected fault %s, got %s",
					       kvmx_fault_name(fault),
					       kvmx_fault_name(st.last_fault));
	EXPECT_EQ(used_before, vring_used_idx(&self->vq[vq]))
		TH_LOG("expected no used entry for a rejected chain");
}

/* ---- echo: the data path ----------------------------------------------- */

TEST_F(core, echo_round_trips_at_many_sizes_and_alignments)
{
	static const uint32_t sizes[] = {
		1, 2, 15, 16, 511, 512, 4095, 4096, 4097, 8191, 65536, 65539, 131075,
	};
	static const unsigned int misaligns[] = { 0, 1, 7, 63 };
	struct chain c;
	unsigned int i, j;

	start(_metadata, self, F_BASE, 1);
	for (i = 0; i < ARRAY_SIZE(sizes); i++) {
		for (j = 0; j < ARRAY_SIZE(misaligns); j++) {
			chain_alloc(_metadata, self, &c, &sizes[i], 1, &sizes[i], 1,
				    misaligns[j]);
			echo_one(_metadata, self, 0, &c, false);
			chain_release(&c);
		}
	}
}

TEST_F(core, echo_crosses_pages_and_the_region_boundary)
{
	uint64_t boundary = guest_region_boundary(&self->mem);
	uint64_t end = guest_gpa_end(&self->mem);
	uint32_t len = 10007;
	uint64_t across, last;
	struct chain c = { .nout = 1, .nin = 1 };

	start(_metadata, self, F_BASE, 1);
	/* A buffer that starts 5000 bytes before region 1 and runs into it. */
	across = guest_alloc_at(&self->mem, boundary - 5000, len);
	ASSERT_EQ(boundary - 5000, across);

	/* Read across the boundary. */
	c.out[0] = (struct vring_seg){ across, len };
	c.in[0] = (struct vring_seg){ alloc_buf(_metadata, self, len, 3), len };
	echo_one(_metadata, self, 0, &c, false);

	/* Write across the boundary. */
	c.out[0] = (struct vring_seg){ alloc_buf(_metadata, self, len, 5), len };
	c.in[0] = (struct vring_seg){ across, len };
	echo_one(_metadata, self, 0, &c, false);

	/* A chain with a buffer in each region, the last ending with memory. */
	last = guest_alloc_at(&self->mem, end - 4099, 4099);
	ASSERT_NE(0ULL, last);
	c.out[0] = (struct vring_seg){ GUEST_BASE_GPA + GUEST_PAGE_SIZE * 1000 + 17, 4099 };
	c.in[0] = (struct vring_seg){ last, 4099 };
	/* A region-0 address the allocator skipped on its way to the boundary. */
	ASSERT_LT(self->vq[NVQS - 1].used_gpa + GUEST_PAGE_SIZE, c.out[0].gpa);
	ASSERT_LT(c.out[0].gpa + 4099, boundary - 5000);
	echo_one(_metadata, self, 0, &c, false);
	chain_release(&c);
}

TEST_F(core, echo_scatters_over_uneven_segments_in_order)
{
	static const uint32_t out_lens[] = { 3, 4096, 1, 777, 5000, 64 };
	static const uint32_t in_lens[] = { 1000, 1, 1, 9000, 2000 };
	struct chain c;

	start(_metadata, self, F_BASE, 1);
	chain_alloc(_metadata, self, &c, out_lens, ARRAY_SIZE(out_lens), in_lens,
		    ARRAY_SIZE(in_lens), 9);
	echo_one(_metadata, self, 0, &c, false);
	chain_release(&c);
}

TEST_F(core, used_len_is_the_shorter_of_readable_and_writable)
{
	uint32_t big = 1000, small = 300;
	struct chain c;

	start(_metadata, self, F_BASE, 1);
	/* More to read than room to write: the rest is dropped. */
	chain_alloc(_metadata, self, &c, &big, 1, &small, 1, 0);
	echo_one(_metadata, self, 0, &c, false);
	chain_release(&c);
	/* More room than data: the tail of the buffer stays untouched. */
	chain_alloc(_metadata, self, &c, &small, 1, &big, 1, 0);
	echo_one(_metadata, self, 0, &c, false);
	chain_release(&c);
	/* Nothing writable, or nothing readable: used.len is 0. */
	chain_alloc(_metadata, self, &c, &big, 1, NULL, 0, 0);
	echo_one(_metadata, self, 0, &c, false);
	chain_release(&c);
	chain_alloc(_metadata, self, &c, NULL, 0, &big, 1, 0);
	echo_one(_metadata, self, 0, &c, false);
	chain_release(&c);
}

TEST_F(core, one_kick_completes_a_full_ring_of_chains)
{
	/* Two descriptors a chain: every descriptor of the ring in flight. */
	const unsigned int n = RING_NUM / 2;
	struct kvmx_vhost_test_stats st;
	struct vring_used_elem *used;
	struct chain *chains;
	int by_head[RING_NUM];
	uint64_t bytes = 0;
	unsigned int i;

	chains = calloc(n, sizeof(*chains));
	used = calloc(n, sizeof(*used));
	ASSERT_NE(NULL, chains);
	ASSERT_NE(NULL, used);
	start(_metadata, self, F_BASE, 1);
	for (i = 0; i < n; i++) {
		uint32_t out_len = 1 + rng_next(&self->rng) % 2048;
		uint32_t in_len = 1 + rng_next(&self->rng) % 2048;

		chain_alloc(_metadata, self, &chains[i], &out_len, 1, &in_len, 1, i % 64);
		chain_fill(_metadata, self, &chains[i]);
		chain_add(_metadata, self, 0, &chains[i], false);
		by_head[chains[i].head] = i;
		bytes += out_len < in_len ? out_len : in_len;
	}
	ASSERT_EQ(0U, self->vq[0].num_free);
	vring_publish(&self->vq[0]);
	ASSERT_EQ(0, vhost_kick(&self->dev, 0));
	reap_n(_metadata, self, 0, used, n);
	for (i = 0; i < n; i++) {
		ASSERT_LT(used[i].id, RING_NUM);
		chain_check(_metadata, self, &chains[by_head[used[i].id]], &used[i]);
	}

	/* Stopping flushes the worker, so the counters are final. */
	ASSERT_EQ(0, kvmx_test_run(&self->dev, 0));
	ASSERT_EQ(0, kvmx_test_stats(&self->dev, 0, &st));
	EXPECT_EQ((uint64_t)n, st.chains);
	EXPECT_EQ(bytes, st.bytes) TH_LOG("expected stats.bytes to sum the used lengths");
	EXPECT_EQ(0U, st.broken);
	EXPECT_EQ(0ULL, st.bad_chains);
	for (i = 0; i < n; i++)
		chain_release(&chains[i]);
	free(chains);
	free(used);
}

TEST_F(core, ring_indexes_wrap_past_65535)
{
	struct vring_used_elem used[128];
	struct chain *chains;
	unsigned int round, i;
	int by_head[RING_NUM];

	chains = calloc(128, sizeof(*chains));
	ASSERT_NE(NULL, chains);
	/* Both sides agree to start just below the 16-bit wrap. */
	vring_restart_at(&self->vq[0], 0xff80);
	start(_metadata, self, F_BASE, 1);
	for (round = 0; round < 3; round++) {
		for (i = 0; i < 128; i++) {
			uint32_t len = 1 + (round * 128 + i) % 300;

			if (!round)
				chain_alloc(_metadata, self, &chains[i], &len, 1, &len, 1, i % 8);
			chain_fill(_metadata, self, &chains[i]);
			chain_add(_metadata, self, 0, &chains[i], false);
			by_head[chains[i].head] = i;
		}
		vring_publish(&self->vq[0]);
		ASSERT_EQ(0, vhost_kick(&self->dev, 0));
		reap_n(_metadata, self, 0, used, 128);
		for (i = 0; i < 128; i++)
			chain_check(_metadata, self, &chains[by_head[used[i].id]], &used[i]);
	}
	ASSERT_EQ((uint16_t)(0xff80 + 3 * 128), vring_used_idx(&self->vq[0]));
	for (i = 0; i < 128; i++)
		chain_release(&chains[i]);
	free(chains);
}

TEST_F(core, indirect_chains_echo_like_direct_ones)
{
	struct vring_used_elem used[32];
	struct chain chains[32];
	int by_head[RING_NUM];
	uint32_t out_lens[MAX_SEGS], in_lens[MAX_SEGS];
	unsigned int i, j, nout, nin;

	start(_metadata, self, F_BASE | F_INDIRECT, 1);
	for (i = 0; i < 32; i++) {
		nout = 1 + i % 10;
		nin = 1 + (i * 7) % 10;
		for (j = 0; j < nout; j++)
			out_lens[j] = 1 + rng_next(&self->rng) % 3000;
		for (j = 0; j < nin; j++)
			in_lens[j] = 1 + rng_next(&self->rng) % 3000;
		chain_alloc(_metadata, self, &chains[i], out_lens, nout, in_lens, nin, i % 16);
		chain_fill(_metadata, self, &chains[i]);
		/* Every other chain direct, so the two kinds interleave. */
		chain_add(_metadata, self, 0, &chains[i], i % 2 == 0);
		by_head[chains[i].head] = i;
	}
	vring_publish(&self->vq[0]);
	ASSERT_EQ(0, vhost_kick(&self->dev, 0));
	reap_n(_metadata, self, 0, used, 32);
	for (i = 0; i < 32; i++) {
		chain_check(_metadata, self, &chains[by_head[used[i].id]], &used[i]);
		chain_release(&chains[by_head[used[i].id]]);
	}
}

TEST_F(core, indirect_table_after_direct_descriptors_echoes)
{
	static const uint32_t out_lens[] = { 100, 5000 };
	static const uint32_t in_lens[] = { 3000, 2100 };
	struct vring_used_elem e;
	struct vring_desc *t;
	uint64_t table;
	struct chain c;
	int d0, d1;

	start(_metadata, self, F_BASE | F_INDIRECT, 1);
	chain_alloc(_metadata, self, &c, out_lens, 2, in_lens, 2, 5);
	chain_fill(_metadata, self, &c);
	/* d0 (readable) -> d1 (indirect: readable, writable, writable) */
	d0 = take_desc(_metadata, self, 0);
	d1 = take_desc(_metadata, self, 0);
	t = alloc_table(_metadata, self, 3, &table);
	desc_set(&t[0], c.out[1].gpa, c.out[1].len, VRING_DESC_F_NEXT, 1);
	desc_set(&t[1], c.in[0].gpa, c.in[0].len, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 2);
	desc_set(&t[2], c.in[1].gpa, c.in[1].len, VRING_DESC_F_WRITE, 0);
	vring_write_desc(&self->vq[0], d0, c.out[0].gpa, c.out[0].len, VRING_DESC_F_NEXT, d1);
	vring_write_desc(&self->vq[0], d1, table, 3 * sizeof(*t), VRING_DESC_F_INDIRECT, 0);
	c.head = d0;
	push_raw(_metadata, self, 0, d0);
	reap_n(_metadata, self, 0, &e, 1);
	chain_check(_metadata, self, &c, &e);
	chain_release(&c);
}

/* ---- notifications ------------------------------------------------------ */

/* Queue, publish and kick one chain of @len bytes each way; no waiting. */
static void submit_simple(struct __test_metadata *_metadata, FIXTURE_DATA(core) *self,
			  unsigned int vq, struct chain *c, uint32_t len)
{
	chain_alloc(_metadata, self, c, &len, 1, &len, 1, 0);
	chain_fill(_metadata, self, c);
	chain_add(_metadata, self, vq, c, false);
	vring_publish(&self->vq[vq]);
	ASSERT_EQ(0, vhost_kick(&self->dev, vq));
}

/* Forget calls already made: the next one seen is for what comes next. */
static void drain_calls(struct __test_metadata *_metadata, FIXTURE_DATA(core) *self,
			unsigned int vq)
{
	settle(_metadata, self, vq);
	eventfd_take(self->dev.vq[vq].call);
}

/* The device must use @c and call. */
static void expect_called(struct __test_metadata *_metadata, FIXTURE_DATA(core) *self,
			  unsigned int vq, struct chain *c)
{
	struct vring_used_elem e;

	ASSERT_EQ(0, vhost_wait_call(&self->dev, vq, VHOST_TIMEOUT_MS))
		TH_LOG("expected a call for used idx %u", (uint16_t)(self->vq[vq].last_used + 1));
	ASSERT_EQ(1, vring_reap(&self->vq[vq], &e));
	chain_check(_metadata, self, c, &e);
	chain_release(c);
}

/* The device must use @c and not call. */
static void expect_quiet(struct __test_metadata *_metadata, FIXTURE_DATA(core) *self,
			 unsigned int vq, struct chain *c)
{
	struct vring_drv *vr = &self->vq[vq];
	uint16_t idx = vr->last_used + 1;
	struct vring_used_elem e;

	ASSERT_EQ(0, vring_wait_used_idx(vr, idx, VHOST_TIMEOUT_MS));
	settle(_metadata, self, vq);
	ASSERT_EQ(0, eventfd_take(self->dev.vq[vq].call))
		TH_LOG("expected no call for used idx %u", idx);
	ASSERT_EQ(1, vring_reap(vr, &e));
	chain_check(_metadata, self, c, &e);
	chain_release(c);
}

TEST_F(core, event_idx_suppresses_calls_until_used_event_is_reached)
{
	struct vring_drv *vr = &self->vq[0];
	struct chain c;
	int i;

	start(_metadata, self, F_BASE | F_EVENT_IDX, 1);
	/* used_event 0: call as soon as entry 0 is used. */
	vring_set_used_event(vr, 0);
	submit_simple(_metadata, self, 0, &c, 64);
	expect_called(_metadata, self, 0, &c);
	drain_calls(_metadata, self, 0);

	/* Ask for a call only once entry 4 is used: entries 1..3 stay quiet. */
	vring_set_used_event(vr, 4);
	for (i = 1; i <= 3; i++) {
		submit_simple(_metadata, self, 0, &c, 64);
		expect_quiet(_metadata, self, 0, &c);
	}
	submit_simple(_metadata, self, 0, &c, 64);
	expect_called(_metadata, self, 0, &c);
	ASSERT_EQ(5, vring_used_idx(vr));
}

TEST_F(core, no_interrupt_flag_suppresses_calls_without_event_idx)
{
	struct vring_drv *vr = &self->vq[0];
	struct chain c;

	start(_metadata, self, F_BASE, 1);
	submit_simple(_metadata, self, 0, &c, 64);
	expect_called(_metadata, self, 0, &c);
	drain_calls(_metadata, self, 0);

	vring_set_avail_flags(vr, VRING_AVAIL_F_NO_INTERRUPT);
	submit_simple(_metadata, self, 0, &c, 64);
	expect_quiet(_metadata, self, 0, &c);

	/* Interrupts wanted again: the next chain calls. */
	vring_set_avail_flags(vr, 0);
	submit_simple(_metadata, self, 0, &c, 64);
	expect_called(_metadata, self, 0, &c);
}

/* ---- workers ------------------------------------------------------------ */

TEST_F(core, two_vqs_on_two_workers_echo_independently)
{
	struct vring_used_elem used[NVQS][64];
	struct chain chains[NVQS][64];
	int by_head[NVQS][RING_NUM];
	unsigned int w, id, q, i;

	ASSERT_EQ(0, vhost_get_worker(&self->dev, 0, &id));
	EXPECT_EQ(0U, id) TH_LOG("expected vq 0 on the default worker 0");
	ASSERT_EQ(0, vhost_new_worker(&self->dev, &w));
	ASSERT_NE(0U, w) TH_LOG("expected a new worker id distinct from the default 0");
	ASSERT_EQ(0, vhost_attach_worker(&self->dev, 1, w));
	ASSERT_EQ(0, vhost_get_worker(&self->dev, 1, &id));
	ASSERT_EQ(w, id);
	ASSERT_EQ(0, vhost_get_worker(&self->dev, 0, &id));
	ASSERT_EQ(0U, id);

	start(_metadata, self, F_BASE, NVQS);
	for (q = 0; q < NVQS; q++) {
		for (i = 0; i < 64; i++) {
			uint32_t len = 1 + rng_next(&self->rng) % 4096;

			chain_alloc(_metadata, self, &chains[q][i], &len, 1, &len, 1, q + i);
			chain_fill(_metadata, self, &chains[q][i]);
			chain_add(_metadata, self, q, &chains[q][i], false);
			by_head[q][chains[q][i].head] = i;
		}
		vring_publish(&self->vq[q]);
	}
	for (q = 0; q < NVQS; q++) {
		ASSERT_EQ(0, vhost_kick(&self->dev, q));
	}
	for (q = 0; q < NVQS; q++) {
		reap_n(_metadata, self, q, used[q], 64);
		for (i = 0; i < 64; i++) {
			struct chain *c = &chains[q][by_head[q][used[q][i].id]];

			chain_check(_metadata, self, c, &used[q][i]);
			chain_release(c);
		}
	}
}

TEST_F(core, freeing_a_worker_in_use_is_ebusy_until_detached)
{
	unsigned int w, id;

	ASSERT_EQ(0, vhost_new_worker(&self->dev, &w));
	ASSERT_EQ(0, vhost_attach_worker(&self->dev, 1, w));
	ASSERT_EQ(-EBUSY, vhost_free_worker(&self->dev, w));
	ASSERT_EQ(-EBUSY, vhost_free_worker(&self->dev, 0))
		TH_LOG("expected the default worker, serving vq 0, to be busy too");
	/* Move vq 1 back to the default worker: the new one is now idle. */
	ASSERT_EQ(0, vhost_attach_worker(&self->dev, 1, 0));
	ASSERT_EQ(0, vhost_get_worker(&self->dev, 1, &id));
	ASSERT_EQ(0U, id);
	ASSERT_EQ(0, vhost_free_worker(&self->dev, w));
	ASSERT_EQ(-ENODEV, vhost_free_worker(&self->dev, w))
		TH_LOG("expected a freed worker to be unknown");
	/* And the queue still works on the default worker. */
	start(_metadata, self, F_BASE, NVQS);
	echo_simple(_metadata, self, 1, 333);
}

TEST_F(core, unknown_worker_ids_are_enodev)
{
	unsigned int id;

	ASSERT_EQ(-ENODEV, vhost_free_worker(&self->dev, 12345));
	ASSERT_EQ(-ENODEV, vhost_attach_worker(&self->dev, 0, 12345));
	ASSERT_EQ(0, vhost_get_worker(&self->dev, 0, &id));
	ASSERT_EQ(0U, id) TH_LOG("expected a failed attach to leave vq 0 where it was");
}

/* ---- dirty log ---------------------------------------------------------- */

/* A zeroed bitmap covering guest memory, with an inaccessible page after. */
static uint8_t *alloc_log(struct __test_metadata *_metadata, FIXTURE_DATA(core) *self,
			  size_t *size)
{
	uint64_t pages = guest_gpa_end(&self->mem) / GUEST_PAGE_SIZE;
	size_t len = (pages / 8 + GUEST_PAGE_SIZE - 1) & ~(GUEST_PAGE_SIZE - 1);
	uint8_t *map;

	map = mmap(NULL, len + GUEST_PAGE_SIZE, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, map);
	ASSERT_EQ(0, mprotect(map + len, GUEST_PAGE_SIZE, PROT_NONE));
	*size = len;
	return map;
}

static void set_page_bits(uint8_t *bitmap, uint64_t gpa, uint64_t len)
{
	uint64_t pg;

	for (pg = gpa / GUEST_PAGE_SIZE; pg <= (gpa + len - 1) / GUEST_PAGE_SIZE; pg++)
		bitmap[pg / 8] |= 1 << (pg % 8);
}

static void expect_log(struct __test_metadata *_metadata, const uint8_t *want,
		       const uint8_t *got, size_t size)
{
	unsigned int bad = 0;
	uint64_t pg;

	for (pg = 0; pg < size * 8; pg++) {
		bool w = want[pg / 8] & (1 << (pg % 8));
		bool g = got[pg / 8] & (1 << (pg % 8));

		if (w != g && bad++ < 8)
			TH_LOG("dirty bit of page %#llx (gpa %#llx): expected %d, got %d",
			       (unsigned long long)pg,
			       (unsigned long long)(pg * GUEST_PAGE_SIZE), w, g);
	}
	ASSERT_EQ(0U, bad) TH_LOG("expected dirty bits exactly for the pages written");
}

/*
 * One chain whose writable part spans three pages of region 0 and three of
 * region 1 but is written only partly: 5000 bytes from mid-page into the
 * first buffer (2 pages), 1000 into the second (1 page).
 */
static void dirty_log_scenario(struct __test_metadata *_metadata, FIXTURE_DATA(core) *self,
			       bool log_used)
{
	uint32_t out_len = 6000, in_lens[] = { 5000, 3 * 4096 };
	uint8_t *bitmap, *want;
	size_t size;
	struct chain c = { .nout = 1, .nin = 2 };
	uint64_t pg;

	bitmap = alloc_log(_metadata, self, &size);
	want = calloc(1, size);
	ASSERT_NE(NULL, want);

	ASSERT_EQ(0, vhost_set_features(&self->dev, F_BASE | F_LOG_ALL));
	ASSERT_EQ(0, vhost_set_log(&self->dev, bitmap));
	ASSERT_EQ(0, vhost_setup_vq(&self->dev, 0, &self->vq[0],
				    log_used ? 1U << VHOST_VRING_F_LOG : 0,
				    log_used ? self->vq[0].used_gpa : 0));
	ASSERT_EQ(0, kvmx_test_run(&self->dev, 1));

	c.out[0] = (struct vring_seg){ alloc_buf(_metadata, self, out_len, 1), out_len };
	pg = guest_alloc(&self->mem, 3 * GUEST_PAGE_SIZE, GUEST_PAGE_SIZE);
	ASSERT_NE(0ULL, pg);
	c.in[0] = (struct vring_seg){ pg + 3000, in_lens[0] };
	pg = guest_alloc_at(&self->mem, guest_region_boundary(&self->mem) + 16 * GUEST_PAGE_SIZE,
			    3 * GUEST_PAGE_SIZE);
	ASSERT_NE(0ULL, pg);
	c.in[1] = (struct vring_seg){ pg + 10, in_lens[1] };
	echo_one(_metadata, self, 0, &c, false);
	ASSERT_EQ(0, vhost_wait_log(&self->dev, VHOST_TIMEOUT_MS))
		TH_LOG("expected the log eventfd after the device wrote guest memory");

	/* The handler logs its used-ring writes under the ring's lock. */
	settle(_metadata, self, 0);
	set_page_bits(want, c.in[0].gpa, 5000);
	set_page_bits(want, c.in[1].gpa, 1000);
	if (log_used)
		set_page_bits(want, self->vq[0].used_gpa, 4);
	expect_log(_metadata, want, bitmap, size);
	chain_release(&c);
	free(want);
	munmap(bitmap, size + GUEST_PAGE_SIZE);
}

TEST_F(core, dirty_log_marks_exactly_the_pages_written)
{
	dirty_log_scenario(_metadata, self, false);
}

TEST_F(core, dirty_log_covers_the_used_ring_with_vring_f_log)
{
	dirty_log_scenario(_metadata, self, true);
}

/* ---- hostile chains ----------------------------------------------------- */

#define F_HOSTILE	(F_BASE | F_INDIRECT)

TEST_F(core, head_beyond_the_ring_is_rejected)
{
	start(_metadata, self, F_HOSTILE, 1);
	push_raw(_metadata, self, 0, RING_NUM);
	expect_rejected(_metadata, self, 0, ERANGE, KVMX_FAULT_HEAD_RANGE);
}

TEST_F(core, next_beyond_the_ring_is_rejected)
{
	uint64_t buf = alloc_buf(_metadata, self, 64, 0);
	int d;

	start(_metadata, self, F_HOSTILE, 1);
	d = take_desc(_metadata, self, 0);
	vring_write_desc(&self->vq[0], d, buf, 64, VRING_DESC_F_NEXT, RING_NUM);
	push_raw(_metadata, self, 0, d);
	expect_rejected(_metadata, self, 0, ERANGE, KVMX_FAULT_NEXT_RANGE);
}

TEST_F(core, next_beyond_the_indirect_table_is_rejected)
{
	uint64_t buf = alloc_buf(_metadata, self, 128, 0), table;
	struct vring_desc *t = alloc_table(_metadata, self, 2, &table);
	int d;

	start(_metadata, self, F_HOSTILE, 1);
	desc_set(&t[0], buf, 64, VRING_DESC_F_NEXT, 2);
	desc_set(&t[1], buf + 64, 64, VRING_DESC_F_WRITE, 0);
	d = take_desc(_metadata, self, 0);
	vring_write_desc(&self->vq[0], d, table, 2 * sizeof(*t), VRING_DESC_F_INDIRECT, 0);
	push_raw(_metadata, self, 0, d);
	expect_rejected(_metadata, self, 0, ERANGE, KVMX_FAULT_NEXT_RANGE);
}

TEST_F(core, descriptor_loop_is_rejected)
{
	uint64_t buf = alloc_buf(_metadata, self, 64, 0);
	int a, b;

	start(_metadata, self, F_HOSTILE, 1);
	a = take_desc(_metadata, self, 0);
	b = take_desc(_metadata, self, 0);
	vring_write_desc(&self->vq[0], a, buf, 64, VRING_DESC_F_NEXT, b);
	vring_write_desc(&self->vq[0], b, buf, 64, VRING_DESC_F_NEXT, a);
	push_raw(_metadata, self, 0, a);
	expect_rejected(_metadata, self, 0, ELOOP, KVMX_FAULT_LOOP);
}

TEST_F(core, chain_longer_than_the_ring_is_rejected)
{
	const unsigned int num = 16, n = num + 1;
	uint64_t buf = alloc_buf(_metadata, self, 16, 0), table;
	struct vring_desc *t = alloc_table(_metadata, self, n, &table);
	unsigned int i;
	int d;

	/* A ring of 16 and an otherwise valid indirect table of 17. */
	vring_drv_destroy(&self->vq[0]);
	ASSERT_EQ(0, vring_drv_init(&self->vq[0], &self->mem, num));
	start(_metadata, self, F_HOSTILE, 1);
	for (i = 0; i < n; i++)
		desc_set(&t[i], buf, 16, i + 1 < n ? VRING_DESC_F_NEXT : 0, i + 1);
	d = take_desc(_metadata, self, 0);
	vring_write_desc(&self->vq[0], d, table, n * sizeof(*t), VRING_DESC_F_INDIRECT, 0);
	push_raw(_metadata, self, 0, d);
	expect_rejected(_metadata, self, 0, E2BIG, KVMX_FAULT_TOO_LONG);
}

TEST_F(core, indirect_inside_indirect_is_rejected)
{
	uint64_t buf = alloc_buf(_metadata, self, 128, 0), outer, inner;
	struct vring_desc *o = alloc_table(_metadata, self, 2, &outer);
	struct vring_desc *in = alloc_table(_metadata, self, 1, &inner);
	int d;

	start(_metadata, self, F_HOSTILE, 1);
	desc_set(&in[0], buf + 64, 64, VRING_DESC_F_WRITE, 0);
	desc_set(&o[0], buf, 64, VRING_DESC_F_NEXT, 1);
	desc_set(&o[1], inner, sizeof(*in), VRING_DESC_F_INDIRECT, 0);
	d = take_desc(_metadata, self, 0);
	vring_write_desc(&self->vq[0], d, outer, 2 * sizeof(*o), VRING_DESC_F_INDIRECT, 0);
	push_raw(_metadata, self, 0, d);
	expect_rejected(_metadata, self, 0, EINVAL, KVMX_FAULT_NESTED_INDIRECT);
}

TEST_F(core, indirect_with_next_flag_is_rejected)
{
	uint64_t buf = alloc_buf(_metadata, self, 128, 0), table;
	struct vring_desc *t = alloc_table(_metadata, self, 1, &table);
	int d, e;

	start(_metadata, self, F_HOSTILE, 1);
	desc_set(&t[0], buf, 64, 0, 0);
	d = take_desc(_metadata, self, 0);
	e = take_desc(_metadata, self, 0);
	vring_write_desc(&self->vq[0], d, table, sizeof(*t),
			 VRING_DESC_F_INDIRECT | VRING_DESC_F_NEXT, e);
	vring_write_desc(&self->vq[0], e, buf + 64, 64, VRING_DESC_F_WRITE, 0);
	push_raw(_metadata, self, 0, d);
	expect_rejected(_metadata, self, 0, EINVAL, KVMX_FAULT_INDIRECT_NEXT);
}

/* An indirect descriptor of @table_len bytes over a valid 2-entry table. */
static void indirect_of_size(struct __test_metadata *_metadata, FIXTURE_DATA(core) *self,
			     uint32_t table_len)
{
	uint64_t buf = alloc_buf(_metadata, self, 128, 0), table;
	struct vring_desc *t = alloc_table(_metadata, self, 2, &table);
	int d;

	desc_set(&t[0], buf, 64, VRING_DESC_F_NEXT, 1);
	desc_set(&t[1], buf + 64, 64, VRING_DESC_F_WRITE, 0);
	d = take_desc(_metadata, self, 0);
	vring_write_desc(&self->vq[0], d, table, table_len, VRING_DESC_F_INDIRECT, 0);
	push_raw(_metadata, self, 0, d);
}

TEST_F(core, empty_indirect_table_is_rejected)
{
	start(_metadata, self, F_HOSTILE, 1);
	indirect_of_size(_metadata, self, 0);
	expect_rejected(_metadata, self, 0, EINVAL, KVMX_FAULT_INDIRECT_SIZE);
}

TEST_F(core, indirect_table_of_partial_descriptors_is_rejected)
{
	start(_metadata, self, F_HOSTILE, 1);
	indirect_of_size(_metadata, self, 24);
	expect_rejected(_metadata, self, 0, EINVAL, KVMX_FAULT_INDIRECT_SIZE);
}

TEST_F(core, indirect_without_negotiating_it_is_rejected)
{
	start(_metadata, self, F_BASE, 1);
	indirect_of_size(_metadata, self, 32);
	expect_rejected(_metadata, self, 0, EINVAL, KVMX_FAULT_INDIRECT_OFF);
}

TEST_F(core, indirect_table_outside_guest_memory_is_rejected)
{
	struct kvmx_vhost_test_stats st;
	int d;

	start(_metadata, self, F_HOSTILE, 1);
	d = take_desc(_metadata, self, 0);
	vring_write_desc(&self->vq[0], d, 0x2000, 32, VRING_DESC_F_INDIRECT, 0);
	push_raw(_metadata, self, 0, d);
	ASSERT_EQ(0, vhost_wait_err(&self->dev, 0, VHOST_TIMEOUT_MS));
	ASSERT_EQ(0, kvmx_test_stats(&self->dev, 0, &st));
	EXPECT_EQ(1U, st.broken);
	EXPECT_EQ(-EFAULT, st.last_error);
	/* Untranslatable (ADDR) or unreadable (READ): both say "outside". */
	EXPECT_TRUE(st.last_fault == KVMX_FAULT_ADDR || st.last_fault == KVMX_FAULT_READ)
		TH_LOG("expected fault ADDR or READ, got %s", kvmx_fault_name(st.last_fault));
	EXPECT_EQ(0, vring_used_idx(&self->vq[0]));
}

TEST_F(core, zero_length_buffer_is_rejected)
{
	uint64_t buf = alloc_buf(_metadata, self, 128, 0);
	int a, b;

	start(_metadata, self, F_HOSTILE, 1);
	a = take_desc(_metadata, self, 0);
	b = take_desc(_metadata, self, 0);
	vring_write_desc(&self->vq[0], a, buf, 64, VRING_DESC_F_NEXT, b);
	vring_write_desc(&self->vq[0], b, buf + 64, 0, VRING_DESC_F_WRITE, 0);
	push_raw(_metadata, self, 0, a);
	expect_rejected(_metadata, self, 0, EINVAL, KVMX_FAULT_ZERO_LEN);
}

TEST_F(core, readable_after_writable_is_rejected)
{
	uint64_t buf = alloc_buf(_metadata, self, 128, 0);
	int a, b;

	start(_metadata, self, F_HOSTILE, 1);
	a = take_desc(_metadata, self, 0);
	b = take_desc(_metadata, self, 0);
	vring_write_desc(&self->vq[0], a, buf, 64, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, b);
	vring_write_desc(&self->vq[0], b, buf + 64, 64, 0, 0);
	push_raw(_metadata, self, 0, a);
	expect_rejected(_metadata, self, 0, EINVAL, KVMX_FAULT_OUT_AFTER_IN);
}

TEST_F(core, buffer_wrapping_the_address_space_is_rejected)
{
	int d;

	start(_metadata, self, F_HOSTILE, 1);
	d = take_desc(_metadata, self, 0);
	vring_write_desc(&self->vq[0], d, 0xfffffffffffff000ULL, 0x2000, 0, 0);
	push_raw(_metadata, self, 0, d);
	expect_rejected(_metadata, self, 0, EOVERFLOW, KVMX_FAULT_LEN_OVERFLOW);
}

TEST_F(core, buffer_outside_guest_memory_is_rejected)
{
	int d;

	start(_metadata, self, F_HOSTILE, 1);
	d = take_desc(_metadata, self, 0);
	/* Below region 0: no region holds this GPA. */
	vring_write_desc(&self->vq[0], d, 0x1000, 64, 0, 0);
	push_raw(_metadata, self, 0, d);
	expect_rejected(_metadata, self, 0, EFAULT, KVMX_FAULT_ADDR);
}

TEST_F(core, buffer_running_off_the_end_of_guest_memory_is_rejected)
{
	uint64_t buf = alloc_buf(_metadata, self, 64, 0);
	uint64_t end = guest_gpa_end(&self->mem);
	int a, b;

	start(_metadata, self, F_HOSTILE, 1);
	a = take_desc(_metadata, self, 0);
	b = take_desc(_metadata, self, 0);
	vring_write_desc(&self->vq[0], a, buf, 64, VRING_DESC_F_NEXT, b);
	vring_write_desc(&self->vq[0], b, end - 32, 64, VRING_DESC_F_WRITE, 0);
	push_raw(_metadata, self, 0, a);
	expect_rejected(_metadata, self, 0, EFAULT, KVMX_FAULT_ADDR);
}

TEST_F(core, avail_index_jumping_past_the_ring_is_rejected)
{
	start(_metadata, self, F_HOSTILE, 1);
	vring_store_avail_idx(&self->vq[0], RING_NUM + 1);
	ASSERT_EQ(0, vhost_kick(&self->dev, 0));
	expect_rejected(_metadata, self, 0, EINVAL, KVMX_FAULT_AVAIL_IDX);
}

/* ---- a broken virtqueue ------------------------------------------------- */

TEST_F(core, chains_after_a_rejected_one_are_not_processed)
{
	struct kvmx_vhost_test_stats st;
	struct vring_used_elem e;
	struct chain good, late;
	uint32_t len = 512;

	start(_metadata, self, F_HOSTILE, 1);
	chain_alloc(_metadata, self, &good, &len, 1, &len, 1, 0);
	chain_alloc(_metadata, self, &late, &len, 1, &len, 1, 0);
	chain_fill(_metadata, self, &good);
	chain_fill(_metadata, self, &late);
	/* good, then a head out of range, then late: one batch, one kick. */
	chain_add(_metadata, self, 0, &good, false);
	vring_push_head(&self->vq[0], RING_NUM);
	chain_add(_metadata, self, 0, &late, false);
	vring_publish(&self->vq[0]);
	ASSERT_EQ(0, vhost_kick(&self->dev, 0));

	ASSERT_EQ(0, vhost_wait_err(&self->dev, 0, VHOST_TIMEOUT_MS));
	reap_n(_metadata, self, 0, &e, 1);
	chain_check(_metadata, self, &good, &e);

	/* Another kick changes nothing: the queue stays stopped. */
	ASSERT_EQ(0, vhost_kick(&self->dev, 0));
	settle(_metadata, self, 0);
	ASSERT_EQ(1, vring_used_idx(&self->vq[0]))
		TH_LOG("expected only the chain before the bad one to be used");
	ASSERT_EQ(0, kvmx_test_stats(&self->dev, 0, &st));
	EXPECT_EQ(1U, st.broken);
	EXPECT_EQ(1ULL, st.chains);
	EXPECT_EQ(1ULL, st.bad_chains);
	chain_release(&good);
	chain_release(&late);
}

TEST_F(core, broken_vq_recovers_after_set_vring_base)
{
	struct kvmx_vhost_test_stats st;
	struct vring_used_elem e;
	struct chain c = { .nout = 1, .nin = 1 };
	uint16_t pos;
	int a, b;

	start(_metadata, self, F_HOSTILE, 1);
	echo_simple(_metadata, self, 0, 100);

	/* A chain whose writable buffer has length 0 breaks the queue... */
	c.out[0] = (struct vring_seg){ alloc_buf(_metadata, self, 700, 0), 700 };
	c.in[0] = (struct vring_seg){ alloc_buf(_metadata, self, 700, 0), 700 };
	chain_fill(_metadata, self, &c);
	a = take_desc(_metadata, self, 0);
	b = take_desc(_metadata, self, 0);
	vring_write_desc(&self->vq[0], a, c.out[0].gpa, 700, VRING_DESC_F_NEXT, b);
	vring_write_desc(&self->vq[0], b, c.in[0].gpa, 0, VRING_DESC_F_WRITE, 0);
	pos = self->vq[0].avail_idx;
	push_raw(_metadata, self, 0, a);
	ASSERT_EQ(0, vhost_wait_err(&self->dev, 0, VHOST_TIMEOUT_MS));
	ASSERT_EQ(0, kvmx_test_stats(&self->dev, 0, &st));
	ASSERT_EQ(1U, st.broken);

	/* ...the driver repairs it, rewinds the base to it and restarts. */
	ASSERT_EQ(0, kvmx_test_run(&self->dev, 0));
	vring_write_desc(&self->vq[0], b, c.in[0].gpa, 700, VRING_DESC_F_WRITE, 0);
	ASSERT_EQ(0, vhost_set_vring_base(&self->dev, 0, pos));
	ASSERT_EQ(0, kvmx_test_stats(&self->dev, 0, &st));
	EXPECT_EQ(0U, st.broken) TH_LOG("expected SET_VRING_BASE to clear broken");
	ASSERT_EQ(0, kvmx_test_run(&self->dev, 1));
	ASSERT_EQ(0, vhost_kick(&self->dev, 0));
	c.head = a;
	reap_n(_metadata, self, 0, &e, 1);
	chain_check(_metadata, self, &c, &e);
	/* And ordinary traffic goes on. */
	echo_simple(_metadata, self, 0, 4097);
	chain_release(&c);
}

TEST_F(core, broken_vq_does_not_stop_its_neighbour)
{
	start(_metadata, self, F_HOSTILE, NVQS);
	push_raw(_metadata, self, 0, RING_NUM);
	expect_rejected(_metadata, self, 0, ERANGE, KVMX_FAULT_HEAD_RANGE);
	echo_simple(_metadata, self, 1, 2048);
}

/* ---- ioctl errors ------------------------------------------------------- */

/* A device nobody owns yet. */
FIXTURE(unowned) {
	struct vhost_dev dev;
};

FIXTURE_SETUP(unowned)
{
	open_test_dev(_metadata, &self->dev);
}

FIXTURE_TEARDOWN(unowned)
{
	vhost_close(&self->dev);
}

TEST_F(unowned, ioctls_before_set_owner_are_eperm)
{
	static const unsigned long reqs[] = {
		VHOST_GET_FEATURES, VHOST_SET_FEATURES, VHOST_SET_MEM_TABLE,
		VHOST_SET_LOG_BASE, VHOST_SET_LOG_FD, VHOST_SET_VRING_NUM,
		VHOST_SET_VRING_BASE, VHOST_GET_VRING_BASE, VHOST_SET_VRING_ADDR,
		VHOST_SET_VRING_KICK, VHOST_SET_VRING_CALL, VHOST_SET_VRING_ERR,
		VHOST_NEW_WORKER, VHOST_GET_VRING_WORKER, VHOST_RESET_OWNER,
		KVMX_VHOST_TEST_RUN, KVMX_VHOST_TEST_GET_STATS,
	};
	/* Zeroed arguments, large enough for any of the requests. */
	union {
		uint8_t bytes[256];
		struct vhost_vring_file file;
	} arg;
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(reqs); i++) {
		memset(&arg, 0, sizeof(arg));
		/* An fd argument of -1 (unbind) is valid in itself. */
		if (reqs[i] == VHOST_SET_VRING_KICK || reqs[i] == VHOST_SET_VRING_CALL ||
		    reqs[i] == VHOST_SET_VRING_ERR || reqs[i] == VHOST_SET_LOG_FD)
			arg.file.fd = -1;
		if (reqs[i] == VHOST_SET_LOG_FD)
			memset(&arg, 0xff, sizeof(int));
		EXPECT_EQ(-EPERM, vhost_ioctl(&self->dev, reqs[i], &arg))
			TH_LOG("ioctl %#lx (#%u) before SET_OWNER", reqs[i], i);
	}
	EXPECT_EQ(0, vhost_set_owner(&self->dev)) TH_LOG("expected SET_OWNER itself to work");
}

TEST_F(core, set_owner_twice_is_ebusy)
{
	ASSERT_EQ(-EBUSY, vhost_ioctl(&self->dev, VHOST_SET_OWNER, NULL));
}

TEST_F(core, ioctls_from_another_process_are_eperm)
{
	uint64_t features;
	int status;
	pid_t pid;

	pid = fork();
	ASSERT_LE(0, pid);
	if (!pid) {
		struct vhost_vring_state s = { .index = 0, .num = 64 };
		int on = 1, code = 0;

		/* The child shares the fd but not the owner's mm. */
		if (vhost_ioctl(&self->dev, VHOST_GET_FEATURES, &features) != -EPERM)
			code |= 1;
		if (vhost_ioctl(&self->dev, VHOST_SET_VRING_NUM, &s) != -EPERM)
			code |= 2;
		if (vhost_ioctl(&self->dev, KVMX_VHOST_TEST_RUN, &on) != -EPERM)
			code |= 4;
		if (vhost_ioctl(&self->dev, VHOST_RESET_OWNER, NULL) != -EPERM)
			code |= 8;
		_exit(code);
	}
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	ASSERT_TRUE(WIFEXITED(status));
	ASSERT_EQ(0, WEXITSTATUS(status))
		TH_LOG("expected EPERM in a child for every ioctl (failed mask %#x: 1 GET_FEATURES, 2 SET_VRING_NUM, 4 RUN, 8 RESET_OWNER)",
		       WEXITSTATUS(status));
	/* The owner is unaffected. */
	ASSERT_EQ(0, vhost_get_features(&self->dev, &features));
}

TEST_F(core, reset_owner_then_set_owner_again_works)
{
	uint64_t features;

	start(_metadata, self, F_BASE, 1);
	echo_simple(_metadata, self, 0, 1500);
	ASSERT_EQ(0, vhost_ioctl(&self->dev, VHOST_RESET_OWNER, NULL));
	ASSERT_EQ(-EPERM, vhost_ioctl(&self->dev, VHOST_GET_FEATURES, &features))
		TH_LOG("expected the device to have no owner after RESET_OWNER");
	ASSERT_EQ(0, vhost_set_owner(&self->dev));
	ASSERT_EQ(0, vhost_set_mem_table(&self->dev, &self->mem));
	/* The ring resumes where the driver left it (base = used idx 1). */
	start(_metadata, self, F_BASE, 1);
	echo_simple(_metadata, self, 0, 1501);
}

TEST_F(core, vring_index_past_the_last_queue_is_enobufs)
{
	static const unsigned int bad_idx[] = { NVQS, 1000 };
	struct kvmx_vhost_test_stats st;
	struct vhost_vring_state s;
	struct vhost_vring_addr a;
	struct vhost_vring_file f;
	struct vhost_vring_worker w;
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(bad_idx); i++) {
		unsigned int idx = bad_idx[i];

		s = (struct vhost_vring_state){ .index = idx, .num = 64 };
		EXPECT_EQ(-ENOBUFS, vhost_ioctl(&self->dev, VHOST_SET_VRING_NUM, &s));
		s = (struct vhost_vring_state){ .index = idx, .num = 0 };
		EXPECT_EQ(-ENOBUFS, vhost_ioctl(&self->dev, VHOST_SET_VRING_BASE, &s));
		EXPECT_EQ(-ENOBUFS, vhost_ioctl(&self->dev, VHOST_GET_VRING_BASE, &s));
		s = (struct vhost_vring_state){ .index = idx, .num = 10 };
		EXPECT_EQ(-ENOBUFS,
			  vhost_ioctl(&self->dev, VHOST_SET_VRING_BUSYLOOP_TIMEOUT, &s));
		a = (struct vhost_vring_addr){
			.index = idx,
			.desc_user_addr = (uintptr_t)self->vq[0].desc,
			.avail_user_addr = (uintptr_t)self->vq[0].avail,
			.used_user_addr = (uintptr_t)self->vq[0].used,
		};
		EXPECT_EQ(-ENOBUFS, vhost_ioctl(&self->dev, VHOST_SET_VRING_ADDR, &a));
		f = (struct vhost_vring_file){ .index = idx, .fd = self->dev.vq[0].kick };
		EXPECT_EQ(-ENOBUFS, vhost_ioctl(&self->dev, VHOST_SET_VRING_KICK, &f));
		EXPECT_EQ(-ENOBUFS, vhost_ioctl(&self->dev, VHOST_SET_VRING_CALL, &f));
		EXPECT_EQ(-ENOBUFS, vhost_ioctl(&self->dev, VHOST_SET_VRING_ERR, &f));
		w = (struct vhost_vring_worker){ .index = idx, .worker_id = 0 };
		EXPECT_EQ(-ENOBUFS, vhost_ioctl(&self->dev, VHOST_ATTACH_VRING_WORKER, &w));
		EXPECT_EQ(-ENOBUFS, vhost_ioctl(&self->dev, VHOST_GET_VRING_WORKER, &w));
		memset(&st, 0, sizeof(st));
		st.index = idx;
		EXPECT_EQ(-ENOBUFS, vhost_ioctl(&self->dev, KVMX_VHOST_TEST_GET_STATS, &st));
	}
}

static int set_num(FIXTURE_DATA(core) *self, unsigned int idx, unsigned int num)
{
	struct vhost_vring_state s = { .index = idx, .num = num };

	return vhost_ioctl(&self->dev, VHOST_SET_VRING_NUM, &s);
}

static int set_base(FIXTURE_DATA(core) *self, unsigned int idx, unsigned int base)
{
	struct vhost_vring_state s = { .index = idx, .num = base };

	return vhost_ioctl(&self->dev, VHOST_SET_VRING_BASE, &s);
}

TEST_F(core, vring_num_must_be_a_power_of_two_up_to_32768)
{
	static const unsigned int bad[] = { 0, 3, 100, 255, 32769, 65536, 0x80000000U };
	static const unsigned int good[] = { 1, 2, 256, 32768 };
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(bad); i++) {
		EXPECT_EQ(-EINVAL, set_num(self, 0, bad[i])) TH_LOG("num %u", bad[i]);
	}
	for (i = 0; i < ARRAY_SIZE(good); i++) {
		EXPECT_EQ(0, set_num(self, 0, good[i])) TH_LOG("num %u", good[i]);
	}
}

TEST_F(core, vring_base_beyond_16_bits_is_einval)
{
	ASSERT_EQ(-EINVAL, set_base(self, 0, 0x10000));
	ASSERT_EQ(-EINVAL, set_base(self, 0, 0xffffffffU));
	ASSERT_EQ(0, set_base(self, 0, 0xffff));
	ASSERT_EQ(0, set_base(self, 0, 0));
}

TEST_F(core, vring_num_and_base_cannot_change_while_running)
{
	start(_metadata, self, F_BASE, 1);
	ASSERT_EQ(-EBUSY, set_num(self, 0, 128));
	ASSERT_EQ(-EBUSY, set_base(self, 0, 5));
	ASSERT_EQ(0, kvmx_test_run(&self->dev, 0));
	ASSERT_EQ(0, set_num(self, 0, RING_NUM));
	ASSERT_EQ(0, set_base(self, 0, 0));
}

static int set_addr(FIXTURE_DATA(core) *self, unsigned int idx, unsigned int flags,
		    uintptr_t desc_off, uintptr_t avail_off, uintptr_t used_off)
{
	struct vhost_vring_addr a = {
		.index = idx,
		.flags = flags,
		.desc_user_addr = (uintptr_t)self->vq[idx].desc + desc_off,
		.avail_user_addr = (uintptr_t)self->vq[idx].avail + avail_off,
		.used_user_addr = (uintptr_t)self->vq[idx].used + used_off,
	};

	return vhost_ioctl(&self->dev, VHOST_SET_VRING_ADDR, &a);
}

TEST_F(core, vring_addr_with_unknown_flags_is_eopnotsupp)
{
	ASSERT_EQ(0, set_num(self, 0, RING_NUM));
	EXPECT_EQ(-EOPNOTSUPP, set_addr(self, 0, 1U << 1, 0, 0, 0));
	EXPECT_EQ(-EOPNOTSUPP, set_addr(self, 0, 1U << 31, 0, 0, 0));
	EXPECT_EQ(0, set_addr(self, 0, 0, 0, 0, 0));
}

TEST_F(core, vring_addr_needs_num_first_and_aligned_rings)
{
	/* vq 1 has no size yet. */
	EXPECT_EQ(-EINVAL, set_addr(self, 1, 0, 0, 0, 0))
		TH_LOG("expected SET_VRING_ADDR before SET_VRING_NUM to fail");
	ASSERT_EQ(0, set_num(self, 1, RING_NUM));
	EXPECT_EQ(-EINVAL, set_addr(self, 1, 0, 8, 0, 0)) TH_LOG("desc 8-aligned");
	EXPECT_EQ(-EINVAL, set_addr(self, 1, 0, 1, 0, 0)) TH_LOG("desc odd");
	EXPECT_EQ(-EINVAL, set_addr(self, 1, 0, 0, 1, 0)) TH_LOG("avail odd");
	EXPECT_EQ(-EINVAL, set_addr(self, 1, 0, 0, 0, 2)) TH_LOG("used 2-aligned");
	EXPECT_EQ(0, set_addr(self, 1, 0, 0, 0, 0));
}

TEST_F(core, vring_eventfd_setters_check_the_fd)
{
	static const unsigned long reqs[] = {
		VHOST_SET_VRING_KICK, VHOST_SET_VRING_CALL, VHOST_SET_VRING_ERR,
	};
	struct vhost_vring_file f = { .index = 0 };
	int closed, pipefd[2];
	unsigned int i;

	ASSERT_EQ(0, pipe2(pipefd, O_CLOEXEC));
	/* A number that was an fd a moment ago; nothing opens another after. */
	closed = dup(pipefd[0]);
	ASSERT_LE(0, closed);
	close(closed);
	for (i = 0; i < ARRAY_SIZE(reqs); i++) {
		f.fd = closed;
		EXPECT_EQ(-EBADF, vhost_ioctl(&self->dev, reqs[i], &f))
			TH_LOG("ioctl %#lx with a closed fd", reqs[i]);
		f.fd = pipefd[0];
		EXPECT_EQ(-EINVAL, vhost_ioctl(&self->dev, reqs[i], &f))
			TH_LOG("ioctl %#lx with a pipe", reqs[i]);
		f.fd = self->dev.vq[0].call;
		EXPECT_EQ(0, vhost_ioctl(&self->dev, reqs[i], &f))
			TH_LOG("ioctl %#lx with an eventfd", reqs[i]);
		f.fd = -1;
		EXPECT_EQ(0, vhost_ioctl(&self->dev, reqs[i], &f))
			TH_LOG("ioctl %#lx with -1 (unbind)", reqs[i]);
	}
	close(pipefd[0]);
	close(pipefd[1]);
}

static struct vhost_memory *mem_table(unsigned int n)
{
	return calloc(1, sizeof(struct vhost_memory) + n * sizeof(struct vhost_memory_region));
}

TEST_F(core, mem_table_of_64_regions_is_fine_but_65_is_e2big)
{
	struct vhost_memory *t = mem_table(65);
	unsigned int i;

	ASSERT_NE(NULL, t);
	/* 64 single-page regions, the page at GPA p living at host page p. */
	for (i = 0; i < 65; i++) {
		t->regions[i].guest_phys_addr = GUEST_BASE_GPA + 2 * i * GUEST_PAGE_SIZE;
		t->regions[i].memory_size = GUEST_PAGE_SIZE;
		t->regions[i].userspace_addr =
			(uintptr_t)self->mem.region[0].hva + i * GUEST_PAGE_SIZE;
	}
	t->nregions = 65;
	EXPECT_EQ(-E2BIG, vhost_ioctl(&self->dev, VHOST_SET_MEM_TABLE, t));
	t->nregions = 64;
	EXPECT_EQ(0, vhost_ioctl(&self->dev, VHOST_SET_MEM_TABLE, t));
	free(t);
}

TEST_F(core, mem_table_rejects_malformed_regions)
{
	uintptr_t hva0 = (uintptr_t)self->mem.region[0].hva;
	uintptr_t hva1 = (uintptr_t)self->mem.region[1].hva;
	struct {
		const char *what;
		struct vhost_memory_region r[2];
	} cases[] = {
		{ "an empty region", {
			{ GUEST_BASE_GPA, GUEST_PAGE_SIZE, hva0, 0 },
			{ 0x40000000, 0, hva1, 0 } } },
		{ "gpa + size wrapping", {
			{ GUEST_BASE_GPA, GUEST_PAGE_SIZE, hva0, 0 },
			{ 0xfffffffffffff000ULL, 2 * GUEST_PAGE_SIZE, hva1, 0 } } },
		{ "uaddr + size wrapping", {
			{ GUEST_BASE_GPA, GUEST_PAGE_SIZE, hva0, 0 },
			{ 0x40000000, 2 * GUEST_PAGE_SIZE, 0xfffffffffffff000ULL, 0 } } },
		{ "overlapping gpa ranges", {
			{ GUEST_BASE_GPA, 2 * GUEST_PAGE_SIZE, hva0, 0 },
			{ GUEST_BASE_GPA + GUEST_PAGE_SIZE, 2 * GUEST_PAGE_SIZE, hva1, 0 } } },
		{ "nonzero flags_padding", {
			{ GUEST_BASE_GPA, GUEST_PAGE_SIZE, hva0, 0 },
			{ 0x40000000, GUEST_PAGE_SIZE, hva1, 1 } } },
	};
	struct vhost_memory *t = mem_table(2);
	unsigned int i;

	ASSERT_NE(NULL, t);
	t->nregions = 2;
	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		memcpy(t->regions, cases[i].r, sizeof(cases[i].r));
		EXPECT_EQ(-EINVAL, vhost_ioctl(&self->dev, VHOST_SET_MEM_TABLE, t))
			TH_LOG("expected a table with %s to be refused", cases[i].what);
	}
	free(t);
	/* The well-formed table is still accepted. */
	ASSERT_EQ(0, vhost_set_mem_table(&self->dev, &self->mem));
}

TEST_F(core, features_are_the_core_set_and_others_are_refused)
{
	uint64_t features;

	ASSERT_EQ(0, vhost_get_features(&self->dev, &features));
	EXPECT_EQ(F_OFFERED, features)
		TH_LOG("expected INDIRECT_DESC, EVENT_IDX, VERSION_1, ANY_LAYOUT and LOG_ALL, got %#llx",
		       (unsigned long long)features);
	EXPECT_EQ(-EOPNOTSUPP, vhost_ioctl(&self->dev, VHOST_SET_FEATURES,
					   &(uint64_t){ F_BASE | F(34) }))
		TH_LOG("expected VIRTIO_F_RING_PACKED (34) to be refused");
	EXPECT_EQ(-EOPNOTSUPP, vhost_ioctl(&self->dev, VHOST_SET_FEATURES,
					   &(uint64_t){ F(63) }));
	EXPECT_EQ(0, vhost_set_features(&self->dev, F_OFFERED));
	EXPECT_EQ(0, vhost_set_features(&self->dev, F_BASE));
}

TEST_F(core, run_needs_a_vq_with_num_addr_and_kick)
{
	struct vhost_vring_file f = { .index = 0, .fd = self->dev.vq[0].kick };

	ASSERT_EQ(0, vhost_set_features(&self->dev, F_BASE));
	EXPECT_EQ(-EINVAL, vhost_ioctl(&self->dev, KVMX_VHOST_TEST_RUN, &(int){ 1 }))
		TH_LOG("expected RUN to fail with no virtqueue set up");
	ASSERT_EQ(0, set_num(self, 0, RING_NUM));
	EXPECT_EQ(-EINVAL, vhost_ioctl(&self->dev, KVMX_VHOST_TEST_RUN, &(int){ 1 }))
		TH_LOG("expected RUN to fail with only a size");
	ASSERT_EQ(0, set_addr(self, 0, 0, 0, 0, 0));
	EXPECT_EQ(-EINVAL, vhost_ioctl(&self->dev, KVMX_VHOST_TEST_RUN, &(int){ 1 }))
		TH_LOG("expected RUN to fail without a kick eventfd");
	ASSERT_EQ(0, vhost_ioctl(&self->dev, VHOST_SET_VRING_KICK, &f));
	ASSERT_EQ(0, kvmx_test_run(&self->dev, 1));
	ASSERT_EQ(0, kvmx_test_run(&self->dev, 0));
}

TEST_F(core, busyloop_timeout_keeps_the_echo_exact)
{
	struct vhost_vring_state s = { .index = 0, .num = 50 };
	unsigned int i;

	ASSERT_EQ(0, vhost_ioctl(&self->dev, VHOST_SET_VRING_BUSYLOOP_TIMEOUT, &s));
	start(_metadata, self, F_BASE, 1);
	for (i = 0; i < 16; i++)
		echo_simple(_metadata, self, 0, 1 + i * 997);
}

/* ---- lifetime ----------------------------------------------------------- */

TEST_F(core, closing_with_chains_in_flight_returns_promptly)
{
	uint32_t len = 65536;
	struct vring_seg out, in;
	struct vhost_dev again;
	unsigned int q, i;
	int64_t t0, took;

	out = (struct vring_seg){ alloc_buf(_metadata, self, len, 0), len };
	in = (struct vring_seg){ alloc_buf(_metadata, self, len, 0), len };
	start(_metadata, self, F_BASE, NVQS);
	/* Both rings full of 64 KiB copies (sharing buffers: data is moot). */
	for (q = 0; q < NVQS; q++) {
		for (i = 0; i < RING_NUM / 2; i++) {
			ASSERT_LE(0, vring_add_chain(&self->vq[q], &out, 1, &in, 1, false));
		}
		vring_publish(&self->vq[q]);
		ASSERT_EQ(0, vhost_kick(&self->dev, q));
	}
	t0 = now_ms();
	ASSERT_EQ(0, close(self->dev.fd));
	took = now_ms() - t0;
	self->dev.fd = -1;
	EXPECT_GT(2000, took) TH_LOG("close() took %lld ms", (long long)took);

	/* The device is whole afterwards: a new open can take ownership. */
	ASSERT_TRUE(open_test_dev(_metadata, &again));
	ASSERT_EQ(0, vhost_set_owner(&again));
	vhost_close(&again);
}

TEST_F(core, module_cannot_be_removed_while_a_device_is_open)
{
	long ret;

	ret = syscall(__NR_delete_module, KVMX_TEST_MODULE, O_NONBLOCK);
	if (ret && errno == EPERM)
		SKIP(return, "removing a module needs CAP_SYS_MODULE");
	if (ret && errno == ENOENT)
		SKIP(return, "%s is not a loaded module (built in?)", KVMX_TEST_MODULE);
	ASSERT_NE(0, ret) TH_LOG("the module was removed while its device was open");
	ASSERT_TRUE(errno == EBUSY || errno == EWOULDBLOCK)
		TH_LOG("expected EBUSY or EWOULDBLOCK, got %s", strerror(errno));
	/* Still usable. */
	start(_metadata, self, F_BASE, 1);
	echo_simple(_metadata, self, 0, 10);
}

TEST_HARNESS_MAIN
