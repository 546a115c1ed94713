import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as readline from 'node:readline';
import { lockInstance } from '../control/instance-lock.js';

const dir = mkdtempSync(join(tmpdir(), 'xdir-lock-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

test('a second director on the same data path is refused; the lock dies with its holder', async () => {
  const module = new URL('../control/instance-lock.ts', import.meta.url).pathname;
  // The holder is another process, as a second `xdir run` would see the first.
  const holder = spawn(process.execPath, ['--import', 'tsx', '-e',
    `const { lockInstance } = await import(${JSON.stringify(module)}); lockInstance('the XDP pin root', '/p', ${JSON.stringify(dir)}); console.log('locked'); setInterval(() => {}, 1000);`],
  { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    await new Promise<void>((resolve, reject) => {
      readline.createInterface({ input: holder.stdout! }).once('line', () => resolve());
      holder.once('exit', (code) => reject(new Error(`holder exited (${code})`)));
    });
    assert.throws(() => lockInstance('the XDP pin root', '/p', dir), /another xdir is running on the XDP pin root \/p/);
    assert.throws(() => lockInstance('the XDP pin root', '/p/', dir), /another xdir is running on the XDP pin root \/p/, 'another spelling of the same path');
    const other = lockInstance('the XDP pin root', '/q', dir); // another data path is independent
    other.release();
  } finally {
    holder.kill('SIGKILL');
    await new Promise((r) => holder.once('exit', r));
  }
  const mine = lockInstance('the XDP pin root', '/p', dir); // a killed holder leaves no stale lock
  assert.throws(() => lockInstance('the XDP pin root', '/p', dir), /another xdir is running/, 'flock is per open file, even within one process');
  mine.release();
});

test.run();
