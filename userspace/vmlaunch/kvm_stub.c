// SPDX-License-Identifier: GPL-2.0
/*
 * kvm_stub: what host-side tests (pci_test) link instead of kvm.c, so the
 * transports run without KVM or root.
 *
 * Handlers land in vm->pio[] and vm->mmio[] exactly as kvm.c puts them
 * there, so a test dispatches an access the way a vCPU exit would. irqfds,
 * ioeventfds and MSI routes are only recorded, with the checks KVM makes:
 * a call KVM would refuse (the same eventfd attached twice, detaching
 * what is not attached, rewriting a route that does not exist) is counted
 * as refused, so a test can assert that the code never makes one.
 */
#include <errno.h>

#include "kvm_stub.h"

#define STUB_MAX	64

struct stub_irqfd {
	int fd;
	u32 gsi;
};

struct stub_ioeventfd {
	int fd;
	u64 addr;
	u32 len;
	u64 datamatch;
};

struct stub_route {
	u32 gsi;
	u64 addr;
	u32 data;
};

static struct stub_irqfd irqfds[STUB_MAX];
static unsigned int nirqfds;
static struct stub_ioeventfd ioeventfds[STUB_MAX];
static unsigned int nioeventfds;
static struct stub_route routes[STUB_MAX];
static unsigned int nroutes;
static unsigned int nrefused, nroute_sets;

/* kvm.c's first MSI route GSI: after the IOAPIC's 24 pins. */
#define STUB_FIRST_MSI_GSI	24

/* KVM refuses an eventfd that already drives an irqfd (-EBUSY), whatever the GSI. */
int vm_irqfd(struct vm *vm, int fd, u32 gsi)
{
	unsigned int i;

	(void)vm;
	for (i = 0; i < nirqfds; i++) {
		if (irqfds[i].fd == fd) {
			nrefused++;
			return -EBUSY;
		}
	}
	if (nirqfds == STUB_MAX)
		return -ENOSPC;
	irqfds[nirqfds++] = (struct stub_irqfd){ fd, gsi };
	return 0;
}

/* KVM quietly accepts detaching nothing; the code should still never do it. */
int vm_irqfd_detach(struct vm *vm, int fd, u32 gsi)
{
	unsigned int i;

	(void)vm;
	for (i = 0; i < nirqfds; i++) {
		if (irqfds[i].fd == fd && irqfds[i].gsi == gsi) {
			irqfds[i] = irqfds[--nirqfds];
			return 0;
		}
	}
	nrefused++;
	return 0;
}

static int find_ioeventfd(int fd, u64 addr, u32 len, u64 datamatch)
{
	unsigned int i;

	for (i = 0; i < nioeventfds; i++) {
		const struct stub_ioeventfd *e = &ioeventfds[i];

		if (e->fd == fd && e->addr == addr && e->len == len && e->datamatch == datamatch)
			return i;
	}
	return -1;
}

/* KVM refuses a second ioeventfd for the same address, length and value (-EEXIST). */
int vm_ioeventfd(struct vm *vm, int fd, u64 addr, u32 len, u64 datamatch)
{
	(void)vm;
	if (stub_ioeventfd_take(addr, len, datamatch) >= 0) {
		nrefused++;
		return -EEXIST;
	}
	if (nioeventfds == STUB_MAX)
		return -ENOSPC;
	ioeventfds[nioeventfds++] = (struct stub_ioeventfd){ fd, addr, len, datamatch };
	return 0;
}

/* Read-only pages: the test reads them where the guest would. */
static struct stub_page {
	u64 gpa;
	void *host;
	u64 size;
	bool mapped;
} pages[STUB_MAX];
static unsigned int npages;

int vm_map_readonly(struct vm *vm, u64 gpa, void *host, u64 size, u32 *slot)
{
	(void)vm;
	if (npages == STUB_MAX)
		return -ENOSPC;
	pages[npages] = (struct stub_page){ gpa, host, size, true };
	*slot = npages++;
	return 0;
}

int vm_unmap(struct vm *vm, u32 slot)
{
	(void)vm;
	if (slot >= npages || !pages[slot].mapped)
		return -EINVAL;
	pages[slot].mapped = false;
	return 0;
}

const void *stub_page_at(u64 gpa)
{
	unsigned int i;

	for (i = 0; i < npages; i++) {
		if (pages[i].mapped && gpa >= pages[i].gpa && gpa - pages[i].gpa < pages[i].size)
			return (const u8 *)pages[i].host + (gpa - pages[i].gpa);
	}
	return NULL;
}

int vm_ioeventfd_detach(struct vm *vm, int fd, u64 addr, u32 len, u64 datamatch)
{
	int i = find_ioeventfd(fd, addr, len, datamatch);

	(void)vm;
	if (i < 0) {
		nrefused++;
		return -ENOENT;
	}
	ioeventfds[i] = ioeventfds[--nioeventfds];
	return 0;
}

int vm_msi_route_add(struct vm *vm)
{
	(void)vm;
	if (nroutes == STUB_MAX)
		return -ENOSPC;
	routes[nroutes] = (struct stub_route){ STUB_FIRST_MSI_GSI + nroutes, 0, 0 };
	return routes[nroutes++].gsi;
}

int vm_msi_route_set(struct vm *vm, u32 gsi, u64 addr, u32 data)
{
	unsigned int i;

	(void)vm;
	nroute_sets++;
	for (i = 0; i < nroutes; i++) {
		if (routes[i].gsi == gsi) {
			routes[i].addr = addr;
			routes[i].data = data;
			return 0;
		}
	}
	nrefused++;
	return -ENOENT;
}

unsigned int stub_irqfd_count(void)
{
	return nirqfds;
}

/* The GSI fd drives now, or -1. */
int stub_irqfd_gsi(int fd)
{
	unsigned int i;

	for (i = 0; i < nirqfds; i++)
		if (irqfds[i].fd == fd)
			return irqfds[i].gsi;
	return -1;
}

unsigned int stub_ioeventfd_count(void)
{
	return nioeventfds;
}

bool stub_ioeventfd(int fd, u64 addr, u32 len, u64 datamatch)
{
	return find_ioeventfd(fd, addr, len, datamatch) >= 0;
}

/* The eventfd KVM would signal for this write instead of exiting, or -1. */
int stub_ioeventfd_take(u64 addr, u32 len, u64 value)
{
	unsigned int i;

	for (i = 0; i < nioeventfds; i++) {
		const struct stub_ioeventfd *e = &ioeventfds[i];

		if (e->addr == addr && e->len == len && e->datamatch == value)
			return e->fd;
	}
	return -1;
}

/* The GSI of the i-th route added, or -1. */
int stub_msi_route_gsi(unsigned int i)
{
	return i < nroutes ? (int)routes[i].gsi : -1;
}

bool stub_msi_route(u32 gsi, u64 *addr, u32 *data)
{
	unsigned int i;

	for (i = 0; i < nroutes; i++) {
		if (routes[i].gsi == gsi) {
			*addr = routes[i].addr;
			*data = routes[i].data;
			return true;
		}
	}
	return false;
}

unsigned int stub_route_sets(void)
{
	return nroute_sets;
}

unsigned int stub_refused(void)
{
	return nrefused;
}
