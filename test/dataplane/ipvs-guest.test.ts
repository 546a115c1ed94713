/**
 * The IPVS data path on a kernel that has IPVS (the host's has none): boots the guest VM once
 * (test/guest/run-in-guest.sh: Debian's kernel under qemu, the host's files read-only) and runs
 * test/guest/ipvs-suite.ts inside it, then test/guest/xdp-suite.ts (the XDP program on that older
 * kernel). The guest's uvu summaries are printed here, so test/run.mjs counts their tests; this
 * file adds one test of its own: the guest ran and both suites exited 0.
 * `make test-ipvs` runs exactly this file.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { bundleForGuest } from '../guest/bundle.js';
import { privilegedTest } from '../lib/privileged.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const cacheDir = process.env.XDIR_GUEST_CACHE ?? join(root, '.cache', 'ipvs-guest');

function runInGuest(command: string): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(join(root, 'test/guest/run-in-guest.sh'), [command], {
      cwd: root, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, XDIR_GUEST_CACHE: cacheDir, GUEST_TIMEOUT: process.env.GUEST_TIMEOUT ?? '480' },
    });
    let output = '';
    child.stdout.on('data', (d) => { output += d; process.stdout.write(d); });
    child.stderr.on('data', (d) => { output += d; process.stderr.write(d); });
    child.on('close', (code) => resolve({ code, output }));
  });
}

privilegedTest('the IPVS guest boots and its suites pass (their own uvu summaries are printed above)', async () => {
  // Inside the repo whatever the cache dir, so the bundles' npm imports resolve from node_modules.
  const dir = join(root, '.cache', 'guest-bundle');
  mkdirSync(dir, { recursive: true });
  const suites = ['ipvs-suite', 'xdp-suite'];
  for (const s of suites) await bundleForGuest(join(root, `test/guest/${s}.ts`), join(dir, `${s}.mjs`));
  // Both run whatever the first's result; the exit code is non-zero if either failed.
  const command = suites.map((s) => `node --enable-source-maps ${relative(root, join(dir, `${s}.mjs`))} || rc=1`).join('; ');
  const { code, output } = await runInGuest(`rc=0; ${command}; exit $rc`);
  assert.is([...output.matchAll(/Total:\s+\d+/g)].length, suites.length, 'each guest suite printed a summary');
  assert.is(code, 0, 'the guest suites exited 0');
});

test.run();
