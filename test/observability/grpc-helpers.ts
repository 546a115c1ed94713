/** gRPC test helpers: a real grpc-js client of xdir.v1, health and reflection clients, stream collectors. */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { protoPath as healthProtoPath } from 'grpc-health-check';
import {
  LOADER_OPTIONS, directorClientConstructor, type DirectorClient, type StatsSnapshotMsg,
} from '../../control/observability/grpc/proto.js';

export function tempDir(prefix: string): { dir: string; cleanup(): void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export function directorClient(target: string, creds = grpc.credentials.createInsecure(), options: grpc.ClientOptions = {}): DirectorClient {
  const Ctor = directorClientConstructor();
  return new Ctor(target, creds, options);
}

type AnyClient = grpc.Client & Record<string, (...args: unknown[]) => unknown>;

export function healthClient(target: string): AnyClient {
  const pkg = grpc.loadPackageDefinition(protoLoader.loadSync(healthProtoPath, LOADER_OPTIONS)) as unknown as {
    grpc: { health: { v1: { Health: new (t: string, c: grpc.ChannelCredentials) => AnyClient } } };
  };
  return new pkg.grpc.health.v1.Health(target, grpc.credentials.createInsecure());
}

export function reflectionClient(target: string): AnyClient {
  const require = createRequire(import.meta.url);
  const file = join(dirname(require.resolve('@grpc/reflection')), '../proto/grpc/reflection/v1/reflection.proto');
  const pkg = grpc.loadPackageDefinition(protoLoader.loadSync(file, LOADER_OPTIONS)) as unknown as {
    grpc: { reflection: { v1: { ServerReflection: new (t: string, c: grpc.ChannelCredentials) => AnyClient } } };
  };
  return new pkg.grpc.reflection.v1.ServerReflection(target, grpc.credentials.createInsecure());
}

export function callUnary<Res>(client: AnyClient, method: string, req: unknown): Promise<Res> {
  return new Promise((resolve, reject) => {
    (client[method] as (r: unknown, o: grpc.CallOptions, cb: (e: Error | null, r: Res) => void) => void).call(
      client, req, { deadline: Date.now() + 10_000 }, (e, r) => (e ? reject(e) : resolve(r)),
    );
  });
}

/** Collects a Watch stream's snapshots; `next(n)` resolves once n have arrived in total. */
export class StreamCollector {
  readonly got: StatsSnapshotMsg[] = [];
  error: grpc.ServiceError | undefined;
  private waiters: { n: number; resolve: () => void; reject: (e: Error) => void }[] = [];

  constructor(readonly stream: grpc.ClientReadableStream<StatsSnapshotMsg>) {
    stream.on('data', (s: StatsSnapshotMsg) => {
      this.got.push(s);
      this.waiters = this.waiters.filter((w) => (this.got.length >= w.n ? (w.resolve(), false) : true));
    });
    stream.on('error', (e: grpc.ServiceError) => {
      this.error = e;
      for (const w of this.waiters) w.reject(e);
      this.waiters = [];
    });
  }

  /** Resolves when `n` snapshots have arrived; a liveness guard (not a timing assertion) fails it after 20 s. */
  until(n: number): Promise<void> {
    if (this.got.length >= n) return Promise.resolve();
    if (this.error) return Promise.reject(this.error);
    return new Promise((resolve, reject) => {
      const guard = setTimeout(() => reject(new Error(`stream stalled at ${this.got.length} of ${n} snapshots`)), 20_000);
      this.waiters.push({ n, resolve: () => { clearTimeout(guard); resolve(); }, reject: (e) => { clearTimeout(guard); reject(e); } });
    });
  }

  /** Resolves when the stream ends with an error. */
  failed(): Promise<grpc.ServiceError> {
    if (this.error) return Promise.resolve(this.error);
    return new Promise((resolve) => this.stream.once('error', resolve));
  }
}

/** Waits until `cond()` holds, checking every 10 ms; a liveness guard fails it after 20 s. */
export async function waitFor(what: string, cond: () => boolean): Promise<void> {
  for (let i = 0; i < 2000; i++) {
    if (cond()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`gave up waiting for ${what}`);
}

export interface TestPki {
  ca: string; serverCert: string; serverKey: string; clientCert: string; clientKey: string;
  /** A client certificate from an unrelated CA. */
  rogueCert: string; rogueKey: string; rogueCa: string;
}

/** Generates a throw-away CA, a server certificate for 127.0.0.1/localhost, and client certificates, with openssl. */
export function makePki(dir: string): TestPki {
  const run = (...args: string[]): void => {
    const r = spawnSync('openssl', args, { cwd: dir, encoding: 'utf8' });
    if (r.error || r.status !== 0) throw new Error(`openssl ${args.join(' ')}: ${r.error?.message ?? r.stderr}`);
  };
  const key = (name: string): void => run('genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', `${name}.key`);
  const ca = (name: string): void => {
    key(name);
    run('req', '-x509', '-new', '-key', `${name}.key`, '-out', `${name}.crt`, '-days', '2', '-subj', `/CN=${name}`);
  };
  const leaf = (name: string, caName: string, ext: string): void => {
    key(name);
    run('req', '-new', '-key', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`);
    writeFileSync(join(dir, `${name}.ext`), ext);
    run('x509', '-req', '-in', `${name}.csr`, '-CA', `${caName}.crt`, '-CAkey', `${caName}.key`, '-CAcreateserial',
      '-out', `${name}.crt`, '-days', '2', '-extfile', `${name}.ext`);
  };
  ca('ca');
  ca('rogue-ca');
  leaf('server', 'ca', 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
  leaf('client', 'ca', 'extendedKeyUsage=clientAuth\n');
  leaf('rogue', 'rogue-ca', 'extendedKeyUsage=clientAuth\n');
  const p = (f: string): string => join(dir, f);
  return {
    ca: p('ca.crt'), serverCert: p('server.crt'), serverKey: p('server.key'),
    clientCert: p('client.crt'), clientKey: p('client.key'),
    rogueCert: p('rogue.crt'), rogueKey: p('rogue.key'), rogueCa: p('rogue-ca.crt'),
  };
}
