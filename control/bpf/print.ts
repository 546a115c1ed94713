/**
 * Routes libbpf's own messages (printf-style, through libbpf_set_print) to our logger, and keeps
 * the recent warnings so a failed load can quote them: libbpf says which program or map failed.
 */
import { logger } from '../log.js';
import { LIBBPF_DEBUG, LIBBPF_WARN, koffi, libbpf, libcFns, LibbpfPrintFn } from './libbpf.js';

const log = logger('libbpf');
const MAX_KEPT = 200;
const kept: { seq: number; line: string }[] = [];
let seq = 0;
let installed = false;
const lineBuf = Buffer.alloc(8192);

function onPrint(level: number, fmt: string, ap: bigint): number {
  const n = libcFns.vsnprintf(lineBuf, lineBuf.length, fmt, ap) as number;
  const text = lineBuf.toString('utf8', 0, Math.max(0, Math.min(n, lineBuf.length - 1))).trimEnd();
  if (level === LIBBPF_WARN) {
    for (const line of text.split('\n')) kept.push({ seq: seq++, line });
    if (kept.length > MAX_KEPT) kept.splice(0, kept.length - MAX_KEPT);
  }
  if (level !== LIBBPF_DEBUG) log.debug({ libbpfLevel: level === LIBBPF_WARN ? 'warn' : 'info' }, text);
  return 0;
}

/** Installs the print callback once per process. The callback lives as long as the process. */
export function installLibbpfPrint(): void {
  if (installed) return;
  installed = true;
  const cb = koffi.register(onPrint, koffi.pointer(LibbpfPrintFn));
  libbpf.libbpf_set_print(cb);
}

/** A marker for `warningsSince`. */
export function warningMark(): number {
  return seq;
}

/** libbpf warnings printed after `mark` (best effort: the buffer is bounded). */
export function warningsSince(mark: number): string[] {
  return kept.filter((k) => k.seq >= mark).map((k) => k.line);
}
