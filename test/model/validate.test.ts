import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { canonicalAddress, formatAddress, parseAddress } from '../../control/model/address.js';
import { validateDesiredState, formatValidationError, ValidationMemo } from '../../control/model/validate.js';
import { serviceKey, type DesiredState, type VirtualService } from '../../control/model/types.js';

function svc(over: Partial<VirtualService> & Record<string, unknown> = {}): VirtualService {
  return {
    vip: '198.18.0.10', port: 80, protocol: 'tcp', scheduler: 'mh', persistence: 0,
    backends: [{ address: '198.18.1.1', weight: 1 }],
    ...over,
  } as VirtualService;
}

test('IPv6 text is canonicalised to RFC 5952', () => {
  const cases: [string, string][] = [
    ['FD00:0000:0000:0000:0000:0000:0000:0010', 'fd00::10'],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'], // first of two equal runs
    ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'], // one zero group is not shortened
    ['2001:0db8::0001', '2001:db8::1'],
    ['::', '::'],
    ['::1', '::1'],
    ['1::', '1::'],
    ['fd00:0:0:1::', 'fd00:0:0:1::'],
    ['::ffff:198.18.0.1', '::ffff:198.18.0.1'],
    ['::FFFF:C612:0001', '::ffff:198.18.0.1'],
    ['fd00::198.18.0.1', 'fd00::c612:1'],
  ];
  for (const [input, want] of cases) assert.is(canonicalAddress(input), want, input);
  assert.is(canonicalAddress('198.18.0.1'), '198.18.0.1');
  for (const bad of ['198.18.0.256', '01.2.3.4', '198.18.0', 'fe80::1%eth0', '[fd00::1]', 'fd00::/8', '1:2:3:4:5:6:7:8:9', '', ' 1.2.3.4', 'fd00:::1']) {
    assert.is(canonicalAddress(bad), null, bad);
  }
});

test('address bytes round-trip in network order', () => {
  assert.equal(Array.from(parseAddress('198.18.0.1')!.bytes), [198, 18, 0, 1]);
  const v6 = parseAddress('fd00::1:2')!;
  assert.is(v6.family, 6);
  assert.equal(Array.from(v6.bytes), [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 2]);
  assert.is(formatAddress(v6.bytes), 'fd00::1:2');
});

test('a valid state comes back canonical', () => {
  const { state, errors } = validateDesiredState({
    services: [
      svc({ vip: 'FD00::0010', port: 53, protocol: 'udp', backends: [{ address: 'fd00:0::2', weight: 3, mac: 'AA-BB-CC-00-11-22' }] }),
      svc({ scheduler: undefined, persistence: undefined } as never),
    ],
  });
  assert.equal(errors, []);
  assert.equal(state.services[0], {
    vip: 'fd00::10', port: 53, protocol: 'udp', scheduler: 'mh', persistence: 0,
    backends: [{ address: 'fd00::2', weight: 3, mac: 'aa:bb:cc:00:11:22' }],
  });
  assert.is(state.services[1]!.scheduler, 'mh');
  assert.is(state.services[1]!.persistence, 0);
});

test('each kind of bad input drops only its service, with a message naming it', () => {
  const good = svc({ port: 443, origin: 'file:x.yaml:1' });
  const bad: [VirtualService, RegExp][] = [
    [svc({ vip: '198.18.0.300' }), /VIP "198.18.0.300" is not an IPv4 or IPv6 address/],
    [svc({ port: 70000 }), /port 70000 is not an integer 0\.\.65535/],
    [svc({ port: 8.5 }), /port 8.5/],
    [svc({ protocol: 'sctp' as never }), /protocol "sctp" is not tcp or udp/],
    [svc({ scheduler: 'fancy' as never }), /scheduler "fancy"/],
    [svc({ persistence: -1 }), /persistence -1/],
    [svc({ backends: [{ address: 'fd00::1', weight: 1 }] }), /backend fd00::1 is IPv6 but the VIP is IPv4/],
    [svc({ backends: [{ address: '198.18.1.1', weight: 65536 }] }), /weight 65536 is not an integer 0\.\.65535/],
    [svc({ backends: [{ address: '198.18.1.1', weight: -1 }] }), /weight -1/],
    [svc({ backends: [{ address: '198.18.1.1', weight: '1' as never }] }), /weight "1"/],
    [svc({ backends: [{ address: 'backend-1', weight: 1 }] }), /backend #1: "backend-1" is not an IPv4 or IPv6 address/],
    [svc({ backends: [{ address: '198.18.1.1', weight: 1, mac: 'zz' }] }), /MAC "zz"/],
    [svc({ backends: [{ address: '198.18.1.1', weight: 1, mac: '01:00:5e:00:00:01' }] }), /multicast/],
    [svc({ backends: [{ address: '198.18.1.1', weight: 1 }, { address: '198.18.1.1', weight: 2 }] }), /backend 198\.18\.1\.1 is listed twice/],
    [svc({ vip: 'fd00::10', backends: [{ address: 'fd00::1', weight: 1 }, { address: 'FD00:0::0001', weight: 1 }] }), /backend fd00::1 is listed twice/],
  ];
  for (const [b, re] of bad) {
    const { state, errors } = validateDesiredState({ services: [good, b] });
    assert.is(state.services.length, 1, String(re));
    assert.is(state.services[0]!.port, 443);
    assert.is(errors.length, 1, String(re));
    assert.match(errors[0]!.message, re);
    assert.match(errors[0]!.message, /skipped until fixed/);
  }
  const { errors } = validateDesiredState({ services: [svc({ port: 8080, backends: [{ address: 'x', weight: 1 }] })] });
  assert.is(errors[0]!.service, 'tcp/198.18.0.10:8080');
  assert.is(errors[0]!.key, 'tcp/198.18.0.10:8080', 'the key lets a data path keep the last good version');
  const { errors: e2 } = validateDesiredState({ services: [svc({ vip: 'nope' })] });
  assert.is(e2[0]!.service, 'service #1');
  assert.is(e2[0]!.key, undefined);
});

test('a duplicate service (same key after canonicalisation) is refused; the first is kept', () => {
  const { state, errors } = validateDesiredState({
    services: [
      svc({ vip: 'fd00::10', backends: [{ address: 'fd00::1', weight: 1 }], origin: 'file:a.yaml:3' }),
      svc({ vip: 'fd00:0::010', backends: [{ address: 'fd00::2', weight: 1 }], origin: 'kube:ns/web' }),
    ],
  });
  assert.is(state.services.length, 1);
  assert.is(state.services[0]!.backends[0]!.address, 'fd00::1');
  assert.is(errors.length, 1);
  assert.is(errors[0]!.service, 'tcp/[fd00::10]:80');
  assert.is(errors[0]!.origin, 'kube:ns/web');
  assert.is(errors[0]!.key, undefined, 'the first definition stays in the state; nothing to retain');
  assert.match(errors[0]!.message, /duplicate service tcp\/\[fd00::10\]:80 \(first defined at file:a\.yaml:3\)/);
  assert.match(formatValidationError(errors[0]!), /^tcp\/\[fd00::10\]:80 \(kube:ns\/web\): duplicate/);
  // Same VIP and port, other protocol: a different service.
  const ok = validateDesiredState({ services: [svc(), svc({ protocol: 'udp' })] });
  assert.is(ok.state.services.length, 2);
});

test('garbage input is reported, not thrown', () => {
  assert.is(validateDesiredState({} as never).errors.length, 1);
  const r = validateDesiredState({ services: [null, 5, svc({ backends: 'x' as never })] as never });
  assert.is(r.state.services.length, 0);
  assert.is(r.errors.length, 3);
});

test('a state with a delta validates from its changes alone, with the same result as a full pass', () => {
  const memo = new ValidationMemo();
  const byKey = new Map<string, VirtualService>();
  let revision = 1;
  const key = (i: number) => serviceKey({ vip: `198.18.0.${i}`, port: 80, protocol: 'tcp' });
  const make = (i: number, v: number): VirtualService => (v % 5 === 4
    ? svc({ vip: `198.18.0.${i}`, backends: [{ address: 'nope', weight: 1 }], origin: `o${i}` }) // rejected, keyed
    : svc({ vip: `198.18.0.${i}`, backends: [{ address: `198.18.1.${v % 250}`, weight: v % 3 }] }));
  for (let i = 0; i < 20; i++) byKey.set(key(i), make(i, i));
  const first = validateDesiredState({ services: [...byKey.values()], revision }, memo);
  assert.is(memo.deltaCalls, 0);
  let prevValid = new Map(first.state.services.map((s) => [serviceKey(s), s]));
  let seed = 7;
  const rnd = (n: number) => { seed = (seed * 1103515245 + 12345) % 2 ** 31; return seed % n; };
  for (let step = 0; step < 200; step++) {
    const changes = new Map<string, VirtualService | null>();
    for (let c = rnd(3) + 1; c > 0; c--) {
      const i = rnd(30);
      const next = rnd(6) === 0 ? null : make(i, rnd(1000));
      if (next) byKey.set(key(i), next); else byKey.delete(key(i));
      changes.set(key(i), next);
    }
    const input: DesiredState = { services: [...byKey.values()], revision: revision + 1, delta: { since: revision, changes } };
    revision++;
    const rejectedBefore = new Set(memo.last?.errors.keys() ?? []);
    const fast = validateDesiredState(input, memo);
    const full = validateDesiredState({ services: input.services });
    const sorted = (l: readonly VirtualService[]) => [...l].sort((a, b) => (serviceKey(a) < serviceKey(b) ? -1 : 1));
    assert.equal(sorted(fast.state.services), sorted(full.state.services), `step ${step}: services`);
    assert.equal(fast.errors.map((e) => e.key).sort(), full.errors.map((e) => e.key).sort(), `step ${step}: errors`);
    // Its delta names exactly the valid services that changed.
    const valid = new Map(fast.state.services.map((s) => [serviceKey(s), s]));
    // ... and the keys that were rejected (kept as programmed) and are now deleted or rejected again.
    const differ = [...new Set([...valid.keys(), ...prevValid.keys()])].filter((k) => valid.get(k) !== prevValid.get(k));
    const wasRejected = [...changes.keys()].filter((k) => !valid.has(k) && rejectedBefore.has(k));
    assert.equal([...fast.state.delta!.changes.keys()].sort(), [...new Set([...differ, ...wasRejected])].sort(), `step ${step}: delta`);
    prevValid = valid;
  }
  assert.is(memo.deltaCalls, 200);
  // A delta that does not start at the memo's state: a full pass.
  validateDesiredState({ services: [...byKey.values()], revision: revision + 5, delta: { since: revision + 4, changes: new Map() } }, memo);
  assert.is(memo.deltaCalls, 200);
});

test.run();
