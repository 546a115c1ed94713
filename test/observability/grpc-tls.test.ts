import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as grpc from '@grpc/grpc-js';
import { readFileSync } from 'node:fs';
import { startGrpcServer } from '../../control/observability/grpc/server.js';
import { unary, type ListServicesResponseMsg } from '../../control/observability/grpc/proto.js';
import { StatsHub } from '../../control/observability/stats-hub.js';
import { FakeDataplane } from './fake-dataplane.js';
import { StreamCollector, directorClient, makePki, tempDir, type TestPki } from './grpc-helpers.js';

const tmp = tempDir('xdir-grpc-tls-');
const pki: TestPki = makePki(tmp.dir);
const dp = new FakeDataplane();
dp.addService('198.18.0.10', 80, 'tcp', { '198.18.1.1': 1 });
const hub = new StatsHub({ dataplane: dp });
test.after(() => { hub.stop(); tmp.cleanup(); });

const read = (f: string): Buffer => readFileSync(f);

function list(target: string, creds: grpc.ChannelCredentials): Promise<ListServicesResponseMsg> {
  // Dial by name: the certificate names localhost (TLS SNI takes no IP address).
  const c = directorClient(target.replace('127.0.0.1', 'localhost'), creds, { 'grpc.use_local_subchannel_pool': 1 });
  return unary<unknown, ListServicesResponseMsg>(c, 'ListServices', {}, 5000).finally(() => c.close());
}

async function refused(target: string, creds: grpc.ChannelCredentials): Promise<grpc.ServiceError> {
  try {
    await list(target, creds);
  } catch (err) {
    return err as grpc.ServiceError;
  }
  throw new Error('the call should have been refused');
}

test('TLS: a client that trusts the CA is served; plaintext and untrusting clients are not', async () => {
  const s = await startGrpcServer({ hub, dataplane: dp }, {
    address: '127.0.0.1:0', tlsCert: pki.serverCert, tlsKey: pki.serverKey,
  });
  try {
    const ok = await list(s.target, grpc.credentials.createSsl(read(pki.ca)));
    assert.is(ok.services.length, 1);
    const plain = await refused(s.target, grpc.credentials.createInsecure());
    assert.is(plain.code, grpc.status.UNAVAILABLE);
    const wrongCa = await refused(s.target, grpc.credentials.createSsl(read(pki.rogueCa)));
    assert.is(wrongCa.code, grpc.status.UNAVAILABLE);
  } finally {
    await s.stop();
  }
});

test('TLS: Watch streams snapshots (shared bodies written straight to the HTTP/2 stream)', async () => {
  const s = await startGrpcServer({ hub, dataplane: dp }, {
    address: '127.0.0.1:0', tlsCert: pki.serverCert, tlsKey: pki.serverKey,
  });
  const c = directorClient(s.target.replace('127.0.0.1', 'localhost'), grpc.credentials.createSsl(read(pki.ca)), { 'grpc.use_local_subchannel_pool': 1 });
  try {
    await hub.tick();
    const w = new StreamCollector(c.Watch({ interval_ms: 100, changes_only: true, compact: true }));
    await w.until(1);
    assert.equal(w.got[0]!.service_keys, ['tcp/198.18.0.10:80']);
    assert.is(w.got[0]!.sequence, '1');
    w.stream.cancel();
  } finally {
    c.close();
    await s.stop();
  }
});

test('mutual TLS: only a client certificate from the client CA is accepted', async () => {
  const s = await startGrpcServer({ hub, dataplane: dp }, {
    address: '127.0.0.1:0', tlsCert: pki.serverCert, tlsKey: pki.serverKey, tlsClientCa: pki.ca,
  });
  try {
    const ok = await list(s.target, grpc.credentials.createSsl(read(pki.ca), read(pki.clientKey), read(pki.clientCert)));
    assert.is(ok.services.length, 1);
    const noCert = await refused(s.target, grpc.credentials.createSsl(read(pki.ca)));
    assert.is(noCert.code, grpc.status.UNAVAILABLE, noCert.details);
    const rogue = await refused(s.target, grpc.credentials.createSsl(read(pki.ca), read(pki.rogueKey), read(pki.rogueCert)));
    assert.is(rogue.code, grpc.status.UNAVAILABLE, rogue.details);
  } finally {
    await s.stop();
  }
});

test('TLS lets the API listen beyond loopback; half a TLS configuration is an error with a next step', async () => {
  const s = await startGrpcServer({ hub, dataplane: dp }, {
    address: '0.0.0.0:0', tlsCert: pki.serverCert, tlsKey: pki.serverKey,
  });
  await s.stop();
  for (const [opts, msg] of [
    [{ tlsCert: pki.serverCert }, /needs both --grpc-tls-cert and --grpc-tls-key/],
    [{ tlsClientCa: pki.ca }, /--grpc-tls-client-ca needs --grpc-tls-cert and --grpc-tls-key/],
    [{ tlsCert: '/nonexistent.pem', tlsKey: pki.serverKey }, /cannot read --grpc-tls-cert \/nonexistent\.pem/],
  ] as const) {
    try {
      await startGrpcServer({ hub, dataplane: dp }, { address: '127.0.0.1:0', ...opts });
      assert.unreachable('should fail');
    } catch (err) {
      assert.match((err as Error).message, msg);
    }
  }
});

test.run();
