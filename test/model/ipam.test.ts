import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  parseAddressRange, parsePool, planAllocations, poolSize, validatePools,
  type Pool, type ServiceClaim,
} from '../../control/model/ipam.js';

function pool(name: string, addresses: string[], extra: Record<string, unknown> = {}): Pool {
  const r = parsePool(name, { addresses, ...extra });
  if ('rejected' in r) throw new Error(r.rejected.message);
  return r.pool;
}

let seq = 0;
function claim(key: string, over: Partial<ServiceClaim> = {}): ServiceClaim {
  seq++;
  return {
    key, namespace: key.split('/')[0]!, labels: {}, families: [4], requireAllFamilies: false,
    requested: [], ports: [{ port: 80, protocol: 'TCP' }], current: [],
    createdAt: `2026-01-01T00:00:${String(seq).padStart(2, '0')}Z`, ...over,
  };
}

const addrs = (plan: ReturnType<typeof planAllocations>, key: string) => plan.allocations.get(key)?.addresses ?? [];

test('CIDRs, ranges and single addresses parse; sizes add up', () => {
  const p = pool('a', ['198.18.0.0/30', '198.18.1.10-198.18.1.12', '198.18.2.1', 'fd00::/126']);
  assert.is(poolSize(p), 4n + 3n + 1n + 4n);
  assert.throws(() => parseAddressRange('198.18.0.1/24'), /host bits set; did you mean 198\.18\.0\.0\/24/);
  assert.throws(() => parseAddressRange('198.18.0.20-198.18.0.10'), /first address is after the last/);
  assert.throws(() => parseAddressRange('198.18.0.1-fd00::1'), /same address family/);
  assert.throws(() => parseAddressRange('198.18.0.0/33'), /prefix length must be 0..32/);
  assert.throws(() => parseAddressRange('banana'), /neither a CIDR/);
});

test('bad pool specs are rejected with a clear message; overlapping pools reject the later one', () => {
  const { pools, rejected } = validatePools([
    { name: 'empty', spec: { addresses: [] } },
    { name: 'nospec', spec: undefined },
    { name: 'bad-cidr', spec: { addresses: ['198.18.0.1/24'] } },
    { name: 'bad-selector', spec: { addresses: ['198.18.9.0/24'], serviceSelector: { matchExpressions: [{ key: 'x', operator: 'In' }] } } },
    { name: 'first', spec: { addresses: ['198.18.0.0/24'] } },
    { name: 'second', spec: { addresses: ['198.18.0.128/25'] } },
    { name: 'self-overlap', spec: { addresses: ['198.18.5.0/24', '198.18.5.10-198.18.5.20'] } },
  ]);
  assert.equal(pools.map((p) => p.name), ['first']);
  const why = Object.fromEntries(rejected.map((r) => [r.name, r.message]));
  assert.match(why.empty!, /spec.addresses must list at least one/);
  assert.match(why.nospec!, /spec is missing/);
  assert.match(why['bad-cidr']!, /did you mean 198\.18\.0\.0\/24/);
  assert.match(why['bad-selector']!, /operator In needs values/);
  assert.match(why.second!, /overlaps IPPool first/);
  assert.match(why['self-overlap']!, /overlaps/);
  assert.is(rejected.find((r) => r.name === 'second')!.reason, 'Overlap');
});

test('auto-assigns lowest free addresses; exhaustion is a problem, not an error', () => {
  const pools = [pool('p', ['198.18.0.10-198.18.0.11'])];
  const plan = planAllocations(pools, [claim('a/one'), claim('a/two'), claim('a/three')]);
  assert.equal(addrs(plan, 'a/one'), ['198.18.0.10']);
  assert.equal(addrs(plan, 'a/two'), ['198.18.0.11']);
  assert.equal(addrs(plan, 'a/three'), []);
  assert.equal(plan.problems.map((p) => [p.key, p.reason]), [['a/three', 'PoolExhausted']]);
  assert.equal(plan.usage, [{ pool: 'p', size: 2n, assigned: 2 }]);
});

test('avoidBuggyIPs skips .0 and .255; autoAssign=false pools only serve requests', () => {
  const distinct = [pool('manual', ['198.18.3.0/24'], { autoAssign: false }), pool('p', ['198.18.0.255', '198.18.2.0/31'], { avoidBuggyIPs: true })];
  const plan = planAllocations(distinct, [claim('a/x'), claim('a/y', { requested: ['198.18.3.7'] })]);
  assert.equal(addrs(plan, 'a/x'), ['198.18.2.1']);
  assert.equal(addrs(plan, 'a/y'), ['198.18.3.7']);
});

test('a requested address that is taken, outside every pool or invalid is reported', () => {
  const pools = [pool('p', ['198.18.0.0/28'])];
  const plan = planAllocations(pools, [
    claim('a/first', { requested: ['198.18.0.5'] }),
    claim('a/second', { requested: ['198.18.0.5'] }),
    claim('a/outside', { requested: ['10.9.9.9'] }),
    claim('a/garbage', { requested: ['not-an-ip'] }),
  ]);
  assert.equal(addrs(plan, 'a/first'), ['198.18.0.5']);
  assert.equal(addrs(plan, 'a/second'), []);
  const reasons = Object.fromEntries(plan.problems.map((p) => [p.key, p]));
  assert.is(reasons['a/second']!.reason, 'RequestedAddressTaken');
  assert.match(reasons['a/second']!.message, /held by a\/first/);
  assert.is(reasons['a/outside']!.reason, 'RequestedAddressNotInPool');
  assert.is(reasons['a/garbage']!.reason, 'RequestedAddressInvalid');
});

test('sharing: same key and disjoint ports share; different key or overlapping ports do not', () => {
  const pools = [pool('p', ['198.18.0.0/29'])];
  const plan = planAllocations(pools, [
    claim('a/web', { sharingKey: 'k', ports: [{ port: 80, protocol: 'TCP' }] }),
    claim('a/dns', { sharingKey: 'k', ports: [{ port: 53, protocol: 'UDP' }] }),
    claim('a/web2', { sharingKey: 'k', ports: [{ port: 80, protocol: 'TCP' }] }),
    claim('a/other', { sharingKey: 'j', ports: [{ port: 443, protocol: 'TCP' }] }),
    claim('a/req-ok', { sharingKey: 'k', requested: ['198.18.0.0'], ports: [{ port: 8080, protocol: 'TCP' }] }),
    claim('a/req-bad', { requested: ['198.18.0.0'], ports: [{ port: 9090, protocol: 'TCP' }] }),
  ]);
  assert.equal(addrs(plan, 'a/web'), ['198.18.0.0']);
  assert.equal(addrs(plan, 'a/dns'), ['198.18.0.0']);
  assert.equal(addrs(plan, 'a/req-ok'), ['198.18.0.0']);
  assert.equal(addrs(plan, 'a/web2'), ['198.18.0.1'], 'overlapping port 80/TCP gets its own address');
  assert.equal(addrs(plan, 'a/other'), ['198.18.0.2']);
  assert.equal(addrs(plan, 'a/req-bad'), []);
  assert.match(plan.problems.find((p) => p.key === 'a/req-bad')!.message, /held by a\/req-ok/);
  assert.is(plan.usage[0]!.assigned, 3);
});

test('restart recovery: status addresses are kept even when auto-assignment would choose differently', () => {
  const pools = [pool('p', ['198.18.0.0/28'])];
  const plan = planAllocations(pools, [
    claim('a/new'),
    claim('a/old', { current: ['198.18.0.9'] }),
  ]);
  assert.equal(addrs(plan, 'a/old'), ['198.18.0.9']);
  assert.equal(addrs(plan, 'a/new'), ['198.18.0.0']);
  assert.equal(plan.problems, []);
});

// The review's case: `prod` serves, someone adds `aaa-test` over the same addresses.
const older = '2026-01-01T00:00:00Z', newer = '2026-03-01T00:00:00Z';
const prodSpec = { addresses: ['198.18.0.0/28'] };

test('overlap: the newer pool is rejected whatever its name, and the older one keeps serving', () => {
  const { pools, rejected } = validatePools([
    { name: 'prod', spec: prodSpec, createdAt: older },
    { name: 'aaa-test', spec: { addresses: ['198.18.0.8/29'] }, createdAt: newer },
    { name: 'zzz-other', spec: { addresses: ['198.18.7.0/30'] }, createdAt: newer },
  ]);
  assert.equal(pools.map((p) => p.name), ['prod', 'zzz-other'], 'valid pools come back in name order');
  assert.equal(rejected.map((r) => [r.name, r.reason, r.overlaps]), [['aaa-test', 'Overlap', 'prod']]);
  assert.match(rejected[0]!.message, /IPPool aaa-test overlaps IPPool prod \(198\.18\.0\.8\/29 and 198\.18\.0\.0\/28; prod is older/);
  assert.match(rejected[0]!.message, /change aaa-test's addresses or delete it/);

  const plan = planAllocations(pools, [
    claim('shop/web', { current: ['198.18.0.9'] }),
    claim('shop/new'),
  ], rejected);
  assert.equal(addrs(plan, 'shop/web'), ['198.18.0.9'], 'the VIP in the overlapped range stays');
  assert.equal(addrs(plan, 'shop/new'), ['198.18.0.0'], 'prod keeps handing out addresses');
  assert.equal(plan.problems, []);
  assert.equal(plan.usage.find((u) => u.pool === 'prod'), { pool: 'prod', size: 16n, assigned: 2 });

  // Same second: the name decides, but the loser's held addresses still stay (frozen).
  const tie = validatePools([
    { name: 'prod', spec: prodSpec, createdAt: older },
    { name: 'aaa-test', spec: { addresses: ['198.18.0.8/29'], namespaces: ['test'] }, createdAt: older },
  ]);
  assert.equal(tie.pools.map((p) => p.name), ['aaa-test']);
  assert.match(tie.rejected[0]!.message, /aaa-test was created in the same second and sorts first by name/);
  const tiePlan = planAllocations(tie.pools, [claim('shop/web', { current: ['198.18.0.9'] })], tie.rejected);
  assert.equal(addrs(tiePlan, 'shop/web'), ['198.18.0.9']);
  assert.equal(tiePlan.problems.map((p) => p.reason), ['AddressFrozen']);
  assert.match(tiePlan.problems[0]!.message, /IPPool prod, which is rejected \(Overlap: overlaps IPPool aaa-test\)/);
});

test('a Service whose pool became invalid or was deleted keeps its address (frozen, reported)', () => {
  // prod edited into something invalid: rejected, but what Services hold in it stays.
  const broken = validatePools([{ name: 'prod', spec: { addresses: ['198.18.0.0/28', '198.18.9.1/24'] }, createdAt: older }]);
  assert.equal(broken.pools, []);
  assert.is(broken.rejected[0]!.reason, 'InvalidSpec');
  let plan = planAllocations(broken.pools, [claim('shop/web', { current: ['198.18.0.5'] })], broken.rejected);
  assert.equal(addrs(plan, 'shop/web'), ['198.18.0.5']);
  assert.equal(plan.problems.map((p) => [p.key, p.reason]), [['shop/web', 'AddressFrozen']]);
  assert.match(plan.problems[0]!.message, /198\.18\.0\.5 lies in IPPool prod, which is rejected \(InvalidSpec\).*keeps it/);

  // prod deleted outright: the address stays as long as the Service exists.
  const other = [pool('other', ['198.18.4.0/30'])];
  plan = planAllocations(other, [claim('shop/web', { current: ['198.18.0.5'] }), claim('shop/new')]);
  assert.equal(addrs(plan, 'shop/web'), ['198.18.0.5']);
  assert.equal(addrs(plan, 'shop/new'), ['198.18.4.0']);
  assert.equal(plan.problems.map((p) => [p.key, p.reason]), [['shop/web', 'AddressFrozen']]);
  assert.match(plan.problems[0]!.message, /lies in no IPPool \(its pool was deleted/);

  // Deliberate changes still move it: a request for a valid address, or deleting the Service.
  plan = planAllocations(other, [claim('shop/web', { current: ['198.18.0.5'], requested: ['198.18.4.2'] })]);
  assert.equal(addrs(plan, 'shop/web'), ['198.18.4.2']);
  assert.equal(plan.problems, []);
  // A pool edited so it no longer serves the Service (a selector typo is bad input too): frozen as well.
  plan = planAllocations([pool('prod', ['198.18.0.0/28'], { namespaces: ['elsewhere'] })], [claim('shop/web', { current: ['198.18.0.5'] }), claim('elsewhere/new')]);
  assert.equal(addrs(plan, 'shop/web'), ['198.18.0.5']);
  assert.equal(addrs(plan, 'elsewhere/new'), ['198.18.0.0']);
  assert.equal(plan.problems.map((p) => [p.key, p.reason]), [['shop/web', 'AddressFrozen']]);
  assert.match(plan.problems[0]!.message, /IPPool prod, which does not serve shop\/web/);
});

test('nothing new is allocated from a rejected pool: not automatically, on request, or by sharing', () => {
  const { pools, rejected } = validatePools([
    { name: 'prod', spec: prodSpec, createdAt: older },
    { name: 'test', spec: { addresses: ['198.18.0.12/30', '198.18.5.0/30'] }, createdAt: newer },
  ]);
  assert.equal(pools.map((p) => p.name), ['prod']);
  const frozenOnly = planAllocations([], [
    claim('a/held', { current: ['198.18.5.1'], sharingKey: 'k', ports: [{ port: 80, protocol: 'TCP' }] }),
    claim('a/auto'),
    claim('a/req', { requested: ['198.18.5.2'] }),
    claim('a/share', { sharingKey: 'k', ports: [{ port: 443, protocol: 'TCP' }] }),
  ], rejected);
  assert.equal(addrs(frozenOnly, 'a/held'), ['198.18.5.1']);
  assert.equal(addrs(frozenOnly, 'a/auto'), []);
  assert.equal(addrs(frozenOnly, 'a/req'), []);
  assert.equal(addrs(frozenOnly, 'a/share'), [], 'a frozen address is not shared out either');
  const why = Object.fromEntries(frozenOnly.problems.map((p) => [p.key, p]));
  assert.is(why['a/held']!.reason, 'AddressFrozen');
  assert.is(why['a/auto']!.reason, 'NoMatchingPool');
  assert.is(why['a/req']!.reason, 'RequestedAddressNotInPool');
  assert.match(why['a/req']!.message, /IPPool test is rejected: Overlap/);
  assert.is(why['a/share']!.reason, 'NoMatchingPool');

  // A frozen address inside a valid pool's range is never handed to anyone else.
  const shopOnly = validatePools([
    { name: 'prod', spec: { addresses: ['198.18.0.12/30'], namespaces: ['shop'] }, createdAt: older },
    { name: 'test', spec: { addresses: ['198.18.0.12/31'] }, createdAt: newer },
  ]);
  const plan = planAllocations(shopOnly.pools, [claim('shop/a'), claim('lab/old', { current: ['198.18.0.12'] })], shopOnly.rejected);
  assert.equal(addrs(plan, 'lab/old'), ['198.18.0.12'], 'prod does not serve lab, but the rejected test pool held it: frozen');
  assert.equal(addrs(plan, 'shop/a'), ['198.18.0.13']);
  assert.equal(plan.problems.map((p) => [p.key, p.reason]), [['lab/old', 'AddressFrozen']]);
});

test('two Services claiming one address in status: the older keeps it, the newer moves', () => {
  const pools = [pool('p', ['198.18.0.0/30'])];
  const plan = planAllocations(pools, [
    claim('a/younger', { current: ['198.18.0.1'], createdAt: '2026-02-01T00:00:00Z' }),
    claim('a/older', { current: ['198.18.0.1'], createdAt: '2026-01-01T00:00:00Z' }),
  ]);
  assert.equal(addrs(plan, 'a/older'), ['198.18.0.1']);
  assert.equal(addrs(plan, 'a/younger'), ['198.18.0.0']);
  assert.equal(plan.problems.map((p) => p.reason), ['AddressConflict']);
});

test('a changed request moves the Service; deleting a Service releases its address', () => {
  const pools = [pool('p', ['198.18.0.0/30'])];
  const plan = planAllocations(pools, [claim('a/s', { current: ['198.18.0.0'], requested: ['198.18.0.2'] })]);
  assert.equal(addrs(plan, 'a/s'), ['198.18.0.2']);
  const after = planAllocations(pools, [claim('a/t')]);
  assert.equal(addrs(after, 'a/t'), ['198.18.0.0']);
});

test('IPv6 and dual stack: RequireDualStack needs both families, Prefer takes what exists', () => {
  const v6only = [pool('v6', ['fd00::10-fd00::11'])];
  const both = [pool('v4', ['198.18.0.0/31']), pool('v6', ['fd00::/127'])];
  let plan = planAllocations(v6only, [claim('a/six', { families: [6] })]);
  assert.equal(addrs(plan, 'a/six'), ['fd00::10']);
  plan = planAllocations(both, [claim('a/dual', { families: [6, 4], requireAllFamilies: true })]);
  assert.equal(addrs(plan, 'a/dual'), ['fd00::', '198.18.0.0']);
  plan = planAllocations(v6only, [claim('a/need-both', { families: [4, 6], requireAllFamilies: true })]);
  assert.equal(addrs(plan, 'a/need-both'), [], 'no IPv4 pool: RequireDualStack gets nothing');
  assert.is(plan.problems[0]!.reason, 'NoMatchingPool');
  plan = planAllocations(v6only, [claim('a/req6', { families: [6], requested: ['FD00:0::11'] })]);
  assert.equal(addrs(plan, 'a/req6'), ['fd00::11'], 'requested IPv6 text is canonicalised');
});

test('namespaces and serviceSelector decide who may draw from a pool', () => {
  const pools = [
    pool('a-team', ['198.18.0.0/31'], { namespaces: ['team-a'] }),
    pool('gold', ['198.18.1.0/31'], { serviceSelector: { matchLabels: { tier: 'gold' } } }),
  ];
  const plan = planAllocations(pools, [
    claim('team-a/s'),
    claim('team-b/gold', { labels: { tier: 'gold' } }),
    claim('team-b/plain'),
  ]);
  assert.equal(addrs(plan, 'team-a/s'), ['198.18.0.0']);
  assert.equal(addrs(plan, 'team-b/gold'), ['198.18.1.0']);
  assert.equal(addrs(plan, 'team-b/plain'), []);
  assert.is(plan.problems[0]!.reason, 'NoMatchingPool');
});

test('planning is deterministic whatever order claims arrive in', () => {
  const pools = [pool('p', ['198.18.0.0/24'])];
  const claims = Array.from({ length: 50 }, (_, i) => claim(`ns/s${i}`));
  const a = planAllocations(pools, claims);
  const b = planAllocations(pools, [...claims].reverse());
  for (const c of claims) assert.equal(addrs(a, c.key), addrs(b, c.key));
  assert.is(new Set([...a.allocations.values()].map((x) => x.addresses[0])).size, 50);
});

test.run();
