/* SPDX-License-Identifier: GPL-2.0 */
#ifndef KVMX_BENCH_CLI_H
#define KVMX_BENCH_CLI_H

#include <stdbool.h>
#include <stdint.h>

/* The program's name, for messages; each program defines it. */
extern const char bench_prog[];

uint64_t now_ns(void);
/* "<prog>: <message> (see --help)" on stderr, exit status 2. */
void __attribute__((noreturn, format(printf, 1, 2))) bad(const char *fmt, ...);
/* @s as a number in lo..hi, with a k/K suffix (x1024) if @k_suffix, or bad(). */
unsigned long parse_uint(const char *opt, const char *s, unsigned long lo,
			 unsigned long hi, bool k_suffix);
/* @s as seconds in lo..86400, fractions allowed, or bad(). */
double parse_seconds(const char *opt, const char *s, double lo);

#endif
