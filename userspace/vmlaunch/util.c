// SPDX-License-Identifier: GPL-2.0
/*
 * Small helpers: strict number parsing and eventfd/file I/O wrappers.
 */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "vmlaunch.h"

static struct timespec start_time;

static __attribute__((constructor)) void record_start_time(void)
{
	clock_gettime(CLOCK_MONOTONIC, &start_time);
}

double vmlaunch_elapsed(void)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (now.tv_sec - start_time.tv_sec) + (now.tv_nsec - start_time.tv_nsec) / 1e9;
}

/*
 * "<digits>[KMGT]" (case-insensitive, binary units). A bare number means
 * MiB, as with QEMU's -m. Anything else, including an empty string, an
 * unknown suffix and overflow, is -EINVAL.
 */
int parse_size(const char *s, u64 *out)
{
	unsigned long long v;
	unsigned int shift;
	char *end;

	if (!s || !isdigit((unsigned char)s[0]))
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return -EINVAL;

	switch (*end) {
	case '\0':
	case 'm':
	case 'M':
		shift = 20;
		break;
	case 'k':
	case 'K':
		shift = 10;
		break;
	case 'g':
	case 'G':
		shift = 30;
		break;
	case 't':
	case 'T':
		shift = 40;
		break;
	default:
		return -EINVAL;
	}
	if (*end && end[1])
		return -EINVAL;
	if (v > (~0ULL >> shift))
		return -EINVAL;
	*out = (u64)v << shift;
	return 0;
}

/* A decimal unsigned int, nothing else. */
int parse_uint(const char *s, unsigned int *out)
{
	unsigned long v;
	char *end;

	if (!s || !isdigit((unsigned char)s[0]))
		return -EINVAL;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || *end || v > 0xffffffffUL)
		return -EINVAL;
	*out = v;
	return 0;
}

int eventfd_signal(int fd)
{
	u64 one = 1;

	/* EAGAIN means the counter is saturated: still signalled. */
	if (write(fd, &one, sizeof(one)) != sizeof(one) && errno != EAGAIN)
		return -errno;
	return 0;
}

int eventfd_drain(int fd)
{
	u64 v;

	if (read(fd, &v, sizeof(v)) != sizeof(v))
		return -errno;
	return 0;
}

/* pread the whole of [off, off + len); -EIO on a short file. */
int read_file_at(int fd, void *buf, size_t len, off_t off)
{
	u8 *p = buf;

	while (len) {
		ssize_t n = pread(fd, p, len, off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;
		p += n;
		off += n;
		len -= n;
	}
	return 0;
}
