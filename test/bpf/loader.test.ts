/**
 * The loader against the real kernel: open, size, .rodata, verifier, pinning and re-adoption, map
 * operations (single, batch, per-CPU, map-in-map) and BPF_PROG_TEST_RUN, on a fixture object.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  BpfError, BpfMap, BpfObject, XDP_ACTION, bpffsMissingMessage, ensureBpffs, isBpffs, possibleCpus,
} from '../../control/bpf/index.js';
import { privilegedTest } from '../lib/privileged.js';
import { buildFixture, removeFixtures, testPinRoot } from './fixture-build.js';

const pinRoots: string[] = [];
function pinRoot(): string {
  const p = testPinRoot();
  pinRoots.push(p);
  return p;
}

const RING_SLOTS = 13;
function openFixture(o: { pinRoot?: string; hashSize?: number; rodata?: Record<string, number | bigint> } = {}): BpfObject {
  return BpfObject.open({
    objectPath: buildFixture('loader_fixture'),
    pinRoot: o.pinRoot,
    maxEntries: { pinned_hash: o.hashSize ?? 64, percpu_counts: 4 },
    innerValueSize: { outer: 4 * RING_SLOTS },
    rodata: o.rodata ?? { cfg_u32: 0x1234, cfg_u64: (1n << 40n) + 5n },
  });
}

const u32 = (n: number): Buffer => { const b = Buffer.alloc(4); b.writeUInt32LE(n); return b; };
const u64 = (n: bigint | number): Buffer => { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt(n)); return b; };
const ETH_FRAME = Buffer.from('0102030405060a0b0c0d0e0f08004500', 'hex');

function seen(obj: BpfObject, idx: number): bigint {
  return obj.map('seen').lookup(u32(idx))!.readBigUInt64LE(0);
}

test.after(() => {
  for (const p of pinRoots) rmSync(p, { recursive: true, force: true });
  removeFixtures();
});

privilegedTest('sizes and .rodata are applied before load, and the program sees the constants', () => {
  const obj = openFixture({ pinRoot: pinRoot() });
  try {
    assert.is(obj.map('pinned_hash').maxEntries, 64);
    assert.is(obj.map('percpu_counts').maxEntries, 4);
    const run = obj.program('xdp_fixture').testRun({ data: ETH_FRAME });
    assert.is(run.retval, XDP_ACTION.XDP_TX);
    assert.is(seen(obj, 0), 0x1234n);
    assert.is(seen(obj, 1), (1n << 40n) + 5n);
    // The program wrote the low byte of cfg_u32 into the packet: test run returns the packet.
    assert.equal([...run.data], [0x34, ...ETH_FRAME.subarray(1)]);
  } finally {
    obj.close();
  }
});

privilegedTest('rodata names and map names are checked; a value that does not fit is refused', () => {
  const objectPath = buildFixture('loader_fixture');
  assert.throws(() => BpfObject.open({ objectPath, rodata: { no_such_const: 1 } }),
    (e: Error) => e instanceof BpfError && /no_such_const/.test(e.message) && /cfg_u32/.test(e.message));
  assert.throws(() => BpfObject.open({ objectPath, maxEntries: { nope: 4 } }),
    (e: Error) => e instanceof BpfError && /no map 'nope'/.test(e.message) && /pinned_hash/.test(e.message));
  assert.throws(() => BpfObject.open({ objectPath, rodata: { cfg_u32: 1n << 32n } }),
    (e: Error) => e instanceof BpfError && /4-byte/.test(e.message));
  assert.throws(() => BpfObject.open({ objectPath, innerValueSize: { seen: 8 } }),
    (e: Error) => e instanceof BpfError && /not a map-in-map/.test(e.message));
  assert.throws(() => BpfObject.open({ objectPath: '/nonexistent/x.bpf.o' }),
    (e: Error) => e instanceof BpfError && /make bpf/.test(e.message));
});

privilegedTest('map operations: update flags, lookup, delete, keys, batch', () => {
  const obj = openFixture({ pinRoot: pinRoot() });
  try {
    const m = obj.map('pinned_hash');
    assert.is(m.lookup(u32(1)), null);
    m.update(u32(1), u64(100));
    m.update(u32(2), u64(200), 'noexist');
    assert.throws(() => m.update(u32(2), u64(201), 'noexist'), /EEXIST/);
    assert.throws(() => m.update(u32(3), u64(300), 'exist'), /ENOENT/);
    m.update(u32(2), u64(202), 'exist');
    assert.is(m.lookup(u32(2))!.readBigUInt64LE(0), 202n);
    assert.equal(m.keys().map((k) => k.readUInt32LE(0)).sort(), [1, 2]);
    assert.ok(m.delete(u32(1)));
    assert.not.ok(m.delete(u32(1)));
    assert.throws(() => m.lookup(Buffer.alloc(3)), /key is 3 bytes/);

    // Batch: 40 entries in, all read back, half deleted (absent keys in the batch are skipped).
    const n = 40;
    const keys = Buffer.concat(Array.from({ length: n }, (_, i) => u32(1000 + i)));
    const values = Buffer.concat(Array.from({ length: n }, (_, i) => u64(i * 3)));
    m.updateBatch(keys, values, n);
    const all = m.lookupAll();
    assert.is(all.count, n + 1);
    const got = new Map<number, bigint>();
    for (let i = 0; i < all.count; i++) got.set(all.keys.readUInt32LE(i * 4), all.values.readBigUInt64LE(i * 8));
    assert.is(got.get(1000 + 7), 21n);
    assert.is(got.get(2), 202n);
    const toDelete = Buffer.concat([keys.subarray(0, 20 * 4), u32(99999), keys.subarray(20 * 4, 21 * 4)]);
    m.deleteBatch(toDelete, 22);
    assert.is(m.lookupAll().count, n + 1 - 21);
    assert.is(m.lookup(u32(1000 + 30))!.readBigUInt64LE(0), 90n);
    assert.is(m.lookup(u32(1000 + 5)), null);
    // Array maps: batch lookup walks every slot.
    assert.is(obj.map('seen').lookupAll().count, 3);
  } finally {
    obj.close();
  }
});

privilegedTest('per-CPU maps hold one 8-byte-aligned value per possible CPU', () => {
  const obj = openFixture();
  try {
    assert.not.ok(existsSync('/sys/fs/bpf/pinned_hash'), 'without a pin root nothing is pinned');
    const m = obj.map('percpu_counts');
    assert.ok(m.perCpu);
    assert.is(m.userValueSize, 8 * possibleCpus());
    obj.program('xdp_fixture').testRun({ data: ETH_FRAME, repeat: 7 });
    const v = m.lookup(u32(0))!;
    assert.is(v.length, 8 * possibleCpus());
    let sum = 0n;
    for (let c = 0; c < possibleCpus(); c++) sum += v.readBigUInt64LE(c * 8);
    assert.is(sum, 7n);
    // Write every CPU's slot, read it back through the batch path.
    const perCpu = Buffer.concat(Array.from({ length: possibleCpus() }, (_, c) => u64(10 + c)));
    m.update(u32(1), perCpu);
    const all = m.lookupAll();
    assert.is(all.count, 4);
    assert.equal(all.values.subarray(m.userValueSize, 2 * m.userValueSize), perCpu);
    assert.throws(() => m.update(u32(2), u64(1)), /CPUs/);
  } finally {
    obj.close();
  }
});

privilegedTest('map-in-map: an inner map of the resized template goes in by fd and comes back by id', () => {
  const obj = openFixture();
  const inner = BpfMap.create({ type: 'array', name: 'test_ring', keySize: 4, valueSize: 4 * RING_SLOTS, maxEntries: 1 });
  const wrong = BpfMap.create({ type: 'array', name: 'test_ring_bad', keySize: 4, valueSize: 4, maxEntries: 1 });
  try {
    const ring = Buffer.alloc(4 * RING_SLOTS);
    ring.writeUInt32LE(77, 0);
    inner.update(u32(0), ring);
    const outer = obj.map('outer');
    outer.update(u32(0), u32(inner.fd));
    assert.throws(() => outer.update(u32(1), u32(wrong.fd)), /EINVAL/);
    obj.program('xdp_fixture').testRun({ data: ETH_FRAME });
    assert.is(seen(obj, 2), 77n);
    const id = outer.lookup(u32(0))!.readUInt32LE(0);
    assert.is(id, inner.id);
    const reopened = BpfMap.fromId(id);
    try {
      assert.is(reopened.valueSize, 4 * RING_SLOTS);
      assert.is(reopened.name, 'test_ring');
      assert.is(reopened.lookup(u32(0))!.readUInt32LE(0), 77);
    } finally {
      reopened.close();
    }
  } finally {
    inner.close();
    wrong.close();
    obj.close();
  }
});

privilegedTest('pinned maps survive close and are re-adopted with their contents (same map id)', () => {
  const root = pinRoot();
  const first = openFixture({ pinRoot: root });
  const id = first.map('pinned_hash').id;
  first.map('pinned_hash').update(u32(5), u64(555));
  assert.equal(first.adoptedMaps, []);
  first.close();
  assert.ok(existsSync(join(root, 'pinned_hash')));
  assert.ok(existsSync(join(root, 'outer')));

  const second = openFixture({ pinRoot: root });
  try {
    assert.equal(second.adoptedMaps.sort(), ['outer', 'pinned_hash']);
    assert.is(second.map('pinned_hash').id, id);
    assert.is(second.map('pinned_hash').lookup(u32(5))!.readBigUInt64LE(0), 555n);
    const pinned = BpfMap.fromPin(join(root, 'pinned_hash'));
    try {
      assert.is(pinned.id, id);
    } finally {
      pinned.close();
    }
  } finally {
    second.close();
  }
});

privilegedTest('a pinned map of another size is refused with the map, the difference and the fix', () => {
  const root = pinRoot();
  openFixture({ pinRoot: root, hashSize: 64 }).close();
  try {
    openFixture({ pinRoot: root, hashSize: 128 }).close();
    assert.unreachable('should have thrown');
  } catch (err) {
    assert.instance(err, BpfError);
    const msg = (err as Error).message;
    assert.match(msg, /pinned map 'pinned_hash'/);
    assert.match(msg, /max_entries 64 pinned, 128 requested/);
    assert.match(msg, `rm -r ${root}`);
  }
  // The old maps are untouched and still usable with the old sizes.
  openFixture({ pinRoot: root, hashSize: 64 }).close();
});

privilegedTest('a pinned map-in-map whose inner maps have another size is refused', () => {
  const root = pinRoot();
  const obj = openFixture({ pinRoot: root });
  const inner = BpfMap.create({ type: 'array', name: 'test_ring', keySize: 4, valueSize: 4 * RING_SLOTS, maxEntries: 1 });
  obj.map('outer').update(u32(0), u32(inner.fd));
  inner.close();
  obj.close();
  assert.throws(() => BpfObject.open({
    objectPath: buildFixture('loader_fixture'), pinRoot: root,
    maxEntries: { pinned_hash: 64 }, innerValueSize: { outer: 4 * (RING_SLOTS + 1) },
  }), (e: Error) => /pinned map 'outer'/.test(e.message) && /inner value size 52 pinned, 56 requested/.test(e.message));
});

privilegedTest('a verifier rejection throws BpfError with the tail of the verifier log', () => {
  try {
    BpfObject.open({ objectPath: buildFixture('unverifiable') });
    assert.unreachable('should have thrown');
  } catch (err) {
    assert.instance(err, BpfError);
    const e = err as BpfError;
    assert.match(e.message, /verifier rejected program 'xdp_unbounded'/);
    assert.ok(e.verifierLog);
    assert.match(e.verifierLog!, /invalid access to packet/);
    assert.ok(e.verifierLog!.split('\n').length <= 40);
    assert.match(e.message, /invalid access to packet/);
    assert.match(e.message, /make bpf/);
  }
});

privilegedTest('test run passes ingress_ifindex and reports the kernel error for a missing interface', () => {
  const obj = openFixture();
  try {
    const run = obj.program('xdp_fixture').testRun({ data: ETH_FRAME, ingressIfindex: 1 /* lo */ });
    assert.is(run.retval, XDP_ACTION.XDP_TX);
    assert.throws(() => obj.program('xdp_fixture').testRun({ data: ETH_FRAME, ingressIfindex: 0x7ffffff0 }),
      (e: Error) => e instanceof BpfError && /ifindex/.test(e.message));
    assert.throws(() => obj.program('nope'), /no program 'nope'.*xdp_fixture/);
  } finally {
    obj.close();
  }
});

privilegedTest('a pin root outside bpffs is refused with the mount command', () => {
  const dir = mkdtempSync(join(tmpdir(), 'xdir-not-bpffs-'));
  try {
    assert.throws(() => openFixture({ pinRoot: join(dir, 'pins') }),
      (e: Error) => e instanceof BpfError && /not on a bpf filesystem/.test(e.message) && /mount -t bpf bpf/.test(e.message));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

privilegedTest('without CAP_BPF, load and map creation fail with the privilege hint', () => {
  // A child running as nobody: the same code, really refused by the kernel.
  const script = `
    const { BpfObject, BpfMap } = await import('./control/bpf/index.ts');
    for (const f of [() => BpfObject.open({ objectPath: process.argv[1] }),
                     () => BpfMap.create({ type: 'array', name: 'x', keySize: 4, valueSize: 4, maxEntries: 1 })]) {
      try { f(); console.log('no error'); } catch (e) { console.log(e.message); }
    }`;
  const out = execFileSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', '--inh-caps=-all',
    process.execPath, '--import', 'tsx', '--input-type=module', '-e', script, buildFixture('loader_fixture')],
  { cwd: fileURLToPath(new URL('../..', import.meta.url)), encoding: 'utf8' }).trim().split('\n');
  assert.is(out.length, 2, out.join('\n'));
  assert.match(out[0], /cannot load .*loader_fixture.bpf.o: EPERM; run as root or grant CAP_BPF and CAP_NET_ADMIN/);
  assert.match(out[1], /creating array map 'x'.*EPERM; run as root or grant CAP_BPF and CAP_NET_ADMIN/);
});

privilegedTest('ensureBpffs mounts bpffs where there is none, and leaves a mounted one alone', () => {
  const dir = mkdtempSync(join(tmpdir(), 'xdir-bpffs-'));
  try {
    assert.not.ok(isBpffs(dir));
    ensureBpffs(dir);
    assert.ok(isBpffs(dir));
    ensureBpffs(dir); // already mounted: no second mount on top
    execFileSync('umount', [dir]);
    assert.not.ok(isBpffs(dir), 'exactly one mount');
  } finally {
    try { execFileSync('umount', [dir], { stdio: 'ignore' }); } catch { /* not mounted */ }
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the bpffs-missing message names the mount point and the command', () => {
  assert.is(bpffsMissingMessage('/sys/fs/bpf/xdir'),
    'bpffs is not mounted at /sys/fs/bpf; mount it with `mount -t bpf bpf /sys/fs/bpf`');
  assert.match(bpffsMissingMessage('/run/pins'), 'mount -t bpf bpf /run/pins');
});

test.run();
