/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What the kernel shows in text files: module parameters under
 * /sys/module, a device fd's /proc/self/fdinfo lines, and the kvmx worker
 * threads in /proc.
 */
#ifndef KVMX_SELFTEST_SYSFS_H
#define KVMX_SELFTEST_SYSFS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* A module parameter's value as text into @buf; false if unreadable. */
bool param_read(const char *path, char *buf, size_t cap);
/* Return: 0, or a negative errno (what the parameter's setter refused with). */
int param_write(const char *path, const char *text);
/* A numeric parameter; -1 if unreadable. */
long param_read_long(const char *path);
int param_write_long(const char *path, long val);
/*
 * Write @val, first keeping the value it had in *@saved if *@saved < 0
 * (a test's teardown puts it back). Return: 0, -ENOENT if unreadable, or
 * param_write()'s error.
 */
int param_write_long_saved(const char *path, long val, long *saved);
/* The same for any parameter as text, kept in @saved (@cap bytes) if "". */
int param_write_saved(const char *path, const char *text, char *saved, size_t cap);

/* @key's value in /proc/self/fdinfo/@fd into @out; "" when absent. */
void fdinfo_text(int fd, const char *key, char *out, size_t cap);
/* The same as a number; -1 when absent. */
long long fdinfo_value(int fd, const char *key);

/*
 * Move every worker thread of the kvmx device @owner opened ("kvmx-@owner.N")
 * to CPU @cpu at SCHED_FIFO priority 1, so that no ordinary task can cut
 * its busy polls short. Return: how many workers, or a negative errno.
 */
int workers_set_fifo(pid_t owner, int cpu);

#endif /* KVMX_SELFTEST_SYSFS_H */
