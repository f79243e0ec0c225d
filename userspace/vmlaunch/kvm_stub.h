/* SPDX-License-Identifier: GPL-2.0 */
/*
 * kvm_stub.c stands in for kvm.c in pci_test: what it recorded of the
 * irqfds, ioeventfds and MSI routes the code under test asked KVM for.
 */
#ifndef VMLAUNCH_KVM_STUB_H
#define VMLAUNCH_KVM_STUB_H

#include "vmlaunch.h"

unsigned int stub_irqfd_count(void);
int stub_irqfd_gsi(int fd);
unsigned int stub_ioeventfd_count(void);
bool stub_ioeventfd(int fd, u64 addr, u32 len, u64 datamatch);
int stub_ioeventfd_take(u64 addr, u32 len, u64 value);
int stub_msi_route_gsi(unsigned int i);
bool stub_msi_route(u32 gsi, u64 *addr, u32 *data);
unsigned int stub_route_sets(void);
unsigned int stub_refused(void);
/* Host address of what the guest reads at @gpa on a read-only page, or NULL. */
const void *stub_page_at(u64 gpa);

#endif /* VMLAUNCH_KVM_STUB_H */
