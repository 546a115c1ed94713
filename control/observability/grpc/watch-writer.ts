/**
 * Writes Watch snapshots to their HTTP/2 streams with the shared body by reference.
 *
 * A snapshot handed out by the hub carries a body shared by every subscriber of the same reading
 * and group (SHARED_BODY) plus two fields of its own stream (sequence, dropped_snapshots). The body
 * is encoded once (cached per body object). Going through grpc-js would then still cost one full
 * copy per stream: its serializeMessage (server-interceptors.js, 1.14.7) allocates a fresh
 * (5 + length) Buffer for every message and copies the serializer's result into it, and that copy
 * stays alive until HTTP/2 flow control lets it out. For 100 streams joining a 10,000-VIP director
 * that was 100 x 2.8 MB of first snapshots held at once.
 *
 * So when the grpc-js call exposes its HTTP/2 stream, the message is written there directly in the
 * same gRPC framing grpc-js uses (1 byte flags = 0, no compression; 4 bytes big-endian length):
 * the 5-byte header, the shared body Buffer itself, then this stream's own fields (a few bytes), in
 * one corked write. Protobuf field order is free and the body leaves sequence and dropped_snapshots
 * unset, so the bytes decode exactly as the whole message encoded at once. Every stream then holds
 * the same body Buffer: memory per stream is a few bytes, whatever the snapshot size.
 *
 * If grpc-js's call objects change shape, the writer is not found and Watch writes through
 * call.write (the Director definition's serializer concatenates body and tail; one copy per stream
 * in grpc-js, as before).
 */
import type { ServerHttp2Stream } from 'node:http2';
import type * as grpc from '@grpc/grpc-js';
import { encodeStatsSnapshot } from './snapshot-codec.js';
import type { StatsSnapshotMsg } from './proto.js';
import { SHARED_BODY } from '../stats-hub.js';

const EMPTY_TAIL: StatsSnapshotMsg = {
  taken_at_ms: '0', data_path: 'DATA_PATH_UNSPECIFIED', rate_interval_ms: 0, sequence: '0', dropped_snapshots: '0',
  services: [], backends: [], reasons: [], changes_only: false,
};

/** Encoded bodies, once per body object (a body lives while some stream still queues or sends it). */
const bodies = new WeakMap<object, Buffer>();

/** The body a snapshot shares with other streams, if it came from the hub. */
export function sharedBodyOf(snap: StatsSnapshotMsg): StatsSnapshotMsg | undefined {
  return (snap as unknown as { [SHARED_BODY]?: StatsSnapshotMsg })[SHARED_BODY];
}

/** The encoded shared body (encoded on first use, then the same Buffer for every stream). */
export function encodedBody(body: StatsSnapshotMsg): Buffer {
  let bytes = bodies.get(body);
  if (!bytes) { bytes = encodeStatsSnapshot(body); bodies.set(body, bytes); }
  return bytes;
}

/** This stream's own fields (sequence, dropped_snapshots), encoded; a few bytes. */
function encodedTail(snap: StatsSnapshotMsg): Buffer {
  return encodeStatsSnapshot({ ...EMPTY_TAIL, sequence: snap.sequence, dropped_snapshots: snap.dropped_snapshots });
}

/** What Watch needs of grpc-js's innermost call (BaseServerInterceptingCall). */
interface BaseCall {
  stream: ServerHttp2Stream;
  maybeSendMetadata(): void;
  checkCancelled(): boolean;
}

function baseCallOf(call: grpc.ServerWritableStream<unknown, unknown>): BaseCall | undefined {
  let c = (call as unknown as { call?: unknown }).call as Partial<BaseCall> & { nextCall?: unknown } | undefined;
  for (let i = 0; c && i < 8; i++) {
    const s = c.stream as Partial<ServerHttp2Stream> | undefined;
    if (s && typeof s.write === 'function' && typeof s.cork === 'function'
      && typeof c.maybeSendMetadata === 'function' && typeof c.checkCancelled === 'function') {
      return c as BaseCall;
    }
    c = c.nextCall as typeof c;
  }
  return undefined;
}

export interface WatchSend {
  (snap: StatsSnapshotMsg, written: (err?: Error | null) => void): void;
  /** True when this stream takes direct framed writes (the shared body by reference). */
  readonly direct: boolean;
}

/**
 * A send function for one Watch stream: direct framed writes when possible (see the header), else
 * call.write. `written` runs once the message has left for the connection (or failed); a cancelled
 * stream takes nothing and calls nothing, as in grpc-js.
 */
export function watchSender(call: grpc.ServerWritableStream<unknown, StatsSnapshotMsg>): WatchSend {
  const base = baseCallOf(call);
  const viaGrpc = (snap: StatsSnapshotMsg, written: (err?: Error | null) => void): void => { call.write(snap, written); };
  if (!base) return Object.assign(viaGrpc, { direct: false });
  return Object.assign((snap: StatsSnapshotMsg, written: (err?: Error | null) => void): void => {
    const shared = sharedBodyOf(snap);
    if (!shared) { viaGrpc(snap, written); return; }
    // Ended by grpc-js (a status went out, e.g. the deadline passed) or gone: nothing more may be
    // written (a write after end would raise an 'error' grpc-js no longer listens for).
    if (base.checkCancelled() || base.stream.writableEnded) return;
    let body: Buffer, tail: Buffer;
    try {
      body = encodedBody(shared);
      tail = encodedTail(snap);
    } catch (err) {
      // As grpc-js does with a serializer that throws: this stream fails, the others go on.
      written(err instanceof Error ? err : new Error(String(err)));
      return;
    }
    const head = Buffer.allocUnsafe(5);
    head[0] = 0; // not compressed (grpc-js does not compress responses either)
    head.writeUInt32BE(body.length + tail.length, 1);
    base.maybeSendMetadata();
    const stream = base.stream;
    // Body, then this stream's fields: the same order as serializeWatchMessage, so both paths
    // decode alike even if a body ever carried those fields (the later value wins in protobuf).
    stream.cork();
    stream.write(head);
    stream.write(body);
    stream.write(tail, written);
    stream.uncork();
  }, { direct: true });
}

/**
 * The Watch serializer for the fallback path (and anything written through call.write): shared
 * body encoded once, then this stream's own fields appended. Protobuf merges concatenated
 * encodings, so this decodes like the whole message encoded at once.
 */
export function serializeWatchMessage(value: StatsSnapshotMsg): Buffer {
  const shared = sharedBodyOf(value);
  if (!shared) return encodeStatsSnapshot(value);
  return Buffer.concat([encodedBody(shared), encodedTail(value)]);
}
