// SPDX-License-Identifier: GPL-2.0
/*
 * net_rr: TCP request/response latency, netperf TCP_RR style. The client
 * sends --size bytes, waits for the same number back, and repeats for
 * --runtime seconds on one connection; the server echoes what it reads.
 * Both sides set TCP_NODELAY, so every transaction is one segment each way
 * and the rate is bounded by the round trip, not by Nagle's timer.
 *
 * Built static (bench/Makefile) so the guest image needs no libraries for
 * it; addresses are numeric IPv4 only, which keeps glibc's NSS out of a
 * static binary.
 *
 * The client prints one line on stdout:
 *   transactions=N seconds=S tps=X mean_us=Y
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cli.h"

const char bench_prog[] = "net_rr";

#define MAX_SIZE 65536

static void usage(void)
{
	printf("Usage: net_rr --server [--bind ADDR] [--port N] [--once]\n"
	       "       net_rr --client ADDR [--port N] [--runtime S] [--size N]\n"
	       "\n"
	       "TCP request/response: the client sends SIZE bytes (default 1) and\n"
	       "waits for them to come back, for RUNTIME seconds (default 3), then\n"
	       "prints \"transactions=N seconds=S tps=X mean_us=Y\". The server\n"
	       "(default port 5301, all addresses) echoes every connection, one at\n"
	       "a time, until killed, or only the first with --once. ADDR is a\n"
	       "numeric IPv4 address. Exit status: 0 ok, 1 error, 2 bad usage.\n");
}

static int die_errno(const char *what)
{
	fprintf(stderr, "net_rr: %s: %s\n", what, strerror(errno));
	return 1;
}

static void parse_addr(const char *opt, const char *s, struct sockaddr_in *sa)
{
	if (inet_pton(AF_INET, s, &sa->sin_addr) != 1)
		bad("%s: '%s' is not a numeric IPv4 address", opt, s);
}

/* Move exactly @len bytes; false on EOF or an error (errno 0 on EOF). */
static bool xfer(int fd, char *buf, size_t len, bool out)
{
	size_t done = 0;
	ssize_t n;

	while (done < len) {
		n = out ? send(fd, buf + done, len - done, MSG_NOSIGNAL)
			: recv(fd, buf + done, len - done, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n == 0)
				errno = 0;
			return false;
		}
		done += n;
	}
	return true;
}

static void nodelay(int fd)
{
	int one = 1;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static int server(struct sockaddr_in *sa, bool once)
{
	static char buf[MAX_SIZE];
	int one = 1, lfd, fd;
	ssize_t n;

	lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0)
		return die_errno("socket");
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(lfd, (struct sockaddr *)sa, sizeof(*sa)) < 0)
		return die_errno("bind");
	if (listen(lfd, 4) < 0)
		return die_errno("listen");
	for (;;) {
		fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			return die_errno("accept");
		}
		nodelay(fd);
		/* Echo whatever arrives: the client sends one request at a time. */
		for (;;) {
			n = recv(fd, buf, sizeof(buf), 0);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0 || !xfer(fd, buf, n, true))
				break;
		}
		close(fd);
		if (once)
			return 0;
	}
}

static int client(struct sockaddr_in *sa, double runtime, size_t size)
{
	static char buf[MAX_SIZE];
	uint64_t start, now, end, count = 0;
	double secs;
	int fd;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return die_errno("socket");
	if (connect(fd, (struct sockaddr *)sa, sizeof(*sa)) < 0)
		return die_errno("connect");
	nodelay(fd);
	memset(buf, 'r', size);
	start = now_ns();
	end = start + (uint64_t)(runtime * 1e9);
	do {
		if (!xfer(fd, buf, size, true) || !xfer(fd, buf, size, false)) {
			if (!errno)
				fprintf(stderr, "net_rr: the server closed the connection\n");
			else
				die_errno("transaction");
			close(fd);
			return 1;
		}
		count++;
		now = now_ns();
	} while (now < end);
	close(fd);
	secs = (now - start) / 1e9;
	printf("transactions=%llu seconds=%.3f tps=%.1f mean_us=%.2f\n",
	       (unsigned long long)count, secs, count / secs, secs * 1e6 / count);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "server", no_argument, NULL, 's' },
		{ "client", required_argument, NULL, 'c' },
		{ "bind", required_argument, NULL, 'b' },
		{ "port", required_argument, NULL, 'p' },
		{ "runtime", required_argument, NULL, 't' },
		{ "size", required_argument, NULL, 'l' },
		{ "once", no_argument, NULL, '1' },
		{ "help", no_argument, NULL, 'h' },
		{}
	};
	struct sockaddr_in sa = { .sin_family = AF_INET };
	struct sockaddr_in peer = { .sin_family = AF_INET };
	bool is_server = false, is_client = false, once = false;
	unsigned long port = 5301, size = 1;
	double runtime = 3;
	int c;

	sa.sin_addr.s_addr = htonl(INADDR_ANY);
	while ((c = getopt_long(argc, argv, "sc:b:p:t:l:1h", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			is_server = true;
			break;
		case 'c':
			is_client = true;
			parse_addr("--client", optarg, &peer);
			break;
		case 'b':
			parse_addr("--bind", optarg, &sa);
			break;
		case 'p':
			port = parse_uint("--port", optarg, 1, 65535, false);
			break;
		case 't':
			runtime = parse_seconds("--runtime", optarg, 0.001);
			break;
		case 'l':
			size = parse_uint("--size", optarg, 1, MAX_SIZE, true);
			break;
		case '1':
			once = true;
			break;
		case 'h':
			usage();
			return 0;
		default:
			bad("unknown option");
		}
	}
	if (optind < argc)
		bad("unexpected argument '%s'", argv[optind]);
	if (is_server == is_client)
		bad("give exactly one of --server and --client ADDR");
	sa.sin_port = htons(port);
	peer.sin_port = htons(port);
	signal(SIGPIPE, SIG_IGN);
	return is_server ? server(&sa, once) : client(&peer, runtime, size);
}
