import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  CONN_F_DROUTE, SVC_F_PERSISTENT, SVC_F_SCHED_MH_PORT, decodeService, ipvsServiceKey, serviceAttrs,
} from '../../control/dataplane/ipvs/codec.js';
import { planIpvs, toIpvsSpec, type IpvsServiceSpec } from '../../control/dataplane/ipvs/plan.js';
import { Attrs } from '../../control/netlink/message.js';
import { serviceKey, type VirtualService } from '../../control/model/types.js';

const web: VirtualService = {
  vip: '198.18.1.10', port: 80, protocol: 'tcp', scheduler: 'mh', persistence: 0,
  backends: [{ address: '198.18.0.11', weight: 1 }, { address: '198.18.0.12', weight: 0 }],
};

function specs(...list: VirtualService[]): Map<string, IpvsServiceSpec> {
  return new Map(list.map((v) => [serviceKey(v), toIpvsSpec(v)]));
}

test('a service becomes DR destinations on the service port; weight 0 stays 0 (draining)', () => {
  const s = toIpvsSpec(web);
  assert.is(s.key, 'tcp/198.18.1.10:80');
  assert.equal([...s.dests.values()].map((d) => [d.address, d.port, d.forward, d.weight]),
    [['198.18.0.11', 80, CONN_F_DROUTE, 1], ['198.18.0.12', 80, CONN_F_DROUTE, 0]]);
});

test('mh hashes ports too unless persistence asks for client affinity (as XDP does)', () => {
  assert.is(toIpvsSpec(web).service.flags, SVC_F_SCHED_MH_PORT);
  const sticky = toIpvsSpec({ ...web, persistence: 300 }).service;
  assert.is(sticky.flags, SVC_F_PERSISTENT);
  assert.is(sticky.timeout, 300);
  assert.is(toIpvsSpec({ ...web, scheduler: 'rr' }).service.flags, 0);
});

test('all ports (port 0) is programmed persistent, as IPVS requires, with the smallest timeout when none is set', () => {
  const all = toIpvsSpec({ ...web, port: 0, scheduler: 'lc' });
  assert.is(all.service.flags & SVC_F_PERSISTENT, SVC_F_PERSISTENT);
  assert.is(all.service.timeout, 1);
  assert.is(toIpvsSpec({ ...web, port: 0, persistence: 90 }).service.timeout, 90);
  assert.is([...all.dests.values()][0]!.port, 0);
});

test('IPv6 services carry a /128 persistence granularity; IPv4 a /32 mask', () => {
  assert.is(toIpvsSpec(web).service.netmask, 0xffffffff);
  assert.is(toIpvsSpec({ ...web, vip: 'fd00:19::10', backends: [{ address: 'fd00:18::11', weight: 1 }] }).service.netmask, 128);
});

test('the service attributes round-trip through the codec, port in network order, key = serviceKey', () => {
  const s = toIpvsSpec({ ...web, vip: 'fd00:19::10', persistence: 60, backends: [] }).service;
  const wire = serviceAttrs(s).toBuffer();
  const back = decodeService(Attrs.parse(wire));
  assert.equal({ ...back, stats: undefined, peName: undefined }, { ...s, stats: undefined, peName: undefined });
  assert.is(ipvsServiceKey(back), 'tcp/[fd00:19::10]:80');
  // The port sits big-endian in its attribute: 80 = 0x0050.
  assert.ok(wire.includes(Buffer.from([6, 0, 4, 0, 0x00, 0x50])));
});

test('plan: a new service is created with its destinations', () => {
  const p = planIpvs(specs(web), new Map());
  assert.equal(p.added, ['tcp/198.18.1.10:80']);
  assert.equal(p.ops.map((o) => o.op), ['add-service', 'add-dest', 'add-dest']);
});

test('plan: nothing to do when IPVS already matches', () => {
  const p = planIpvs(specs(web), specs(web));
  assert.equal(p.ops, []);
  assert.equal(p.unchanged, ['tcp/198.18.1.10:80']);
});

test('plan: only differences, new destinations before removed ones, deleted services last', () => {
  const dns: VirtualService = { ...web, port: 53, protocol: 'udp', scheduler: 'wrr' };
  const next: VirtualService = { ...web, scheduler: 'rr', backends: [{ address: '198.18.0.11', weight: 5 }, { address: '198.18.0.13', weight: 1 }] };
  const p = planIpvs(specs(next), specs(web, dns));
  assert.equal(p.ops.map((o) => `${o.op}${'dest' in o ? ` ${o.dest.address}` : ''}`), [
    'edit-service', 'edit-dest 198.18.0.11', 'add-dest 198.18.0.13', 'delete-dest 198.18.0.12', 'delete-service',
  ]);
  assert.equal([p.updated, p.removed], [['tcp/198.18.1.10:80'], ['udp/198.18.1.10:53']]);
});

test('plan: a key held by someone else is a conflict, never touched; a kept key is never removed', () => {
  const p = planIpvs(specs(web), new Map(), new Set(['tcp/198.18.1.10:80']));
  assert.equal(p.ops, []);
  assert.equal(p.conflicts, ['tcp/198.18.1.10:80']);
  const q = planIpvs(new Map(), specs(web), new Set(), new Set(['tcp/198.18.1.10:80']));
  assert.equal(q.ops, []);
  assert.equal(q.unchanged, ['tcp/198.18.1.10:80']);
});

test.run();
