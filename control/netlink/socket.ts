/**
 * A netlink socket to the kernel: one request at a time, answered by an ACK, one reply, or a
 * multipart dump ending in NLMSG_DONE. Calls are synchronous: the kernel answers a request while
 * handling the send (dumps are produced as we read), so nothing waits on the network; a receive
 * timeout guards against a kernel that never answers.
 *
 * A socket can be opened inside a named network namespace (`ip netns add NAME`): the calling
 * thread enters it only for socket(), and a netlink socket stays bound to the namespace it was
 * created in. This is how tests and `xdir` talk to a namespace without moving the whole process.
 */
import { closeSync, openSync } from 'node:fs';
import { describeErrno, lastErrno, sys } from './libc.js';
import {
  NLMSG_DONE, NLMSG_ERROR, NLMSG_NOOP, NLMSG_OVERRUN, NLM_F_ACK, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_REQUEST,
  encodeMessage, parseError, parseMessages, type Message,
} from './message.js';

export const AF_NETLINK = 16;
export const NETLINK_ROUTE = 0;
export const NETLINK_GENERIC = 16;

const SOCK_RAW = 3;
const SOCK_CLOEXEC = 0x80000;
const SOL_SOCKET = 1;
const SO_RCVTIMEO = 20;
const SO_RCVBUF = 8;
const SOL_NETLINK = 270;
const NETLINK_EXT_ACK = 11;
const NETLINK_GET_STRICT_CHK = 12;
const MSG_TRUNC = 0x20;
const CLONE_NEWNET = 0x40000000;
const SOCKADDR_NL_LEN = 12;

/** A failed netlink request: the kernel's errno plus what we were doing and what to try next. */
export class NetlinkError extends Error {
  constructor(
    message: string,
    /** Positive errno from the kernel (or from libc), e.g. 2 for ENOENT. */
    readonly errno: number,
    readonly kernelMessage?: string,
  ) {
    super(message);
    this.name = 'NetlinkError';
  }
}

/** The table changed while a dump was read (NLM_F_DUMP_INTR): the parts may not fit together. */
export class DumpInterruptedError extends NetlinkError {
  constructor(context: string) {
    super(`${context}: the table changed while it was read (NLM_F_DUMP_INTR); retry`, 4);
    this.name = 'DumpInterruptedError';
  }
}

export interface OpenOptions {
  /** Named network namespace (/run/netns/NAME) to open the socket in; default: the caller's. */
  netns?: string;
  /** Give up on a kernel answer after this long (default 5000 ms). */
  timeoutMs?: number;
  /** Receive buffer for one datagram (default 256 KiB; dumps come in pieces of at most ~32 KiB). */
  bufferBytes?: number;
}

export interface RequestOptions {
  /** What the caller was doing, for error messages (`resolve generic netlink family IPVS`). */
  context: string;
}

function fail(context: string, call: string): never {
  const errno = lastErrno();
  throw new NetlinkError(`${context}: ${call} failed: ${describeErrno(errno)}`, errno);
}

/** Runs fn with the calling thread inside network namespace `name`, and always comes back. */
function inNetns<T>(name: string, fn: () => T): T {
  const home = openSync('/proc/thread-self/ns/net', 'r');
  let target: number;
  try {
    target = openSync(name.includes('/') ? name : `/run/netns/${name}`, 'r');
  } catch (err) {
    closeSync(home);
    throw new Error(`cannot open network namespace '${name}': ${(err as Error).message}; create it with 'ip netns add ${name}'`);
  }
  try {
    if (sys.setns(target, CLONE_NEWNET) !== 0) fail(`enter network namespace '${name}'`, 'setns');
    try {
      return fn();
    } finally {
      if (sys.setns(home, CLONE_NEWNET) !== 0) {
        // Continuing would run the rest of the process in the wrong namespace.
        process.stderr.write(`fatal: cannot return from network namespace '${name}': ${describeErrno(lastErrno())}\n`);
        process.abort();
      }
    }
  } finally {
    closeSync(target);
    closeSync(home);
  }
}

export class NetlinkSocket {
  private seq: number;
  private readonly rx: Buffer;
  private fd: number;
  /** Our port id, assigned by the kernel at bind(). */
  readonly portId: number;

  private constructor(fd: number, portId: number, bufferBytes: number, readonly protocol: number) {
    this.fd = fd;
    this.portId = portId;
    this.rx = Buffer.alloc(bufferBytes);
    this.seq = Math.floor(Date.now() / 1000) >>> 0;
  }

  static open(protocol: number, opts: OpenOptions = {}): NetlinkSocket {
    const create = (): number => sys.socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, protocol);
    const fd = opts.netns ? inNetns(opts.netns, create) : create();
    const what = `open netlink socket (protocol ${protocol})`;
    if (fd < 0) fail(what, 'socket');
    try {
      const timeoutMs = opts.timeoutMs ?? 5000;
      const tv = Buffer.alloc(16);
      tv.writeBigInt64LE(BigInt(Math.floor(timeoutMs / 1000)), 0);
      tv.writeBigInt64LE(BigInt((timeoutMs % 1000) * 1000), 8);
      if (sys.setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, tv, 16) !== 0) fail(what, 'setsockopt(SO_RCVTIMEO)');
      const one = Buffer.alloc(4);
      one.writeInt32LE(1);
      // Best effort: the kernel's own error text, and strict checking of dump filters (both Linux >= 4.20).
      sys.setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, one, 4);
      sys.setsockopt(fd, SOL_NETLINK, NETLINK_GET_STRICT_CHK, one, 4);
      const rcvbuf = Buffer.alloc(4);
      rcvbuf.writeInt32LE(1 << 20);
      sys.setsockopt(fd, SOL_SOCKET, SO_RCVBUF, rcvbuf, 4);
      const sa = Buffer.alloc(SOCKADDR_NL_LEN);
      sa.writeUInt16LE(AF_NETLINK, 0);
      if (sys.bind(fd, sa, SOCKADDR_NL_LEN) !== 0) fail(what, 'bind');
      const len = Uint32Array.of(SOCKADDR_NL_LEN);
      if (sys.getsockname(fd, sa, len) !== 0) fail(what, 'getsockname');
      return new NetlinkSocket(fd, sa.readUInt32LE(4), opts.bufferBytes ?? 256 * 1024, protocol);
    } catch (err) {
      sys.close(fd);
      throw err;
    }
  }

  /**
   * Sends one request and waits for its ACK; returns the reply messages that came before it
   * ([] for a bare ACK). An NLMSG_ERROR with a non-zero errno becomes a NetlinkError carrying
   * `context`.
   */
  request(type: number, flags: number, payload: Buffer, opts: RequestOptions): Message[] {
    return this.exchange(type, flags | NLM_F_ACK, payload, opts);
  }

  /**
   * Sends a dump request and returns every part of the answer, up to NLMSG_DONE. A dump the
   * kernel marks inconsistent (the table changed while it was read) is asked for again, twice.
   */
  dump(type: number, payload: Buffer, opts: RequestOptions): Message[] {
    for (let attempt = 1; ; attempt++) {
      try {
        return this.exchange(type, NLM_F_DUMP, payload, opts);
      } catch (err) {
        if (!(err instanceof DumpInterruptedError) || attempt >= 3) throw err;
      }
    }
  }

  private exchange(type: number, flags: number, payload: Buffer, opts: RequestOptions): Message[] {
    if (this.fd < 0) throw new Error(`${opts.context}: netlink socket is closed`);
    const seq = (this.seq = (this.seq + 1) >>> 0);
    const wire = encodeMessage({ type, flags: flags | NLM_F_REQUEST, seq, pid: 0 }, payload);
    const kernel = Buffer.alloc(SOCKADDR_NL_LEN);
    kernel.writeUInt16LE(AF_NETLINK, 0);
    if (sys.sendto(this.fd, wire, wire.length, 0, kernel, SOCKADDR_NL_LEN) < 0) fail(opts.context, 'sendto');

    const replies: Message[] = [];
    let interrupted = false;
    for (;;) {
      const n = sys.recv(this.fd, this.rx, this.rx.length, MSG_TRUNC);
      if (n < 0) {
        const errno = lastErrno();
        const hint = errno === 11 ? ' (no answer from the kernel in time)' : '';
        throw new NetlinkError(`${opts.context}: recv failed: ${describeErrno(errno)}${hint}`, errno);
      }
      if (n > this.rx.length) {
        throw new Error(`${opts.context}: a netlink reply of ${n} bytes exceeds the ${this.rx.length}-byte buffer`);
      }
      for (const msg of parseMessages(this.rx.subarray(0, n))) {
        // Leftovers of an earlier request that timed out are not ours to interpret.
        if (msg.seq !== seq || (msg.pid !== 0 && msg.pid !== this.portId)) continue;
        if (msg.flags & NLM_F_DUMP_INTR) interrupted = true;
        switch (msg.type) {
          case NLMSG_NOOP:
            continue;
          case NLMSG_OVERRUN:
            throw new Error(`${opts.context}: netlink overrun; the kernel dropped part of the answer, retry`);
          case NLMSG_ERROR: {
            const e = parseError(msg);
            if (e.errno === 0) return replies;
            const kmsg = e.kernelMessage ? `: ${e.kernelMessage}` : '';
            throw new NetlinkError(`${opts.context}: kernel said ${describeErrno(e.errno)}${kmsg}`, e.errno, e.kernelMessage);
          }
          case NLMSG_DONE: {
            // A dump that failed part-way ends with the (negative) errno in NLMSG_DONE.
            const status = msg.payload.length >= 4 ? msg.payload.readInt32LE(0) : 0;
            if (status < 0) throw new NetlinkError(`${opts.context}: dump failed: ${describeErrno(-status)}`, -status);
            if (interrupted) throw new DumpInterruptedError(opts.context);
            return replies;
          }
          default:
            // Copied: the receive buffer is reused by the next recv.
            replies.push({ ...msg, payload: Buffer.from(msg.payload) });
        }
      }
    }
  }

  close(): void {
    if (this.fd >= 0) {
      sys.close(this.fd);
      this.fd = -1;
    }
  }
}
