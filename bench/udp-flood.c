// SPDX-License-Identifier: Apache-2.0
/*
 * Bounded UDP flood for the end-to-end benchmarks: small IPv4 datagrams over several flows (each flow
 * its own source port). Stops after DURATION_S seconds or MAX_PACKETS packets, whichever comes first,
 * and prints what it sent as JSON.
 *
 *   udp-flood DST_IP DST_PORT FLOWS PAYLOAD_BYTES DURATION_S MAX_PACKETS
 *       sockets: one connected UDP socket per flow, sendmmsg in batches. Every datagram walks the
 *       sender's UDP/IP output path (route, neighbour, checksum, qdisc).
 *   udp-flood DST_IP DST_PORT FLOWS PAYLOAD_BYTES DURATION_S MAX_PACKETS IFNAME SRC_IP SRC_MAC DST_MAC
 *       raw frames: the same datagrams (one per flow, prebuilt with valid IPv4 and UDP checksums,
 *       addressed to DST_MAC, the next hop) sent on an AF_PACKET socket bound to IFNAME with
 *       PACKET_QDISC_BYPASS, sendmmsg in batches: an skb allocation and a copy per packet, no
 *       UDP/IP output path. About 1 Mpps from one CPU here, but its skbs make a veth's native XDP
 *       copy every frame (bench/e2e.ts uses the xdp mode instead).
 *   udp-flood ... IFNAME SRC_IP SRC_MAC DST_MAC PROG_PIN CFG_MAP_PIN
 *       XDP live frames: the same frames generated in the kernel by BPF_PROG_TEST_RUN with
 *       BPF_F_TEST_XDP_LIVE_FRAMES (what xdp-trafficgen does) running bench/lib/flood-gen.bpf.c,
 *       loaded and pinned beforehand (bpftool prog load ... pinmaps), which sets each frame's flow and
 *       redirects it out of IFNAME. No socket and no skb on the sender's side: the cheapest sender
 *       this kernel has. Counts frames handed to the redirect (a full next-hop queue drops some).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/ip.h>
#include <netinet/udp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/bpf.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64
#define MAX_FLOWS 256
#define FIRST_SRC_PORT 20000
#define MAX_PAYLOAD 1400
#define FRAME_MAX (14 + 20 + 8 + MAX_PAYLOAD)

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint32_t sum16(const void *data, size_t len, uint32_t sum)
{
	const uint8_t *p = data;
	for (; len > 1; len -= 2, p += 2)
		sum += (uint32_t)p[0] << 8 | p[1];
	if (len)
		sum += (uint32_t)p[0] << 8;
	return sum;
}

static uint16_t fold(uint32_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

static int parse_mac(const char *s, uint8_t mac[6])
{
	unsigned int b[6];
	if (sscanf(s, "%x:%x:%x:%x:%x:%x", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5]) != 6)
		return -1;
	for (int i = 0; i < 6; i++)
		mac[i] = (uint8_t)b[i];
	return 0;
}

/* One Ethernet + IPv4 + UDP frame of flow `flow`; returns its length. */
static size_t build_frame(uint8_t *f, const uint8_t dst_mac[6], const uint8_t src_mac[6], struct in_addr src,
			  struct in_addr dst, uint16_t dport, int flow, int payload)
{
	struct ether_header *eth = (struct ether_header *)f;
	struct iphdr *ip = (struct iphdr *)(f + sizeof(*eth));
	struct udphdr *udp = (struct udphdr *)(ip + 1);
	uint8_t *data = (uint8_t *)(udp + 1);
	memcpy(eth->ether_dhost, dst_mac, 6);
	memcpy(eth->ether_shost, src_mac, 6);
	eth->ether_type = htons(ETHERTYPE_IP);
	*ip = (struct iphdr){ .version = 4, .ihl = 5, .ttl = 64, .protocol = IPPROTO_UDP,
			      .tot_len = htons(20 + 8 + payload), .saddr = src.s_addr, .daddr = dst.s_addr };
	ip->check = htons(fold(sum16(ip, 20, 0)));
	memset(data, 'x', payload);
	*udp = (struct udphdr){ .source = htons(FIRST_SRC_PORT + flow), .dest = htons(dport), .len = htons(8 + payload) };
	/* pseudo header: addresses, protocol, UDP length */
	uint32_t sum = sum16(&ip->saddr, 8, IPPROTO_UDP + 8 + payload);
	uint16_t c = fold(sum16(udp, 8 + payload, sum));
	udp->check = htons(c ? c : 0xffff);
	return sizeof(*eth) + 20 + 8 + payload;
}

static long sys_bpf(int cmd, union bpf_attr *attr)
{
	return syscall(__NR_bpf, cmd, attr, sizeof(*attr));
}

static int bpf_obj_get(const char *path)
{
	union bpf_attr a = { 0 };
	a.pathname = (uint64_t)(unsigned long)path;
	return (int)sys_bpf(BPF_OBJ_GET, &a);
}

/* Must match struct flood_cfg in bench/lib/flood-gen.bpf.c. */
struct flood_cfg {
	uint32_t ifindex;
	uint32_t flows;
	uint16_t sport0;
	uint16_t csum0;
	uint8_t hdr[14 + 20 + 8];
};

/* XDP live-frames mode: frames[0] is the template (flow 0); returns 0 or prints why not. */
static int xdp_flood(const char *prog_pin, const char *map_pin, int ifindex, int flows, const uint8_t *frame, size_t len,
		     double duration, long long max_packets, long long *sent, long long *errors)
{
	int prog = bpf_obj_get(prog_pin), map = bpf_obj_get(map_pin);
	if (prog < 0 || map < 0) {
		perror("udp-flood: BPF_OBJ_GET of the pinned generator program or its config map");
		return -1;
	}
	const struct udphdr *udp = (const struct udphdr *)(frame + 14 + 20);
	struct flood_cfg cfg = { .ifindex = (uint32_t)ifindex, .flows = (uint32_t)flows, .sport0 = FIRST_SRC_PORT,
				 .csum0 = ntohs(udp->check) };
	memcpy(cfg.hdr, frame, sizeof(cfg.hdr));
	uint32_t key = 0;
	union bpf_attr u = { 0 };
	u.map_fd = (uint32_t)map;
	u.key = (uint64_t)(unsigned long)&key;
	u.value = (uint64_t)(unsigned long)&cfg;
	if (sys_bpf(BPF_MAP_UPDATE_ELEM, &u) < 0) {
		perror("udp-flood: updating the generator's config map");
		return -1;
	}
	double end = now_s() + duration;
	while (*sent < max_packets && now_s() < end) {
		long long left = max_packets - *sent;
		uint32_t chunk = left < 8192 ? (uint32_t)left : 8192;
		union bpf_attr t = { 0 };
		t.test.prog_fd = (uint32_t)prog;
		t.test.data_in = (uint64_t)(unsigned long)frame;
		t.test.data_size_in = (uint32_t)len;
		t.test.repeat = chunk;
		t.test.flags = BPF_F_TEST_XDP_LIVE_FRAMES;
		t.test.batch_size = BATCH;
		if (sys_bpf(BPF_PROG_TEST_RUN, &t) < 0) {
			if (errno == EINTR) {
				++*errors;
				continue;
			}
			perror("udp-flood: BPF_PROG_TEST_RUN (live frames)");
			return -1;
		}
		*sent += chunk;
	}
	close(prog);
	close(map);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 7 && argc != 11 && argc != 13) {
		fprintf(stderr, "usage: %s DST_IP DST_PORT FLOWS PAYLOAD_BYTES DURATION_S MAX_PACKETS "
				"[IFNAME SRC_IP SRC_MAC DST_MAC [PROG_PIN CFG_MAP_PIN]]\n", argv[0]);
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
	if (flows < 1 || flows > MAX_FLOWS || size < 1 || size > MAX_PAYLOAD || duration <= 0 || max_packets < 1) {
		fprintf(stderr, "udp-flood: flows 1..%d, payload 1..%d, duration > 0, max packets > 0\n", MAX_FLOWS, MAX_PAYLOAD);
		return 2;
	}
	int raw = argc >= 11, xdp = argc == 13;
	int ifindex = 0;
	int fds[MAX_FLOWS];
	int nfds = raw ? 1 : flows;
	static uint8_t frames[MAX_FLOWS][FRAME_MAX];
	struct iovec iovs[MAX_FLOWS];
	char payload[MAX_PAYLOAD];
	memset(payload, 'x', sizeof(payload));
	if (raw) {
		uint8_t src_mac[6], dst_mac[6];
		struct in_addr src;
		ifindex = (int)if_nametoindex(argv[7]);
		if (!ifindex || inet_pton(AF_INET, argv[8], &src) != 1 || parse_mac(argv[9], src_mac) || parse_mac(argv[10], dst_mac)) {
			fprintf(stderr, "udp-flood: bad IFNAME (%s), SRC_IP (%s) or MAC (%s, %s)\n", argv[7], argv[8], argv[9], argv[10]);
			return 2;
		}
		if (xdp) {
			long long sent = 0, errors = 0;
			size_t len = build_frame(frames[0], dst_mac, src_mac, src, dst.sin_addr, ntohs(dst.sin_port), 0, size);
			double start = now_s();
			if (xdp_flood(argv[11], argv[12], ifindex, flows, frames[0], len, duration, max_packets, &sent, &errors))
				return 1;
			printf("{\"sent\":%lld,\"sendErrors\":%lld,\"elapsedS\":%.3f}\n", sent, errors, now_s() - start);
			return 0;
		}
		fds[0] = socket(AF_PACKET, SOCK_RAW, 0); /* protocol 0: send only, never receives */
		struct sockaddr_ll sll = { .sll_family = AF_PACKET, .sll_ifindex = ifindex };
		int one = 1;
		if (fds[0] < 0 || bind(fds[0], (struct sockaddr *)&sll, sizeof(sll)) < 0 ||
		    setsockopt(fds[0], SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof(one)) < 0) {
			perror("udp-flood: AF_PACKET socket/bind/PACKET_QDISC_BYPASS");
			return 1;
		}
		for (int i = 0; i < flows; i++) {
			size_t len = build_frame(frames[i], dst_mac, src_mac, src, dst.sin_addr, ntohs(dst.sin_port), i, size);
			iovs[i] = (struct iovec){ .iov_base = frames[i], .iov_len = len };
		}
	} else {
		for (int i = 0; i < flows; i++) {
			fds[i] = socket(AF_INET, SOCK_DGRAM, 0);
			if (fds[i] < 0 || connect(fds[i], (struct sockaddr *)&dst, sizeof(dst)) < 0) {
				perror("udp-flood: socket/connect");
				return 1;
			}
			iovs[i] = (struct iovec){ .iov_base = payload, .iov_len = (size_t)size };
		}
	}
	/* Raw: one batch cycles through the flows; sockets: a batch goes to one flow's socket. */
	struct mmsghdr msgs[BATCH];
	memset(msgs, 0, sizeof(msgs));
	for (int i = 0; i < BATCH; i++) {
		msgs[i].msg_hdr.msg_iov = &iovs[raw ? i % flows : 0];
		msgs[i].msg_hdr.msg_iovlen = 1;
	}
	long long sent = 0, send_errors = 0;
	double start = now_s(), end = start + duration;
	for (int round = 0; sent < max_packets; round++) {
		if ((round & 15) == 0 && now_s() >= end)
			break;
		int want = max_packets - sent < BATCH ? (int)(max_packets - sent) : BATCH;
		if (raw) {
			/* rotate the batch start so every flow gets its share when BATCH % flows != 0 */
			for (int i = 0; i < want; i++)
				msgs[i].msg_hdr.msg_iov = &iovs[(round * BATCH + i) % flows];
		} else {
			for (int i = 0; i < want; i++)
				msgs[i].msg_hdr.msg_iov = &iovs[round % flows];
		}
		int n = sendmmsg(fds[raw ? 0 : round % flows], msgs, (unsigned int)want, 0);
		if (n < 0) {
			/* ENOBUFS/EAGAIN: a queue or the socket buffer is full; count and go on */
			send_errors++;
			continue;
		}
		sent += n;
	}
	double elapsed = now_s() - start;
	printf("{\"sent\":%lld,\"sendErrors\":%lld,\"elapsedS\":%.3f}\n", sent, send_errors, elapsed);
	for (int i = 0; i < nfds; i++)
		close(fds[i]);
	return 0;
}
