/**
 * What an operator applies from deploy/: every manifest parses, has a known kind and API version,
 * RBAC grants exactly the calls in API_CALLS (no more, no less), the DaemonSet asks only for the
 * capabilities XDP and IPVS need, and the IPPool CRD's schema rejects bad pools at admission.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { parseAllDocuments } from 'yaml';
import { API_CALLS } from '../../control/sources/kube/api-calls.js';
import { DEFAULT_LOAD_BALANCER_CLASS } from '../../control/model/kube-desired.js';
import { CONTROLLER_DEFAULTS } from '../../control/sources/kube/controller.js';
import { validateSchema, type Schema } from '../lib/kube/openapi.js';

const root = fileURLToPath(new URL('../../deploy/', import.meta.url));

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Manifest = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string }; [k: string]: any };

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? files(p) : /\.ya?ml$/.test(n) ? [p] : [];
  });
}

const manifests: { file: string; doc: Manifest }[] = [];
for (const file of files(root)) {
  for (const d of parseAllDocuments(readFileSync(file, 'utf8'))) {
    if (d.errors.length) throw new Error(`${relative(root, file)}: ${d.errors[0]!.message}`);
    const doc = d.toJS() as Manifest | null;
    if (doc) manifests.push({ file: relative(root, file), doc });
  }
}
const find = (kind: string, name?: string) => manifests.filter((m) => m.doc.kind === kind && (!name || m.doc.metadata.name === name)).map((m) => m.doc);

const KNOWN: Record<string, string> = {
  Namespace: 'v1', ServiceAccount: 'v1', ConfigMap: 'v1', Service: 'v1',
  ClusterRole: 'rbac.authorization.k8s.io/v1', ClusterRoleBinding: 'rbac.authorization.k8s.io/v1',
  Role: 'rbac.authorization.k8s.io/v1', RoleBinding: 'rbac.authorization.k8s.io/v1',
  DaemonSet: 'apps/v1', CustomResourceDefinition: 'apiextensions.k8s.io/v1', IPPool: 'xdir.io/v1alpha1',
};
const NAMESPACE = 'xdir-system';

test('every manifest parses, has a known kind, its API version and a name', () => {
  assert.ok(manifests.length >= 12, `found ${manifests.length} documents`);
  for (const { file, doc } of manifests) {
    assert.ok(KNOWN[doc.kind], `${file}: unknown kind ${doc.kind}`);
    assert.is(doc.apiVersion, KNOWN[doc.kind], `${file}: ${doc.kind} apiVersion`);
    assert.ok(doc.metadata?.name, `${file}: ${doc.kind} has no name`);
  }
  for (const k of ['Namespace', 'ServiceAccount', 'ClusterRole', 'ClusterRoleBinding', 'Role', 'RoleBinding', 'DaemonSet', 'ConfigMap', 'CustomResourceDefinition', 'IPPool', 'Service']) {
    assert.ok(find(k).length > 0, `deploy/ has no ${k}`);
  }
});

test('RBAC grants exactly the calls the controller makes (API_CALLS)', () => {
  const scopeOf = (role: Manifest): string => {
    if (role.kind === 'ClusterRole') return 'cluster';
    if (role.metadata.namespace === NAMESPACE) return 'own-namespace';
    if (role.metadata.namespace === 'ingress-nginx') return 'ingress-namespace';
    throw new Error(`Role ${role.metadata.name} in unexpected namespace ${role.metadata.namespace}`);
  };
  const granted = new Set<string>();
  for (const role of [...find('ClusterRole'), ...find('Role')]) {
    for (const r of role.rules) {
      for (const g of r.apiGroups) for (const res of r.resources) for (const v of r.verbs) {
        assert.is.not(v, '*', 'no wildcard verbs');
        assert.is.not(res, '*', 'no wildcard resources');
        granted.add(`${scopeOf(role)} ${v} ${g}/${res}`);
      }
    }
  }
  const needed = new Set(Object.values(API_CALLS).map((c) => `${c.scope} ${c.verb} ${c.group}/${c.resource}`));
  assert.equal([...granted].filter((g) => !needed.has(g)).sort(), [], 'granted but never used');
  assert.equal([...needed].filter((n) => !granted.has(n)).sort(), [], 'used but not granted');
  // Lease get/update only on our Lease.
  const lease = find('Role').flatMap((r) => r.rules).find((r: { verbs: string[]; resources: string[] }) => r.resources.includes('leases') && r.verbs.includes('update'));
  assert.equal(lease.resourceNames, [CONTROLLER_DEFAULTS.leaseName]);
});

test('bindings tie every role to the DaemonSet\'s ServiceAccount', () => {
  const sa = find('ServiceAccount')[0]!;
  assert.is(sa.metadata.namespace, NAMESPACE);
  const roles = new Set([...find('ClusterRole'), ...find('Role')].map((r) => `${r.kind}/${r.metadata.namespace ?? ''}/${r.metadata.name}`));
  for (const b of [...find('ClusterRoleBinding'), ...find('RoleBinding')]) {
    const ns = b.roleRef.kind === 'Role' ? b.metadata.namespace : '';
    assert.ok(roles.has(`${b.roleRef.kind}/${ns}/${b.roleRef.name}`), `${b.metadata.name} refers to a missing ${b.roleRef.kind}`);
    assert.equal(b.subjects, [{ kind: 'ServiceAccount', name: sa.metadata.name, namespace: NAMESPACE }]);
  }
  const boundRoles = new Set([...find('ClusterRoleBinding'), ...find('RoleBinding')].map((b) => b.roleRef.name));
  for (const r of [...find('ClusterRole'), ...find('Role')]) assert.ok(boundRoles.has(r.metadata.name), `${r.metadata.name} is never bound`);
});

test('DaemonSet: hostNetwork, node selector, bpffs, NET_ADMIN + BPF only, not privileged', () => {
  const ds = find('DaemonSet')[0]!;
  const pod = ds.spec.template.spec;
  assert.is(ds.metadata.namespace, NAMESPACE);
  assert.is(pod.hostNetwork, true);
  assert.ok(Object.keys(pod.nodeSelector ?? {}).length > 0, 'a node selector picks director nodes');
  assert.is(pod.serviceAccountName, find('ServiceAccount')[0]!.metadata.name);
  assert.equal(ds.spec.selector.matchLabels, ds.spec.template.metadata.labels);
  const c = pod.containers[0];
  const sc = c.securityContext;
  assert.not.ok(sc.privileged, 'not privileged');
  assert.is(sc.allowPrivilegeEscalation, false);
  assert.equal(sc.capabilities.drop, ['ALL']);
  assert.equal([...sc.capabilities.add].sort(), ['BPF', 'NET_ADMIN', 'PERFMON']);
  const bpffs = pod.volumes.find((v: { hostPath?: { path: string } }) => v.hostPath?.path === '/sys/fs/bpf');
  assert.ok(bpffs, 'bpffs hostPath volume');
  assert.ok(c.volumeMounts.some((m: { name: string; mountPath: string }) => m.name === bpffs.name && m.mountPath === '/sys/fs/bpf'));
  assert.ok(c.args.includes('run'));
  // Every configMapKeyRef points at a key that exists.
  const cm = find('ConfigMap', 'xdir-director')[0]!;
  for (const e of c.env) {
    const ref = e.valueFrom?.configMapKeyRef;
    if (ref) assert.ok(ref.name === cm.metadata.name && ref.key in cm.data, `env ${e.name} -> ${ref.name}/${ref.key}`);
  }
  assert.is(cm.data['lb-class'], DEFAULT_LOAD_BALANCER_CLASS);
});

const crd = find('CustomResourceDefinition', 'ippools.xdir.io')[0]!;
const schema: Schema = crd.spec.versions[0].schema.openAPIV3Schema;
const specErrors = (spec: unknown): string[] => validateSchema(schema.properties!.spec!, JSON.parse(JSON.stringify(spec)), 'spec');

test('IPPool CRD: cluster-scoped, status subresource; the examples are valid', () => {
  assert.equal([crd.spec.group, crd.spec.scope, crd.spec.names.kind, crd.spec.names.plural], ['xdir.io', 'Cluster', 'IPPool', 'ippools']);
  assert.ok(crd.spec.versions[0].subresources.status);
  for (const pool of find('IPPool')) assert.equal(specErrors(pool.spec), [], pool.metadata.name);
  for (const svc of find('Service')) assert.is(svc.spec.loadBalancerClass, DEFAULT_LOAD_BALANCER_CLASS);
});

test('IPPool CRD schema rejects bad pools at admission', () => {
  const good = ['198.18.0.0/28', '198.18.0.10-198.18.0.20', '198.18.0.7', 'fd00::/120', 'fd00::10-fd00::20', '2001:db8:0:1::5'];
  assert.equal(specErrors({ addresses: good }), []);
  for (const bad of ['198.18.0.300/24', '198.18.0.0/33', 'banana', '198.18.0.0/24/1', 'fd00::/129', '198.18.0.1 - 198.18.0.2', '']) {
    assert.ok(specErrors({ addresses: [bad] }).length > 0, `"${bad}" must be rejected`);
  }
  assert.match(specErrors({})[0]!, /spec.addresses: Required value/);
  assert.ok(specErrors({ addresses: [] }).length > 0, 'an empty list is rejected');
  assert.ok(specErrors({ addresses: ['198.18.0.0/24'], autoAssign: 'yes' }).length > 0);
  assert.ok(specErrors({ addresses: ['198.18.0.0/24'], serviceSelector: { matchExpressions: [{ key: 'a', operator: 'Like' }] } }).length > 0);
  assert.ok(specErrors({ addresses: ['198.18.0.0/24'], namespaces: ['Not_A_Namespace'] }).length > 0);
});

test.run();
