// SPDX-License-Identifier: Apache-2.0
/*
 * Bounded UDP flood for bench/e2e.ts: small datagrams over several flows (one connected socket per
 * flow, so each has its own source port), sent with sendmmsg in batches. Stops after DURATION_S
 * seconds or MAX_PACKETS packets, whichever comes first, and prints the number sent.
 *
 *   udp-flood DST_IP DST_PORT FLOWS PAYLOAD_BYTES DURATION_S MAX_PACKETS
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64
#define MAX_FLOWS 256

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	if (argc != 7) {
		fprintf(stderr, "usage: %s DST_IP DST_PORT FLOWS PAYLOAD_BYTES DURATION_S MAX_PACKETS\n", argv[0]);
		return 2;
	}
	struct sockaddr_in dst = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[2])) };
	if (inet_pton(AF_INET, argv[1], &dst.sin_addr) != 1) {
		fprintf(stderr, "udp-flood: %s is not an IPv4 address\n", argv[1]);
		return 2;
	}
	int flows = atoi(argv[3]), size = atoi(argv[4]);
	double duration = atof(argv[5]);
	long long max_packets = atoll(argv[6]);
	if (flows < 1 || flows > MAX_FLOWS || size < 1 || size > 1400 || duration <= 0 || max_packets < 1) {
		fprintf(stderr, "udp-flood: flows 1..%d, payload 1..1400, duration > 0, max packets > 0\n", MAX_FLOWS);
		return 2;
	}
	int fds[MAX_FLOWS];
	for (int i = 0; i < flows; i++) {
		fds[i] = socket(AF_INET, SOCK_DGRAM, 0);
		if (fds[i] < 0 || connect(fds[i], (struct sockaddr *)&dst, sizeof(dst)) < 0) {
			perror("udp-flood: socket/connect");
			return 1;
		}
	}
	char payload[1400];
	memset(payload, 'x', sizeof(payload));
	struct iovec iov = { .iov_base = payload, .iov_len = (size_t)size };
	struct mmsghdr msgs[BATCH];
	memset(msgs, 0, sizeof(msgs));
	for (int i = 0; i < BATCH; i++) {
		msgs[i].msg_hdr.msg_iov = &iov;
		msgs[i].msg_hdr.msg_iovlen = 1;
	}
	long long sent = 0, send_errors = 0;
	double start = now_s(), end = start + duration;
	for (int round = 0; sent < max_packets; round++) {
		if ((round & 15) == 0 && now_s() >= end)
			break;
		int fd = fds[round % flows];
		int n = sendmmsg(fd, msgs, BATCH, 0);
		if (n < 0) {
			/* ENOBUFS/EAGAIN: the qdisc or socket is full; count and go on */
			send_errors++;
			continue;
		}
		sent += n;
	}
	double elapsed = now_s() - start;
	printf("{\"sent\":%lld,\"sendErrors\":%lld,\"elapsedS\":%.3f}\n", sent, send_errors, elapsed);
	for (int i = 0; i < flows; i++)
		close(fds[i]);
	return 0;
}
