/**
 * CPU time of the calling thread (CLOCK_THREAD_CPUTIME_ID), in ns. Timing a long system call by
 * it, instead of by the wall clock, leaves out the time the thread sat preempted while other work
 * ran on the CPU, which on a busy 2-core machine otherwise inflates ns-per-operation figures by
 * 2x or more. Linux computes it exactly (the scheduler's runtime of the thread, brought up to date
 * at the call), not from tick samples.
 */
import { koffi } from '../../control/bpf/libbpf.js';

const CLOCK_THREAD_CPUTIME_ID = 3;
const clockGettime = koffi.load('libc.so.6').func('int clock_gettime(int clk, void *ts)');
const timespec = Buffer.alloc(16); // struct timespec { time_t tv_sec; long tv_nsec; } on 64-bit Linux

export function threadCpuNs(): bigint {
  if (clockGettime(CLOCK_THREAD_CPUTIME_ID, timespec) !== 0) throw new Error('clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed');
  return timespec.readBigInt64LE(0) * 1_000_000_000n + timespec.readBigInt64LE(8);
}
