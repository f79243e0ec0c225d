// SPDX-License-Identifier: GPL-2.0
/*
 * Command-line and clock helpers the benchmark programs share.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "cli.h"

uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

void bad(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", bench_prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, " (see --help)\n");
	exit(2);
}

unsigned long parse_uint(const char *opt, const char *s, unsigned long lo,
				unsigned long hi, bool k_suffix)
{
	unsigned long long v;
	char *end;

	errno = 0;
	if (!*s || *s == '-')
		bad("%s: expected a number, got '%s'", opt, s);
	v = strtoull(s, &end, 0);
	if (k_suffix && (*end == 'k' || *end == 'K')) {
		if (v > ~0ULL / 1024)
			errno = ERANGE;
		v *= 1024;
		end++;
	}
	if (errno || *end)
		bad("%s: expected a number, got '%s'", opt, s);
	if (v < lo || v > hi)
		bad("%s: %llu is out of range %lu..%lu", opt, v, lo, hi);
	return v;
}

double parse_seconds(const char *opt, const char *s, double lo)
{
	double v;
	char *end;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || !(v >= lo) || v > 86400)
		bad("%s: expected seconds (%g..86400), got '%s'", opt, lo, s);
	return v;
}
