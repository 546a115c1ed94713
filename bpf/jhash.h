/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Bob Jenkins' lookup3 hash ("jhash", public domain) over 32-bit words, as in the kernel's
 * jhash2(). The word count is a compile-time constant at every call site, so clang unrolls
 * the loop and the verifier sees straight-line code.
 */
#ifndef XDIR_JHASH_H
#define XDIR_JHASH_H

#include <linux/types.h>
#include <bpf/bpf_helpers.h>

#define XDIR_JHASH_INITVAL 0xdeadbeefU

static __always_inline __u32 xdir_rol32(__u32 word, unsigned int shift)
{
	return (word << shift) | (word >> ((-shift) & 31));
}

#define xdir_jhash_mix(a, b, c)                              \
	do {                                                 \
		a -= c; a ^= xdir_rol32(c, 4);  c += b;      \
		b -= a; b ^= xdir_rol32(a, 6);  a += c;      \
		c -= b; c ^= xdir_rol32(b, 8);  b += a;      \
		a -= c; a ^= xdir_rol32(c, 16); c += b;      \
		b -= a; b ^= xdir_rol32(a, 19); a += c;      \
		c -= b; c ^= xdir_rol32(b, 4);  b += a;      \
	} while (0)

#define xdir_jhash_final(a, b, c)                            \
	do {                                                 \
		c ^= b; c -= xdir_rol32(b, 14);              \
		a ^= c; a -= xdir_rol32(c, 11);              \
		b ^= a; b -= xdir_rol32(a, 25);              \
		c ^= b; c -= xdir_rol32(b, 16);              \
		a ^= c; a -= xdir_rol32(c, 4);               \
		b ^= a; b -= xdir_rol32(a, 14);              \
		c ^= b; c -= xdir_rol32(b, 24);              \
	} while (0)

/* Hash of `words` 32-bit words at k. `words` must be a constant (the loop is unrolled). */
static __always_inline __u32 xdir_jhash2(const __u32 *k, const __u32 words, __u32 seed)
{
	__u32 a, b, c;
	__u32 left = words;

	a = b = c = XDIR_JHASH_INITVAL + (words << 2) + seed;
#pragma unroll
	for (int i = 0; i < 16; i++) {
		if (left <= 3)
			break;
		a += k[0];
		b += k[1];
		c += k[2];
		xdir_jhash_mix(a, b, c);
		left -= 3;
		k += 3;
	}
	switch (left) {
	case 3:
		c += k[2];
		__attribute__((fallthrough));
	case 2:
		b += k[1];
		__attribute__((fallthrough));
	case 1:
		a += k[0];
		xdir_jhash_final(a, b, c);
		break;
	default:
		break;
	}
	return c;
}

#endif /* XDIR_JHASH_H */
