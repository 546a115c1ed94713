/**
 * The gRPC server: xdir.v1.Director (read-only), grpc.health.v1 and server reflection, on a unix
 * socket or loopback by default, with TLS / mutual TLS on request.
 */
import { chmodSync, mkdirSync, readFileSync, statSync, unlinkSync } from 'node:fs';
import { constants as http2 } from 'node:http2';
import { connect } from 'node:net';
import { dirname } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';
import { HealthImplementation, protoPath as healthProtoPath } from 'grpc-health-check';
import { logger } from '../../log.js';
import { listServices } from '../snapshot.js';
import { encodeStatsSnapshot } from './snapshot-codec.js';
import type { HubDataplane, StatsHub } from '../stats-hub.js';
import { serializeWatchMessage, watchSender } from './watch-writer.js';
import {
  DIRECTOR_SERVICE_NAME, LOADER_OPTIONS, directorServiceDefinition, loadDirectorPackage,
  type GetSnapshotRequestMsg, type ListServicesRequestMsg, type ListServicesResponseMsg,
  type StatsSnapshotMsg, type WatchRequestMsg,
} from './proto.js';
import { DEFAULT_GRPC_ADDRESS, checkExposure, parseListenAddress, type ListenAddress } from './listen-address.js';

const log = logger('grpc');

/**
 * Snapshots per Watch stream inside grpc-js / HTTP/2 at once (see Watch). One: a stream whose
 * previous message is not flushed yet takes nothing more; its readings wait in the hub's bounded,
 * drop-oldest queue (and are counted when dropped) instead of in per-stream copies here.
 */
const MAX_IN_FLIGHT = 1;

export interface GrpcServerOptions {
  /** `unix:/path`, `HOST:PORT`, `[IPv6]:PORT`. Default unix:/run/xdir/xdir.sock. Port 0 = any free port. */
  address?: string;
  /** PEM files. cert+key turn TLS on; clientCa also requires and verifies client certificates (mTLS). */
  tlsCert?: string;
  tlsKey?: string;
  tlsClientCa?: string;
  /** Allow a non-loopback address without TLS. */
  insecure?: boolean;
}

export interface GrpcServerDeps {
  hub: StatsHub;
  dataplane: HubDataplane;
  /** Why the fallback data path runs, if it does (ListServices.fallback_reason). */
  fallbackReason?: () => string | undefined;
}

export interface RunningGrpcServer {
  /** The address clients dial (`unix:/path` or `host:port` with the bound port). */
  readonly target: string;
  readonly health: HealthImplementation;
  stop(): Promise<void>;
}

function readPem(path: string, flag: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new Error(`cannot read ${flag} ${path}: ${(err as Error).message}; give a readable PEM file`);
  }
}

export function serverCredentials(o: GrpcServerOptions): { creds: grpc.ServerCredentials; tls: boolean } {
  if (!o.tlsCert && !o.tlsKey) {
    if (o.tlsClientCa) {
      throw new Error('--grpc-tls-client-ca needs --grpc-tls-cert and --grpc-tls-key: mutual TLS is TLS plus client certificates');
    }
    return { creds: grpc.ServerCredentials.createInsecure(), tls: false };
  }
  if (!o.tlsCert || !o.tlsKey) {
    throw new Error('TLS needs both --grpc-tls-cert and --grpc-tls-key (PEM files)');
  }
  const ca = o.tlsClientCa ? readPem(o.tlsClientCa, '--grpc-tls-client-ca') : null;
  const creds = grpc.ServerCredentials.createSsl(
    ca,
    [{ cert_chain: readPem(o.tlsCert, '--grpc-tls-cert'), private_key: readPem(o.tlsKey, '--grpc-tls-key') }],
    ca !== null,
  );
  return { creds, tls: true };
}

/** Remove a stale socket file left by a crash, but never steal a socket someone is serving on. */
async function prepareUnixSocket(path: string): Promise<void> {
  mkdirSync(dirname(path), { recursive: true, mode: 0o750 });
  let st;
  try { st = statSync(path); } catch { return; }
  if (!st.isSocket()) throw new Error(`cannot listen on unix:${path}: the path exists and is not a socket; remove it or pick another --grpc address`);
  const alive = await new Promise<boolean>((resolve) => {
    const s = connect(path);
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  });
  if (alive) throw new Error(`cannot listen on unix:${path}: another process is serving on it (another xdir?); stop it or pick another --grpc address`);
  unlinkSync(path);
}

/**
 * Ends a Watch stream whose client stopped reading. A status cannot overtake the data queued behind
 * HTTP/2 flow control, so the stream is reset (RST_STREAM ENHANCE_YOUR_CALM; grpc-js clients see
 * RESOURCE_EXHAUSTED) which frees what it holds. grpc-js does not expose the HTTP/2 stream, so this
 * walks its call objects; if their shape changes we fall back to ending the call normally.
 */
function abortSlowStream(call: grpc.ServerWritableStream<unknown, unknown>): void {
  call.emit('error', { code: grpc.status.RESOURCE_EXHAUSTED, details: 'client did not read its Watch stream; disconnected' });
  let c = (call as unknown as { call?: unknown }).call as { stream?: unknown; nextCall?: unknown } | undefined;
  for (let i = 0; c && i < 8; i++) {
    const s = c.stream as { close?: (code: number) => void; rstCode?: unknown } | undefined;
    if (s && typeof s.close === 'function' && 'rstCode' in s) {
      s.close(http2.NGHTTP2_ENHANCE_YOUR_CALM);
      return;
    }
    c = c.nextCall as typeof c;
  }
}

/**
 * The Director service definition with our own encoders: GetSnapshot through the hand-written
 * snapshot codec, Watch through the shared-body serializer (used only when a stream cannot take
 * direct framed writes; see watch-writer.ts).
 */
function directorDefinitionWithSharedEncoding(): grpc.ServiceDefinition {
  const def = { ...directorServiceDefinition() };
  const watch = def.Watch as grpc.MethodDefinition<WatchRequestMsg, StatsSnapshotMsg>;
  def.GetSnapshot = { ...def.GetSnapshot!, responseSerialize: encodeStatsSnapshot };
  def.Watch = { ...watch, responseSerialize: serializeWatchMessage };
  return def;
}

export async function startGrpcServer(deps: GrpcServerDeps, opts: GrpcServerOptions = {}): Promise<RunningGrpcServer> {
  const addr: ListenAddress = parseListenAddress(opts.address ?? DEFAULT_GRPC_ADDRESS);
  const { creds, tls } = serverCredentials(opts);
  checkExposure(addr, tls, opts.insecure === true);
  if (addr.kind === 'unix') await prepareUnixSocket(addr.path);

  const { hub, dataplane } = deps;
  const server = new grpc.Server({
    // Keep idle streams cheap and reclaim dead peers.
    'grpc.keepalive_time_ms': 60_000,
    'grpc.keepalive_timeout_ms': 20_000,
    'grpc.max_concurrent_streams': 1000,
  });

  const impl: grpc.UntypedServiceImplementation = {
    Watch(call: grpc.ServerWritableStream<WatchRequestMsg, StatsSnapshotMsg>) {
      const sub = hub.subscribe({
        intervalMs: call.request.interval_ms, vips: call.request.vips, changesOnly: call.request.changes_only,
        compact: call.request.compact,
      });
      // Snapshots handed to grpc-js but not yet written to the connection. grpc-js would buffer up
      // to 16 messages per stream (objectMode highWaterMark), which is 16 x 5 MB at 10,000 VIPs;
      // keeping at most MAX_IN_FLIGHT there leaves the rest to the hub's bounded, drop-oldest queue.
      let inFlight = 0;
      let done = false;
      // Direct framed writes share one body Buffer among all streams of a reading (watch-writer.ts).
      const send = watchSender(call);
      const written = (err?: Error | null): void => {
        inFlight -= 1;
        if (err) { finish(); call.end(); return; }
        pump();
      };
      const pump = (): void => {
        while (!done && inFlight < MAX_IN_FLIGHT) {
          const snap = sub.take();
          if (!snap) return;
          inFlight += 1;
          send(snap, written);
        }
      };
      sub.onReady = pump;
      sub.onClose = (reason) => {
        if (done) return;
        done = true;
        if (reason === 'too-slow') abortSlowStream(call);
        else call.end();
      };
      const finish = (): void => { done = true; sub.close(); };
      call.on('cancelled', finish);
      call.on('close', finish);
      call.on('error', finish);
      pump();
    },

    GetSnapshot(call: grpc.ServerUnaryCall<GetSnapshotRequestMsg, StatsSnapshotMsg>, cb: grpc.sendUnaryData<StatsSnapshotMsg>) {
      const snap = hub.snapshot(call.request.vips);
      if (!snap) {
        cb({ code: grpc.status.UNAVAILABLE, details: 'no counters read yet: the data path is starting; retry in a second' });
        return;
      }
      cb(null, snap);
    },

    ListServices(call: grpc.ServerUnaryCall<ListServicesRequestMsg, ListServicesResponseMsg>, cb: grpc.sendUnaryData<ListServicesResponseMsg>) {
      try {
        cb(null, listServices(dataplane.kind, dataplane.services(), call.request.vips, deps.fallbackReason?.()));
      } catch (err) {
        cb({ code: grpc.status.INTERNAL, details: `cannot list services: ${(err as Error).message}` });
      }
    },
  };
  server.addService(directorDefinitionWithSharedEncoding(), impl);

  const health = new HealthImplementation({ '': 'NOT_SERVING', [DIRECTOR_SERVICE_NAME]: 'NOT_SERVING' });
  health.addToServer(server);

  // Reflection describes our API and the health service, so `grpcurl list` shows both.
  const healthPkg = protoLoader.loadSync(healthProtoPath, LOADER_OPTIONS);
  new ReflectionService({ ...loadDirectorPackage(), ...healthPkg }).addToServer(server);

  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(addr.target, creds, (err, p) => {
      if (err) reject(new Error(`cannot listen for gRPC on ${addr.target}: ${err.message}; pick another --grpc address`));
      else resolve(p);
    });
  });
  let target = addr.target;
  if (addr.kind === 'unix') chmodSync(addr.path, 0o660);
  else target = addr.host.includes(':') ? `[${addr.host}]:${port}` : `${addr.host}:${port}`;
  log.info({ address: target, tls, mutualTls: tls && !!opts.tlsClientCa }, 'gRPC API listening');

  let stopped = false;
  return {
    target,
    health,
    async stop() {
      if (stopped) return;
      stopped = true;
      await new Promise<void>((resolve) => {
        // Give in-flight unary calls a moment, then cut streams (Watch never ends on its own).
        const force = setTimeout(() => server.forceShutdown(), 2000);
        server.tryShutdown(() => { clearTimeout(force); resolve(); });
      });
      if (addr.kind === 'unix') { try { unlinkSync(addr.path); } catch { /* already gone */ } }
    },
  };
}
