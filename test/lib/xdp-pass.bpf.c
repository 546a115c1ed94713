// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * XDP_PASS for the director's veth peer (a bridge port in the test topology). A veth hands an
 * XDP_TX frame to its peer's XDP receive queue, which exists only while the peer has an XDP
 * program; without one the frame is dropped (kernel 6.18 here: enabling GRO on the peer was not
 * enough, frames vanished). Passing everything makes the peer an ordinary bridge port again.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int xdp_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
