/* SPDX-License-Identifier: GPL-2.0 */
/*
 * vmlaunch: a small KVM launcher for Linux guests with virtio-mmio devices
 * backed in userspace or by kvmx's in-kernel vhost devices.
 *
 * Threads and who owns what:
 * - the main thread parses the command line, builds the VM, then waits for
 *   a stop request (guest poweroff/reboot, a fatal error, a signal) and
 *   tears everything down in reverse order;
 * - one thread per vCPU runs KVM_RUN and dispatches port I/O and MMIO exits
 *   to the handlers registered on the VM's buses (each device serialises its
 *   own state with its own mutex);
 * - each userspace virtio-blk disk has one I/O thread that owns its
 *   virtqueue while the device is live, and each userspace virtio-net
 *   device one thread that owns both of its virtqueues and the tap fd.
 * Guest memory is mapped once, before any thread starts, and unmapped after
 * every thread that could touch it has been joined.
 */
#ifndef VMLAUNCH_H
#define VMLAUNCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <pthread.h>
#include <linux/kvm.h>

typedef uint8_t u8;
typedef uint16_t u16;
typedef uint32_t u32;
typedef uint64_t u64;

/* Exit statuses, documented in Documentation/vmlaunch.rst. */
#define VMLAUNCH_EXIT_POWEROFF	0	/* the guest powered off */
#define VMLAUNCH_EXIT_ERROR	1	/* vmlaunch or KVM failed */
#define VMLAUNCH_EXIT_USAGE	2	/* bad command line */
#define VMLAUNCH_EXIT_REBOOT	3	/* the guest rebooted (or triple faulted) */
#define VMLAUNCH_EXIT_SIGNAL	4	/* SIGTERM, SIGINT or SIGHUP */

#define ARRAY_SIZE(a)		(sizeof(a) / sizeof((a)[0]))
#define ALIGN_UP(x, a)		(((x) + (a) - 1) & ~((u64)(a) - 1))
#define ALIGN_DOWN(x, a)	((x) & ~((u64)(a) - 1))
#define SZ_1K			0x400ULL
#define SZ_1M			0x100000ULL
#define SZ_1G			0x40000000ULL
#define HUGE_PAGE_SIZE		(2 * SZ_1M)

extern bool vmlaunch_verbose;

#define pr_err(fmt, ...)	fprintf(stderr, "vmlaunch: " fmt "\n", ##__VA_ARGS__)
#define pr_warn(fmt, ...)	fprintf(stderr, "vmlaunch: warning: " fmt "\n", ##__VA_ARGS__)
/* With --verbose: prefixed with the seconds since vmlaunch started. */
#define pr_debug(fmt, ...)						\
	do {								\
		if (vmlaunch_verbose)					\
			fprintf(stderr, "vmlaunch: [%7.3f] " fmt "\n",	\
				vmlaunch_elapsed(), ##__VA_ARGS__);	\
	} while (0)

double vmlaunch_elapsed(void);

/*
 * A guest-caused problem (bad ring, bad register access) is reported once
 * per call site, so a hostile guest cannot flood the host's stderr.
 */
#define pr_guest_once(fmt, ...)						\
	do {								\
		static bool __warned;					\
		if (!__atomic_exchange_n(&__warned, true, __ATOMIC_RELAXED)) \
			pr_warn("guest: " fmt, ##__VA_ARGS__);		\
	} while (0)

/* ---- configuration (main.c) --------------------------------------------- */

#define VMLAUNCH_MAX_CPUS	64
#define VMLAUNCH_MAX_DISKS	8	/* one IOAPIC pin each, GSIs 16..23 */
/* A worker that spins longer than this between requests only burns a CPU. */
#define DISK_POLL_MAX_US	100000
#define DISK_MAX_QUEUES		8	/* VIRTIO_MAX_QUEUES */
#define VMLAUNCH_MAX_NETS	4
#define VMLAUNCH_MAX_VIRTIO	8	/* virtio devices together: GSIs 16..23 */
#define VIRTIO_BLK_SERIAL_LEN	20

enum disk_backend {
	DISK_USER,		/* virtqueue served by a vmlaunch I/O thread */
	DISK_VHOST,		/* virtqueue served by /dev/vhost-blk */
};

struct disk_config {
	const char *path;
	enum disk_backend backend;
	bool ro;
	bool direct;		/* O_DIRECT: no host page cache (cache=none) */
	unsigned int poll_us;	/* how long the I/O thread or worker polls, 0 = off */
	unsigned int queues;	/* request queues, 1 to DISK_MAX_QUEUES */
	char serial[VIRTIO_BLK_SERIAL_LEN + 1];
};

enum net_backend {
	NET_USER,		/* virtqueues served by a vmlaunch thread on the tap fd */
	NET_VHOST,		/* virtqueues served by a vhost-net device in the kernel */
};

/*
 * --net: the tap is named (vmlaunch attaches to it, creating it if it does
 * not exist) or passed as an open fd; the vhost device is a path or an
 * open fd (then VHOST_SET_OWNER must not have been called on it yet).
 */
struct net_config {
	const char *tap;	/* NULL: tap_fd */
	int tap_fd;
	enum net_backend backend;
	const char *vhost_path;	/* NULL: vhost_fd (with NET_VHOST) */
	int vhost_fd;
	u8 mac[6];
};

struct vm_config {
	const char *kernel;
	const char *initrd;
	const char *cmdline;
	unsigned int cpus;
	u64 mem_size;
	bool hugetlb;
	bool console;		/* stdin feeds the guest's console */
	bool virtio_console;	/* a virtio-console (hvc0); stdin goes there */
	bool virtio_pci;	/* --transport pci: virtio-pci, not virtio-mmio */
	bool mmio_reads_exit;	/* --mmio-reads exit: no read-only register pages */
	unsigned int ndisks;
	struct disk_config disks[VMLAUNCH_MAX_DISKS];
	unsigned int nnets;
	struct net_config nets[VMLAUNCH_MAX_NETS];
};

/* ---- the VM (kvm.c) ------------------------------------------------------ */

/*
 * Guest physical memory: one host mapping. Below 4 GiB the guest sees RAM up
 * to low_size (at most 3 GiB, leaving room for device MMIO, the IOAPIC and
 * the local APICs); the rest of the mapping appears at 4 GiB.
 */
#define GUEST_LOW_MAX		(3 * SZ_1G)
#define GUEST_HIGH_START	(4 * SZ_1G)

struct guest_mem {
	u8 *host;
	u64 size;
	u64 low_size;
};

typedef void (*io_handler_fn)(void *opaque, u64 offset, u8 *data, u32 len, bool write);

struct io_range {
	u64 base;
	u64 len;
	io_handler_fn fn;
	void *opaque;
};

#define VM_MAX_RANGES		32
/* The IOAPIC's and PIC's 40 routes, and up to 9 MSI-X vectors per virtio device. */
#define VM_MAX_ROUTES		128

struct vm;
struct pci_bus;

struct pio_trace {
	u16 port;
	u8 size;
	bool write;
	u32 value;
};

struct vcpu {
	struct vm *vm;
	unsigned int id;
	int fd;
	struct kvm_run *run;
	pthread_t thread;
	bool started;
	u64 exits;		/* statistics, printed with --verbose */
	u64 pio_exits;
	u64 mmio_exits;
	u64 mmio_read_exits;
};

struct vm {
	int kvm_fd;
	int vm_fd;
	int run_size;
	struct guest_mem mem;

	unsigned int ncpus;
	struct vcpu *vcpus;

	/* Filled before the vCPUs start, read-only afterwards. */
	struct io_range pio[VM_MAX_RANGES];
	unsigned int npio;
	struct io_range mmio[VM_MAX_RANGES];
	unsigned int nmmio;

	/* Port I/O exits per port and the last few, for --verbose. */
	u32 *pio_count;
	struct pio_trace last_pio[16];
	unsigned int npio_trace;

	/* fds the main thread polls for devices, with what to call when readable. */
	struct {
		int fd;
		void (*fn)(void *opaque);
		void *opaque;
	} watch[VM_MAX_RANGES];
	unsigned int nwatch;

	bool virtio_pci;	/* the virtio devices are PCI functions (pci.c) */
	bool mmio_reads_exit;	/* virtio-mmio register reads exit (no register page) */
	u32 next_slot;		/* the next free KVM memory slot */
	struct pci_bus *pci;

	/* Interrupt routes, once a device asked for an MSI route (kvm.c). */
	struct kvm_irq_routing *routes;
	pthread_mutex_t routes_lock;
	u32 next_msi_gsi;

	/* Stop request: the first writer of exit_code wins, then stop_fd fires. */
	int exit_code;		/* -1 while running */
	int stop_fd;		/* eventfd the main thread polls */
};

int vm_create(struct vm *vm, const struct vm_config *cfg);
int vm_create_vcpus(struct vm *vm, unsigned int n);
int vm_start(struct vm *vm);
void vm_stop_vcpus(struct vm *vm);
void vm_destroy(struct vm *vm);
void vm_request_stop(struct vm *vm, int exit_code);
void vm_print_stats(struct vm *vm);

int vm_register_pio(struct vm *vm, u64 base, u64 len, io_handler_fn fn, void *opaque);
int vm_register_mmio(struct vm *vm, u64 base, u64 len, io_handler_fn fn, void *opaque);
const struct io_range *vm_find_range(const struct io_range *ranges, unsigned int n,
				     u64 addr, u32 len);
int vm_watch_fd(struct vm *vm, int fd, void (*fn)(void *opaque), void *opaque);
int vm_irq_line(struct vm *vm, u32 gsi, int level);
int vm_irqfd(struct vm *vm, int fd, u32 gsi);
int vm_irqfd_detach(struct vm *vm, int fd, u32 gsi);
int vm_ioeventfd(struct vm *vm, int fd, u64 addr, u32 len, u64 datamatch);
int vm_ioeventfd_detach(struct vm *vm, int fd, u64 addr, u32 len, u64 datamatch);
int vm_map_readonly(struct vm *vm, u64 gpa, void *host, u64 size, u32 *slot);
int vm_unmap(struct vm *vm, u32 slot);
int vm_msi_route_add(struct vm *vm);
int vm_msi_route_set(struct vm *vm, u32 gsi, u64 addr, u32 data);

/*
 * Translate [gpa, gpa + len) to a host pointer, or NULL unless the whole
 * range is guest RAM (and does not wrap). len 0 is treated as 1.
 */
void *gpa_to_hva(const struct vm *vm, u64 gpa, u64 len);

/* ---- boot (boot.c, acpi.c) ------------------------------------------------- */

int boot_linux(struct vm *vm, const struct vm_config *cfg, u64 rsdp);

/* Memory below 1 MiB that vmlaunch uses; the e820 map must agree. */
#define BOOT_GDT		0x0500
#define BOOT_PARAMS		0x7000
#define BOOT_PML4		0x9000
#define BOOT_PDPT		0xa000
#define BOOT_PD			0xb000	/* four pages: identity map of 4 GiB */
#define BOOT_CMDLINE		0x20000
#define BOOT_CMDLINE_MAX	0x10000
#define EBDA_START		0x9fc00
#define ACPI_START		0xe0000	/* e820-reserved up to 1 MiB */
#define ACPI_END		0xffff0
#define RESET_VECTOR		0xffff0	/* up to 1 MiB: the reboot stub */

/* A device in the DSDT: one register window and one interrupt. */
struct acpi_device_info {
	char name[5];		/* the AML NameSeg, 4 characters */
	const char *hid;	/* e.g. "LNRO0005" for virtio-mmio */
	bool io;		/* base/size are I/O ports, not memory */
	u64 base;
	u32 size;
	u32 gsi;		/* edge-triggered, active high */
};

#define ACPI_MAX_DEVICES	(VMLAUNCH_MAX_VIRTIO + 1)

/* I/O ports of the ACPI sleep and reset registers (dev-pm.c). */
#define PM_SLEEP_CONTROL_PORT	0x600
#define PM_SLEEP_STATUS_PORT	0x601
#define PM_RESET_PORT		0x602
#define PM_RESET_VALUE		0x01
#define PM_S5_SLP_TYP		5

/* Devices with an empty name are skipped; a PCI host bridge with vm->pci. */
int acpi_build(struct vm *vm, const struct acpi_device_info *devs,
	       unsigned int ndevs, u64 *rsdp);

/* ---- devices ---------------------------------------------------------------- */

#define IOAPIC_ADDR		0xfec00000ULL
#define LAPIC_ADDR		0xfee00000ULL

struct serial;
struct serial *serial_create(struct vm *vm, struct acpi_device_info *info);
size_t serial_input(struct serial *s, const u8 *buf, size_t len);
void serial_destroy(struct serial *s);

int pm_create(struct vm *vm);

/* ---- helpers (util.c) ------------------------------------------------------- */

int parse_size(const char *s, u64 *out);
int parse_uint(const char *s, unsigned int *out);
int eventfd_signal(int fd);
int eventfd_drain(int fd);
int read_file_at(int fd, void *buf, size_t len, off_t off);

#endif /* VMLAUNCH_H */
