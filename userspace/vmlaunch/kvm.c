// SPDX-License-Identifier: GPL-2.0
/*
 * The KVM side: the VM, its memory, the in-kernel interrupt controllers,
 * vCPU threads and the dispatch of port I/O and MMIO exits.
 *
 * Stopping: vm_request_stop() records the first exit code and wakes the main
 * thread, which calls vm_stop_vcpus(). That sets each vCPU's
 * kvm_run.immediate_exit and sends it VCPU_KICK_SIGNAL: a vCPU inside
 * KVM_RUN (even halted) returns -EINTR, one about to enter returns at once,
 * and each thread checks exit_code before every entry.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#include "vmlaunch.h"

#define VCPU_KICK_SIGNAL	SIGUSR1
#define KVM_TSS_ADDR		0xfffbd000UL
#define KVM_IDENTITY_MAP_ADDR	0xfffbc000ULL

static const struct {
	int cap;
	const char *name;
} required_caps[] = {
	{ KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP" },
	{ KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY" },
	{ KVM_CAP_IOEVENTFD, "KVM_CAP_IOEVENTFD" },
	{ KVM_CAP_IRQFD, "KVM_CAP_IRQFD" },
	{ KVM_CAP_PIT2, "KVM_CAP_PIT2" },
	{ KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT" },
	{ KVM_CAP_IRQ_ROUTING, "KVM_CAP_IRQ_ROUTING" },
	{ KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID" },
};

static int kvm_open(struct vm *vm)
{
	unsigned int i;
	int r;

	vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (vm->kvm_fd < 0) {
		r = -errno;
		if (r == -ENOENT)
			pr_err("/dev/kvm does not exist: KVM is not available on this host "
			       "(load kvm_intel or kvm_amd; nested guests need nested virtualization)");
		else
			pr_err("cannot open /dev/kvm: %s", strerror(-r));
		return r;
	}
	r = ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0);
	if (r != KVM_API_VERSION) {
		pr_err("/dev/kvm: KVM API version %d, expected %d", r, KVM_API_VERSION);
		return -EINVAL;
	}
	for (i = 0; i < ARRAY_SIZE(required_caps); i++) {
		if (ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, required_caps[i].cap) <= 0) {
			pr_err("/dev/kvm lacks %s", required_caps[i].name);
			return -EOPNOTSUPP;
		}
	}
	return 0;
}

/*
 * Guest RAM is anonymous memory aligned to 2 MiB and marked for
 * transparent huge pages, so that KVM can map it with 2 MiB pages (far
 * fewer nested page faults), or comes from hugetlbfs with --hugetlb.
 */
static int vm_setup_memory(struct vm *vm, const struct vm_config *cfg)
{
	struct kvm_userspace_memory_region region;
	int flags = MAP_PRIVATE | MAP_ANONYMOUS;
	u64 map_size = cfg->mem_size;
	u8 *p, *aligned;

	/*
	 * hugetlbfs pages are reserved at mmap time, so a shortage fails
	 * here rather than as SIGBUS later; ordinary memory is only
	 * allocated as the guest touches it.
	 */
	if (cfg->hugetlb) {
		flags |= MAP_HUGETLB;
	} else {
		flags |= MAP_NORESERVE;
		map_size += HUGE_PAGE_SIZE;
	}
	p = mmap(NULL, map_size, PROT_READ | PROT_WRITE, flags, -1, 0);
	if (p == MAP_FAILED) {
		int r = -errno;

		pr_err("cannot map %llu MiB of guest memory%s: %s",
		       (unsigned long long)(cfg->mem_size >> 20),
		       cfg->hugetlb ? " from hugetlbfs (are enough huge pages reserved?)" : "",
		       strerror(-r));
		return r;
	}
	aligned = p;
	if (!cfg->hugetlb) {
		aligned = (u8 *)ALIGN_UP((uintptr_t)p, HUGE_PAGE_SIZE);
		if (aligned > p)
			munmap(p, aligned - p);
		munmap(aligned + cfg->mem_size, p + map_size - (aligned + cfg->mem_size));
		madvise(aligned, cfg->mem_size, MADV_HUGEPAGE);
	}
	vm->mem.host = aligned;
	vm->mem.size = cfg->mem_size;
	vm->mem.low_size = cfg->mem_size < GUEST_LOW_MAX ? cfg->mem_size : GUEST_LOW_MAX;
	madvise(aligned, cfg->mem_size, MADV_DONTDUMP);

	region = (struct kvm_userspace_memory_region) {
		.slot = 0,
		.guest_phys_addr = 0,
		.memory_size = vm->mem.low_size,
		.userspace_addr = (unsigned long)vm->mem.host,
	};
	if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &region) < 0)
		goto fail;
	if (vm->mem.size > vm->mem.low_size) {
		region = (struct kvm_userspace_memory_region) {
			.slot = 1,
			.guest_phys_addr = GUEST_HIGH_START,
			.memory_size = vm->mem.size - vm->mem.low_size,
			.userspace_addr = (unsigned long)(vm->mem.host + vm->mem.low_size),
		};
		if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &region) < 0)
			goto fail;
	}
	return 0;
fail:
	pr_err("KVM_SET_USER_MEMORY_REGION: %s", strerror(errno));
	return -errno;
}

int vm_create(struct vm *vm, const struct vm_config *cfg)
{
	struct kvm_pit_config pit = { .flags = KVM_PIT_SPEAKER_DUMMY };
	u64 identity = KVM_IDENTITY_MAP_ADDR;
	int r;

	memset(vm, 0, sizeof(*vm));
	vm->kvm_fd = vm->vm_fd = vm->stop_fd = -1;
	vm->exit_code = -1;
	vm->virtio_pci = cfg->virtio_pci;
	vm->mmio_reads_exit = cfg->mmio_reads_exit;
	vm->next_slot = 2;	/* guest RAM below and above 4 GiB */

	r = kvm_open(vm);
	if (r)
		return r;
	vm->run_size = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (vm->run_size < (int)sizeof(struct kvm_run)) {
		pr_err("KVM_GET_VCPU_MMAP_SIZE: %s", strerror(errno));
		return -EINVAL;
	}
	vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	if (vm->vm_fd < 0) {
		r = -errno;
		pr_err("KVM_CREATE_VM: %s", strerror(-r));
		return r;
	}
	/* Needed by VMX for real mode; harmless elsewhere. */
	if (ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, KVM_TSS_ADDR) < 0)
		pr_debug("KVM_SET_TSS_ADDR: %s", strerror(errno));
	if (ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_SET_IDENTITY_MAP_ADDR) > 0 &&
	    ioctl(vm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &identity) < 0)
		pr_debug("KVM_SET_IDENTITY_MAP_ADDR: %s", strerror(errno));

	r = vm_setup_memory(vm, cfg);
	if (r)
		return r;

	/* PIC + IOAPIC + local APICs, then the PIT wired to GSI 0. */
	if (ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0) {
		r = -errno;
		pr_err("KVM_CREATE_IRQCHIP: %s", strerror(-r));
		return r;
	}
	if (ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit) < 0) {
		r = -errno;
		pr_err("KVM_CREATE_PIT2: %s", strerror(-r));
		return r;
	}

	vm->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (vm->stop_fd < 0)
		return -errno;
	if (vmlaunch_verbose)
		vm->pio_count = calloc(65536, sizeof(*vm->pio_count));
	return 0;
}

/* After the vCPUs have stopped: exit counts, and the busiest ports. */
void vm_print_stats(struct vm *vm)
{
	unsigned int i, j;

	for (i = 0; i < vm->ncpus; i++) {
		struct vcpu *v = &vm->vcpus[i];
		struct kvm_sregs sregs = { 0 };
		struct kvm_regs regs = { 0 };

		ioctl(v->fd, KVM_GET_REGS, &regs);
		ioctl(v->fd, KVM_GET_SREGS, &sregs);
		pr_debug("vCPU %u: %llu exits to userspace, %llu port I/O, %llu MMIO "
			 "(%llu reads); cs 0x%x:0x%llx rip 0x%llx rflags 0x%llx cr0 0x%llx", i,
			 (unsigned long long)v->exits, (unsigned long long)v->pio_exits,
			 (unsigned long long)v->mmio_exits,
			 (unsigned long long)v->mmio_read_exits, sregs.cs.selector,
			 (unsigned long long)sregs.cs.base, (unsigned long long)regs.rip,
			 (unsigned long long)regs.rflags, (unsigned long long)sregs.cr0);
	}
	for (i = 0; i < ARRAY_SIZE(vm->last_pio); i++) {
		const struct pio_trace *t = &vm->last_pio[(vm->npio_trace + i) % ARRAY_SIZE(vm->last_pio)];

		if (t->size)
			pr_debug("recent port I/O: %s 0x%x = 0x%x (%u bytes)",
				 t->write ? "out" : "in", t->port, t->value, t->size);
	}
	if (!vm->pio_count)
		return;
	for (j = 0; j < 8; j++) {
		u32 best = 0, port = 0;

		for (i = 0; i < 65536; i++) {
			if (vm->pio_count[i] > best) {
				best = vm->pio_count[i];
				port = i;
			}
		}
		if (!best)
			break;
		pr_debug("port 0x%x: %u exits", port, best);
		vm->pio_count[port] = 0;	/* consumed: find the next */
	}
}

/* ---- vCPUs -------------------------------------------------------------- */

static struct kvm_cpuid2 *get_supported_cpuid(int kvm_fd)
{
	struct kvm_cpuid2 *cpuid;
	unsigned int nent = 64;

	for (;;) {
		cpuid = calloc(1, sizeof(*cpuid) + nent * sizeof(cpuid->entries[0]));
		if (!cpuid)
			return NULL;
		cpuid->nent = nent;
		if (ioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, cpuid) == 0)
			return cpuid;
		free(cpuid);
		if (errno != E2BIG || nent >= 4096) {
			pr_err("KVM_GET_SUPPORTED_CPUID: %s", strerror(errno));
			return NULL;
		}
		nent *= 2;
	}
}

/* What KVM supports, with this vCPU's APIC ID and the hypervisor bit. */
static int vcpu_set_cpuid(struct vcpu *vcpu, const struct kvm_cpuid2 *supported)
{
	size_t size = sizeof(*supported) + supported->nent * sizeof(supported->entries[0]);
	struct kvm_cpuid2 *cpuid = malloc(size);
	unsigned int i;
	int r = 0;

	if (!cpuid)
		return -ENOMEM;
	memcpy(cpuid, supported, size);
	for (i = 0; i < cpuid->nent; i++) {
		struct kvm_cpuid_entry2 *e = &cpuid->entries[i];

		switch (e->function) {
		case 1:
			e->ebx = (e->ebx & 0x00ffffff) | (vcpu->id << 24);
			e->ecx |= 1U << 31;	/* running under a hypervisor */
			break;
		case 0xb:
		case 0x1f:
			e->edx = vcpu->id;	/* x2APIC ID */
			break;
		}
	}
	if (ioctl(vcpu->fd, KVM_SET_CPUID2, cpuid) < 0) {
		r = -errno;
		pr_err("vCPU %u: KVM_SET_CPUID2: %s", vcpu->id, strerror(-r));
	}
	free(cpuid);
	return r;
}

int vm_create_vcpus(struct vm *vm, unsigned int n)
{
	struct kvm_cpuid2 *cpuid;
	int max = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS);
	unsigned int i;
	int r = 0;

	if (max <= 0)
		max = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_NR_VCPUS);
	if (max > 0 && n > (unsigned int)max) {
		pr_err("--cpus %u: this KVM supports at most %d vCPUs", n, max);
		return -EINVAL;
	}
	vm->vcpus = calloc(n, sizeof(*vm->vcpus));
	if (!vm->vcpus)
		return -ENOMEM;
	cpuid = get_supported_cpuid(vm->kvm_fd);
	if (!cpuid)
		return -EINVAL;

	for (i = 0; i < n; i++) {
		struct vcpu *vcpu = &vm->vcpus[i];

		vcpu->vm = vm;
		vcpu->id = i;
		vcpu->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, i);
		if (vcpu->fd < 0) {
			r = -errno;
			pr_err("KVM_CREATE_VCPU %u: %s", i, strerror(-r));
			break;
		}
		vm->ncpus++;
		vcpu->run = mmap(NULL, vm->run_size, PROT_READ | PROT_WRITE, MAP_SHARED,
				 vcpu->fd, 0);
		if (vcpu->run == MAP_FAILED) {
			r = -errno;
			vcpu->run = NULL;
			pr_err("vCPU %u: mmap kvm_run: %s", i, strerror(-r));
			break;
		}
		r = vcpu_set_cpuid(vcpu, cpuid);
		if (r)
			break;
	}
	free(cpuid);
	return r;
}

static void handle_pio(struct vcpu *vcpu)
{
	struct kvm_run *run = vcpu->run;
	struct vm *vm = vcpu->vm;
	u32 size = run->io.size, count = run->io.count, i;
	bool write = run->io.direction == KVM_EXIT_IO_OUT;
	const struct io_range *r;
	u8 *data;

	if ((size != 1 && size != 2 && size != 4) ||
	    run->io.data_offset >= (u64)vm->run_size ||
	    (u64)size * count > vm->run_size - run->io.data_offset)
		return;
	data = (u8 *)run + run->io.data_offset;
	vcpu->pio_exits++;
	if (vm->pio_count) {
		unsigned int slot = __atomic_fetch_add(&vm->npio_trace, 1, __ATOMIC_RELAXED);
		struct pio_trace *t = &vm->last_pio[slot % ARRAY_SIZE(vm->last_pio)];

		__atomic_fetch_add(&vm->pio_count[run->io.port], 1, __ATOMIC_RELAXED);
		t->port = run->io.port;
		t->size = size;
		t->write = write;
		t->value = 0;
		if (write)
			memcpy(&t->value, data, size);
	}
	r = vm_find_range(vm->pio, vm->npio, run->io.port, size);
	for (i = 0; i < count; i++, data += size) {
		if (r)
			r->fn(r->opaque, run->io.port - r->base, data, size, write);
		else if (!write)
			memset(data, 0xff, size);
	}
}

static void handle_mmio(struct vcpu *vcpu)
{
	struct kvm_run *run = vcpu->run;
	u32 len = run->mmio.len;
	const struct io_range *r;

	if (!len || len > sizeof(run->mmio.data))
		return;
	vcpu->mmio_exits++;
	if (!run->mmio.is_write)
		vcpu->mmio_read_exits++;
	r = vm_find_range(vcpu->vm->mmio, vcpu->vm->nmmio, run->mmio.phys_addr, len);
	if (r) {
		r->fn(r->opaque, run->mmio.phys_addr - r->base, run->mmio.data, len,
		      run->mmio.is_write);
	} else {
		if (!run->mmio.is_write)
			memset(run->mmio.data, 0, len);
		pr_debug("unhandled MMIO %s at 0x%llx, %u bytes",
			 run->mmio.is_write ? "write" : "read",
			 (unsigned long long)run->mmio.phys_addr, len);
	}
}

static bool vm_stopping(struct vm *vm)
{
	return __atomic_load_n(&vm->exit_code, __ATOMIC_ACQUIRE) != -1;
}

static void vcpu_dump(struct vcpu *vcpu)
{
	struct kvm_regs regs;

	if (ioctl(vcpu->fd, KVM_GET_REGS, &regs) == 0)
		pr_err("vCPU %u: rip 0x%llx rsp 0x%llx rflags 0x%llx", vcpu->id,
		       (unsigned long long)regs.rip, (unsigned long long)regs.rsp,
		       (unsigned long long)regs.rflags);
}

static void *vcpu_thread(void *arg)
{
	struct vcpu *vcpu = arg;
	struct kvm_run *run = vcpu->run;
	struct vm *vm = vcpu->vm;
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, VCPU_KICK_SIGNAL);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);

	while (!vm_stopping(vm)) {
		if (ioctl(vcpu->fd, KVM_RUN, 0) < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			pr_err("vCPU %u: KVM_RUN: %s", vcpu->id, strerror(errno));
			vm_request_stop(vm, VMLAUNCH_EXIT_ERROR);
			break;
		}
		vcpu->exits++;
		switch (run->exit_reason) {
		case KVM_EXIT_IO:
			handle_pio(vcpu);
			break;
		case KVM_EXIT_MMIO:
			handle_mmio(vcpu);
			break;
		case KVM_EXIT_INTR:
		case KVM_EXIT_HLT:
			break;
		case KVM_EXIT_SHUTDOWN:
			/*
			 * A triple fault: Linux's last-resort reboot, or a guest
			 * that crashed too hard to say so; say it for both.
			 */
			pr_guest_once("vCPU %u: triple fault (shutdown); exiting with status 3",
				      vcpu->id);
			vm_request_stop(vm, VMLAUNCH_EXIT_REBOOT);
			break;
		case KVM_EXIT_SYSTEM_EVENT:
			switch (run->system_event.type) {
			case KVM_SYSTEM_EVENT_SHUTDOWN:
				vm_request_stop(vm, VMLAUNCH_EXIT_POWEROFF);
				break;
			case KVM_SYSTEM_EVENT_RESET:
				vm_request_stop(vm, VMLAUNCH_EXIT_REBOOT);
				break;
			default:
				pr_err("vCPU %u: system event %u", vcpu->id,
				       run->system_event.type);
				vm_request_stop(vm, VMLAUNCH_EXIT_ERROR);
			}
			break;
		case KVM_EXIT_FAIL_ENTRY:
			pr_err("vCPU %u: entry failed, hardware reason 0x%llx", vcpu->id,
			       (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
			vcpu_dump(vcpu);
			vm_request_stop(vm, VMLAUNCH_EXIT_ERROR);
			break;
		case KVM_EXIT_INTERNAL_ERROR:
			pr_err("vCPU %u: KVM internal error, suberror %u", vcpu->id,
			       run->internal.suberror);
			vcpu_dump(vcpu);
			vm_request_stop(vm, VMLAUNCH_EXIT_ERROR);
			break;
		default:
			pr_err("vCPU %u: unexpected exit reason %u", vcpu->id, run->exit_reason);
			vcpu_dump(vcpu);
			vm_request_stop(vm, VMLAUNCH_EXIT_ERROR);
		}
	}
	return NULL;
}

static void kick_handler(int sig)
{
	(void)sig;
}

int vm_start(struct vm *vm)
{
	struct sigaction sa = { .sa_handler = kick_handler };
	char name[16];
	unsigned int i;
	int r;

	/* No SA_RESTART: KVM_RUN must return -EINTR. */
	sigemptyset(&sa.sa_mask);
	if (sigaction(VCPU_KICK_SIGNAL, &sa, NULL) < 0)
		return -errno;
	for (i = 0; i < vm->ncpus; i++) {
		r = pthread_create(&vm->vcpus[i].thread, NULL, vcpu_thread, &vm->vcpus[i]);
		if (r) {
			pr_err("cannot start vCPU %u: %s", i, strerror(r));
			return -r;
		}
		vm->vcpus[i].started = true;
		/* "vcpu0": top -H, taskset and perf tell the threads apart. */
		snprintf(name, sizeof(name), "vcpu%u", i);
		pthread_setname_np(vm->vcpus[i].thread, name);
	}
	return 0;
}

void vm_request_stop(struct vm *vm, int exit_code)
{
	int running = -1;

	if (__atomic_compare_exchange_n(&vm->exit_code, &running, exit_code, false,
					__ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
		eventfd_signal(vm->stop_fd);
}

void vm_stop_vcpus(struct vm *vm)
{
	unsigned int i;

	vm_request_stop(vm, VMLAUNCH_EXIT_ERROR);	/* no-op if already stopping */
	for (i = 0; i < vm->ncpus; i++) {
		struct vcpu *vcpu = &vm->vcpus[i];

		if (!vcpu->started)
			continue;
		__atomic_store_n(&vcpu->run->immediate_exit, 1, __ATOMIC_RELEASE);
		pthread_kill(vcpu->thread, VCPU_KICK_SIGNAL);
	}
	for (i = 0; i < vm->ncpus; i++) {
		if (vm->vcpus[i].started) {
			pthread_join(vm->vcpus[i].thread, NULL);
			vm->vcpus[i].started = false;
		}
	}
}

void vm_destroy(struct vm *vm)
{
	unsigned int i;

	for (i = 0; i < vm->ncpus; i++) {
		if (vm->vcpus[i].run)
			munmap(vm->vcpus[i].run, vm->run_size);
		close(vm->vcpus[i].fd);
	}
	free(vm->vcpus);
	vm->vcpus = NULL;
	vm->ncpus = 0;
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	if (vm->mem.host)
		munmap(vm->mem.host, vm->mem.size);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
	if (vm->stop_fd >= 0)
		close(vm->stop_fd);
	free(vm->pio_count);
	vm->pio_count = NULL;
	if (vm->routes)
		pthread_mutex_destroy(&vm->routes_lock);
	free(vm->routes);
	vm->routes = NULL;
	vm->vm_fd = vm->kvm_fd = vm->stop_fd = -1;
	vm->mem.host = NULL;
}

/* ---- interrupts and eventfds ------------------------------------------------ */

/* Before vm_start(): have the main thread call @fn when @fd is readable. */
int vm_watch_fd(struct vm *vm, int fd, void (*fn)(void *opaque), void *opaque)
{
	if (vm->nwatch >= ARRAY_SIZE(vm->watch))
		return -ENOSPC;
	vm->watch[vm->nwatch].fd = fd;
	vm->watch[vm->nwatch].fn = fn;
	vm->watch[vm->nwatch].opaque = opaque;
	vm->nwatch++;
	return 0;
}

int vm_irq_line(struct vm *vm, u32 gsi, int level)
{
	struct kvm_irq_level irq = { .irq = gsi, .level = level };

	return ioctl(vm->vm_fd, KVM_IRQ_LINE, &irq) < 0 ? -errno : 0;
}

int vm_irqfd(struct vm *vm, int fd, u32 gsi)
{
	struct kvm_irqfd irqfd = { .fd = fd, .gsi = gsi };

	return ioctl(vm->vm_fd, KVM_IRQFD, &irqfd) < 0 ? -errno : 0;
}

/*
 * Signals that arrive while an eventfd is detached stay counted in it, and
 * KVM injects them when the eventfd is attached again: that is how a
 * masked MSI-X vector keeps its pending interrupt.
 */
int vm_irqfd_detach(struct vm *vm, int fd, u32 gsi)
{
	struct kvm_irqfd irqfd = { .fd = fd, .gsi = gsi, .flags = KVM_IRQFD_FLAG_DEASSIGN };

	return ioctl(vm->vm_fd, KVM_IRQFD, &irqfd) < 0 ? -errno : 0;
}

static int ioeventfd_ctl(struct vm *vm, int fd, u64 addr, u32 len, u64 datamatch, u32 flags)
{
	struct kvm_ioeventfd ioev = {
		.datamatch = datamatch,
		.addr = addr,
		.len = len,
		.fd = fd,
		.flags = KVM_IOEVENTFD_FLAG_DATAMATCH | flags,
	};

	return ioctl(vm->vm_fd, KVM_IOEVENTFD, &ioev) < 0 ? -errno : 0;
}

int vm_ioeventfd(struct vm *vm, int fd, u64 addr, u32 len, u64 datamatch)
{
	return ioeventfd_ctl(vm, fd, addr, len, datamatch, 0);
}

int vm_ioeventfd_detach(struct vm *vm, int fd, u64 addr, u32 len, u64 datamatch)
{
	return ioeventfd_ctl(vm, fd, addr, len, datamatch, KVM_IOEVENTFD_FLAG_DEASSIGN);
}

/*
 * Show @size bytes at @host to the guest at @gpa as read-only memory: its
 * reads there need no exit, its writes exit as MMIO (and KVM ioeventfds
 * still take theirs). @size and the addresses are page-aligned.
 */
int vm_map_readonly(struct vm *vm, u64 gpa, void *host, u64 size, u32 *slot)
{
	struct kvm_userspace_memory_region region = {
		.slot = vm->next_slot,
		.flags = KVM_MEM_READONLY,
		.guest_phys_addr = gpa,
		.memory_size = size,
		.userspace_addr = (uintptr_t)host,
	};

	if (ioctl(vm->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_READONLY_MEM) <= 0)
		return -EOPNOTSUPP;
	if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &region) < 0)
		return -errno;
	*slot = vm->next_slot++;
	return 0;
}

/* Take away a slot of vm_map_readonly(): the guest's reads there exit again. */
int vm_unmap(struct vm *vm, u32 slot)
{
	struct kvm_userspace_memory_region region = { .slot = slot };

	return ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &region) < 0 ? -errno : 0;
}

/* ---- MSI routes ---------------------------------------------------------------- */

/*
 * KVM_SET_GSI_ROUTING replaces the whole table, so vmlaunch keeps a copy:
 * first what KVM_CREATE_IRQCHIP set up (GSIs 0-15 on both the PIC and the
 * IOAPIC, 16-23 on the IOAPIC only), then one MSI route per vector a
 * device asked for. Each route has a GSI of its own from 24 up, which an
 * irqfd can be attached to; rewriting a route retargets its irqfds.
 */
#define IOAPIC_PINS		24
#define PIC_IRQS		16

static int routes_commit(struct vm *vm)
{
	return ioctl(vm->vm_fd, KVM_SET_GSI_ROUTING, vm->routes) < 0 ? -errno : 0;
}

static int routes_init(struct vm *vm)
{
	struct kvm_irq_routing_entry *e;
	unsigned int gsi;

	vm->routes = calloc(1, sizeof(*vm->routes) +
			    VM_MAX_ROUTES * sizeof(vm->routes->entries[0]));
	if (!vm->routes)
		return -ENOMEM;
	pthread_mutex_init(&vm->routes_lock, NULL);
	for (gsi = 0; gsi < IOAPIC_PINS; gsi++) {
		e = &vm->routes->entries[vm->routes->nr++];
		e->gsi = gsi;
		e->type = KVM_IRQ_ROUTING_IRQCHIP;
		e->u.irqchip.irqchip = KVM_IRQCHIP_IOAPIC;
		e->u.irqchip.pin = gsi;
		if (gsi >= PIC_IRQS)
			continue;
		e = &vm->routes->entries[vm->routes->nr++];
		e->gsi = gsi;
		e->type = KVM_IRQ_ROUTING_IRQCHIP;
		e->u.irqchip.irqchip = gsi < 8 ? KVM_IRQCHIP_PIC_MASTER : KVM_IRQCHIP_PIC_SLAVE;
		e->u.irqchip.pin = gsi % 8;
	}
	vm->next_msi_gsi = IOAPIC_PINS;
	return 0;
}

static struct kvm_irq_routing_entry *find_msi_route(struct vm *vm, u32 gsi)
{
	unsigned int i;

	for (i = 0; i < vm->routes->nr; i++) {
		struct kvm_irq_routing_entry *e = &vm->routes->entries[i];

		if (e->gsi == gsi && e->type == KVM_IRQ_ROUTING_MSI)
			return e;
	}
	return NULL;
}

/* A new MSI route (to nowhere useful until vm_msi_route_set()); its GSI or -errno. */
int vm_msi_route_add(struct vm *vm)
{
	struct kvm_irq_routing_entry *e;
	int r;

	if (!vm->routes) {
		r = routes_init(vm);
		if (r)
			return r;
	}
	pthread_mutex_lock(&vm->routes_lock);
	if (vm->routes->nr >= VM_MAX_ROUTES) {
		pthread_mutex_unlock(&vm->routes_lock);
		return -ENOSPC;
	}
	e = &vm->routes->entries[vm->routes->nr++];
	memset(e, 0, sizeof(*e));
	e->gsi = vm->next_msi_gsi++;
	e->type = KVM_IRQ_ROUTING_MSI;
	r = routes_commit(vm);
	if (r) {
		vm->routes->nr--;
		vm->next_msi_gsi--;
	} else {
		r = e->gsi;
	}
	pthread_mutex_unlock(&vm->routes_lock);
	return r;
}

/* Point an MSI route at the message a driver wrote into its MSI-X table. */
int vm_msi_route_set(struct vm *vm, u32 gsi, u64 addr, u32 data)
{
	struct kvm_irq_routing_entry *e;
	int r = 0;

	if (!vm->routes)
		return -ENOENT;
	pthread_mutex_lock(&vm->routes_lock);
	e = find_msi_route(vm, gsi);
	if (!e) {
		r = -ENOENT;
	} else if (e->u.msi.address_lo != (u32)addr || e->u.msi.address_hi != addr >> 32 ||
		   e->u.msi.data != data) {
		e->u.msi.address_lo = addr;
		e->u.msi.address_hi = addr >> 32;
		e->u.msi.data = data;
		r = routes_commit(vm);
	}
	pthread_mutex_unlock(&vm->routes_lock);
	return r;
}

/* ---- guest memory ------------------------------------------------------------ */

void *gpa_to_hva(const struct vm *vm, u64 gpa, u64 len)
{
	const struct guest_mem *m = &vm->mem;
	u64 high = m->size - m->low_size;

	if (!len)
		len = 1;
	if (gpa < m->low_size)
		return len <= m->low_size - gpa ? m->host + gpa : NULL;
	if (gpa >= GUEST_HIGH_START && gpa - GUEST_HIGH_START < high &&
	    len <= high - (gpa - GUEST_HIGH_START))
		return m->host + m->low_size + (gpa - GUEST_HIGH_START);
	return NULL;
}
