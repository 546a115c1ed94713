/**
 * Attaching an XDP program to an interface (libbpf's netlink path: the attachment belongs to the
 * interface, not to this process, so it survives our exit and a restart can take over).
 * A running program is replaced with XDP_FLAGS_REPLACE, so there is never a moment without one.
 */
import { constants } from 'node:os';
import { logger } from '../log.js';
import { BpfError, PRIVILEGE_HINT, errnoName, fromErrno } from './errors.js';
import { OPTS, libbpf, libcFns, opts } from './libbpf.js';
import { installLibbpfPrint, warningMark, warningsSince } from './print.js';
import type { BpfProgram } from './program.js';

export { XDP_ACTION } from './program.js';

export type XdpMode = 'native' | 'generic';

const log = logger('bpf');

const XDP_FLAGS_SKB_MODE = 1 << 1;
const XDP_FLAGS_DRV_MODE = 1 << 2;
const XDP_FLAGS_REPLACE = 1 << 4;
const MODE_FLAGS: Record<XdpMode, number> = { native: XDP_FLAGS_DRV_MODE, generic: XDP_FLAGS_SKB_MODE };
const XDP_ATTACHED = { NONE: 0, DRV: 1, SKB: 2, HW: 3, MULTI: 4 } as const;

const { EOPNOTSUPP, EINVAL, EEXIST, EPERM, ENODEV, EBUSY } = constants.errno;

/** ifindex of `ifname` in this process's network namespace. */
export function ifindexOf(ifname: string): number {
  const ifindex = libcFns.if_nametoindex(ifname) as number;
  if (!ifindex) {
    throw new BpfError(`no interface named ${ifname} in this network namespace`, {
      errno: ENODEV, hint: 'check the name with `ip link`',
    });
  }
  return ifindex;
}

interface XdpState { attachMode: number; progId: number; drvProgId: number; skbProgId: number }

function queryState(ifname: string, ifindex: number): XdpState {
  const q = OPTS.xdpQuery;
  const buf = opts(q.size);
  const ret = libbpf.bpf_xdp_query(ifindex, 0, buf) as number;
  if (ret < 0) throw fromErrno(`querying XDP on ${ifname}`, ret);
  return {
    attachMode: buf.readUInt8(q.attachMode),
    progId: buf.readUInt32LE(q.progId),
    drvProgId: buf.readUInt32LE(q.drvProgId),
    skbProgId: buf.readUInt32LE(q.skbProgId),
  };
}

/** The XDP program on `ifname` and its mode, or null when there is none. */
export function queryXdp(ifname: string): { progId: number; mode: XdpMode } | null {
  const s = queryState(ifname, ifindexOf(ifname));
  if (s.drvProgId) return { progId: s.drvProgId, mode: 'native' };
  if (s.skbProgId) return { progId: s.skbProgId, mode: 'generic' };
  if (s.attachMode === XDP_ATTACHED.HW && s.progId) return { progId: s.progId, mode: 'native' };
  return null;
}

function attachedIn(s: XdpState, mode: XdpMode): number {
  return mode === 'native' ? s.drvProgId : s.skbProgId;
}

/** One attach in `mode`, replacing what runs there now; returns 0 or a negative errno. */
function attachOnce(ifindex: number, s: XdpState, prog: BpfProgram, mode: XdpMode): number {
  const attachOpts = opts(OPTS.xdpAttach.size);
  let flags = MODE_FLAGS[mode];
  let oldFd = -1;
  const oldId = attachedIn(s, mode);
  if (oldId) {
    oldFd = libbpf.bpf_prog_get_fd_by_id(oldId) as number;
    if (oldFd >= 0) {
      flags |= XDP_FLAGS_REPLACE;
      attachOpts.writeInt32LE(oldFd, OPTS.xdpAttach.oldProgFd);
    }
  }
  try {
    return libbpf.bpf_xdp_attach(ifindex, prog.fd, flags, attachOpts) as number;
  } finally {
    if (oldFd >= 0) libcFns.close(oldFd);
  }
}

/** Attach in `mode`; a replace that lost a race with another attacher is retried once. */
function attachInMode(ifname: string, ifindex: number, prog: BpfProgram, mode: XdpMode): number {
  let ret = attachOnce(ifindex, queryState(ifname, ifindex), prog, mode);
  if (ret === -EEXIST) {
    const s = queryState(ifname, ifindex);
    if (!attachedIn(s, otherMode(mode))) ret = attachOnce(ifindex, s, prog, mode);
  }
  return ret;
}

function otherMode(mode: XdpMode): XdpMode {
  return mode === 'native' ? 'generic' : 'native';
}

/** The kernel's own words (netlink extended ack) for the last failed attach, if libbpf printed them. */
function kernelSays(mark: number): string {
  const said = warningsSince(mark).map((l) => /Kernel error message: (.*)/.exec(l)?.[1]).filter(Boolean);
  return said.length ? ` (kernel: ${said[said.length - 1]})` : '';
}

function attachError(ifname: string, mode: XdpMode, ret: number, ifindex: number, mark: number): BpfError {
  const errno = -ret;
  const what = `cannot attach XDP to ${ifname} in ${mode} mode${kernelSays(mark)}`;
  if (errno === EPERM) return new BpfError(`${what}: ${errnoName(errno)}`, { errno, hint: PRIVILEGE_HINT });
  if (mode === 'native' && (errno === EOPNOTSUPP || errno === EINVAL)) {
    const kernel = kernelSays(mark);
    const why = !kernel || /not support XDP/i.test(kernel) ? `driver lacks native XDP${kernel}` : `native XDP refused${kernel}`;
    return new BpfError(`cannot attach XDP to ${ifname}: ${why}`, {
      errno, hint: 'retry with --xdp-mode=generic',
    });
  }
  if (errno === EEXIST || errno === EBUSY) {
    const other = attachedIn(queryState(ifname, ifindex), otherMode(mode));
    if (other) {
      return new BpfError(`${what}: program id ${other} is attached in ${otherMode(mode)} mode`, {
        errno, hint: `retry with --xdp-mode=${otherMode(mode)}, or detach it first (\`ip link set dev ${ifname} xdp off\`)`,
      });
    }
  }
  return fromErrno(what, ret);
}

/**
 * Attaches `prog` to `ifname`, replacing a program already there without a gap. 'auto' tries
 * native and falls back to generic when the driver cannot run XDP itself (fellBack = true).
 */
export function attachXdp(ifname: string, prog: BpfProgram, o: { mode: XdpMode | 'auto' }): { mode: XdpMode; fellBack: boolean } {
  const ifindex = ifindexOf(ifname);
  installLibbpfPrint();
  let mark = warningMark();
  if (o.mode !== 'auto') {
    const ret = attachInMode(ifname, ifindex, prog, o.mode);
    if (ret < 0) throw attachError(ifname, o.mode, ret, ifindex, mark);
    return { mode: o.mode, fellBack: false };
  }
  const native = attachInMode(ifname, ifindex, prog, 'native');
  if (native === 0) return { mode: 'native', fellBack: false };
  // EEXIST: a program runs in generic mode (the kernel allows one mode at a time): stay generic.
  if (native !== -EOPNOTSUPP && native !== -EINVAL && native !== -EEXIST) throw attachError(ifname, 'native', native, ifindex, mark);
  const nativeWhy = `${errnoName(-native)}${kernelSays(mark)}`;
  mark = warningMark();
  const generic = attachInMode(ifname, ifindex, prog, 'generic');
  if (generic < 0) throw attachError(ifname, 'generic', generic, ifindex, mark);
  log.warn({ ifname, nativeError: nativeWhy }, native === -EEXIST
    ? 'a program already runs in generic mode; replaced it in generic mode'
    : 'native XDP not available; attached in generic mode (slower)');
  return { mode: 'generic', fellBack: true };
}

/** Removes the XDP program from `ifname` (whatever its mode); nothing to do when there is none. */
export function detachXdp(ifname: string): void {
  const ifindex = ifindexOf(ifname);
  const s = queryState(ifname, ifindex);
  for (const mode of ['native', 'generic'] as const) {
    if (!attachedIn(s, mode)) continue;
    const ret = libbpf.bpf_xdp_detach(ifindex, MODE_FLAGS[mode], null) as number;
    if (ret < 0) throw fromErrno(`detaching XDP (${mode}) from ${ifname}`, ret);
  }
}
