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

test('the hand-written encoder decodes (through proto-loader) to the same message, 64-bit values intact', () => {
  assert.equal(decode(encodeStatsSnapshot(sample)), sample);
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
  assert.equal(decode(encodeStatsSnapshot(empty)), empty);
});

test.run();
