import { encodeStatsSnapshot } from './control/observability/grpc/snapshot-codec.js';
import { buildSnapshot } from './control/observability/snapshot.js';
import { directorServiceDefinition } from './control/observability/grpc/proto.js';
import type { StatsSample, ServiceStatus, Counter } from './control/dataplane/dataplane.js';
const services = new Map<string, Counter>(); const backends = new Map<string, Counter>(); const st: ServiceStatus[] = [];
for (let i = 0; i < 10000; i++) { const key = `tcp/[fd00:18::${i.toString(16)}]:80`; services.set(key, { packets: 123456n, bytes: 99999999n });
  const bs = []; for (let j = 0; j < 10; j++) { const a = `fd00:19::${(i*10+j).toString(16)}`; backends.set(a, { packets: 5n, bytes: 500n }); bs.push({ address: a, weight: 1, state: 'active' as const }); }
  st.push({ key, vip: `fd00:18::${i.toString(16)}`, port: 80, protocol: 'tcp', scheduler: 'mh', persistence: 0, backends: bs }); }
const s1: StatsSample = { takenAtMs: 1000, dataplane: 'xdp', services, backends, reasons: new Map() };
const s2: StatsSample = { ...s1, takenAtMs: 2000 };

for (let k = 0; k < 3; k++) {
  let t = performance.now(); const snap = buildSnapshot({ current: s2, baseline: s1, services: st, vips: [] }); const b = performance.now() - t;
  t = performance.now(); const buf = encodeStatsSnapshot(snap); const e = performance.now() - t;
  console.log(`build ${b.toFixed(0)} ms, encode ${e.toFixed(0)} ms, ${buf.length} bytes`);
}
