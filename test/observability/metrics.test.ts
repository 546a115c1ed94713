import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { startObservability, type Observability } from '../../control/observability/index.js';
import { FakeDataplane } from './fake-dataplane.js';

const dp = new FakeDataplane();
const web = dp.addService('198.18.0.10', 80, 'tcp', { '198.18.1.1': 1, '198.18.1.2': 1 });
dp.addService('fd00::10', 0, 'udp', { 'fd00::1:1': 1 });
let ready = false;
let obs: Observability;

test.before(async () => {
  obs = await startObservability({
    dataplane: dp, readiness: () => ready, poll: false, grpc: false, metrics: { address: '127.0.0.1:0' },
    fallbackReason: () => undefined,
    controlPlane: () => ({ applies: 7, applyFailures: 2, lastAppliedAtMs: 1_700_000_000_000, rejectedInputs: 1 }),
  });
});

test('control-plane health: applies, failures, rejected inputs and the last success', async () => {
  const { body } = await get('/metrics');
  assert.is(sample(body, 'xdir_applies_total'), 7);
  assert.is(sample(body, 'xdir_apply_failures_total'), 2);
  assert.is(sample(body, 'xdir_source_rejections_total'), 1);
  assert.is(sample(body, 'xdir_last_apply_success_timestamp_seconds'), 1_700_000_000);
});
test.after(() => obs.stop());

async function get(path: string): Promise<{ status: number; body: string; type: string | null }> {
  const res = await fetch(obs.metricsUrl + path);
  return { status: res.status, body: await res.text(), type: res.headers.get('content-type') };
}

function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(series + ' '));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

test('/metrics exports the data-path counters of the latest reading, with Prometheus names', async () => {
  dp.forward(web, '198.18.1.2', 42, 1500);
  dp.drop('drop-fragment', 3);
  dp.advance(1000);
  await obs.hub.tick();
  const { status, body, type } = await get('/metrics');
  assert.is(status, 200);
  assert.match(type ?? '', /^text\/plain; version=0\.0\.4/);
  assert.is(sample(body, 'xdir_service_packets_total{vip="198.18.0.10",port="80",protocol="tcp"}'), 42);
  assert.is(sample(body, 'xdir_service_bytes_total{vip="198.18.0.10",port="80",protocol="tcp"}'), 63000);
  assert.is(sample(body, 'xdir_service_packets_total{vip="fd00::10",port="0",protocol="udp"}'), 0);
  assert.is(sample(body, 'xdir_backend_packets_total{backend="198.18.1.2"}'), 42);
  assert.is(sample(body, 'xdir_packets_by_reason_total{reason="drop-fragment"}'), 3);
  assert.is(sample(body, 'xdir_dataplane_info{dataplane="xdp"}'), 1);
  assert.is(sample(body, 'xdir_dataplane_fallback'), 0);
  assert.is(sample(body, 'xdir_stats_reads_total'), 1);
  assert.is(sample(body, 'xdir_grpc_watch_subscribers'), 0);
  assert.ok(sample(body, 'process_resident_memory_bytes')! > 0, 'process metrics');
});

test('a scrape does not read the data path', async () => {
  const reads = dp.reads;
  await get('/metrics');
  await get('/metrics');
  assert.is(dp.reads, reads);
});

test('promtool check metrics passes on the /metrics output', async () => {
  const { body } = await get('/metrics');
  const r = spawnSync('promtool', ['check', 'metrics'], { input: body, encoding: 'utf8' });
  assert.is(r.error, undefined, 'promtool must be installed (Debian package prometheus)');
  assert.is(r.status, 0, `promtool: ${r.stdout}${r.stderr}`);
});

test('/healthz answers while /readyz follows readiness', async () => {
  assert.equal((await get('/healthz')).status, 200);
  const notReady = await get('/readyz');
  assert.is(notReady.status, 503);
  assert.match(notReady.body, /not ready/);
  ready = true;
  assert.is((await get('/readyz')).status, 200);
  assert.is((await get('/nope')).status, 404);
});

test('the default metrics address is loopback', async () => {
  const { DEFAULT_METRICS_ADDRESS } = await import('../../control/observability/metrics/http-server.js');
  assert.is(DEFAULT_METRICS_ADDRESS, '127.0.0.1:9469');
});

test.run();
