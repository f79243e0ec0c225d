// SPDX-License-Identifier: GPL-2.0
/*
 * virtq_test: the userspace virtqueue code (virtio.c) against well-formed
 * and hostile rings, without KVM: "guest memory" is a plain buffer and the
 * test plays the driver. Prints TAP; exits 1 if any case fails.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "virtio.h"

bool vmlaunch_verbose;

#define MEM_SIZE	(1 << 20)
#define NUM		8
#define DESC		0x1000
#define AVAIL		0x2000
#define USED		0x3000
#define INDIRECT	0x4000
#define DATA		0x10000

static struct vm vm;
static struct virtq vq;
static struct virtq_chain chain;
static unsigned int ntests, nfailed;
static u16 avail_idx;

static void check(bool ok, const char *what)
{
	ntests++;
	if (!ok)
		nfailed++;
	printf("%sok %u %s\n", ok ? "" : "not ", ntests, what);
}

static struct vring_desc *desc(unsigned int i)
{
	return (struct vring_desc *)(vm.mem.host + DESC) + i;
}

static struct vring_desc *indirect(unsigned int i)
{
	return (struct vring_desc *)(vm.mem.host + INDIRECT) + i;
}

static struct vring_avail *avail(void)
{
	return (struct vring_avail *)(vm.mem.host + AVAIL);
}

static struct vring_used *used(void)
{
	return (struct vring_used *)(vm.mem.host + USED);
}

static void set_desc(struct vring_desc *d, u64 addr, u32 len, u16 flags, u16 next)
{
	d->addr = addr;
	d->len = len;
	d->flags = flags;
	d->next = next;
}

/* A fresh ring (all zero) with the given features. */
static void reset_ring(u64 features)
{
	struct virtio_queue q = { .num = NUM, .desc = DESC, .avail = AVAIL, .used = USED };

	memset(vm.mem.host, 0, MEM_SIZE);
	avail_idx = 0;
	if (virtq_init(&vq, &vm, &q, features))
		abort();
}

static void offer(u16 head)
{
	avail()->ring[avail_idx % NUM] = head;
	avail()->idx = ++avail_idx;
}

static int pop(void)
{
	return virtq_pop(&vq, &chain);
}

static void test_init(void)
{
	struct virtio_queue q = { .num = NUM, .desc = DESC, .avail = AVAIL, .used = USED };
	struct virtq v;

	check(!virtq_init(&v, &vm, &q, 0), "init: a well-formed ring");
	q.num = 6;
	check(virtq_init(&v, &vm, &q, 0) == -EINVAL, "init: size not a power of two");
	q.num = VIRTQ_MAX_SIZE * 2;
	check(virtq_init(&v, &vm, &q, 0) == -EINVAL, "init: size over the maximum");
	q.num = NUM;
	q.desc = DESC + 8;
	check(virtq_init(&v, &vm, &q, 0) == -EINVAL, "init: misaligned descriptor table");
	q.desc = DESC;
	q.used = USED + 2;
	check(virtq_init(&v, &vm, &q, 0) == -EINVAL, "init: misaligned used ring");
	q.used = MEM_SIZE - 16;
	check(virtq_init(&v, &vm, &q, 0) == -EFAULT, "init: used ring past guest memory");
	q.used = USED;
	q.avail = 0xfffffffffffffff0ULL;
	check(virtq_init(&v, &vm, &q, 0) == -EFAULT, "init: avail ring address wraps");
}

static void test_good_chains(void)
{
	reset_ring(0);
	check(pop() == 0, "empty ring: nothing to pop");

	set_desc(desc(3), DATA, 16, VRING_DESC_F_NEXT, 5);
	set_desc(desc(5), DATA + 512, 512, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, 1);
	set_desc(desc(1), DATA + 1024, 1, VRING_DESC_F_WRITE, 0);
	offer(3);
	check(pop() == 1 && chain.head == 3 && chain.nout == 1 && chain.nin == 2 &&
	      chain.out_len == 16 && chain.in_len == 513 &&
	      chain.iov[0].iov_base == vm.mem.host + DATA &&
	      chain.iov[2].iov_base == vm.mem.host + DATA + 1024,
	      "a readable and two writable buffers map to the right places");
	check(pop() == 0, "the ring is empty again");

	virtq_push(&vq, 3, 513);
	check(used()->idx == 1 && used()->ring[0].id == 3 && used()->ring[0].len == 513,
	      "push: used entry and index");
	check(virtq_should_notify(&vq), "no EVENT_IDX: interrupt unless suppressed");
	avail()->flags = VRING_AVAIL_F_NO_INTERRUPT;
	check(!virtq_should_notify(&vq), "no EVENT_IDX: VRING_AVAIL_F_NO_INTERRUPT honoured");
}

static void test_event_idx(void)
{
	u16 *used_event, *avail_event;

	reset_ring(1ULL << VIRTIO_RING_F_EVENT_IDX);
	used_event = &avail()->ring[NUM];
	avail_event = (u16 *)&used()->ring[NUM];

	set_desc(desc(0), DATA, 16, 0, 0);
	offer(0);
	check(pop() == 1, "event idx: pop");
	check(!virtq_enable_kicks(&vq) && *avail_event == 1,
	      "event idx: avail_event asks for the next entry");
	virtq_push(&vq, 0, 0);
	check(virtq_should_notify(&vq), "event idx: the first interrupt always goes");
	*used_event = 5;
	virtq_push(&vq, 0, 0);
	check(!virtq_should_notify(&vq), "event idx: no interrupt before used_event");
	offer(0);
	check(virtq_enable_kicks(&vq), "event idx: entries added meanwhile are reported");
}

static void test_bad_chains(void)
{
	int i;

	reset_ring(0);
	avail()->idx = NUM + 1;
	check(pop() == -EINVAL, "avail index more than the ring size ahead");

	reset_ring(0);
	offer(NUM);
	check(pop() == -EINVAL, "head outside the ring");

	reset_ring(0);
	set_desc(desc(0), DATA, 16, VRING_DESC_F_NEXT, NUM);
	offer(0);
	check(pop() == -EINVAL, "next outside the ring");

	reset_ring(0);
	set_desc(desc(0), DATA, 16, VRING_DESC_F_NEXT, 1);
	set_desc(desc(1), DATA, 16, VRING_DESC_F_NEXT, 0);
	offer(0);
	check(pop() == -EINVAL, "a loop ends at the ring size");

	reset_ring(0);
	for (i = 0; i < NUM; i++)
		set_desc(desc(i), DATA, 16, VRING_DESC_F_NEXT, i);
	offer(2);
	check(pop() == -EINVAL, "a descriptor pointing at itself");

	reset_ring(0);
	set_desc(desc(0), DATA, 0, 0, 0);
	offer(0);
	check(pop() == -EINVAL, "zero-length buffer");

	reset_ring(0);
	set_desc(desc(0), DATA, 16, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, 1);
	set_desc(desc(1), DATA, 16, 0, 0);
	offer(0);
	check(pop() == -EINVAL, "readable buffer after a writable one");

	reset_ring(0);
	set_desc(desc(0), MEM_SIZE - 8, 16, 0, 0);
	offer(0);
	check(pop() == -EINVAL, "buffer straddling the end of guest memory");

	reset_ring(0);
	set_desc(desc(0), 0xfffffffffffffff0ULL, 0x20, 0, 0);
	offer(0);
	check(pop() == -EINVAL, "buffer address plus length wraps");

	reset_ring(0);
	set_desc(desc(0), 3ULL << 30, 16, 0, 0);
	offer(0);
	check(pop() == -EINVAL, "buffer in the MMIO hole");

	reset_ring(0);
	set_desc(desc(0), INDIRECT, 16, VRING_DESC_F_INDIRECT, 0);
	set_desc(indirect(0), DATA, 16, 0, 0);
	offer(0);
	check(pop() == -EINVAL, "indirect table without VIRTIO_RING_F_INDIRECT_DESC");
}

static void test_indirect(void)
{
	const u64 features = 1ULL << VIRTIO_RING_F_INDIRECT_DESC;
	unsigned int i;

	reset_ring(features);
	set_desc(desc(2), INDIRECT, 3 * 16, VRING_DESC_F_INDIRECT, 0);
	set_desc(indirect(0), DATA, 16, VRING_DESC_F_NEXT, 2);
	set_desc(indirect(2), DATA + 512, 512, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, 1);
	set_desc(indirect(1), DATA + 1024, 1, VRING_DESC_F_WRITE, 0);
	offer(2);
	check(pop() == 1 && chain.head == 2 && chain.nout == 1 && chain.nin == 2 &&
	      chain.in_len == 513, "indirect table: three buffers");

	reset_ring(features);
	set_desc(desc(0), INDIRECT, 16, VRING_DESC_F_INDIRECT | VRING_DESC_F_NEXT, 1);
	set_desc(indirect(0), DATA, 16, 0, 0);
	offer(0);
	check(pop() == -EINVAL, "indirect descriptor with NEXT");

	reset_ring(features);
	set_desc(desc(0), INDIRECT, 24, VRING_DESC_F_INDIRECT, 0);
	offer(0);
	check(pop() == -EINVAL, "indirect table size not a multiple of 16");

	reset_ring(features);
	set_desc(desc(0), INDIRECT, 0, VRING_DESC_F_INDIRECT, 0);
	offer(0);
	check(pop() == -EINVAL, "empty indirect table");

	reset_ring(features);
	set_desc(desc(0), INDIRECT, 16, VRING_DESC_F_INDIRECT, 0);
	set_desc(indirect(0), INDIRECT, 16, VRING_DESC_F_INDIRECT, 0);
	offer(0);
	check(pop() == -EINVAL, "nested indirect table");

	reset_ring(features);
	set_desc(desc(0), INDIRECT, 2 * 16, VRING_DESC_F_INDIRECT, 0);
	set_desc(indirect(0), DATA, 16, VRING_DESC_F_NEXT, 1);
	set_desc(indirect(1), DATA, 16, VRING_DESC_F_NEXT, 0);
	offer(0);
	check(pop() == -EINVAL, "loop inside an indirect table");

	reset_ring(features);
	set_desc(desc(0), INDIRECT, 16, VRING_DESC_F_INDIRECT, 0);
	set_desc(indirect(0), DATA, 16, VRING_DESC_F_NEXT, 1);
	offer(0);
	check(pop() == -EINVAL, "next outside the indirect table");

	reset_ring(features);
	set_desc(desc(0), INDIRECT, (NUM + 1) * 16, VRING_DESC_F_INDIRECT, 0);
	for (i = 0; i <= NUM; i++)
		set_desc(indirect(i), DATA, 16, i < NUM ? VRING_DESC_F_NEXT : 0, i + 1);
	offer(0);
	check(pop() == -EINVAL, "chain longer than the queue size through an indirect table");

	reset_ring(features);
	set_desc(desc(0), MEM_SIZE - 16, 32, VRING_DESC_F_INDIRECT, 0);
	offer(0);
	check(pop() == -EINVAL, "indirect table past guest memory");
}

static void test_iov(void)
{
	u8 a[4] = { 1, 2, 3, 4 }, b[4] = { 5, 6, 7, 8 }, out[6] = { 0 };
	struct iovec iov[2] = { { a, sizeof(a) }, { b, sizeof(b) } };
	u8 in[3] = { 9, 9, 9 };

	check(iov_copy_from(iov, 2, 3, out, sizeof(out)) == 5 && out[0] == 4 && out[1] == 5 &&
	      out[4] == 8, "iov_copy_from: skip into the first segment, across the second");
	check(iov_copy_to(iov, 2, 5, in, sizeof(in)) == 3 && b[1] == 9 && b[3] == 9 && a[3] == 4,
	      "iov_copy_to: skip past the first segment");
}

int main(void)
{
	vm.mem.host = aligned_alloc(4096, MEM_SIZE);
	if (!vm.mem.host)
		return 1;
	vm.mem.size = vm.mem.low_size = MEM_SIZE;

	printf("TAP version 13\n");
	test_init();
	test_good_chains();
	test_event_idx();
	test_bad_chains();
	test_indirect();
	test_iov();
	printf("1..%u\n", ntests);
	printf("# %u passed, %u failed\n", ntests - nfailed, nfailed);
	free(vm.mem.host);
	return nfailed ? 1 : 0;
}
