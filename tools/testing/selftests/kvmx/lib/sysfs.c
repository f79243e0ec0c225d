// SPDX-License-Identifier: GPL-2.0
/* Module parameters, fdinfo lines and worker threads, through their files. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sysfs.h"

bool param_read(const char *path, char *buf, size_t cap)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return false;
	n = read(fd, buf, cap - 1);
	close(fd);
	buf[n > 0 ? n : 0] = '\0';
	return n > 0;
}

int param_write(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	size_t len = strlen(text);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = write(fd, text, len);
	if (n < 0)
		n = -errno;
	close(fd);
	return n < 0 ? n : n == (ssize_t)len ? 0 : -EIO;
}

long param_read_long(const char *path)
{
	char text[32];

	return param_read(path, text, sizeof(text)) ? strtol(text, NULL, 10) : -1;
}

int param_write_long(const char *path, long val)
{
	char text[32];

	snprintf(text, sizeof(text), "%ld", val);
	return param_write(path, text);
}

int param_write_long_saved(const char *path, long val, long *saved)
{
	if (*saved < 0) {
		*saved = param_read_long(path);
		if (*saved < 0)
			return -ENOENT;
	}
	return param_write_long(path, val);
}

int param_write_saved(const char *path, const char *text, char *saved, size_t cap)
{
	if (!saved[0] && !param_read(path, saved, cap))
		return -ENOENT;
	return param_write(path, text);
}

void fdinfo_text(int fd, const char *key, char *out, size_t cap)
{
	char path[64], line[256];
	size_t klen = strlen(key);
	FILE *f;

	out[0] = '\0';
	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	f = fopen(path, "re");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		if (!strncmp(line, key, klen) && line[klen] == ':') {
			snprintf(out, cap, "%s", line + klen + 1 + strspn(line + klen + 1, " \t"));
			out[strcspn(out, "\n")] = '\0';
			break;
		}
	}
	fclose(f);
}

long long fdinfo_value(int fd, const char *key)
{
	char text[32];

	fdinfo_text(fd, key, text, sizeof(text));
	return text[0] ? strtoll(text, NULL, 10) : -1;
}

int workers_set_fifo(pid_t owner, int cpu)
{
	struct sched_param prio = { .sched_priority = 1 };
	char prefix[32], path[64], comm[32];
	struct dirent *de;
	int found = 0, err = 0;
	cpu_set_t cpus;
	DIR *proc;

	CPU_ZERO(&cpus);
	CPU_SET(cpu, &cpus);
	snprintf(prefix, sizeof(prefix), "kvmx-%d.", (int)owner);
	proc = opendir("/proc");
	if (!proc)
		return -errno;
	while ((de = readdir(proc))) {
		pid_t pid = strtol(de->d_name, NULL, 10);

		if (pid <= 0)
			continue;
		snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
		if (!param_read(path, comm, sizeof(comm)) ||
		    strncmp(comm, prefix, strlen(prefix)))
			continue;
		if (sched_setaffinity(pid, sizeof(cpus), &cpus) ||
		    sched_setscheduler(pid, SCHED_FIFO, &prio)) {
			err = -errno;
			break;
		}
		found++;
	}
	closedir(proc);
	return err ? err : found;
}
