/**
 * Observability wired through `xdir run`, end to end: the director runs in the topology's director
 * namespace with a config file; `xdir status` (a separate process) reads it over the unix socket,
 * a real grpc-js Watch stream sees real UDP traffic counted exactly, and the Prometheus endpoint
 * (on the namespace's own loopback) passes promtool and reports the VIP's counter and readiness.
 * One topology (1 client, 2 real servers).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { e2eFixture } from '../lib/e2e-fixture.js';
import { CLI, DirectorProcess, directorGrpcTarget, writeConfig } from '../lib/director.js';
import { sendCountedDatagrams } from '../lib/counted-udp.js';
import { run } from '../lib/netns.js';
import { StreamCollector, directorClient, waitFor } from '../observability/grpc-helpers.js';
import { serviceKey } from '../../control/model/types.js';
import type { StatsSnapshotMsg } from '../../control/observability/grpc/proto.js';

const fx = e2eFixture(test, { tmpPrefix: 'xdir-e2e-obs-', servers: 2 });
const { ptest } = fx;
const FLOWS = 10;
const PER_FLOW = 5;
const BURST = FLOWS * PER_FLOW;
/** The default metrics address: loopback of the director's namespace, which only that namespace reaches. */
const METRICS = 'http://127.0.0.1:9469';

let target: string;

fx.before(async () => {
  const config = join(fx.dir, 'xdir.yaml');
  writeConfig(config, fx.t, [{ server: 'rs1' }, { server: 'rs2' }]);
  fx.director = await DirectorProcess.start(fx.t, { config, xdpMode: 'native' });
  target = directorGrpcTarget(fx.t);
});

/** curl inside the director's namespace; returns the body (or, with `statusOnly`, the HTTP status). */
async function curlInDirector(path: string, statusOnly = false): Promise<string> {
  const args = ['curl', '-s', '--max-time', '5', ...(statusOnly ? ['-o', '/dev/null', '-w', '%{http_code}'] : []), `${METRICS}${path}`];
  return (await fx.t.exec(fx.t.director, args)).stdout;
}

ptest('xdir status (its own process) lists the configured VIPs, backends and the xdp data path', async () => {
  const { stdout } = await run(process.execPath, ['--import', 'tsx', CLI, 'status', '--grpc', target]);
  assert.match(stdout, /^data path: xdp\n/, stdout);
  const line = (start: string): string => stdout.split('\n').find((l) => l.trimStart().startsWith(start)) ?? '';
  for (const fam of [4, 6] as const) {
    const vip = fam === 4 ? fx.t.vip4 : fx.t.vip6;
    for (const [protocol, port] of [['tcp', 80], ['udp', 53]] as const) {
      assert.match(line(serviceKey({ vip, port, protocol })), /\s2 backends\s/, `${vip} ${protocol}/${port} listed:\n${stdout}`);
    }
    for (const s of fx.t.servers) {
      assert.match(line(fam === 4 ? s.ipv4 : s.ipv6), /\s1\s+active\s/, `backend ${s.name} (IPv${fam}) listed, weight 1, active:\n${stdout}`);
    }
  }
});

const total = (s: StatsSnapshotMsg, key: string): bigint => BigInt(s.services.find((x) => x.key === key)?.total.packets ?? '0');

for (const fam of [4, 6] as const) {
  ptest(`IPv${fam}: a grpc-js Watch stream sees the VIP counter rise by exactly the datagrams sent`, async () => {
    const vip = fam === 4 ? fx.t.vip4 : fx.t.vip6;
    const key = serviceKey({ vip, port: 53, protocol: 'udp' });
    const client = directorClient(target);
    const w = new StreamCollector(client.Watch({ interval_ms: 100, vips: [vip] }));
    try {
      await w.until(1);
      const before = w.got.at(-1)!;
      assert.is(before.data_path, 'DATA_PATH_XDP');
      assert.ok(before.services.some((s) => s.key === key), `the stream lists ${key}: ${before.services.map((s) => s.key).join(', ')}`);
      const { sent, replies } = await sendCountedDatagrams(fx.t, fx.t.clients[0]!, vip, { flows: FLOWS, perFlow: PER_FLOW });
      assert.is(sent, BURST);
      assert.is(replies, BURST, 'every datagram answered by a real server');
      // A snapshot holding the whole burst, then one more reading: the counter must not move further.
      await waitFor('a snapshot with the burst', () => total(w.got.at(-1)!, key) - total(before, key) >= BigInt(BURST));
      await w.until(w.got.length + 1);
      assert.is(total(w.got.at(-1)!, key) - total(before, key), BigInt(BURST), `${key} counter`);
    } finally {
      w.stream.cancel();
      client.close();
    }
  });
}

ptest('/metrics in the director namespace passes promtool and counts the VIP; /readyz is 200', async () => {
  assert.is(await curlInDirector('/readyz', true), '200', 'ready once the director runs');
  assert.is(await curlInDirector('/healthz', true), '200');
  const body = await curlInDirector('/metrics');
  const check = spawnSync('promtool', ['check', 'metrics'], { input: body, encoding: 'utf8' });
  assert.is(check.error, undefined, 'promtool must be installed (Debian package prometheus)');
  assert.is(check.status, 0, `promtool: ${check.stdout}${check.stderr}`);
  assert.match(body, /^xdir_dataplane_info\{dataplane="xdp"\} 1$/m);
  for (const vip of [fx.t.vip4, fx.t.vip6]) {
    const series = body.split('\n').find((l) => l.startsWith('xdir_service_packets_total{')
      && l.includes(`vip="${vip}"`) && l.includes('port="53"') && l.includes('protocol="udp"'));
    assert.ok(series, `xdir_service_packets_total for udp ${vip}:53 in:\n${body.split('\n').filter((l) => l.startsWith('xdir_service')).join('\n')}`);
    // The Watch tests sent BURST datagrams to each VIP; a scrape serves the hub's latest reading.
    assert.ok(Number(series.split(' ').at(-1)) >= BURST, `counter holds the datagrams sent: ${series}`);
  }
});

test.run();
