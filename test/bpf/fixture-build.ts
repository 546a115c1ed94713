/**
 * Compiles a test BPF object from test/bpf/fixtures/<name>.bpf.c into a temporary directory, with
 * the same flags as `make bpf`, so the loader tests never run against a stale object.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../..', import.meta.url));
let outDir: string | undefined;

export function buildFixture(name: string): string {
  if (!outDir) {
    outDir = mkdtempSync(join(tmpdir(), 'xdir-bpf-fixture-'));
    chmodSync(outDir, 0o755); // readable by the unprivileged child of the EPERM test
  }
  const out = join(outDir, `${name}.bpf.o`);
  execFileSync(process.env.CLANG ?? 'clang', [
    '-O2', '-g', '-Wall', '-Werror', '-target', 'bpf', '-D__TARGET_ARCH_x86', '-I', join(root, 'bpf'),
    '-I', '/usr/include/x86_64-linux-gnu', '-c', join(root, 'test/bpf/fixtures', `${name}.bpf.c`), '-o', out,
  ], { stdio: ['ignore', 'ignore', 'inherit'] });
  return out;
}

export function removeFixtures(): void {
  if (outDir) rmSync(outDir, { recursive: true, force: true });
  outDir = undefined;
}

/** A fresh pin root under /sys/fs/bpf, unique to this run. */
export function testPinRoot(): string {
  return `/sys/fs/bpf/xdir-test-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
}
