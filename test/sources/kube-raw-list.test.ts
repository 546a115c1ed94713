/**
 * The informers' list calls (control/sources/kube/api-calls.ts + raw-get.ts) against the API
 * server fixture: chunked, plain JSON, trimmed like watched objects, errors shaped like
 * client-node's ApiException.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { KubeConfig } from '@kubernetes/client-node';
import { apiErrorCode, describeApiError, KubeApi, LIST_PAGE } from '../../control/sources/kube/api-calls.js';
import { getJson } from '../../control/sources/kube/raw-get.js';
import { FakeKubeApiServer } from '../lib/kube-apiserver.js';

let server: FakeKubeApiServer;

function config(): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromFile(server.writeKubeconfig());
  return kc;
}

test.before(async () => { server = await FakeKubeApiServer.start(); });
test.after(async () => { await server.close(); });

test('a list longer than a page comes back whole, as plain objects, at the first page\'s resourceVersion, trimmed', async () => {
  const n = LIST_PAGE + 7;
  for (let i = 0; i < n; i++) {
    server.apply({
      apiVersion: 'v1', kind: 'Service',
      metadata: {
        namespace: 'a', name: `s${i}`,
        annotations: { 'kubectl.kubernetes.io/last-applied-configuration': '{"big":"copy"}', 'xdir.io/allow-shared-ip': 'k' },
        managedFields: [{ manager: 'kubectl', operation: 'Apply' }],
      },
      spec: { type: 'LoadBalancer', ports: [{ port: 80, protocol: 'TCP' }] },
    });
  }
  const rv = server.resourceVersion;
  const api = new KubeApi(config());
  const list = await api.listServices();
  assert.is(list.items.length, n);
  assert.is(list.metadata.resourceVersion, rv);
  assert.is(api.counts.get('listServices'), 2, 'two pages');
  const first = list.items[0]!;
  assert.is(typeof first.metadata!.creationTimestamp, 'string', 'plain JSON, as watched objects are (no Date)');
  assert.is(first.metadata!.managedFields, undefined);
  assert.equal(first.metadata!.annotations, { 'xdir.io/allow-shared-ip': 'k' });
  assert.is(new Set(list.items.map((s) => s.metadata!.name)).size, n);
});

test('an API error carries its code and the server\'s message', async () => {
  const err = await getJson(config(), '/api/v1/nosuchthings', {}).then(() => null, (e: unknown) => e);
  assert.is(apiErrorCode(err), 404);
  assert.match(describeApiError(err), /^HTTP 404: the server could not find the requested resource/);
});

test.run();
