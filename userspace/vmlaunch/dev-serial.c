// SPDX-License-Identifier: GPL-2.0
/*
 * COM1: a 16550A UART at I/O port 0x3f8, IRQ 4.
 *
 * Transmission is instantaneous: a byte written to THR goes straight to
 * stdout, so THR is always empty (LSR.THRE and LSR.TEMT stay set) and the
 * THR-empty interrupt is re-armed by every write. Received bytes (stdin,
 * with --console) wait in a small FIFO. The interrupt line follows the
 * 16550's rules (IIR priority, THRE cleared by reading IIR or writing
 * THR) and is driven with KVM_IRQ_LINE whenever its level changes; the
 * IOAPIC pin is edge-triggered (ISA), so each rise is one interrupt.
 * In loopback mode (MCR.LOOP) the modem outputs show up on MSR, which is
 * what Linux's 8250 autoconfig checks.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vmlaunch.h"

#define SERIAL_PORT	0x3f8
#define SERIAL_IRQ	4
#define RX_FIFO_SIZE	256

#define UART_RX		0	/* in:  receive buffer (DLAB 0) */
#define UART_TX		0	/* out: transmit buffer (DLAB 0) */
#define UART_DLL	0	/* divisor latch low (DLAB 1) */
#define UART_IER	1
#define UART_DLM	1	/* divisor latch high (DLAB 1) */
#define UART_IIR	2	/* in */
#define UART_FCR	2	/* out */
#define UART_LCR	3
#define UART_MCR	4
#define UART_LSR	5
#define UART_MSR	6
#define UART_SCR	7

#define UART_IER_RDI	0x01
#define UART_IER_THRI	0x02
#define UART_IER_RLSI	0x04
#define UART_IER_MSI	0x08

#define UART_IIR_NO_INT	0x01
#define UART_IIR_MSI	0x00
#define UART_IIR_THRI	0x02
#define UART_IIR_RDI	0x04
#define UART_IIR_FIFO	0xc0

#define UART_FCR_ENABLE	0x01
#define UART_FCR_CLEAR_RCVR 0x02

#define UART_LCR_DLAB	0x80

#define UART_MCR_DTR	0x01
#define UART_MCR_RTS	0x02
#define UART_MCR_OUT1	0x04
#define UART_MCR_OUT2	0x08
#define UART_MCR_LOOP	0x10

#define UART_LSR_DR	0x01
#define UART_LSR_THRE	0x20
#define UART_LSR_TEMT	0x40

#define UART_MSR_DCTS	0x01
#define UART_MSR_CTS	0x10
#define UART_MSR_DSR	0x20
#define UART_MSR_RI	0x40
#define UART_MSR_DCD	0x80

struct serial {
	struct vm *vm;
	pthread_mutex_t lock;
	u8 ier, lcr, mcr, scr, fcr, dll, dlm;
	u8 msr_delta;		/* MSR delta bits, cleared by reading MSR */
	bool thre_pending;	/* THR-empty interrupt armed */
	bool irq_level;
	u8 rx[RX_FIFO_SIZE];
	unsigned int rx_head, rx_count;
};

static u8 serial_msr(const struct serial *s)
{
	u8 msr;

	if (s->mcr & UART_MCR_LOOP) {
		msr = 0;
		if (s->mcr & UART_MCR_DTR)
			msr |= UART_MSR_DSR;
		if (s->mcr & UART_MCR_RTS)
			msr |= UART_MSR_CTS;
		if (s->mcr & UART_MCR_OUT1)
			msr |= UART_MSR_RI;
		if (s->mcr & UART_MCR_OUT2)
			msr |= UART_MSR_DCD;
	} else {
		msr = UART_MSR_DCD | UART_MSR_DSR | UART_MSR_CTS;
	}
	return msr | s->msr_delta;
}

static u8 serial_iir(const struct serial *s)
{
	u8 fifo = (s->fcr & UART_FCR_ENABLE) ? UART_IIR_FIFO : 0;

	if ((s->ier & UART_IER_RDI) && s->rx_count)
		return fifo | UART_IIR_RDI;
	if ((s->ier & UART_IER_THRI) && s->thre_pending)
		return fifo | UART_IIR_THRI;
	if ((s->ier & UART_IER_MSI) && s->msr_delta)
		return fifo | UART_IIR_MSI;
	return fifo | UART_IIR_NO_INT;
}

/* Called with the lock held after every state change. */
static void serial_update_irq(struct serial *s)
{
	bool level = !(serial_iir(s) & UART_IIR_NO_INT);

	if (level != s->irq_level) {
		s->irq_level = level;
		vm_irq_line(s->vm, SERIAL_IRQ, level);
	}
}

static void serial_tx(struct serial *s, u8 c)
{
	if (s->mcr & UART_MCR_LOOP) {
		if (s->rx_count < RX_FIFO_SIZE) {
			s->rx[(s->rx_head + s->rx_count) % RX_FIFO_SIZE] = c;
			s->rx_count++;
		}
		return;
	}
	if (vmlaunch_verbose) {
		static bool first = true;

		if (first)
			pr_debug("first byte on the serial port");
		first = false;
	}
	/* A closed or full stdout must not stop the guest. */
	while (write(STDOUT_FILENO, &c, 1) < 0 && errno == EINTR)
		;
}

static u8 serial_read(struct serial *s, u64 reg)
{
	u8 v;

	switch (reg) {
	case UART_RX:
		if (s->lcr & UART_LCR_DLAB)
			return s->dll;
		if (!s->rx_count)
			return 0;
		v = s->rx[s->rx_head];
		s->rx_head = (s->rx_head + 1) % RX_FIFO_SIZE;
		s->rx_count--;
		return v;
	case UART_IER:
		return (s->lcr & UART_LCR_DLAB) ? s->dlm : s->ier;
	case UART_IIR:
		v = serial_iir(s);
		if ((v & 0x0f) == UART_IIR_THRI)
			s->thre_pending = false;
		return v;
	case UART_LCR:
		return s->lcr;
	case UART_MCR:
		return s->mcr;
	case UART_LSR:
		return UART_LSR_THRE | UART_LSR_TEMT | (s->rx_count ? UART_LSR_DR : 0);
	case UART_MSR:
		v = serial_msr(s);
		s->msr_delta = 0;
		return v;
	case UART_SCR:
		return s->scr;
	}
	return 0xff;
}

static void serial_write(struct serial *s, u64 reg, u8 v)
{
	switch (reg) {
	case UART_TX:
		if (s->lcr & UART_LCR_DLAB) {
			s->dll = v;
			break;
		}
		serial_tx(s, v);
		/* Sent at once: THR is empty again, which interrupts anew. */
		s->thre_pending = true;
		if (s->irq_level && (s->ier & UART_IER_THRI)) {
			s->irq_level = false;
			vm_irq_line(s->vm, SERIAL_IRQ, 0);
		}
		break;
	case UART_IER:
		if (s->lcr & UART_LCR_DLAB) {
			s->dlm = v;
			break;
		}
		/* Enabling THRI with THR empty raises the interrupt. */
		if (!(s->ier & UART_IER_THRI) && (v & UART_IER_THRI))
			s->thre_pending = true;
		s->ier = v & 0x0f;
		break;
	case UART_FCR:
		s->fcr = v & (UART_FCR_ENABLE | 0xc0);
		if (v & UART_FCR_CLEAR_RCVR)
			s->rx_count = 0;
		break;
	case UART_LCR:
		s->lcr = v;
		break;
	case UART_MCR: {
		u8 old = serial_msr(s);

		s->mcr = v & 0x1f;
		if ((old ^ serial_msr(s)) & UART_MSR_CTS)
			s->msr_delta |= UART_MSR_DCTS;
		break;
	}
	case UART_SCR:
		s->scr = v;
		break;
	}
}

static void serial_io(void *opaque, u64 offset, u8 *data, u32 len, bool write)
{
	struct serial *s = opaque;
	u32 i;

	pthread_mutex_lock(&s->lock);
	/* Wider accesses hit consecutive registers, as on an 8-bit bus. */
	for (i = 0; i < len && offset + i < 8; i++) {
		if (write)
			serial_write(s, offset + i, data[i]);
		else
			data[i] = serial_read(s, offset + i);
	}
	serial_update_irq(s);
	pthread_mutex_unlock(&s->lock);
}

/* Queue received bytes; returns how many fitted in the FIFO. */
size_t serial_input(struct serial *s, const u8 *buf, size_t len)
{
	size_t i;

	pthread_mutex_lock(&s->lock);
	for (i = 0; i < len && s->rx_count < RX_FIFO_SIZE; i++) {
		s->rx[(s->rx_head + s->rx_count) % RX_FIFO_SIZE] = buf[i];
		s->rx_count++;
	}
	serial_update_irq(s);
	pthread_mutex_unlock(&s->lock);
	return i;
}

/*
 * The UART is also declared in the DSDT (PNP0501): with hardware-reduced
 * ACPI Linux sets up no ISA interrupts by itself, so IRQ 4 reaches the
 * 8250 driver only through the device's _CRS.
 */
struct serial *serial_create(struct vm *vm, struct acpi_device_info *info)
{
	struct serial *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->vm = vm;
	pthread_mutex_init(&s->lock, NULL);
	s->dll = 12;		/* 9600 baud, as a BIOS leaves it */
	if (vm_register_pio(vm, SERIAL_PORT, 8, serial_io, s)) {
		free(s);
		return NULL;
	}
	*info = (struct acpi_device_info) {
		.name = "COM1", .hid = "PNP0501", .io = true, .base = SERIAL_PORT, .size = 8, .gsi = SERIAL_IRQ,
	};
	return s;
}

void serial_destroy(struct serial *s)
{
	if (!s)
		return;
	pthread_mutex_destroy(&s->lock);
	free(s);
}
