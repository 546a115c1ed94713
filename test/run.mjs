#!/usr/bin/env node
// Runs every test file (test/**/*.test.ts) in its own Node process, in a stable order, and ends
// with one plain line `N passed, N failed[, N skipped]` summed over all files.
// Usage: node test/run.mjs [FILTER...]   (a file runs when its path contains any FILTER)
// Env: TEST_TIMEOUT_S (per file, default 600). A file that crashes, times out or prints no uvu
// summary counts as one failure, so a broken file can never pass silently.
import { spawn } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const filters = process.argv.slice(2);
const timeoutMs = Number(process.env.TEST_TIMEOUT_S ?? 600) * 1000;

function find(dir) {
  const out = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...find(p));
    else if (name.endsWith('.test.ts')) out.push(p);
  }
  return out;
}

const files = find(join(root, 'test')).filter(
  (f) => filters.length === 0 || filters.some((x) => relative(root, f).includes(x)),
);

function runFile(file) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', file], {
      cwd: root,
      env: { ...process.env, FORCE_COLOR: '0' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d) => { out += d; process.stdout.write(d); });
    child.stderr.on('data', (d) => { process.stderr.write(d); });
    const timer = setTimeout(() => { out += '\n[test/run] timed out\n'; child.kill('SIGKILL'); }, timeoutMs);
    child.on('close', (code) => { clearTimeout(timer); resolve({ code, out }); });
  });
}

let passed = 0, failed = 0, skipped = 0;
const broken = [];
for (const file of files) {
  const rel = relative(root, file);
  console.log(`\n### ${rel}`);
  const { code, out } = await runFile(file);
  // uvu prints "Total: N / Passed: N / Skipped: N" once per process at exit.
  const clean = out.replace(/\x1b\[[0-9;]*m/g, '');
  const total = [...clean.matchAll(/Total:\s+(\d+)/g)].reduce((a, m) => a + Number(m[1]), 0);
  const ok = [...clean.matchAll(/Passed:\s+(\d+)/g)].reduce((a, m) => a + Number(m[1]), 0);
  const sk = [...clean.matchAll(/Skipped:\s+(\d+)/g)].reduce((a, m) => a + Number(m[1]), 0);
  if (!/Total:\s+\d+/.test(clean)) {
    failed += 1; broken.push(`${rel} (exit ${code}, no summary)`);
    continue;
  }
  passed += ok; skipped += sk; failed += Math.max(0, total - ok);
  if (code !== 0 && total === ok) { failed += 1; broken.push(`${rel} (exit ${code})`); }
  else if (total !== ok) broken.push(`${rel} (${total - ok} failed)`);
}
if (broken.length) console.log(`\nfailing files:\n  ${broken.join('\n  ')}`);
console.log(`\n${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
process.exit(failed > 0 ? 1 : 0);
