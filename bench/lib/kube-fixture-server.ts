/**
 * The API server fixture as a separate process for bench/control.ts, so the director's time and
 * memory are measured apart from the server's. Serves N LoadBalancer Services
 * (externalTrafficPolicy Local), each with one EndpointSlice of E endpoints spread over NODES nodes,
 * and the IPPool they were allocated from (VIPs already in status, as a restarted director finds
 * them; with --unallocated the director allocates them itself).
 *
 * stdout: `ready URL` once; then, per stdin line `change I`, it moves one endpoint of Service I to
 * another node (the data path must reweight) and prints `changed I T` with T the wall-clock time
 * in ms (performance.timeOrigin + performance.now()) just before the write.
 *
 * Usage: node --import tsx bench/lib/kube-fixture-server.ts N [--unallocated]
 */
import { readFileSync } from 'node:fs';
import * as readline from 'node:readline';
import { FakeKubeApiServer } from '../../test/lib/kube-apiserver.js';

export const NODES = 10;
export const ENDPOINTS = 10;

const n = Number(process.argv[2]);
const allocated = !process.argv.includes('--unallocated');
if (!Number.isInteger(n) || n <= 0 || n > 60_000) {
  console.error('usage: kube-fixture-server.ts N [--unallocated]   (1 <= N <= 60000)');
  process.exit(2);
}

export function vipOf(i: number): string {
  return `198.18.${i >> 8}.${i & 0xff}`;
}

const server = await FakeKubeApiServer.start();
server.registerCrd(readFileSync(new URL('../../deploy/ippool-crd.yaml', import.meta.url), 'utf8'));
server.apply({ apiVersion: 'xdir.io/v1alpha1', kind: 'IPPool', metadata: { name: 'bench' }, spec: { addresses: ['198.18.0.0/16'] } });
for (let k = 0; k < NODES; k++) {
  server.apply({
    apiVersion: 'v1', kind: 'Node', metadata: { name: `node-${k}` },
    status: { addresses: [{ type: 'InternalIP', address: `198.19.0.${k + 1}` }], conditions: [{ type: 'Ready', status: 'True' }] },
  });
}
/** Endpoint j of Service i runs on node (i + j + shift[i]) mod NODES. */
const shift = new Uint16Array(n);
const slice = (i: number) => ({
  apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice',
  metadata: { namespace: `ns-${i % 100}`, name: `svc-${i}-abcde`, labels: { 'kubernetes.io/service-name': `svc-${i}` } },
  addressType: 'IPv4',
  ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
  endpoints: Array.from({ length: ENDPOINTS }, (_, j) => ({
    addresses: [`10.${(i >> 8) & 0xff}.${i & 0xff}.${j + 1}`],
    nodeName: `node-${(i + (j < 2 ? j + shift[i]! : j)) % NODES}`,
    conditions: { ready: true, serving: true, terminating: false },
  })),
});
for (let i = 0; i < n; i++) {
  server.apply({
    apiVersion: 'v1', kind: 'Service',
    metadata: { namespace: `ns-${i % 100}`, name: `svc-${i}` },
    spec: { type: 'LoadBalancer', loadBalancerClass: 'xdir.io/director', externalTrafficPolicy: 'Local', ports: [{ name: 'http', port: 80, protocol: 'TCP', targetPort: 8080 }] },
    ...(allocated ? { status: { loadBalancer: { ingress: [{ ip: vipOf(i), ipMode: 'VIP' }] } } } : {}),
  });
  server.apply(slice(i));
}
console.log(`ready ${server.url}`);

readline.createInterface({ input: process.stdin }).on('line', (line) => {
  const m = /^change (\d+)$/.exec(line.trim());
  if (!m) return;
  const i = Number(m[1]);
  shift[i] = (shift[i]! + 1) % 7;
  const at = performance.timeOrigin + performance.now();
  server.apply(slice(i));
  console.log(`changed ${i} ${at}`);
});
process.stdin.on('end', () => { void server.close().then(() => process.exit(0)); });
