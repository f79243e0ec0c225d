// SPDX-License-Identifier: GPL-2.0
/*
 * vmlaunch: the command line, and the order things are built and torn
 * down in. Every bad argument is reported here, before any KVM object
 * exists, with exit status 2.
 */
#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>
#include <fcntl.h>
#include <net/if.h>
#include <sys/signalfd.h>
#include <sys/stat.h>

#include "vmlaunch.h"
#include "dev-blk.h"
#include "dev-net.h"
#include "dev-console.h"
#include "pci.h"

#define DEFAULT_MEM		(512 * SZ_1M)
#define MIN_MEM			(32 * SZ_1M)
#define MAX_MEM			(1024 * SZ_1G)
#define DEFAULT_CMDLINE		"console=ttyS0 pci=off panic=-1"
/*
 * pci=noearly: on CPUs that may have an AMD GART, Linux reads the class of
 * every slot of all 256 buses twice before the PCI core starts, looking
 * for an AGP bridge: 16,000 exits to vmlaunch for nothing in a VM.
 */
#define DEFAULT_CMDLINE_PCI	"console=ttyS0 pci=noearly panic=-1"
#define CTRL_A			0x01

bool vmlaunch_verbose;

static void usage(FILE *out)
{
	fprintf(out,
"Usage: vmlaunch --kernel BZIMAGE [OPTIONS]\n"
"\n"
"Boot a 64-bit x86 Linux kernel under KVM with a serial console and\n"
"virtio disks and NICs, served in userspace or by vhost devices in the\n"
"kernel (kvmx's /dev/vhost-blk, /dev/vhost-net, kvmx's /dev/kvmx-vhost-net).\n"
"\n"
"  --kernel FILE        bzImage to boot (required)\n"
"  --initrd FILE        initramfs\n"
"  --cmdline STRING     kernel command line (default \"console=ttyS0 pci=off\n"
"                       panic=-1\", or \"console=ttyS0 pci=noearly panic=-1\"\n"
"                       with --transport pci)\n"
"  --cpus N             vCPUs, 1..%d (default 1)\n"
"  --mem SIZE           guest memory: a number with K, M, G or T, or MiB if\n"
"                       bare (default 512M, at least 32M)\n"
"  --hugetlb            back guest memory with 2 MiB huge pages\n"
"  --disk PATH[,OPT]... a virtio-blk disk on a file or block device (up to %d);\n"
"                       options: user (I/O thread in vmlaunch, the default),\n"
"                       vhost (/dev/vhost-blk in the kernel), ro (read-only),\n"
"                       direct (open it O_DIRECT, bypassing the host's page\n"
"                       cache, as QEMU's cache=none), poll=USEC (the I/O\n"
"                       thread or vhost worker polls the ring that long\n"
"                       before it sleeps, as QEMU's iothread polls; default\n"
"                       0, off), queues=N (request queues, 1 to 8, default\n"
"                       1, each served by its own thread or vhost worker;\n"
"                       Linux uses one per vCPU), serial=ID (GET_ID answer,\n"
"                       up to 20 bytes; default: the file's name)\n"
"  --net TAP[,OPT]...   a virtio-net NIC on a tap (up to %d; at most %d disks\n"
"                       and NICs together). TAP is tap=NAME (attach to that\n"
"                       tap, created if missing) or tapfd=N (an open tap fd,\n"
"                       IFF_TAP|IFF_NO_PI|IFF_VNET_HDR). Options:\n"
"                       user (a vmlaunch thread moves the frames, the\n"
"                       default), vhost (/dev/vhost-net), vhost=PATH (e.g.\n"
"                       /dev/kvmx-vhost-net), vhostfd=N (an open vhost-net\n"
"                       fd, not yet owned), mac=XX:XX:XX:XX:XX:XX (default\n"
"                       02:6b:76:6d:78:NN, NN the NIC's number)\n"
"  --console            connect stdin to the guest's console too (raw mode on\n"
"                       a terminal; Ctrl-A x quits): the serial port, or\n"
"                       the virtio console with --virtio-console\n"
"  --transport mmio|pci how the virtio devices appear: virtio-mmio devices in\n"
"                       the ACPI tables (the default), or virtio-pci functions\n"
"                       on PCI bus 0 with MSI-X interrupts, which spare the\n"
"                       guest an exit per interrupt (the acknowledgement)\n"
"  --mmio-reads map|exit how the guest reads virtio-mmio registers: from a\n"
"                       read-only page vmlaunch keeps up to date, without an\n"
"                       exit (map, the default), or each read an exit to\n"
"                       vmlaunch (exit, the way before; also what a KVM\n"
"                       without read-only memory gives)\n"
"  --virtio-console     add a virtio-console device (the guest's hvc0, use\n"
"                       console=hvc0); its output goes to stdout as well.\n"
"                       Takes one of the %d virtio devices\n"
"  -v, --verbose        log what vmlaunch sets up\n"
"  -h, --help           this text\n"
"\n"
"The serial port (COM1, ttyS0) always goes to stdout; it stays with\n"
"--virtio-console, for the kernel's early messages before hvc0 exists.\n"
"\n"
"Exit status: 0 the guest powered off, 1 error, 2 bad usage,\n"
"3 the guest rebooted (or triple-faulted), 4 SIGTERM/SIGINT/SIGHUP or Ctrl-A x.\n",
		VMLAUNCH_MAX_CPUS, VMLAUNCH_MAX_DISKS, VMLAUNCH_MAX_NETS, VMLAUNCH_MAX_VIRTIO,
		VMLAUNCH_MAX_VIRTIO);
}

static void __attribute__((noreturn, format(printf, 1, 2))) usage_error(const char *fmt, ...)
{
	va_list ap;

	fputs("vmlaunch: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\nTry 'vmlaunch --help' for more information.\n", stderr);
	exit(VMLAUNCH_EXIT_USAGE);
}

/* A file argument must exist and be readable (and be of the right kind). */
static void check_file(const char *opt, const char *path, bool allow_blockdev)
{
	struct stat st;

	if (!*path)
		usage_error("%s: empty file name", opt);
	if (stat(path, &st) < 0)
		usage_error("%s %s: %s", opt, path, strerror(errno));
	if (!S_ISREG(st.st_mode) && !(allow_blockdev && S_ISBLK(st.st_mode)))
		usage_error("%s %s: not a regular file%s", opt, path,
			    allow_blockdev ? " or block device" : "");
	if (access(path, R_OK) < 0)
		usage_error("%s %s: %s", opt, path, strerror(errno));
}

static void parse_disk(struct vm_config *cfg, char *arg)
{
	struct disk_config *d;
	char *opt, *save = NULL, *path;

	if (cfg->ndisks >= VMLAUNCH_MAX_DISKS)
		usage_error("--disk %s: too many disks (at most %d)", arg, VMLAUNCH_MAX_DISKS);
	if (cfg->ndisks + cfg->nnets >= VMLAUNCH_MAX_VIRTIO)
		usage_error("--disk %s: too many devices (at most %d disks and NICs together)",
			    arg, VMLAUNCH_MAX_VIRTIO);
	d = &cfg->disks[cfg->ndisks];
	path = strtok_r(arg, ",", &save);
	if (!path)
		usage_error("--disk: no file given");
	d->path = path;
	d->backend = DISK_USER;
	d->queues = 1;
	while ((opt = strtok_r(NULL, ",", &save))) {
		if (!strcmp(opt, "vhost")) {
			d->backend = DISK_VHOST;
		} else if (!strcmp(opt, "user")) {
			d->backend = DISK_USER;
		} else if (!strcmp(opt, "ro")) {
			d->ro = true;
		} else if (!strcmp(opt, "direct")) {
			d->direct = true;
		} else if (!strncmp(opt, "poll=", 5)) {
			if (parse_uint(opt + 5, &d->poll_us) || d->poll_us > DISK_POLL_MAX_US)
				usage_error("--disk %s: poll=%s: expected microseconds, 0 to %d",
					    path, opt + 5, DISK_POLL_MAX_US);
		} else if (!strncmp(opt, "queues=", 7)) {
			if (parse_uint(opt + 7, &d->queues) || !d->queues ||
			    d->queues > DISK_MAX_QUEUES)
				usage_error("--disk %s: queues=%s: expected 1 to %d",
					    path, opt + 7, DISK_MAX_QUEUES);
		} else if (!strncmp(opt, "serial=", 7)) {
			if (strlen(opt + 7) > VIRTIO_BLK_SERIAL_LEN)
				usage_error("--disk %s: serial '%s' is longer than %d bytes",
					    path, opt + 7, VIRTIO_BLK_SERIAL_LEN);
			strcpy(d->serial, opt + 7);
		} else {
			usage_error("--disk %s: unknown option '%s' (use user, vhost, ro, direct, poll=USEC, queues=N, serial=ID)",
				    path, opt);
		}
	}
	check_file("--disk", path, true);
	if (!d->ro && access(path, W_OK) < 0)
		usage_error("--disk %s: %s (add ,ro for a read-only disk)", path, strerror(errno));
	if (!d->serial[0]) {
		char *copy = strdup(path);

		if (!copy)
			exit(VMLAUNCH_EXIT_ERROR);
		snprintf(d->serial, sizeof(d->serial), "%s", basename(copy));
		free(copy);
	}
	cfg->ndisks++;
}

/* An fd number given on the command line must be open: vmlaunch takes it over. */
static int parse_fd(const char *opt, const char *val)
{
	unsigned int fd;

	if (parse_uint(val, &fd) || fd > 65535)
		usage_error("--net %s=%s: not a file descriptor number", opt, val);
	if (fd <= STDERR_FILENO)
		usage_error("--net %s=%s: stdin, stdout and stderr are not taps", opt, val);
	if (fcntl(fd, F_GETFD) < 0)
		usage_error("--net %s=%s: not an open file descriptor", opt, val);
	return fd;
}

static void parse_mac(const char *val, u8 *mac)
{
	unsigned int b[6];
	char end;
	int i;

	if (sscanf(val, "%2x:%2x:%2x:%2x:%2x:%2x%c", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5],
		   &end) != 6 || strlen(val) != 17)
		usage_error("--net mac=%s: not a MAC address (like 02:6b:76:6d:78:01)", val);
	if (b[0] & 1)
		usage_error("--net mac=%s: a multicast address", val);
	for (i = 0; i < 6; i++)
		mac[i] = b[i];
}

static void parse_net(struct vm_config *cfg, char *arg)
{
	static const char usage_hint[] =
		"tap=NAME or tapfd=N, then user, vhost, vhost=PATH, vhostfd=N, mac=MAC";
	struct net_config *n;
	char *opt, *save = NULL, *whole = strdup(arg);
	bool backend_set = false;

	if (!whole)
		exit(VMLAUNCH_EXIT_ERROR);
	if (cfg->nnets >= VMLAUNCH_MAX_NETS)
		usage_error("--net %s: too many NICs (at most %d)", arg, VMLAUNCH_MAX_NETS);
	if (cfg->ndisks + cfg->nnets >= VMLAUNCH_MAX_VIRTIO)
		usage_error("--net %s: too many devices (at most %d disks and NICs together)",
			    arg, VMLAUNCH_MAX_VIRTIO);
	n = &cfg->nets[cfg->nnets];
	n->tap_fd = -1;
	n->vhost_fd = -1;
	n->backend = NET_USER;
	/* 02: locally administered, unicast; then "kvmx" and the NIC's number. */
	memcpy(n->mac, (u8[]){ 0x02, 0x6b, 0x76, 0x6d, 0x78, cfg->nnets }, 6);

	for (opt = strtok_r(arg, ",", &save); opt; opt = strtok_r(NULL, ",", &save)) {
		char *val = strchr(opt, '=');

		if (val)
			*val++ = 0;
		if (!strcmp(opt, "tap") && val) {
			if (!*val || strlen(val) >= IFNAMSIZ)
				usage_error("--net tap=%s: an interface name has 1 to %d characters",
					    val, IFNAMSIZ - 1);
			n->tap = val;
		} else if (!strcmp(opt, "tapfd") && val) {
			n->tap_fd = parse_fd(opt, val);
		} else if ((!strcmp(opt, "user") || !strcmp(opt, "vhost")) && !val) {
			if (backend_set)
				usage_error("--net %s: more than one backend", whole);
			backend_set = true;
			n->backend = !strcmp(opt, "vhost") ? NET_VHOST : NET_USER;
			n->vhost_path = n->backend == NET_VHOST ? "/dev/vhost-net" : NULL;
		} else if (!strcmp(opt, "vhost") && val) {
			if (backend_set)
				usage_error("--net %s: more than one backend", whole);
			if (!*val)
				usage_error("--net vhost=: empty path");
			backend_set = true;
			n->backend = NET_VHOST;
			n->vhost_path = val;
		} else if (!strcmp(opt, "vhostfd") && val) {
			if (backend_set)
				usage_error("--net %s: more than one backend", whole);
			backend_set = true;
			n->backend = NET_VHOST;
			n->vhost_path = NULL;
			n->vhost_fd = parse_fd(opt, val);
		} else if (!strcmp(opt, "mac") && val) {
			parse_mac(val, n->mac);
		} else {
			usage_error("--net %s: unknown option '%s%s%s' (use %s)", whole, opt,
				    val ? "=" : "", val ? val : "", usage_hint);
		}
	}
	if (!n->tap && n->tap_fd < 0)
		usage_error("--net %s: no tap given (use %s)", whole, usage_hint);
	if (n->tap && n->tap_fd >= 0)
		usage_error("--net %s: tap= and tapfd= together", whole);
	free(whole);
	cfg->nnets++;
}

enum {
	OPT_KERNEL = 256,
	OPT_INITRD,
	OPT_CMDLINE,
	OPT_CPUS,
	OPT_MEM,
	OPT_HUGETLB,
	OPT_DISK,
	OPT_NET,
	OPT_CONSOLE,
	OPT_VIRTIO_CONSOLE,
	OPT_TRANSPORT,
	OPT_MMIO_READS,
};

static const struct option options[] = {
	{ "kernel", required_argument, NULL, OPT_KERNEL },
	{ "initrd", required_argument, NULL, OPT_INITRD },
	{ "cmdline", required_argument, NULL, OPT_CMDLINE },
	{ "cpus", required_argument, NULL, OPT_CPUS },
	{ "mem", required_argument, NULL, OPT_MEM },
	{ "hugetlb", no_argument, NULL, OPT_HUGETLB },
	{ "disk", required_argument, NULL, OPT_DISK },
	{ "net", required_argument, NULL, OPT_NET },
	{ "console", no_argument, NULL, OPT_CONSOLE },
	{ "virtio-console", no_argument, NULL, OPT_VIRTIO_CONSOLE },
	{ "transport", required_argument, NULL, OPT_TRANSPORT },
	{ "mmio-reads", required_argument, NULL, OPT_MMIO_READS },
	{ "verbose", no_argument, NULL, 'v' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

/* "pci=off" as a word of the command line (a later pci= does not undo it). */
static bool cmdline_has_pci_off(const char *cmdline)
{
	const char *p = cmdline;

	while ((p = strstr(p, "pci=off"))) {
		if ((p == cmdline || p[-1] == ' ') && (p[7] == 0 || p[7] == ' '))
			return true;
		p += 7;
	}
	return false;
}

static void parse_args(int argc, char **argv, struct vm_config *cfg)
{
	bool cmdline_given = false;
	int c;

	memset(cfg, 0, sizeof(*cfg));
	cfg->cpus = 1;
	cfg->mem_size = DEFAULT_MEM;
	cfg->cmdline = DEFAULT_CMDLINE;

	opterr = 0;
	while ((c = getopt_long(argc, argv, ":hv", options, NULL)) != -1) {
		switch (c) {
		case OPT_KERNEL:
			cfg->kernel = optarg;
			break;
		case OPT_INITRD:
			cfg->initrd = optarg;
			break;
		case OPT_CMDLINE:
			cfg->cmdline = optarg;
			cmdline_given = true;
			break;
		case OPT_CPUS:
			if (parse_uint(optarg, &cfg->cpus) || !cfg->cpus ||
			    cfg->cpus > VMLAUNCH_MAX_CPUS)
				usage_error("--cpus %s: need a whole number from 1 to %d", optarg,
					    VMLAUNCH_MAX_CPUS);
			break;
		case OPT_MEM:
			if (parse_size(optarg, &cfg->mem_size))
				usage_error("--mem %s: not a size (use e.g. 512M, 2G, or 512 for MiB)",
					    optarg);
			if (cfg->mem_size < MIN_MEM || cfg->mem_size > MAX_MEM)
				usage_error("--mem %s: must be from 32M to 1T", optarg);
			break;
		case OPT_HUGETLB:
			cfg->hugetlb = true;
			break;
		case OPT_DISK:
			parse_disk(cfg, optarg);
			break;
		case OPT_NET:
			parse_net(cfg, optarg);
			break;
		case OPT_CONSOLE:
			cfg->console = true;
			break;
		case OPT_VIRTIO_CONSOLE:
			cfg->virtio_console = true;
			break;
		case OPT_TRANSPORT:
			if (strcmp(optarg, "mmio") && strcmp(optarg, "pci"))
				usage_error("--transport %s: use mmio or pci", optarg);
			cfg->virtio_pci = !strcmp(optarg, "pci");
			break;
		case OPT_MMIO_READS:
			if (strcmp(optarg, "map") && strcmp(optarg, "exit"))
				usage_error("--mmio-reads %s: use map or exit", optarg);
			cfg->mmio_reads_exit = !strcmp(optarg, "exit");
			break;
		case 'v':
			vmlaunch_verbose = true;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		case ':':
			usage_error("%s needs an argument", argv[optind - 1]);
		default:
			if (optopt)
				usage_error("unknown option '-%c'", optopt);
			usage_error("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc)
		usage_error("unexpected argument '%s'", argv[optind]);
	if (cfg->virtio_console && cfg->ndisks + cfg->nnets >= VMLAUNCH_MAX_VIRTIO)
		usage_error("--virtio-console: too many devices (at most %d disks, NICs and the virtio console together)",
			    VMLAUNCH_MAX_VIRTIO);
	if (cfg->virtio_pci) {
		if (!cmdline_given)
			cfg->cmdline = DEFAULT_CMDLINE_PCI;
		else if (cmdline_has_pci_off(cfg->cmdline))
			usage_error("--transport pci: the command line says pci=off, so the guest would not see its devices");
	}
	if (!cfg->kernel)
		usage_error("no --kernel given");
	check_file("--kernel", cfg->kernel, false);
	if (cfg->initrd)
		check_file("--initrd", cfg->initrd, false);
	if (cfg->mem_size & 4095)
		usage_error("--mem: must be a multiple of 4K");
	if (cfg->hugetlb && (cfg->mem_size & (HUGE_PAGE_SIZE - 1)))
		usage_error("--mem: must be a multiple of 2M with --hugetlb");
}

/* ---- the terminal ------------------------------------------------------------- */

static struct termios saved_termios;
static bool termios_saved;

static void console_raw(void)
{
	struct termios t;

	if (!isatty(STDIN_FILENO) || tcgetattr(STDIN_FILENO, &saved_termios) < 0)
		return;
	termios_saved = true;
	t = saved_termios;
	cfmakeraw(&t);
	t.c_oflag |= OPOST | ONLCR;	/* keep the guest's "\n" readable */
	tcsetattr(STDIN_FILENO, TCSANOW, &t);
}

static void console_restore(void)
{
	if (termios_saved)
		tcsetattr(STDIN_FILENO, TCSANOW, &saved_termios);
}

/*
 * Bytes read from stdin wait here while the UART's FIFO is full or the
 * virtio console has no receive buffer: stdin is not read again until the
 * guest has taken them. With a virtio console, stdin goes there only.
 */
struct console {
	struct serial *serial;
	struct vcon *vcon;
	bool ctrl_a;		/* the previous byte was Ctrl-A */
	u8 pending[128];
	size_t npending;
};

static void console_flush(struct console *c)
{
	size_t n = c->vcon ? vcon_input(c->vcon, c->pending, c->npending) :
			     serial_input(c->serial, c->pending, c->npending);

	memmove(c->pending, c->pending + n, c->npending - n);
	c->npending -= n;
}

/* Forward stdin to the UART; Ctrl-A x stops the VM. Returns false at EOF. */
static bool console_forward(struct vm *vm, struct console *c)
{
	u8 buf[sizeof(c->pending) / 2];
	ssize_t n, i;

	n = read(STDIN_FILENO, buf, sizeof(buf));
	if (n <= 0)
		return n < 0 && (errno == EINTR || errno == EAGAIN);
	/* Each byte adds at most two (a held Ctrl-A and itself). */
	for (i = 0; i < n; i++) {
		if (c->ctrl_a) {
			c->ctrl_a = false;
			if (buf[i] == 'x' || buf[i] == 'X') {
				vm_request_stop(vm, VMLAUNCH_EXIT_SIGNAL);
				return true;
			}
			if (buf[i] != CTRL_A)
				c->pending[c->npending++] = CTRL_A;
		} else if (buf[i] == CTRL_A) {
			c->ctrl_a = true;
			continue;
		}
		c->pending[c->npending++] = buf[i];
	}
	console_flush(c);
	return true;
}

/* ---- main ------------------------------------------------------------------------ */

static int run(struct vm *vm, const struct vm_config *cfg, struct serial *serial,
	       struct vcon *vcon, int sig_fd)
{
	struct console console = { .serial = serial, .vcon = vcon };
	bool stdin_open = cfg->console;

	for (;;) {
		/* With input pending, retry every 10 ms instead of reading more. */
		bool waiting = console.npending > 0;
		struct pollfd fds[3 + ARRAY_SIZE(vm->watch)] = {
			{ .fd = vm->stop_fd, .events = POLLIN },
			{ .fd = sig_fd, .events = POLLIN },
			{ .fd = stdin_open && !waiting ? STDIN_FILENO : -1, .events = POLLIN },
		};
		unsigned int i;

		for (i = 0; i < vm->nwatch; i++)
			fds[3 + i] = (struct pollfd){ .fd = vm->watch[i].fd, .events = POLLIN };
		if (waiting)
			console_flush(&console);
		if (poll(fds, 3 + vm->nwatch, waiting ? 10 : -1) < 0) {
			if (errno == EINTR)
				continue;
			pr_err("poll: %s", strerror(errno));
			vm_request_stop(vm, VMLAUNCH_EXIT_ERROR);
		}
		if (fds[1].revents & POLLIN) {
			struct signalfd_siginfo si;

			if (read(sig_fd, &si, sizeof(si)) == sizeof(si))
				pr_debug("signal %u: stopping the VM", si.ssi_signo);
			vm_request_stop(vm, VMLAUNCH_EXIT_SIGNAL);
		}
		if (fds[2].revents & (POLLIN | POLLHUP))
			stdin_open = console_forward(vm, &console);
		for (i = 0; i < vm->nwatch; i++) {
			if (fds[3 + i].revents & POLLIN)
				vm->watch[i].fn(vm->watch[i].opaque);
		}
		if (__atomic_load_n(&vm->exit_code, __ATOMIC_ACQUIRE) != -1)
			return vm->exit_code;
	}
}

int main(int argc, char **argv)
{
	struct acpi_device_info devs[ACPI_MAX_DEVICES];
	struct blk_dev *disks[VMLAUNCH_MAX_DISKS] = { NULL };
	struct net_dev *nets[VMLAUNCH_MAX_NETS] = { NULL };
	struct serial *serial = NULL;
	struct vcon *vcon = NULL;
	unsigned int ndevs;
	struct vm_config cfg;
	struct vm vm;
	sigset_t sigs;
	int sig_fd = -1, status = VMLAUNCH_EXIT_ERROR, r;
	unsigned int i;
	u64 rsdp;

	parse_args(argc, argv, &cfg);

	/* Every thread inherits this mask; only the main thread reads them. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);
	sig_fd = signalfd(-1, &sigs, SFD_CLOEXEC);
	if (sig_fd < 0) {
		pr_err("signalfd: %s", strerror(errno));
		return VMLAUNCH_EXIT_ERROR;
	}

	r = vm_create(&vm, &cfg);
	if (r)
		goto out_vm;
	r = vm_create_vcpus(&vm, cfg.cpus);
	if (r)
		goto out_vm;

	if (cfg.virtio_pci) {
		vm.pci = pci_bus_create(&vm);
		if (!vm.pci)
			goto out_vm;
	}
	serial = serial_create(&vm, &devs[0]);
	if (!serial || pm_create(&vm)) {
		pr_err("cannot set up the serial port and power registers");
		goto out_vm;
	}
	for (i = 0; i < cfg.ndisks; i++) {
		disks[i] = blk_create(&vm, &cfg.disks[i], i, &devs[1 + i]);
		if (!disks[i])
			goto out_devices;
	}
	for (i = 0; i < cfg.nnets; i++) {
		nets[i] = net_create(&vm, &cfg.nets[i], i, &devs[1 + cfg.ndisks + i]);
		if (!nets[i])
			goto out_devices;
	}
	ndevs = 1 + cfg.ndisks + cfg.nnets;
	if (cfg.virtio_console) {
		vcon = vcon_create(&vm, &devs[ndevs++]);
		if (!vcon)
			goto out_devices;
	}
	r = acpi_build(&vm, devs, ndevs, &rsdp);
	if (r) {
		pr_err("cannot build the ACPI tables: %s", strerror(-r));
		goto out_devices;
	}
	r = boot_linux(&vm, &cfg, rsdp);
	if (r) {
		if (r == -EINVAL)
			status = VMLAUNCH_EXIT_USAGE;
		goto out_devices;
	}

	if (cfg.console)
		console_raw();
	pr_debug("starting %u vCPU%s", cfg.cpus, cfg.cpus > 1 ? "s" : "");
	r = vm_start(&vm);
	if (!r)
		status = run(&vm, &cfg, serial, vcon, sig_fd);
	pr_debug("stopping");
	vm_stop_vcpus(&vm);
	console_restore();
	if (vmlaunch_verbose)
		vm_print_stats(&vm);

out_devices:
	vcon_destroy(vcon);
	for (i = 0; i < cfg.nnets; i++)
		net_destroy(nets[i]);
	for (i = 0; i < cfg.ndisks; i++)
		blk_destroy(disks[i]);
out_vm:
	serial_destroy(serial);
	pci_bus_destroy(vm.pci);
	vm.pci = NULL;
	vm_destroy(&vm);
	close(sig_fd);
	fflush(stdout);
	pr_debug("torn down, exit status %d", status);
	return status;
}
