import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { pino } from 'pino';
import { Reconciler } from '../control/reconciler.js';
import type { ApplyResult } from '../control/dataplane/dataplane.js';
import type { DesiredState } from '../control/model/types.js';
import { waitFor } from './lib/netns.js';

const quiet = pino({ level: 'silent' });
const RESULT: ApplyResult = { servicesAdded: 1, servicesUpdated: 0, servicesRemoved: 0, servicesUnchanged: 0 };

function state(n: number): DesiredState {
  return { services: [{ vip: '198.19.0.10', port: n, protocol: 'tcp', scheduler: 'mh', persistence: 0, backends: [] }] };
}

/** A data path that records what it is asked to apply, can be held mid-apply, and can be made to fail. */
class RecordingDataplane {
  applied: number[] = [];
  concurrent = 0;
  maxConcurrent = 0;
  failNext = 0;
  gate: Promise<void> = Promise.resolve();
  async apply(s: DesiredState): Promise<ApplyResult> {
    this.concurrent++;
    this.maxConcurrent = Math.max(this.maxConcurrent, this.concurrent);
    try {
      await this.gate;
      if (this.failNext > 0) { this.failNext--; throw new Error('map update failed: ENOSPC'); }
      this.applied.push(s.services[0]!.port);
      return RESULT;
    } finally {
      this.concurrent--;
    }
  }
}

test('a burst of submits while an apply is in flight applies only the newest, never concurrently', async () => {
  const dp = new RecordingDataplane();
  let release!: () => void;
  dp.gate = new Promise((r) => { release = r; });
  const r = new Reconciler({ dataplane: dp, log: quiet, resyncMs: 0 });
  r.start();
  r.submit(state(1));
  await waitFor('first apply in flight', () => dp.concurrent === 1);
  for (let i = 2; i <= 50; i++) r.submit(state(i));
  release();
  await r.idle();
  assert.equal(dp.applied, [1, 50]);
  assert.is(dp.maxConcurrent, 1);
  assert.is(r.status.coalesced, 48);
  await r.stop();
});

test('coalesced states merge their deltas, so the applied delta starts at the last applied state', async () => {
  const seen: DesiredState[] = [];
  let release!: () => void;
  const gate = new Promise<void>((r) => { release = r; });
  const dp = { apply: async (s: DesiredState) => { seen.push(s); if (seen.length === 1) await gate; return RESULT; } };
  const r = new Reconciler({ dataplane: dp, log: quiet, resyncMs: 0 });
  r.start();
  const vs = (port: number) => ({ vip: '198.19.0.10', port, protocol: 'tcp' as const, scheduler: 'mh' as const, persistence: 0, backends: [] });
  r.submit({ services: [vs(1)], revision: 1 });
  await waitFor('the first apply to start', () => seen.length === 1);
  r.submit({ services: [vs(1), vs(2)], revision: 2, delta: { since: 1, changes: new Map([['tcp/198.19.0.10:2', vs(2)]]) } });
  r.submit({ services: [vs(2), vs(3)], revision: 3, delta: { since: 2, changes: new Map([['tcp/198.19.0.10:1', null], ['tcp/198.19.0.10:3', vs(3)]]) } });
  release();
  await r.idle();
  assert.is(seen.length, 2, 'state 2 was coalesced into 3');
  assert.is(seen[1]!.revision, 3);
  assert.is(seen[1]!.delta?.since, 1);
  assert.equal([...seen[1]!.delta!.changes.keys()].sort(), ['tcp/198.19.0.10:1', 'tcp/198.19.0.10:2', 'tcp/198.19.0.10:3']);
  // A state whose delta does not follow the skipped one loses its delta (the data path diffs all).
  let release2!: () => void;
  const gate2 = new Promise<void>((res) => { release2 = res; });
  dp.apply = async (s: DesiredState) => { seen.push(s); if (seen.length === 3) await gate2; return RESULT; };
  r.submit({ services: [vs(4)], revision: 4, delta: { since: 3, changes: new Map([['tcp/198.19.0.10:4', vs(4)]]) } });
  await waitFor('the third apply to start', () => seen.length === 3);
  r.submit({ services: [vs(5)], revision: 6 });
  r.submit({ services: [vs(5), vs(7)], revision: 7, delta: { since: 6, changes: new Map([['tcp/198.19.0.10:7', vs(7)]]) } });
  release2();
  await r.idle();
  assert.is(seen[3]!.revision, 7);
  assert.is(seen[3]!.delta, undefined);
  await r.stop();
});

test('a failed apply is retried until it succeeds; a newer state replaces the failing one', async () => {
  const dp = new RecordingDataplane();
  dp.failNext = 3;
  const errors: number[] = [];
  const r = new Reconciler({ dataplane: dp, log: quiet, resyncMs: 0, retryBaseMs: 5, retryMaxMs: 20,
    onApplyError: (_e, delay) => errors.push(delay) });
  r.start();
  r.submit(state(7));
  await r.idle();
  assert.equal(dp.applied, [7]);
  assert.equal(errors, [5, 10, 20], 'backoff doubles and is capped');
  assert.is(r.status.failures, 3);
  assert.is(r.status.lastError, undefined);

  dp.failNext = 1000;
  r.submit(state(8));
  await waitFor('a failure', () => r.status.failures > 3);
  dp.failNext = 0;
  r.submit(state(9));
  await r.idle();
  assert.equal(dp.applied.at(-1), 9);
  assert.not.ok(dp.applied.includes(8), 'the failing state is dropped once a newer one exists');
  await r.stop();
});

test('resync re-applies the last good state periodically', async () => {
  const dp = new RecordingDataplane();
  const r = new Reconciler({ dataplane: dp, log: quiet, resyncMs: 10 });
  r.start();
  r.submit(state(3));
  await waitFor('resyncs', () => dp.applied.length >= 3);
  assert.ok(dp.applied.every((p) => p === 3));
  await r.stop();
  const n = dp.applied.length;
  await new Promise((res) => setTimeout(res, 40));
  assert.is(dp.applied.length, n, 'nothing is applied after stop');
});

/** Records repair() and apply() calls in order; repair can be made to fail. */
class RepairingDataplane extends RecordingDataplane {
  calls: string[] = [];
  repairFailures = 0;
  async repair(): Promise<void> {
    this.calls.push('repair');
    if (this.repairFailures > 0) { this.repairFailures--; throw new Error('reading the maps failed: EPERM'); }
  }
  override apply(s: DesiredState): Promise<ApplyResult> {
    this.calls.push(`apply ${s.services[0]!.port}`);
    return super.apply(s);
  }
}

test('the periodic resync calls repair() just before re-applying; a failed repair still re-applies', async () => {
  const dp = new RepairingDataplane();
  dp.repairFailures = 1;
  const r = new Reconciler({ dataplane: dp, log: quiet, resyncMs: 10 });
  r.start();
  r.submit(state(3));
  await waitFor('resyncs', () => dp.calls.filter((c) => c === 'repair').length >= 3 && dp.calls.at(-1) !== 'repair');
  await r.stop();
  assert.is(dp.calls[0], 'apply 3', 'a submitted state is applied without a repair');
  dp.calls.forEach((c, i) => {
    if (c === 'repair') assert.is(dp.calls[i + 1], 'apply 3', `call ${i}: every repair is followed by the re-apply`);
    else if (i > 0) assert.is(dp.calls[i - 1], 'repair', `call ${i}: every re-apply follows a repair`);
  });
  assert.is(dp.repairFailures, 0, 'the failing repair was the first one');
  assert.is(r.status.failures, 0);
});

test('submits never call repair()', async () => {
  const dp = new RepairingDataplane();
  const r = new Reconciler({ dataplane: dp, log: quiet, resyncMs: 0 });
  r.start();
  for (let i = 1; i <= 5; i++) { r.submit(state(i)); await r.idle(); }
  await r.stop();
  assert.equal(dp.calls, ['apply 1', 'apply 2', 'apply 3', 'apply 4', 'apply 5']);
});

test.run();
