/**
 * The IPVS fallback must not need libbpf: `xdir run --dataplane ipvs` on a host without libbpf1
 * gets as far as IPVS, and `auto` says that libbpf is missing and how to get it. libbpf is hidden
 * from the director in a private mount namespace (`unshare -m`), where /dev/null is bind-mounted
 * over the library file; the host's own file system is not changed.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { privilegedTest } from '../lib/privileged.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'xdir-run-ipvs-'));
const config = join(dir, 'services.yaml');
writeFileSync(config, 'services: []\n');

/** Where the dynamic loader finds libbpf.so.1 on this host. */
function libbpfPath(): string {
  const out = spawnSync('ldconfig', ['-p'], { encoding: 'utf8' }).stdout ?? '';
  const m = /libbpf\.so\.1 \(libc6,x86-64\) => (\S+)/.exec(out);
  if (!m) throw new Error('libbpf.so.1 is not in the loader cache; run `make deps`');
  return realpathSync(m[1]!);
}

/**
 * Runs `xdir run ARGS` with libbpf hidden; the director stops by itself (SIGTERM after 15 s if a
 * kernel with IPVS lets it start), and the combined output is returned.
 */
function runWithoutLibbpf(args: string[]): { status: number | null; output: string } {
  const cli = ['node', '--import', 'tsx', join(ROOT, 'control/cli.ts'), 'run', ...args,
    '--config', config, '--ipvs-state-file', join(dir, 'ipvs.json'), '--no-metrics', '--no-grpc'];
  const quoted = cli.map((a) => `'${a}'`).join(' ');
  const script = `mount --bind /dev/null '${libbpfPath()}' && exec timeout -s TERM 15 ${quoted}`;
  const r = spawnSync('unshare', ['-m', '--propagation', 'private', 'sh', '-c', script],
    { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, output: `${r.stdout}${r.stderr}` };
}

privilegedTest('--dataplane ipvs runs without libbpf: it never loads it', () => {
  const { output } = runWithoutLibbpf(['--dataplane', 'ipvs']);
  assert.not.match(output, /cannot load libbpf|shared library/i, output);
  // This host either has IPVS (the director ran) or says what IPVS lacks: either way, past libbpf.
  assert.match(output, /IPVS is not available|director running/, output);
});

privilegedTest('--dataplane auto without libbpf names the missing library and the way out', () => {
  const { output } = runWithoutLibbpf(['--dataplane', 'auto', '--interface', 'lo', '--pin-root', join('/sys/fs/bpf', `xdir-test-run-ipvs-${process.pid}`)]);
  assert.match(output, /cannot load libbpf for the XDP data path/, output);
  assert.match(output, /apt-get install libbpf1/, output);
  assert.match(output, /--dataplane=ipvs/, output);
});

test.after(() => rmSync(dir, { recursive: true, force: true }));
test.run();
