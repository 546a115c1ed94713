/**
 * Compiles a one-file BPF program with the flags of `make bpf` (warnings are errors), for the test
 * and bench fixtures that are not part of the build. Used by test/lib/topology.ts,
 * bench/datapath.ts and bench/lib/forwarding-bed.ts.
 */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const BPF_INCLUDE = fileURLToPath(new URL('../../bpf/', import.meta.url));

/** clang arguments for `source` -> `out`, with extra -D defines. */
export function bpfCompileArgs(source: string, out: string, defines: readonly string[] = []): string[] {
  return [
    '-O2', '-g', '-Wall', '-Werror', '-target', 'bpf', '-D__TARGET_ARCH_x86', '-I', BPF_INCLUDE,
    '-I', '/usr/include/x86_64-linux-gnu', ...defines.map((d) => `-D${d}`), '-c', source, '-o', out,
  ];
}

export const CLANG = process.env.CLANG ?? 'clang';

/** Compiles `source` to `out`; the error says what to install. */
export async function compileBpf(source: string, out: string, defines: readonly string[] = []): Promise<string> {
  try {
    await promisify(execFile)(CLANG, bpfCompileArgs(source, out, defines));
  } catch (err) {
    throw new Error(`cannot compile ${source} with clang: ${(err as Error).message}; install clang (\`make apt\`) or set CLANG`);
  }
  return out;
}
