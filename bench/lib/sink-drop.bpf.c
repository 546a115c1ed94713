// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The UDP flood's sink on each real server (tc ingress of its eth0): drops the flood's datagrams
 * (IPv4 UDP to the discard port) and passes everything else (ARP, TCP of the wrk runs). The interface
 * has counted a frame as received before tc sees it. Without the sink every datagram, to a port nobody
 * listens on, makes the server's UDP stack look up a socket and route an ICMP port-unreachable: work
 * that lands on the CPUs being measured, is the same for every path and says nothing about the
 * director. The benchmark measures what reaches the servers, not what they do with it.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

/* bench/lib/udp-rate.ts UDP_FLOOD_PORT */
#define FLOOD_PORT 9

SEC("tc")
int sink_drop(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP) || ip->protocol != IPPROTO_UDP || ip->ihl != 5)
		return TC_ACT_OK;
	struct udphdr *udp = (void *)(ip + 1);
	if ((void *)(udp + 1) > end || udp->dest != bpf_htons(FLOOD_PORT))
		return TC_ACT_OK;
	return TC_ACT_SHOT;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
