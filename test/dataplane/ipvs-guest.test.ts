/**
 * The IPVS data path on a kernel that has IPVS (the host's has none): boots the guest VM once
 * (test/guest/run-in-guest.sh: Debian's kernel under qemu, the host's files read-only) and runs
 * test/guest/ipvs-suite.ts inside it. The guest's uvu summary is printed here, so test/run.mjs
 * counts its tests; this file adds one test of its own: the guest ran and the suite exited 0.
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

privilegedTest('the IPVS guest boots and its suite passes (its own uvu summary is printed above)', async () => {
  // Inside the repo whatever the cache dir, so the bundle's npm imports resolve from node_modules.
  const out = join(root, '.cache', 'guest-bundle', 'ipvs-suite.mjs');
  mkdirSync(join(root, '.cache', 'guest-bundle'), { recursive: true });
  await bundleForGuest(join(root, 'test/guest/ipvs-suite.ts'), out);
  const { code, output } = await runInGuest(`node --enable-source-maps ${relative(root, out)}`);
  assert.match(output, /Total:\s+\d+/, 'the guest suite printed a summary');
  assert.is(code, 0, 'the guest suite exited 0');
});

test.run();
