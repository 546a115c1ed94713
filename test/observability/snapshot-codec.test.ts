import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type * as grpc from '@grpc/grpc-js';
import { encodeStatsSnapshot } from '../../control/observability/grpc/snapshot-codec.js';
import { directorServiceDefinition, type StatsSnapshotMsg } from '../../control/observability/grpc/proto.js';

const decode = (directorServiceDefinition().Watch as grpc.MethodDefinition<unknown, StatsSnapshotMsg>).responseDeserialize;
const generic = (directorServiceDefinition().Watch as grpc.MethodDefinition<unknown, StatsSnapshotMsg>).responseSerialize;

const counter = (p: string, b: string) => ({ packets: p, bytes: b });
const sample: StatsSnapshotMsg = {
  taken_at_ms: '1795480000123', data_path: 'DATA_PATH_IPVS', rate_interval_ms: 1000, sequence: '7', dropped_snapshots: '2',
  services: [
    { key: 'tcp/198.18.0.10:80', vip: '198.18.0.10', port: 80, protocol: 'PROTOCOL_TCP', total: counter('18446744073709551615', '9007199254740993'), rate: { packets_per_second: 1.5, bytes_per_second: 1e12 } },
    { key: 'udp/[fd00::10]:*', vip: 'fd00::10', port: 0, protocol: 'PROTOCOL_UDP', total: counter('0', '0'), rate: { packets_per_second: 0, bytes_per_second: 0 } },
  ],
  backends: [
    { address: '198.18.1.1', total: counter('128', '16384'), rate: { packets_per_second: 0.25, bytes_per_second: 32 } },
    { address: 'fd00::1:1', total: counter('2147483648', '4294967296'), rate: { packets_per_second: 0, bytes_per_second: 0 } },
  ],
  reasons: [{ reason: 'drop-fragment', total: counter('3', '300'), rate: { packets_per_second: 3, bytes_per_second: 300 } }],
  changes_only: true,
};
/** What proto-loader fills in for the compact fields a plain snapshot leaves out. */
const compactDefaults = { names_version: '0', service_keys: [], backend_addresses: [], compact_services: null, compact_backends: null };

test('the hand-written encoder decodes (through proto-loader) to the same message, 64-bit values intact', () => {
  assert.equal(decode(encodeStatsSnapshot(sample)), { ...sample, ...compactDefaults });
});

test('it agrees with the generic encoder', () => {
  assert.equal(decode(encodeStatsSnapshot(sample)), decode(generic(sample)));
});

test('an empty snapshot encodes to nothing and decodes to defaults', () => {
  const empty: StatsSnapshotMsg = {
    taken_at_ms: '0', data_path: 'DATA_PATH_UNSPECIFIED', rate_interval_ms: 0, sequence: '0', dropped_snapshots: '0',
    services: [], backends: [], reasons: [], changes_only: false,
  };
  assert.is(encodeStatsSnapshot(empty).length, 0);
  assert.equal(decode(encodeStatsSnapshot(empty)), { ...empty, ...compactDefaults });
});

test('the compact form decodes through proto-loader to the same columns and names', () => {
  const compact: StatsSnapshotMsg = {
    taken_at_ms: '1795480000123', data_path: 'DATA_PATH_XDP', rate_interval_ms: 1000, sequence: '3', dropped_snapshots: '0',
    services: [], backends: [], reasons: [], changes_only: true,
    names_version: '4', service_keys: ['tcp/198.18.0.10:80', 'udp/[fd00::10]:*'], backend_addresses: ['198.18.1.1', 'fd00::1:1', '198.18.1.2'],
    compact_services: { id_deltas: [1], packets: [2n ** 64n - 1n], bytes: [9007199254740993n], packets_delta: [5], bytes_delta: [500] },
    compact_backends: { id_deltas: [0, 2], packets: [0, 2147483648], bytes: [0, 4294967296], packets_delta: [0, 1], bytes_delta: [0, 100] },
  };
  const str = (c: StatsSnapshotMsg['compact_services']) => ({
    id_deltas: c!.id_deltas, packets: c!.packets.map(String), bytes: c!.bytes.map(String),
    packets_delta: c!.packets_delta.map(String), bytes_delta: c!.bytes_delta.map(String),
  });
  const expected = { ...compact, compact_services: str(compact.compact_services), compact_backends: str(compact.compact_backends) };
  assert.equal(decode(encodeStatsSnapshot(compact)), expected);
  assert.equal(decode(generic(expected)), expected, 'the generic encoder agrees on the decoded form');
});

test.run();
