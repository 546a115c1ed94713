/**
 * One director per data path: two processes programming the same pinned maps (or the same IPVS
 * ownership file) would hand out ids independently and corrupt each other's rings. Each data path
 * a director will touch is locked with flock(2) on a file under /run/xdir/locks; the kernel drops
 * the lock when the process dies, however it dies, so a crash never leaves a stale lock behind.
 */
import { closeSync, mkdirSync, openSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join, resolve as resolvePath } from 'node:path';
import { describeErrno, errnoValue, lastErrno, sys } from './netlink/libc.js';

const LOCK_EX = 2;
const LOCK_NB = 4;
const LOCK_DIR = '/run/xdir/locks';

export interface InstanceLock {
  release(): void;
}

/**
 * Takes the lock of the data path at `path` (`what` names its kind, e.g. "the XDP pin root") or
 * throws saying another director holds it. The path is resolved first, so `/sys/fs/bpf/x/`,
 * `/sys/fs/bpf/x` and a relative spelling of it share one lock.
 */
export function lockInstance(kind: string, path: string, dir = LOCK_DIR): InstanceLock {
  const what = `${kind} ${resolvePath(path)}`;
  mkdirSync(dir, { recursive: true, mode: 0o750 });
  const lockPath = join(dir, `${createHash('sha256').update(what).digest('hex').slice(0, 16)}.lock`);
  const fd = openSync(lockPath, 'w', 0o640);
  if (sys.flock(fd, LOCK_EX | LOCK_NB) !== 0) {
    const errno = lastErrno();
    closeSync(fd);
    if (errno === errnoValue('EWOULDBLOCK')) {
      throw new Error(`another xdir is running on ${what} (lock ${lockPath} is held); stop it first: two directors on one data path corrupt each other's state`);
    }
    throw new Error(`cannot lock ${lockPath} for ${what}: ${describeErrno(errno)}`);
  }
  return { release: () => closeSync(fd) };
}
