/* SPDX-License-Identifier: GPL-2.0 */
/* Small helpers shared by the kvmx selftest library. */
#ifndef KVMX_SELFTEST_UTIL_H
#define KVMX_SELFTEST_UTIL_H

#include <stdint.h>
#include <time.h>

#ifndef ARRAY_SIZE
#define ARRAY_SIZE(a)	(sizeof(a) / sizeof(a[0]))
#endif

/* Monotonic clock in milliseconds, for timeouts. */
static inline int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#endif /* KVMX_SELFTEST_UTIL_H */
