/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What the kernel shows in text files: module parameters under
 * /sys/module and a device fd's /proc/self/fdinfo lines.
 */
#ifndef KVMX_SELFTEST_SYSFS_H
#define KVMX_SELFTEST_SYSFS_H

#include <stdbool.h>
#include <stddef.h>

/* A module parameter's value as text into @buf; false if unreadable. */
bool param_read(const char *path, char *buf, size_t cap);
/* Return: 0, or a negative errno (what the parameter's setter refused with). */
int param_write(const char *path, const char *text);
/* A numeric parameter; -1 if unreadable. */
long param_read_long(const char *path);
int param_write_long(const char *path, long val);

/* @key's value in /proc/self/fdinfo/@fd into @out; "" when absent. */
void fdinfo_text(int fd, const char *key, char *out, size_t cap);
/* The same as a number; -1 when absent. */
long long fdinfo_value(int fd, const char *key);

#endif /* KVMX_SELFTEST_SYSFS_H */
