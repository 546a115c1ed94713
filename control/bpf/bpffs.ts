/**
 * bpffs: where pinned maps live. Pinning into a directory that is not on a bpf filesystem fails
 * with an obscure errno, so the loader checks first and says how to fix it.
 */
import { existsSync, mkdirSync, statfsSync } from 'node:fs';
import { dirname } from 'node:path';
import { constants } from 'node:os';
import { BpfError, fromErrno } from './errors.js';
import { koffi, libcFns } from './libbpf.js';

export const BPF_FS_MAGIC = 0xcafe4a11;
export const DEFAULT_BPFFS = '/sys/fs/bpf';

/** The message for a pin root that is not on bpffs, with the command that fixes it. */
export function bpffsMissingMessage(pinRoot: string): string {
  if (pinRoot === DEFAULT_BPFFS || pinRoot.startsWith(`${DEFAULT_BPFFS}/`)) {
    return `bpffs is not mounted at ${DEFAULT_BPFFS}; mount it with \`mount -t bpf bpf ${DEFAULT_BPFFS}\``;
  }
  return `pin root ${pinRoot} is not on a bpf filesystem; use a directory under ${DEFAULT_BPFFS}, ` +
    `or mount bpffs at it with \`mount -t bpf bpf ${pinRoot}\``;
}

/** The nearest existing directory at or above `path`. */
function nearestExisting(path: string): string {
  let p = path;
  while (!existsSync(p) && dirname(p) !== p) p = dirname(p);
  return p;
}

export function isBpffs(path: string): boolean {
  return statfsSync(nearestExisting(path)).type === BPF_FS_MAGIC;
}

/** Throws a BpfError unless `pinRoot` is (or would be created) on bpffs; then creates it. */
export function preparePinRoot(pinRoot: string): void {
  if (!isBpffs(pinRoot)) throw new BpfError(bpffsMissingMessage(pinRoot), { errno: constants.errno.ENOTDIR });
  mkdirSync(pinRoot, { recursive: true });
}

/**
 * Mounts bpffs at `mountPoint` when nothing bpf is mounted there (needs root). Used by `xdir run`
 * before loading, so a fresh host works without a manual mount.
 */
export function ensureBpffs(mountPoint = DEFAULT_BPFFS): void {
  if (existsSync(mountPoint) && isBpffs(mountPoint)) return;
  mkdirSync(mountPoint, { recursive: true });
  const ret = libcFns.mount('bpf', mountPoint, 'bpf', 0, null) as number;
  if (ret !== 0) {
    throw fromErrno(`mounting bpffs at ${mountPoint}`, -koffi.errno(), `mount it by hand with \`mount -t bpf bpf ${mountPoint}\``);
  }
}
