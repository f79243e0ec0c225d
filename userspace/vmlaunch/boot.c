// SPDX-License-Identifier: GPL-2.0
/*
 * Linux x86 boot protocol, 64-bit entry (Documentation/arch/x86/boot.rst):
 * the protected-mode part of a bzImage is loaded at its preferred address,
 * boot_params (the "zero page") carries the setup header, the e820 map, the
 * command line, the initrd and the ACPI RSDP address, and the BSP starts at
 * startup_64 (load address + 0x200) in long mode with an identity map of
 * the low 4 GiB, __BOOT_CS/__BOOT_DS loaded and RSI pointing at boot_params.
 * No firmware and no real-mode setup code run.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <asm/bootparam.h>

#include "vmlaunch.h"

#define SETUP_HDR_OFFSET	0x1f1
#define SETUP_HDR_MAGIC		0x53726448	/* "HdrS" */
#define BOOT_FLAG_MAGIC		0xaa55
#define MIN_BOOT_PROTOCOL	0x020c		/* XLF_KERNEL_64 and pref_address */
#define STARTUP_64_OFFSET	0x200

#define E820_TYPE_RAM		1
#define E820_TYPE_RESERVED	2

#define BOOT_CS			0x10
#define BOOT_DS			0x18
#define BOOT_TSS		0x20

#define CR0_PE			(1ULL << 0)
#define CR0_MP			(1ULL << 1)
#define CR0_ET			(1ULL << 4)
#define CR0_NE			(1ULL << 5)
#define CR0_WP			(1ULL << 16)
#define CR0_PG			(1ULL << 31)
#define CR4_PAE			(1ULL << 5)
#define EFER_LME		(1ULL << 8)
#define EFER_LMA		(1ULL << 10)

#define PTE_PRESENT		(1ULL << 0)
#define PTE_RW			(1ULL << 1)
#define PTE_PS			(1ULL << 7)

struct kernel_image {
	struct setup_header hdr;
	u64 load_addr;
	u64 entry;
	u64 end;		/* load_addr + the memory the kernel needs */
};

static void *guest_ptr(struct vm *vm, u64 gpa, u64 len)
{
	return gpa_to_hva(vm, gpa, len);
}

static int load_kernel(struct vm *vm, const char *path, struct kernel_image *k)
{
	u8 head[1024];
	u64 setup_sects, kernel_off, kernel_size, need;
	size_t hdr_len;
	struct stat st;
	void *dst;
	int fd, r;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		r = -errno;
		pr_err("--kernel %s: %s", path, strerror(-r));
		return r;
	}
	if (fstat(fd, &st) < 0 || (u64)st.st_size < sizeof(head)) {
		pr_err("--kernel %s: not an x86 bzImage (file too small)", path);
		r = -EINVAL;
		goto out;
	}
	r = read_file_at(fd, head, sizeof(head), 0);
	if (r) {
		pr_err("--kernel %s: %s", path, strerror(-r));
		goto out;
	}

	/* The header's length: up to 0x202 plus the jump at 0x200's offset. */
	hdr_len = 0x202 + head[0x201] - SETUP_HDR_OFFSET;
	if (hdr_len > sizeof(k->hdr))
		hdr_len = sizeof(k->hdr);
	memset(&k->hdr, 0, sizeof(k->hdr));
	memcpy(&k->hdr, head + SETUP_HDR_OFFSET, hdr_len);

	r = -EINVAL;
	if (k->hdr.boot_flag != BOOT_FLAG_MAGIC || k->hdr.header != SETUP_HDR_MAGIC) {
		pr_err("--kernel %s: not an x86 bzImage (no Linux setup header)", path);
		goto out;
	}
	if (k->hdr.version < MIN_BOOT_PROTOCOL || !(k->hdr.xloadflags & XLF_KERNEL_64) ||
	    !(k->hdr.loadflags & LOADED_HIGH)) {
		pr_err("--kernel %s: boot protocol %u.%02u without a 64-bit entry point; "
		       "vmlaunch needs a 64-bit bzImage (protocol 2.12 or later)", path,
		       k->hdr.version >> 8, k->hdr.version & 0xff);
		goto out;
	}

	setup_sects = k->hdr.setup_sects ? k->hdr.setup_sects : 4;
	kernel_off = (setup_sects + 1) * 512;
	if ((u64)st.st_size <= kernel_off) {
		pr_err("--kernel %s: truncated bzImage", path);
		goto out;
	}
	kernel_size = st.st_size - kernel_off;

	k->load_addr = k->hdr.pref_address;
	if (k->hdr.relocatable_kernel && k->hdr.kernel_alignment &&
	    !(k->hdr.kernel_alignment & (k->hdr.kernel_alignment - 1)))
		k->load_addr = ALIGN_UP(k->load_addr, k->hdr.kernel_alignment);
	if (k->load_addr < SZ_1M)
		k->load_addr = SZ_1M;
	need = k->hdr.init_size > kernel_size ? k->hdr.init_size : kernel_size;
	k->end = k->load_addr + need;
	k->entry = k->load_addr + STARTUP_64_OFFSET;

	dst = guest_ptr(vm, k->load_addr, need);
	if (!dst || k->end > vm->mem.low_size) {
		pr_err("--kernel %s needs %llu MiB of guest memory below 3 GiB; --mem is too small",
		       path, (unsigned long long)(ALIGN_UP(k->end, SZ_1M) >> 20) + 16);
		goto out;
	}
	r = read_file_at(fd, dst, kernel_size, kernel_off);
	if (r)
		pr_err("--kernel %s: %s", path, strerror(-r));
out:
	close(fd);
	return r;
}

/* The initrd goes as high as the kernel allows, below 3 GiB and 4 GiB. */
static int load_initrd(struct vm *vm, const char *path, const struct kernel_image *k,
		       u64 *addr, u64 *size)
{
	u64 max_end = vm->mem.low_size, start;
	struct stat st;
	void *dst;
	int fd, r;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		r = -errno;
		pr_err("--initrd %s: %s", path, strerror(-r));
		return r;
	}
	r = -EINVAL;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size == 0) {
		pr_err("--initrd %s: not a regular, non-empty file", path);
		goto out;
	}
	if (!(k->hdr.xloadflags & XLF_CAN_BE_LOADED_ABOVE_4G) &&
	    (u64)k->hdr.initrd_addr_max + 1 < max_end)
		max_end = (u64)k->hdr.initrd_addr_max + 1;
	if ((u64)st.st_size > max_end ||
	    (start = ALIGN_DOWN(max_end - st.st_size, 4096)) < ALIGN_UP(k->end, 4096)) {
		pr_err("--initrd %s (%llu MiB) does not fit in guest memory beside the kernel; "
		       "raise --mem", path, (unsigned long long)(st.st_size >> 20));
		goto out;
	}
	dst = guest_ptr(vm, start, st.st_size);
	if (!dst)
		goto out;
	r = read_file_at(fd, dst, st.st_size, 0);
	if (r) {
		pr_err("--initrd %s: %s", path, strerror(-r));
		goto out;
	}
	*addr = start;
	*size = st.st_size;
out:
	close(fd);
	return r;
}

static void add_e820(struct boot_params *bp, u64 addr, u64 size, u32 type)
{
	struct boot_e820_entry *e;

	if (!size || bp->e820_entries >= ARRAY_SIZE(bp->e820_table))
		return;
	e = &bp->e820_table[bp->e820_entries++];
	e->addr = addr;
	e->size = size;
	e->type = type;
}

static void setup_e820(struct vm *vm, struct boot_params *bp)
{
	add_e820(bp, 0, EBDA_START, E820_TYPE_RAM);
	add_e820(bp, EBDA_START, 0xa0000 - EBDA_START, E820_TYPE_RESERVED);
	add_e820(bp, ACPI_START, SZ_1M - ACPI_START, E820_TYPE_RESERVED);
	add_e820(bp, SZ_1M, vm->mem.low_size - SZ_1M, E820_TYPE_RAM);
	add_e820(bp, GUEST_HIGH_START, vm->mem.size - vm->mem.low_size, E820_TYPE_RAM);
}

/*
 * The only "firmware": code at the x86 reset vector (F000:FFF0 in real
 * mode), where Linux's BIOS reboot method (machine_real_restart) jumps.
 * That method is what Linux picks by default on hardware-reduced ACPI
 * without EFI (EFI first, which does nothing, then BIOS), so the stub
 * writes the ACPI reset register and halts.
 */
static void setup_reset_vector(struct vm *vm)
{
	static const u8 stub[] = {
		0xba, PM_RESET_PORT & 0xff, PM_RESET_PORT >> 8,	/* mov dx, PM_RESET_PORT */
		0xb0, PM_RESET_VALUE,				/* mov al, PM_RESET_VALUE */
		0xee,						/* out dx, al */
		0xf4,						/* hlt */
		0xeb, 0xfd,					/* jmp hlt */
	};

	memcpy(guest_ptr(vm, RESET_VECTOR, sizeof(stub)), stub, sizeof(stub));
}

/* Identity map of [0, 4 GiB) with 2 MiB pages, and a flat GDT. */
static void setup_page_tables(struct vm *vm)
{
	u64 *pml4 = guest_ptr(vm, BOOT_PML4, 4096);
	u64 *pdpt = guest_ptr(vm, BOOT_PDPT, 4096);
	u64 *pd = guest_ptr(vm, BOOT_PD, 4 * 4096);
	u64 *gdt = guest_ptr(vm, BOOT_GDT, 6 * 8);
	unsigned int i;

	memset(pml4, 0, 4096);
	memset(pdpt, 0, 4096);
	pml4[0] = BOOT_PDPT | PTE_PRESENT | PTE_RW;
	for (i = 0; i < 4; i++)
		pdpt[i] = (BOOT_PD + i * 4096) | PTE_PRESENT | PTE_RW;
	for (i = 0; i < 4 * 512; i++)
		pd[i] = ((u64)i << 21) | PTE_PRESENT | PTE_RW | PTE_PS;

	memset(gdt, 0, 6 * 8);
	gdt[BOOT_CS / 8] = 0x00af9b000000ffffULL;	/* 64-bit code, DPL 0 */
	gdt[BOOT_DS / 8] = 0x00cf93000000ffffULL;	/* 4 GiB data */
	gdt[BOOT_TSS / 8] = 0x00008b0000000fffULL;	/* busy TSS at 0 */
}

static int setup_bsp(struct vm *vm, u64 entry)
{
	struct vcpu *bsp = &vm->vcpus[0];
	struct kvm_segment code = {
		.base = 0, .limit = 0xffffffff, .selector = BOOT_CS,
		.type = 11, .present = 1, .s = 1, .l = 1, .g = 1,
	};
	struct kvm_segment data = {
		.base = 0, .limit = 0xffffffff, .selector = BOOT_DS,
		.type = 3, .present = 1, .s = 1, .db = 1, .g = 1,
	};
	struct kvm_segment tss = {
		.base = 0, .limit = 0xfff, .selector = BOOT_TSS,
		.type = 11, .present = 1,
	};
	struct kvm_sregs sregs;
	struct kvm_regs regs;

	if (ioctl(bsp->fd, KVM_GET_SREGS, &sregs) < 0)
		return -errno;
	sregs.cs = code;
	sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = data;
	sregs.tr = tss;
	sregs.gdt.base = BOOT_GDT;
	sregs.gdt.limit = 6 * 8 - 1;
	sregs.idt.base = 0;
	sregs.idt.limit = 0;
	sregs.cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_PG;
	sregs.cr3 = BOOT_PML4;
	sregs.cr4 = CR4_PAE;
	sregs.efer = EFER_LME | EFER_LMA;
	if (ioctl(bsp->fd, KVM_SET_SREGS, &sregs) < 0)
		return -errno;

	memset(&regs, 0, sizeof(regs));
	regs.rip = entry;
	regs.rsi = BOOT_PARAMS;
	regs.rsp = BOOT_PARAMS;
	regs.rflags = 0x2;
	if (ioctl(bsp->fd, KVM_SET_REGS, &regs) < 0)
		return -errno;
	return 0;
}

/*
 * Returns -EINVAL when a file given on the command line is unusable (the
 * caller exits with the usage status), another -errno otherwise.
 */
int boot_linux(struct vm *vm, const struct vm_config *cfg, u64 rsdp)
{
	const char *cmdline = cfg->cmdline ? cfg->cmdline : "";
	struct boot_params *bp;
	struct kernel_image k;
	u64 initrd = 0, initrd_size = 0;
	size_t cmdline_len = strlen(cmdline), cmdline_max;
	int r;

	r = load_kernel(vm, cfg->kernel, &k);
	if (r)
		return r;
	if (cfg->initrd) {
		r = load_initrd(vm, cfg->initrd, &k, &initrd, &initrd_size);
		if (r)
			return r;
	}

	cmdline_max = k.hdr.cmdline_size ? k.hdr.cmdline_size : 255;
	if (cmdline_max > BOOT_CMDLINE_MAX - 1)
		cmdline_max = BOOT_CMDLINE_MAX - 1;
	if (cmdline_len > cmdline_max) {
		pr_err("--cmdline is %zu bytes; this kernel takes at most %zu",
		       cmdline_len, cmdline_max);
		return -EINVAL;
	}
	memcpy(guest_ptr(vm, BOOT_CMDLINE, cmdline_len + 1), cmdline, cmdline_len + 1);

	bp = guest_ptr(vm, BOOT_PARAMS, sizeof(*bp));
	memset(bp, 0, sizeof(*bp));
	bp->hdr = k.hdr;
	bp->hdr.type_of_loader = 0xff;		/* undefined boot loader */
	bp->hdr.loadflags |= LOADED_HIGH;
	bp->hdr.code32_start = k.load_addr;
	bp->hdr.cmd_line_ptr = BOOT_CMDLINE;
	bp->ext_cmd_line_ptr = 0;
	bp->hdr.ramdisk_image = (u32)initrd;
	bp->hdr.ramdisk_size = (u32)initrd_size;
	bp->ext_ramdisk_image = initrd >> 32;
	bp->ext_ramdisk_size = initrd_size >> 32;
	bp->hdr.hardware_subarch = 0;		/* a normal PC */
	bp->acpi_rsdp_addr = rsdp;
	setup_e820(vm, bp);
	setup_page_tables(vm);
	setup_reset_vector(vm);

	r = setup_bsp(vm, k.entry);
	if (r) {
		pr_err("cannot set the boot vCPU's registers: %s", strerror(-r));
		return -EIO;
	}
	pr_debug("kernel at 0x%llx (entry 0x%llx, %u.%02u), initrd at 0x%llx (%llu bytes)",
		 (unsigned long long)k.load_addr, (unsigned long long)k.entry,
		 k.hdr.version >> 8, k.hdr.version & 0xff,
		 (unsigned long long)initrd, (unsigned long long)initrd_size);
	return r;
}
