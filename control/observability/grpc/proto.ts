/**
 * The `xdir.v1` API loaded from proto/xdir/v1/director.proto at run time (no generated code), and
 * the TypeScript shapes of its messages as proto-loader hands them over (snake_case fields, enums
 * as names, 64-bit integers as decimal strings so no precision is lost).
 */
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

export const PROTO_FILE = fileURLToPath(new URL('../../../proto/xdir/v1/director.proto', import.meta.url));

export const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
};

export type DataPathName = 'DATA_PATH_UNSPECIFIED' | 'DATA_PATH_XDP' | 'DATA_PATH_IPVS';
export type ProtocolName = 'PROTOCOL_UNSPECIFIED' | 'PROTOCOL_TCP' | 'PROTOCOL_UDP';
export type BackendStateName =
  | 'BACKEND_STATE_UNSPECIFIED'
  | 'BACKEND_STATE_ACTIVE'
  | 'BACKEND_STATE_DRAINING'
  | 'BACKEND_STATE_MAC_UNRESOLVED';

/** uint64 on the wire; the server writes decimal strings, the client reads decimal strings. */
export type U64 = string;

export interface CounterMsg { packets: U64; bytes: U64 }
export interface RateMsg { packets_per_second: number; bytes_per_second: number }
export interface ServiceStatsMsg {
  key: string; vip: string; port: number; protocol: ProtocolName; total: CounterMsg; rate: RateMsg;
}
export interface BackendStatsMsg { address: string; total: CounterMsg; rate: RateMsg }
export interface ReasonStatsMsg { reason: string; total: CounterMsg; rate: RateMsg }
export interface StatsSnapshotMsg {
  taken_at_ms: U64;
  data_path: DataPathName;
  rate_interval_ms: number;
  sequence: U64;
  dropped_snapshots: U64;
  changes_only: boolean;
  services: ServiceStatsMsg[];
  backends: BackendStatsMsg[];
  reasons: ReasonStatsMsg[];
  // Compact form (WatchRequest.compact). Optional here because the server leaves them out of the
  // plain form; proto-loader fills the defaults ('0', [], null) when it decodes.
  names_version?: U64;
  service_keys?: string[];
  backend_addresses?: string[];
  compact_services?: CompactCountersMsg | null;
  compact_backends?: CompactCountersMsg | null;
}
/**
 * Packed columns. As proto-loader decodes them, 64-bit columns are decimal strings; the server
 * builds them as numbers (exact below 2^53) or bigints and encodes them itself.
 */
export interface CompactCountersMsg {
  id_deltas: number[];
  packets: (U64 | number | bigint)[];
  bytes: (U64 | number | bigint)[];
  packets_delta: (U64 | number | bigint)[];
  bytes_delta: (U64 | number | bigint)[];
}
export interface WatchRequestMsg { interval_ms: number; vips: string[]; changes_only: boolean; compact: boolean }
export interface GetSnapshotRequestMsg { vips: string[] }
export interface ListServicesRequestMsg { vips: string[] }
export interface BackendMsg { address: string; weight: number; state: BackendStateName; mac: string }
export interface VirtualServiceMsg {
  key: string; vip: string; port: number; protocol: ProtocolName; scheduler: string;
  persistence_s: number; backends: BackendMsg[];
}
export interface ListServicesResponseMsg {
  data_path: DataPathName; fallback_reason: string; services: VirtualServiceMsg[];
}

export const DIRECTOR_SERVICE_NAME = 'xdir.v1.Director';

let cached: protoLoader.PackageDefinition | undefined;

/** The package definition (also what server reflection describes). */
export function loadDirectorPackage(): protoLoader.PackageDefinition {
  cached ??= protoLoader.loadSync(PROTO_FILE, LOADER_OPTIONS);
  return cached;
}

/** A typed client of the Director service; calls take callbacks as usual in grpc-js. */
export interface DirectorClient extends grpc.Client {
  Watch(req: Partial<WatchRequestMsg>, opts?: grpc.CallOptions): grpc.ClientReadableStream<StatsSnapshotMsg>;
  GetSnapshot(
    req: Partial<GetSnapshotRequestMsg>,
    opts: grpc.CallOptions,
    cb: (err: grpc.ServiceError | null, res?: StatsSnapshotMsg) => void,
  ): grpc.ClientUnaryCall;
  ListServices(
    req: Partial<ListServicesRequestMsg>,
    opts: grpc.CallOptions,
    cb: (err: grpc.ServiceError | null, res?: ListServicesResponseMsg) => void,
  ): grpc.ClientUnaryCall;
}

type ClientCtor = new (address: string, creds: grpc.ChannelCredentials, options?: grpc.ClientOptions) => DirectorClient;

export function directorServiceDefinition(): grpc.ServiceDefinition {
  const def = loadDirectorPackage()[DIRECTOR_SERVICE_NAME];
  return def as grpc.ServiceDefinition;
}

export function directorClientConstructor(): ClientCtor {
  const loaded = grpc.loadPackageDefinition(loadDirectorPackage()) as unknown as {
    xdir: { v1: { Director: ClientCtor } };
  };
  return loaded.xdir.v1.Director;
}

/** Promise form of the unary calls, for commands and tests. */
export function unary<Req, Res>(
  client: DirectorClient,
  method: 'GetSnapshot' | 'ListServices',
  req: Req,
  deadlineMs = 10_000,
): Promise<Res> {
  return new Promise((resolve, reject) => {
    const fn = client[method] as unknown as (
      r: Req, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r?: Res) => void,
    ) => void;
    fn.call(client, req, { deadline: Date.now() + deadlineMs }, (err, res) => {
      if (err) reject(err);
      else resolve(res as Res);
    });
  });
}
