/**
 * BpfError: every failure of the loader, with what failed, the errno, and what to do next.
 * libbpf 1.x returns negative errno values (libbpf_strict); `fromErrno` turns them into messages.
 */
import { constants } from 'node:os';

export class BpfError extends Error {
  readonly errno?: number;
  readonly hint?: string;
  readonly verifierLog?: string;

  constructor(message: string, o: { errno?: number; hint?: string; verifierLog?: string } = {}) {
    super(o.hint ? `${message}; ${o.hint}` : message);
    this.name = 'BpfError';
    this.errno = o.errno;
    this.hint = o.hint;
    this.verifierLog = o.verifierLog;
  }
}

export const ENOTSUPP = 524; // kernel-internal "operation not supported", leaks out of some bpf() commands
const errnoNames = new Map<number, string>(
  Object.entries(constants.errno).map(([name, n]) => [n, name]),
);
errnoNames.set(ENOTSUPP, 'ENOTSUPP');

export function errnoName(errno: number): string {
  return errnoNames.get(Math.abs(errno)) ?? `errno ${Math.abs(errno)}`;
}

export const PRIVILEGE_HINT = 'run as root or grant CAP_BPF and CAP_NET_ADMIN';

/** Next step for errnos that mean the same thing whatever the operation. */
function genericHint(errno: number): string | undefined {
  switch (errno) {
    case constants.errno.EPERM:
      return PRIVILEGE_HINT;
    case constants.errno.ENOMEM:
      return 'the kernel could not allocate the map or program; lower the map sizes or raise RLIMIT_MEMLOCK / memcg limits';
    default:
      return undefined;
  }
}

/**
 * A BpfError for a failed call that returned `ret` (negative errno). `what` names the operation
 * and its subject, e.g. "update of map 'vips'".
 */
export function fromErrno(what: string, ret: number, hint?: string): BpfError {
  const errno = Math.abs(ret);
  return new BpfError(`${what} failed: ${errnoName(errno)}`, { errno, hint: hint ?? genericHint(errno) });
}

/** Throws fromErrno(...) when `ret` is negative; returns it otherwise. */
export function check(what: string, ret: number, hint?: string): number {
  if (ret < 0) throw fromErrno(what, ret, hint);
  return ret;
}

/** The last `lines` lines of a verifier log: the reason for a rejection is at its end. */
export function logTail(log: string, lines = 40): string {
  const all = log.replace(/\0.*$/s, '').trimEnd().split('\n');
  return all.slice(-lines).join('\n');
}
