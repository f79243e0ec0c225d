// SPDX-License-Identifier: GPL-2.0
/*
 * Minimal hardware-reduced ACPI tables, placed at 0xe0000 (the BIOS area
 * Linux scans for the RSDP; boot_params.acpi_rsdp_addr also points there):
 *
 *   RSDP -> XSDT -> FADT -> DSDT
 *                -> MADT
 *
 * - FADT: HW_REDUCED_ACPI (no SCI, no PM timer, no legacy PIC or PIT use
 *   by Linux), no i8042, no VGA, no CMOS RTC; a reset register and the
 *   ACPI 5 sleep control/status registers at the I/O ports of dev-pm.c,
 *   which is how a guest powers off and reboots without firmware.
 * - MADT: one local APIC per vCPU, the in-kernel IOAPIC.
 * - DSDT: \_S5 (soft-off, SLP_TYP 5), COM1 (PNP0501) and one device per
 *   virtio-mmio transport: _HID "LNRO0005" (the ID Linux's virtio_mmio
 *   driver matches), its register window and an edge-triggered,
 *   active-high interrupt. With --transport pci, a PCI host bridge
 *   (PNP0A03) instead, whose _CRS gives bus 0 and the memory window for
 *   BARs: with ACPI, Linux finds PCI buses only through such a device.
 *
 * Why ACPI rather than virtio_mmio.device= on the command line: see
 * Documentation/vmlaunch.rst.
 */
#include <errno.h>
#include <string.h>

#include "vmlaunch.h"
#include "pci.h"

#define ACPI_OEM_ID		"KVMX  "
#define ACPI_OEM_TABLE_ID	"VMLAUNCH"
#define ACPI_CREATOR_ID		"KVMX"

#define FADT_REVISION		6
#define FADT_MINOR_REVISION	3
#define FADT_SIZE		276

/* FADT field offsets (ACPI 6.3, table 5.9). */
#define FADT_DSDT		40
#define FADT_PM_PROFILE		45
#define FADT_IAPC_BOOT_ARCH	109
#define FADT_FLAGS		112
#define FADT_RESET_REG		116
#define FADT_RESET_VALUE	128
#define FADT_MINOR_VERSION	131
#define FADT_X_DSDT		140
#define FADT_SLEEP_CONTROL	244
#define FADT_SLEEP_STATUS	256
#define FADT_HYPERVISOR_ID	268

#define FADT_F_WBINVD		(1U << 0)
#define FADT_F_PWR_BUTTON	(1U << 4)	/* no fixed power button */
#define FADT_F_SLP_BUTTON	(1U << 5)	/* no fixed sleep button */
#define FADT_F_RESET_REG_SUP	(1U << 10)
#define FADT_F_HW_REDUCED_ACPI	(1U << 20)

#define IAPC_VGA_NOT_PRESENT	(1U << 2)
#define IAPC_CMOS_RTC_NOT_PRESENT (1U << 5)

#define GAS_SYSTEM_IO		1
#define GAS_ACCESS_BYTE		1

#define MADT_LOCAL_APIC		0
#define MADT_IO_APIC		1
#define MADT_LOCAL_APIC_NMI	4

/* AML opcodes (ACPI 6.3, chapter 20). */
#define AML_ZERO		0x00
#define AML_ONE			0x01
#define AML_NAME		0x08
#define AML_BYTE_PREFIX		0x0a
#define AML_WORD_PREFIX		0x0b
#define AML_DWORD_PREFIX	0x0c
#define AML_STRING_PREFIX	0x0d
#define AML_QWORD_PREFIX	0x0e
#define AML_SCOPE		0x10
#define AML_BUFFER		0x11
#define AML_PACKAGE		0x12
#define AML_EXT_PREFIX		0x5b
#define AML_DEVICE		0x82
#define AML_ROOT_CHAR		0x5c

struct acpi_table_header {
	char signature[4];
	u32 length;
	u8 revision;
	u8 checksum;
	char oem_id[6];
	char oem_table_id[8];
	u32 oem_revision;
	char creator_id[4];
	u32 creator_revision;
} __attribute__((packed));

struct acpi_rsdp {
	char signature[8];
	u8 checksum;
	char oem_id[6];
	u8 revision;
	u32 rsdt_address;
	u32 length;
	u64 xsdt_address;
	u8 extended_checksum;
	u8 reserved[3];
} __attribute__((packed));

/* A bounded byte buffer; overflow is remembered and reported once. */
struct buf {
	u8 *p;
	size_t len;
	size_t cap;
	bool overflow;
};

static void put(struct buf *b, const void *data, size_t len)
{
	if (b->overflow || len > b->cap - b->len) {
		b->overflow = true;
		return;
	}
	memcpy(b->p + b->len, data, len);
	b->len += len;
}

static void put8(struct buf *b, u8 v)
{
	put(b, &v, 1);
}

static void put16(struct buf *b, u16 v)
{
	put(b, &v, 2);
}

static void put32(struct buf *b, u32 v)
{
	put(b, &v, 4);
}

static void put64(struct buf *b, u64 v)
{
	put(b, &v, 8);
}

static u8 checksum(const void *p, size_t len)
{
	const u8 *c = p;
	u8 sum = 0;

	while (len--)
		sum += *c++;
	return (u8)-sum;
}

static void table_header(struct acpi_table_header *h, const char *sig, u32 len, u8 rev)
{
	memcpy(h->signature, sig, 4);
	h->length = len;
	h->revision = rev;
	memcpy(h->oem_id, ACPI_OEM_ID, 6);
	memcpy(h->oem_table_id, ACPI_OEM_TABLE_ID, 8);
	h->oem_revision = 1;
	memcpy(h->creator_id, ACPI_CREATOR_ID, 4);
	h->creator_revision = 1;
	h->checksum = 0;
	h->checksum = checksum(h, len);
}

/* ---- AML ------------------------------------------------------------------ */

/* PkgLength of a body of @body bytes: the encoding counts itself. */
static void aml_pkglen(struct buf *b, size_t body)
{
	size_t total;

	if (body + 1 < 0x40) {
		put8(b, body + 1);
	} else if (body + 2 < 0x1000) {
		total = body + 2;
		put8(b, 0x40 | (total & 0xf));
		put8(b, total >> 4);
	} else {
		total = body + 3;
		put8(b, 0x80 | (total & 0xf));
		put8(b, total >> 4);
		put8(b, total >> 12);
	}
}

static void aml_integer(struct buf *b, u64 v)
{
	if (v == 0) {
		put8(b, AML_ZERO);
	} else if (v == 1) {
		put8(b, AML_ONE);
	} else if (v <= 0xff) {
		put8(b, AML_BYTE_PREFIX);
		put8(b, v);
	} else if (v <= 0xffff) {
		put8(b, AML_WORD_PREFIX);
		put16(b, v);
	} else if (v <= 0xffffffff) {
		put8(b, AML_DWORD_PREFIX);
		put32(b, v);
	} else {
		put8(b, AML_QWORD_PREFIX);
		put64(b, v);
	}
}

static void aml_name_integer(struct buf *b, const char seg[4], u64 v)
{
	put8(b, AML_NAME);
	put(b, seg, 4);
	aml_integer(b, v);
}

static void aml_name_string(struct buf *b, const char seg[4], const char *s)
{
	put8(b, AML_NAME);
	put(b, seg, 4);
	put8(b, AML_STRING_PREFIX);
	put(b, s, strlen(s) + 1);
}

/* Name(_CRS, ResourceTemplate() { the descriptors in @res }). */
static void aml_name_crs(struct buf *b, struct buf *res)
{
	u8 size_enc[8];
	struct buf s = { .p = size_enc, .cap = sizeof(size_enc) };

	/* End tag, checksum 0 (= "not checked"). */
	put8(res, 0x79);
	put8(res, 0);
	if (res->overflow) {
		b->overflow = true;
		return;
	}
	aml_integer(&s, res->len);
	put8(b, AML_NAME);
	put(b, "_CRS", 4);
	put8(b, AML_BUFFER);
	aml_pkglen(b, s.len + res->len);
	put(b, s.p, s.len);
	put(b, res->p, res->len);
}

/* Device(NAME) { @body }: body starts with the 4-character NameSeg. */
static void aml_device_of(struct buf *b, const struct buf *body)
{
	if (body->overflow) {
		b->overflow = true;
		return;
	}
	put8(b, AML_EXT_PREFIX);
	put8(b, AML_DEVICE);
	aml_pkglen(b, body->len);
	put(b, body->p, body->len);
}

/*
 * Name(_CRS, ResourceTemplate() {
 *	Memory32Fixed(ReadWrite, base, size) or IO(Decode16, base, base, 1, size)
 *	Interrupt(ResourceConsumer, Edge, ActiveHigh, Exclusive) { gsi }
 * })
 */
static void aml_device_crs(struct buf *b, const struct acpi_device_info *d)
{
	u8 res[64];
	struct buf r = { .p = res, .cap = sizeof(res) };

	if (d->io) {
		/* I/O port descriptor: small item 0x08, 7 bytes. */
		put8(&r, 0x47);
		put8(&r, 1);		/* 16-bit decode */
		put16(&r, d->base);	/* minimum */
		put16(&r, d->base);	/* maximum */
		put8(&r, 1);		/* alignment */
		put8(&r, d->size);
	} else {
		/* Memory32Fixed: large item 0x06, 9 bytes. */
		put8(&r, 0x86);
		put16(&r, 9);
		put8(&r, 1);		/* read-write */
		put32(&r, d->base);
		put32(&r, d->size);
	}
	/* Extended Interrupt: large item 0x09, 6 bytes, one interrupt. */
	put8(&r, 0x89);
	put16(&r, 6);
	put8(&r, 0x03);			/* consumer, edge, active high, exclusive */
	put8(&r, 1);
	put32(&r, d->gsi);
	aml_name_crs(b, &r);
}

static void aml_device(struct buf *b, unsigned int index, const struct acpi_device_info *d)
{
	u8 body[256];
	struct buf db = { .p = body, .cap = sizeof(body) };

	if (strlen(d->name) != 4) {
		b->overflow = true;
		return;
	}
	put(&db, d->name, 4);
	aml_name_string(&db, "_HID", d->hid);
	aml_name_integer(&db, "_UID", index);
	aml_device_crs(&db, d);
	aml_device_of(b, &db);
}

/*
 * Device(PCI0) {
 *	Name(_HID, "PNP0A03") Name(_UID, 0) Name(_BBN, 0)
 *	Name(_CRS, ResourceTemplate() {
 *		WordBusNumber(ResourceProducer, MinFixed, MaxFixed, , 0, 0, 0, 0, 1)
 *		DWordMemory(ResourceProducer, , MinFixed, MaxFixed, NonCacheable,
 *			    ReadWrite, 0, base, base + size - 1, 0, size)
 *	})
 * }
 */
static void aml_pci_host_bridge(struct buf *b)
{
	u8 body[128], res[64];
	struct buf db = { .p = body, .cap = sizeof(body) };
	struct buf r = { .p = res, .cap = sizeof(res) };

	/* Word address space descriptor: large item 0x08, 13 bytes. */
	put8(&r, 0x88);
	put16(&r, 13);
	put8(&r, 2);			/* bus number range */
	put8(&r, 0x0c);			/* producer, min and max fixed */
	put8(&r, 0);
	put16(&r, 0);			/* granularity */
	put16(&r, 0);			/* minimum */
	put16(&r, 0);			/* maximum */
	put16(&r, 0);			/* translation */
	put16(&r, 1);			/* length */
	/* DWord address space descriptor: large item 0x07, 23 bytes. */
	put8(&r, 0x87);
	put16(&r, 23);
	put8(&r, 0);			/* memory */
	put8(&r, 0x0c);			/* producer, min and max fixed */
	put8(&r, 0x01);			/* read-write, non-cacheable */
	put32(&r, 0);			/* granularity */
	put32(&r, PCI_WINDOW_BASE);
	put32(&r, PCI_WINDOW_BASE + PCI_WINDOW_SIZE - 1);
	put32(&r, 0);			/* translation */
	put32(&r, PCI_WINDOW_SIZE);

	put(&db, "PCI0", 4);
	aml_name_string(&db, "_HID", "PNP0A03");
	aml_name_integer(&db, "_UID", 0);
	aml_name_integer(&db, "_BBN", 0);
	aml_name_crs(&db, &r);
	aml_device_of(b, &db);
}

static int build_dsdt(struct buf *out, const struct acpi_device_info *devs, unsigned int n,
		      bool pci)
{
	u8 sb[2048];
	struct buf s = { .p = sb, .cap = sizeof(sb) };
	struct acpi_table_header *h = (void *)(out->p + out->len);
	size_t start = out->len;
	unsigned int i;

	put(out, &(struct acpi_table_header){ 0 }, sizeof(*h));

	/* Name(\_S5, Package() { 5, 0 }): SLP_TYPa, SLP_TYPb. */
	put8(out, AML_NAME);
	put(out, "_S5_", 4);
	put8(out, AML_PACKAGE);
	aml_pkglen(out, 1 + 2 + 1);
	put8(out, 2);
	aml_integer(out, PM_S5_SLP_TYP);
	aml_integer(out, 0);

	/* Scope(\_SB) { Device(VRxx) ... } */
	put8(&s, AML_ROOT_CHAR);
	put(&s, "_SB_", 4);
	for (i = 0; i < n; i++)
		if (devs[i].name[0])
			aml_device(&s, i, &devs[i]);
	if (pci)
		aml_pci_host_bridge(&s);
	if (s.overflow)
		return -E2BIG;
	put8(out, AML_SCOPE);
	aml_pkglen(out, s.len);
	put(out, s.p, s.len);
	if (out->overflow)
		return -E2BIG;

	table_header(h, "DSDT", out->len - start, 2);
	return 0;
}

/* ---- fixed tables ------------------------------------------------------------ */

static void put_gas_io(u8 *p, u16 port)
{
	p[0] = GAS_SYSTEM_IO;
	p[1] = 8;			/* bit width */
	p[2] = 0;			/* bit offset */
	p[3] = GAS_ACCESS_BYTE;
	memcpy(p + 4, &(u64){ port }, 8);
}

static void build_fadt(struct buf *out, u64 dsdt)
{
	u8 *f = out->p + out->len;
	u32 flags = FADT_F_WBINVD | FADT_F_PWR_BUTTON | FADT_F_SLP_BUTTON |
		    FADT_F_RESET_REG_SUP | FADT_F_HW_REDUCED_ACPI;
	u16 boot_arch = IAPC_VGA_NOT_PRESENT | IAPC_CMOS_RTC_NOT_PRESENT;

	if (FADT_SIZE > out->cap - out->len) {
		out->overflow = true;
		return;
	}
	memset(f, 0, FADT_SIZE);
	memcpy(f + FADT_DSDT, &(u32){ dsdt }, 4);
	f[FADT_PM_PROFILE] = 0;		/* unspecified */
	memcpy(f + FADT_IAPC_BOOT_ARCH, &boot_arch, 2);
	memcpy(f + FADT_FLAGS, &flags, 4);
	put_gas_io(f + FADT_RESET_REG, PM_RESET_PORT);
	f[FADT_RESET_VALUE] = PM_RESET_VALUE;
	f[FADT_MINOR_VERSION] = FADT_MINOR_REVISION;
	memcpy(f + FADT_X_DSDT, &dsdt, 8);
	put_gas_io(f + FADT_SLEEP_CONTROL, PM_SLEEP_CONTROL_PORT);
	put_gas_io(f + FADT_SLEEP_STATUS, PM_SLEEP_STATUS_PORT);
	memcpy(f + FADT_HYPERVISOR_ID, "KVMXVMLA", 8);
	out->len += FADT_SIZE;
	table_header((void *)f, "FACP", FADT_SIZE, FADT_REVISION);
}

static void build_madt(struct buf *out, unsigned int ncpus)
{
	struct acpi_table_header *h = (void *)(out->p + out->len);
	size_t start = out->len;
	unsigned int i;

	put(out, &(struct acpi_table_header){ 0 }, sizeof(*h));
	put32(out, LAPIC_ADDR);
	put32(out, 0);			/* no dual 8259 setup: PCAT_COMPAT clear */
	for (i = 0; i < ncpus; i++) {
		put8(out, MADT_LOCAL_APIC);
		put8(out, 8);
		put8(out, i);		/* ACPI processor UID */
		put8(out, i);		/* APIC ID */
		put32(out, 1);		/* enabled */
	}
	put8(out, MADT_IO_APIC);
	put8(out, 12);
	put8(out, 0);			/* IOAPIC ID */
	put8(out, 0);
	put32(out, IOAPIC_ADDR);
	put32(out, 0);			/* GSI base */
	/* LINT1 of every processor is NMI. */
	put8(out, MADT_LOCAL_APIC_NMI);
	put8(out, 6);
	put8(out, 0xff);
	put16(out, 0);
	put8(out, 1);
	if (!out->overflow)
		table_header(h, "APIC", out->len - start, 5);
}

static void align16(struct buf *b)
{
	while (!b->overflow && (b->len & 15))
		put8(b, 0);
}

int acpi_build(struct vm *vm, const struct acpi_device_info *devs, unsigned int ndevs,
	       u64 *rsdp_gpa)
{
	struct buf b = {
		.p = gpa_to_hva(vm, ACPI_START, ACPI_END - ACPI_START),
		.cap = ACPI_END - ACPI_START,
	};
	struct acpi_rsdp *rsdp;
	size_t xsdt_off, fadt_off, madt_off, dsdt_off;
	struct acpi_table_header *xsdt;
	int r;

	if (!b.p || vm->ncpus > 255)
		return -EINVAL;
	memset(b.p, 0, b.cap);

	/* RSDP first, filled in last. */
	b.len = sizeof(*rsdp);
	align16(&b);

	dsdt_off = b.len;
	r = build_dsdt(&b, devs, ndevs, vm->pci != NULL);
	if (r)
		return r;
	align16(&b);

	fadt_off = b.len;
	build_fadt(&b, ACPI_START + dsdt_off);
	align16(&b);

	madt_off = b.len;
	build_madt(&b, vm->ncpus);
	align16(&b);

	xsdt_off = b.len;
	xsdt = (void *)(b.p + b.len);
	put(&b, &(struct acpi_table_header){ 0 }, sizeof(*xsdt));
	put64(&b, ACPI_START + fadt_off);
	put64(&b, ACPI_START + madt_off);
	if (b.overflow)
		return -E2BIG;
	table_header(xsdt, "XSDT", b.len - xsdt_off, 1);

	rsdp = (void *)b.p;
	memcpy(rsdp->signature, "RSD PTR ", 8);
	memcpy(rsdp->oem_id, ACPI_OEM_ID, 6);
	rsdp->revision = 2;
	rsdp->rsdt_address = 0;
	rsdp->length = sizeof(*rsdp);
	rsdp->xsdt_address = ACPI_START + xsdt_off;
	rsdp->checksum = checksum(rsdp, 20);
	rsdp->extended_checksum = checksum(rsdp, sizeof(*rsdp));

	*rsdp_gpa = ACPI_START;
	return 0;
}
