/**
 * A protocol-faithful Kubernetes API server for tests, over HTTP on 127.0.0.1 (random port), for
 * the real @kubernetes/client-node to talk to. It behaves like kube-apiserver wherever our
 * controller can tell the difference (see /work/shared/notes/kubernetes-client.md):
 *  - one global resourceVersion counter, bumped on every write; lists carry the current value;
 *    a no-op update keeps the resourceVersion and sends no event;
 *  - list + watch (newline-delimited JSON, headers flushed at once), replay from a resourceVersion,
 *    synthetic ADDED from 0/empty, BOOKMARKs for watchers that allow them, a compaction point below
 *    which a watch gets ERROR 410 Expired, label/field selectors (objects moving in or out of a
 *    selector arrive as ADDED/DELETED);
 *  - POST 201/409 AlreadyExists, PUT with a stale resourceVersion 409 Conflict, custom resources
 *    without one 422, status subresource, JSON/merge/strategic-merge/apply patches (415 for
 *    strategic merge on custom resources), DELETE with finalizers;
 *  - Events, Leases (MicroTime checked), custom resources registered from a CRD manifest and
 *    validated against its OpenAPI schema at admission.
 * Test controls: dropWatches(), compact(), sendBookmarks(), setUnavailable(), and a request log in
 * RBAC terms (verb, group, resource) to check the controller's calls against its RBAC rules.
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { validateSchema, type Schema } from './kube/openapi.js';
import { jsonPatch, mergePatch, strategicMergePatch, type JsonPatchOp } from './kube/patch.js';
import { parseFieldSelector, parseLabelSelector } from './kube/selectors.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type KubeObject = { apiVersion?: string; kind?: string; metadata: Record<string, any>; [k: string]: any };

export interface ResourceType {
  group: string; // '' for the core group
  version: string;
  plural: string;
  kind: string;
  namespaced: boolean;
  /** Has a /status subresource: the main resource ignores .status and /status changes only .status. */
  status: boolean;
  /** Whether .status given at create survives (Nodes: yes; Services and custom resources: no). */
  keepStatusOnCreate: boolean;
  custom: boolean;
  /** Admission: returns field errors (422) or [] when valid; may prune. */
  validate?: (obj: KubeObject) => string[];
}

export interface RecordedRequest {
  verb: 'get' | 'list' | 'watch' | 'create' | 'update' | 'patch' | 'delete';
  group: string;
  /** Plural, with `/status` for the subresource. */
  resource: string;
  namespace?: string;
  name?: string;
}

interface HistoryEntry {
  rv: number;
  res: string;
  type: 'ADDED' | 'MODIFIED' | 'DELETED';
  object: KubeObject;
  prev?: KubeObject;
}

interface Watcher {
  res: string;
  namespace?: string;
  matches: (o: KubeObject) => boolean;
  bookmarks: boolean;
  out: ServerResponse;
  type: ResourceType;
}

const MICROTIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/;

const BUILTIN: ResourceType[] = [
  { group: '', version: 'v1', plural: 'services', kind: 'Service', namespaced: true, status: true, keepStatusOnCreate: false, custom: false },
  { group: '', version: 'v1', plural: 'nodes', kind: 'Node', namespaced: false, status: true, keepStatusOnCreate: true, custom: false },
  { group: '', version: 'v1', plural: 'pods', kind: 'Pod', namespaced: true, status: true, keepStatusOnCreate: true, custom: false },
  { group: '', version: 'v1', plural: 'configmaps', kind: 'ConfigMap', namespaced: true, status: false, keepStatusOnCreate: false, custom: false },
  { group: '', version: 'v1', plural: 'namespaces', kind: 'Namespace', namespaced: false, status: true, keepStatusOnCreate: false, custom: false },
  { group: '', version: 'v1', plural: 'events', kind: 'Event', namespaced: true, status: false, keepStatusOnCreate: false, custom: false },
  { group: 'discovery.k8s.io', version: 'v1', plural: 'endpointslices', kind: 'EndpointSlice', namespaced: true, status: false, keepStatusOnCreate: false, custom: false },
  {
    group: 'coordination.k8s.io', version: 'v1', plural: 'leases', kind: 'Lease', namespaced: true, status: false, keepStatusOnCreate: false, custom: false,
    validate: (o) => ['acquireTime', 'renewTime']
      .filter((f) => o.spec?.[f] !== undefined && o.spec[f] !== null && !MICROTIME.test(String(o.spec[f])))
      .map((f) => `spec.${f}: Invalid value: "${o.spec[f]}": must be a MicroTime (RFC 3339 with 6 fractional digits)`),
  },
];

function clone<T>(v: T): T {
  return JSON.parse(JSON.stringify(v));
}

/** JSON with sorted keys: two objects with the same content compare equal whatever their key order. */
function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  if (v && typeof v === 'object') {
    return `{${Object.keys(v).filter((k) => (v as Record<string, unknown>)[k] !== undefined).sort()
      .map((k) => `${JSON.stringify(k)}:${canonicalJson((v as Record<string, unknown>)[k])}`).join(',')}}`;
  }
  return JSON.stringify(v);
}

function nowText(): string {
  return new Date().toISOString().replace(/\.\d+Z$/, 'Z');
}

function resId(t: Pick<ResourceType, 'group' | 'plural'>): string {
  return `${t.group}/${t.plural}`;
}

function objKey(ns: string | undefined, name: string): string {
  return `${ns ?? ''}/${name}`;
}

class ApiError extends Error {
  constructor(readonly code: number, readonly reason: string, message: string, readonly details?: unknown) {
    super(message);
  }
}

function statusBody(code: number, reason: string, message: string, details?: unknown): KubeObject {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code, ...(details ? { details } : {}) };
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let data = '';
    req.setEncoding('utf8');
    req.on('data', (c) => { data += c; });
    req.on('end', () => resolve(data));
    req.on('error', reject);
  });
}

export class FakeKubeApiServer {
  readonly requests: RecordedRequest[] = [];
  /** Called before a PUT/PATCH is applied: a test can change the object first to force a 409. */
  beforeUpdate?: (r: RecordedRequest) => void;
  private readonly types = new Map<string, ResourceType>();
  private readonly store = new Map<string, Map<string, KubeObject>>();
  private history: HistoryEntry[] = [];
  private rv = 1;
  private compactedRv = 1;
  private readonly watchers = new Set<Watcher>();
  private readonly sockets = new Set<Socket>();
  private unavailable = false;
  private heldWatches: (() => void)[] | null = null;
  /** Unfinished chunked lists: their snapshot, by continue-token id. */
  private readonly listSnapshots = new Map<string, KubeObject[]>();
  private server?: Server;
  private readonly unixServers: Server[] = [];
  url = '';

  constructor() {
    for (const t of BUILTIN) this.register(t);
  }

  static async start(): Promise<FakeKubeApiServer> {
    const s = new FakeKubeApiServer();
    await s.listen();
    return s;
  }

  private register(t: ResourceType): void {
    this.types.set(resId(t), t);
    if (!this.store.has(resId(t))) this.store.set(resId(t), new Map());
  }

  /** Serves a custom resource defined by an apiextensions.k8s.io/v1 CRD (object or YAML text). */
  registerCrd(crd: KubeObject | string): ResourceType {
    const c: KubeObject = typeof crd === 'string' ? parseYaml(crd) : crd;
    const version = c.spec.versions.find((v: { served: boolean; storage: boolean }) => v.served && v.storage) ?? c.spec.versions[0];
    const schema: Schema | undefined = version.schema?.openAPIV3Schema;
    const t: ResourceType = {
      group: c.spec.group, version: version.name, plural: c.spec.names.plural, kind: c.spec.names.kind,
      namespaced: c.spec.scope === 'Namespaced', status: !!version.subresources?.status,
      keepStatusOnCreate: !version.subresources?.status, custom: true,
      validate: schema ? (o) => {
        const errors: string[] = [];
        for (const field of ['spec', 'status']) {
          const sub = schema.properties?.[field];
          if (sub && o[field] !== undefined) errors.push(...validateSchema(sub, o[field], field));
        }
        for (const r of schema.required ?? []) if (o[r] === undefined) errors.push(`${r}: Required value`);
        return errors;
      } : undefined,
    };
    this.register(t);
    return t;
  }

  private newHttpServer(): Server {
    const server = createServer((req, res) => { void this.handle(req, res); });
    server.on('connection', (s) => {
      if (this.unavailable) { s.destroy(); return; }
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    return server;
  }

  /**
   * Also serves on a unix socket: a process inside a test network namespace reaches the fixture
   * through the filesystem (it proxies its own loopback to this path), never through a network.
   */
  listenUnix(path: string): Promise<void> {
    const server = this.newHttpServer();
    this.unixServers.push(server);
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => resolve());
    });
  }

  private listen(): Promise<void> {
    this.server = this.newHttpServer();
    return new Promise((resolve) => {
      this.server!.listen(0, '127.0.0.1', () => {
        this.url = `http://127.0.0.1:${(this.server!.address() as AddressInfo).port}`;
        resolve();
      });
    });
  }

  async close(): Promise<void> {
    for (const w of this.watchers) w.out.end();
    this.watchers.clear();
    for (const s of this.sockets) s.destroy();
    await Promise.all([this.server, ...this.unixServers].map((srv) => new Promise<void>((resolve) => (srv ? srv.close(() => resolve()) : resolve()))));
  }

  // ---- test controls -------------------------------------------------------------------------

  /** The current global resourceVersion. */
  get resourceVersion(): string {
    return String(this.rv);
  }

  /**
   * Ends every open watch cleanly, as an API server restart or a load balancer in front would.
   * With `hold`, new watch requests wait (unanswered) until resumeWatches(): changes and a
   * compaction made meanwhile are then seen by clients resuming from an old resourceVersion.
   */
  dropWatches(opts: { hold?: boolean } = {}): void {
    if (opts.hold && !this.heldWatches) this.heldWatches = [];
    for (const w of this.watchers) w.out.end();
    this.watchers.clear();
  }

  /** Answers the watch requests held since dropWatches({ hold: true }). */
  resumeWatches(): number {
    const held = this.heldWatches ?? [];
    this.heldWatches = null;
    for (const start of held) start();
    return held.length;
  }

  /** Watch requests waiting for resumeWatches(). */
  get heldWatchCount(): number {
    return this.heldWatches?.length ?? 0;
  }

  /** Forgets history up to now: a watch resuming from an older resourceVersion gets 410 Gone. */
  compact(): void {
    this.compactedRv = this.rv;
    this.history = [];
  }

  /** Sends a BOOKMARK with the current resourceVersion to every watcher that asked for bookmarks. */
  sendBookmarks(): void {
    for (const w of this.watchers) {
      if (!w.bookmarks) continue;
      const apiVersion = w.type.group ? `${w.type.group}/${w.type.version}` : w.type.version;
      this.writeEvent(w, { type: 'BOOKMARK', object: { kind: w.type.kind, apiVersion, metadata: { resourceVersion: String(this.rv) } } });
    }
  }

  /** While unavailable, connections are reset and open watches dropped: an unreachable server. */
  setUnavailable(down: boolean): void {
    this.unavailable = down;
    if (down) {
      this.dropWatches();
      for (const s of this.sockets) s.destroy();
    }
  }

  /** Number of open watches (per resource plural, or all). */
  watchCount(plural?: string): number {
    return [...this.watchers].filter((w) => !plural || w.type.plural === plural).length;
  }

  /** Writes a kubeconfig for this server and returns its path. */
  writeKubeconfig(dir = mkdtempSync(join(tmpdir(), 'xdir-kube-'))): string {
    const path = join(dir, 'kubeconfig');
    writeFileSync(path, [
      'apiVersion: v1', 'kind: Config',
      'clusters:', '- name: fixture', '  cluster:', `    server: ${this.url}`, '    insecure-skip-tls-verify: true',
      'users:', '- name: fixture', '  user:', '    token: fixture-token',
      'contexts:', '- name: fixture', '  context:', '    cluster: fixture', '    user: fixture', '    namespace: default',
      'current-context: fixture', '',
    ].join('\n'));
    return path;
  }

  // ---- direct object access for tests (same code paths as HTTP) --------------------------------

  private typeOfObject(o: KubeObject): ResourceType {
    const [group, version] = (o.apiVersion ?? '').includes('/') ? o.apiVersion!.split('/') : ['', o.apiVersion];
    const t = [...this.types.values()].find((x) => x.group === group && x.kind === o.kind);
    if (!t || !version) throw new Error(`no resource for ${o.apiVersion} ${o.kind}`);
    return t;
  }

  /** Creates the object, or replaces it (keeping status unless `o.status` is given) when it exists. */
  apply(o: KubeObject): KubeObject {
    const t = this.typeOfObject(o);
    const existing = this.store.get(resId(t))!.get(objKey(o.metadata.namespace, o.metadata.name));
    if (!existing) {
      const created = this.create(t, o.metadata.namespace, clone(o));
      if (o.status !== undefined && t.status && !t.keepStatusOnCreate) return this.update(t, created, { ...created, status: clone(o.status) }, 'status');
      return created;
    }
    let next = this.update(t, existing, { ...clone(o), metadata: { ...clone(o.metadata), resourceVersion: undefined } }, undefined, false);
    if (o.status !== undefined && t.status) next = this.update(t, next, { ...next, status: clone(o.status) }, 'status');
    return next;
  }

  get(kind: string, namespace: string | undefined, name: string): KubeObject | undefined {
    const t = [...this.types.values()].find((x) => x.kind === kind);
    const o = t && this.store.get(resId(t))!.get(objKey(t.namespaced ? namespace : undefined, name));
    return o ? clone(o) : undefined;
  }

  list(kind: string): KubeObject[] {
    const t = [...this.types.values()].find((x) => x.kind === kind);
    return t ? [...this.store.get(resId(t))!.values()].map(clone) : [];
  }

  remove(kind: string, namespace: string | undefined, name: string): void {
    const t = [...this.types.values()].find((x) => x.kind === kind);
    if (!t) throw new Error(`unknown kind ${kind}`);
    this.delete(t, namespace, name);
  }

  // ---- storage semantics ---------------------------------------------------------------------

  private record(t: ResourceType, type: HistoryEntry['type'], object: KubeObject, prev?: KubeObject): void {
    // Stored objects are replaced, never mutated (see the list snapshot below), so history can hold
    // the same references instead of copies: a 10,000-Service fixture stays small and quick.
    const entry: HistoryEntry = { rv: this.rv, res: resId(t), type, object, prev };
    this.history.push(entry);
    for (const w of this.watchers) if (w.res === entry.res) this.deliver(w, entry);
  }

  private deliver(w: Watcher, e: HistoryEntry): void {
    if (w.namespace !== undefined && e.object.metadata.namespace !== w.namespace) return;
    const now = w.matches(e.object);
    const before = e.prev ? w.matches(e.prev) : false;
    let type: string = e.type;
    if (e.type === 'MODIFIED') {
      if (now && !before) type = 'ADDED';
      else if (!now && before) type = 'DELETED';
      else if (!now) return;
    } else if (!now) {
      return;
    }
    this.writeEvent(w, { type, object: e.object });
  }

  private writeEvent(w: Watcher, ev: { type: string; object: unknown }): void {
    if (!w.out.writableEnded) w.out.write(`${JSON.stringify(ev)}\n`);
  }

  private withTypeMeta(t: ResourceType, o: KubeObject): KubeObject {
    return { apiVersion: t.group ? `${t.group}/${t.version}` : t.version, kind: t.kind, ...o };
  }

  private admit(t: ResourceType, o: KubeObject): void {
    const errors = t.validate?.(o) ?? [];
    if (errors.length) {
      throw new ApiError(422, 'Invalid', `${t.kind} "${o.metadata.name}" is invalid: ${errors.join(', ')}`,
        { name: o.metadata.name, group: t.group, kind: t.kind, causes: errors.map((message) => ({ message })) });
    }
  }

  private create(t: ResourceType, namespace: string | undefined, body: KubeObject): KubeObject {
    if (!body || typeof body !== 'object' || !body.metadata) throw new ApiError(400, 'BadRequest', 'the body must be an object with metadata');
    const meta = body.metadata;
    if (!meta.name && meta.generateName) meta.name = `${meta.generateName}${randomUUID().replace(/-/g, '').slice(0, 5)}`;
    if (!meta.name) throw new ApiError(422, 'Invalid', `${t.kind} is invalid: metadata.name: Required value: name or generateName is required`);
    if (t.namespaced) {
      if (meta.namespace && namespace && meta.namespace !== namespace) {
        throw new ApiError(400, 'BadRequest', 'the namespace of the provided object does not match the namespace sent on the request');
      }
      meta.namespace = namespace ?? meta.namespace ?? 'default';
    } else {
      delete meta.namespace;
    }
    const map = this.store.get(resId(t))!;
    const key = objKey(meta.namespace, meta.name);
    if (map.has(key)) throw new ApiError(409, 'AlreadyExists', `${t.plural}${t.group ? `.${t.group}` : ''} "${meta.name}" already exists`, { name: meta.name, group: t.group, kind: t.plural });
    const obj = this.withTypeMeta(t, clone(body));
    if (t.status && !t.keepStatusOnCreate) delete obj.status;
    this.admit(t, obj);
    this.rv++;
    Object.assign(obj.metadata, {
      uid: randomUUID(), creationTimestamp: nowText(), resourceVersion: String(this.rv), generation: 1,
    });
    delete obj.metadata.deletionTimestamp;
    map.set(key, obj);
    this.record(t, 'ADDED', obj);
    return clone(obj);
  }

  private conflict(t: ResourceType, name: string): ApiError {
    return new ApiError(409, 'Conflict',
      `Operation cannot be fulfilled on ${t.plural}${t.group ? `.${t.group}` : ''} "${name}": the object has been modified; please apply your changes to the latest version and try again`,
      { name, group: t.group, kind: t.plural });
  }

  /** PUT semantics shared by replace and patch: optimistic concurrency, status split, no-op detection. */
  private update(t: ResourceType, existing: KubeObject, body: KubeObject, sub: 'status' | undefined, requireRv = t.custom): KubeObject {
    if (!body || typeof body !== 'object' || !body.metadata) throw new ApiError(400, 'BadRequest', 'the body must be an object with metadata');
    const name = existing.metadata.name;
    if (body.metadata.name !== undefined && body.metadata.name !== name) {
      throw new ApiError(400, 'BadRequest', `the name of the object (${body.metadata.name}) does not match the name on the URL (${name})`);
    }
    const rv = body.metadata.resourceVersion;
    if (rv === undefined || rv === '') {
      if (requireRv) throw new ApiError(422, 'Invalid', `${t.kind}.${t.group} "${name}" is invalid: metadata.resourceVersion: Invalid value: 0x0: must be specified for an update`);
    } else if (rv !== existing.metadata.resourceVersion) {
      throw this.conflict(t, name);
    }
    let next: KubeObject;
    if (sub === 'status') {
      next = { ...clone(existing), status: clone(body.status) };
      if (next.status === undefined) delete next.status;
    } else {
      next = this.withTypeMeta(t, clone(body));
      if (t.status) { if (existing.status !== undefined) next.status = clone(existing.status); else delete next.status; }
      // System metadata is the server's.
      for (const f of ['uid', 'creationTimestamp', 'namespace', 'generation', 'deletionTimestamp']) {
        if (existing.metadata[f] !== undefined) next.metadata[f] = existing.metadata[f]; else delete next.metadata[f];
      }
      next.metadata.name = name;
      if (canonicalJson(next.spec) !== canonicalJson(existing.spec)) next.metadata.generation = (existing.metadata.generation ?? 1) + 1;
    }
    next.apiVersion = existing.apiVersion;
    next.kind = existing.kind;
    this.admit(t, next);
    next.metadata.resourceVersion = existing.metadata.resourceVersion;
    if (canonicalJson(next) === canonicalJson(existing)) return clone(existing); // no-op: no new RV, no event
    const map = this.store.get(resId(t))!;
    const key = objKey(existing.metadata.namespace, name);
    if (next.metadata.deletionTimestamp && !(next.metadata.finalizers?.length)) {
      map.delete(key);
      this.rv++;
      next.metadata.resourceVersion = String(this.rv);
      this.record(t, 'DELETED', next, existing);
      return clone(next);
    }
    this.rv++;
    next.metadata.resourceVersion = String(this.rv);
    map.set(key, next);
    this.record(t, 'MODIFIED', next, existing);
    return clone(next);
  }

  private delete(t: ResourceType, namespace: string | undefined, name: string): KubeObject {
    const map = this.store.get(resId(t))!;
    const key = objKey(t.namespaced ? namespace : undefined, name);
    const existing = map.get(key);
    if (!existing) throw new ApiError(404, 'NotFound', `${t.plural}${t.group ? `.${t.group}` : ''} "${name}" not found`, { name, group: t.group, kind: t.plural });
    if (existing.metadata.finalizers?.length) {
      if (existing.metadata.deletionTimestamp) return clone(existing);
      const next = clone(existing);
      next.metadata.deletionTimestamp = nowText();
      this.rv++;
      next.metadata.resourceVersion = String(this.rv);
      map.set(key, next);
      this.record(t, 'MODIFIED', next, existing);
      return clone(next);
    }
    map.delete(key);
    this.rv++;
    const gone = clone(existing);
    gone.metadata.resourceVersion = String(this.rv);
    this.record(t, 'DELETED', gone, existing);
    return clone(gone);
  }

  // ---- HTTP ----------------------------------------------------------------------------------

  private route(url: URL): { t: ResourceType; namespace?: string; name?: string; sub?: string } {
    const parts = url.pathname.split('/').filter(Boolean).map(decodeURIComponent);
    let group: string, rest: string[];
    if (parts[0] === 'api' && parts[1] === 'v1') { group = ''; rest = parts.slice(2); }
    else if (parts[0] === 'apis' && parts.length >= 3) { group = parts[1]!; rest = parts.slice(3); }
    else throw new ApiError(404, 'NotFound', `the server could not find the requested resource (${url.pathname})`);
    let namespace: string | undefined;
    if (rest[0] === 'namespaces' && rest.length >= 3) { namespace = rest[1]; rest = rest.slice(2); }
    const [plural, name, sub] = rest;
    const t = plural ? this.types.get(`${group}/${plural}`) : undefined;
    if (!t || rest.length > 3 || (sub !== undefined && sub !== 'status')) {
      throw new ApiError(404, 'NotFound', `the server could not find the requested resource (${url.pathname})`);
    }
    if (sub === 'status' && !t.status) throw new ApiError(404, 'NotFound', `${t.plural} has no status subresource`);
    if (!t.namespaced && namespace !== undefined) throw new ApiError(404, 'NotFound', `${t.plural} is not namespaced`);
    if (t.namespaced && name !== undefined && namespace === undefined) throw new ApiError(404, 'NotFound', `${t.plural} "${name}" needs a namespace`);
    return { t, namespace, name, sub };
  }

  private selectors(url: URL): (o: KubeObject) => boolean {
    try {
      const ls = url.searchParams.get('labelSelector');
      const fs = url.searchParams.get('fieldSelector');
      const byLabel = ls ? parseLabelSelector(ls) : () => true;
      const byField = fs ? parseFieldSelector(fs) : () => true;
      return (o) => byLabel(o.metadata.labels) && byField(o);
    } catch (err) {
      throw new ApiError(400, 'BadRequest', (err as Error).message);
    }
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://fixture');
    try {
      if (this.unavailable) { req.socket.destroy(); return; }
      const { t, namespace, name, sub } = this.route(url);
      const resource = sub ? `${t.plural}/${sub}` : t.plural;
      const log = (verb: RecordedRequest['verb']): void => { this.requests.push({ verb, group: t.group, resource, namespace, name }); };
      const map = this.store.get(resId(t))!;
      const body = ['POST', 'PUT', 'PATCH'].includes(req.method ?? '') ? await readBody(req) : '';
      const parse = (): KubeObject => {
        try { return JSON.parse(body); } catch { throw new ApiError(400, 'BadRequest', 'the request body is not valid JSON'); }
      };
      if (req.method === 'GET' && name === undefined) {
        const watch = url.searchParams.get('watch');
        if (watch === 'true' || watch === '1') {
          log('watch');
          const start = (): void => {
            try { this.watch(t, namespace, url, res); } catch (err) {
              if (err instanceof ApiError) this.send(res, err.code, statusBody(err.code, err.reason, err.message, err.details));
            }
          };
          if (this.heldWatches) this.heldWatches.push(start); else start();
          return;
        }
        log('list');
        const matches = this.selectors(url);
        // Chunking (limit/continue): every page comes from the snapshot the first page saw (stored
        // objects are replaced, never mutated, so a list of references is a consistent snapshot);
        // a token expires (410) once history is compacted past its resourceVersion.
        const limit = Number(url.searchParams.get('limit') ?? 0);
        const token = url.searchParams.get('continue');
        let listRv = this.rv;
        let all: KubeObject[];
        let offset = 0;
        if (token) {
          let parsed: { id: string; offset: number; rv: number };
          try { parsed = JSON.parse(Buffer.from(token, 'base64').toString()); } catch {
            throw new ApiError(400, 'BadRequest', 'continue key is not valid');
          }
          const snap = this.listSnapshots.get(parsed.id);
          if (!snap || parsed.rv < this.compactedRv) {
            this.listSnapshots.delete(parsed.id);
            throw new ApiError(410, 'Expired', 'The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.');
          }
          ({ rv: listRv, offset } = parsed);
          all = snap;
        } else {
          // Sorted by the store's keys (namespace/name), not keys rebuilt per comparison.
          all = [...map.entries()]
            .filter(([, o]) => (namespace === undefined || o.metadata.namespace === namespace) && matches(o))
            .sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0))
            .map(([, o]) => o);
        }
        const end = limit > 0 ? offset + limit : all.length;
        const selected = all.slice(offset, end);
        let next: string | undefined;
        const id = token ? (JSON.parse(Buffer.from(token, 'base64').toString()) as { id: string }).id : randomUUID();
        if (end < all.length) {
          this.listSnapshots.set(id, all);
          next = Buffer.from(JSON.stringify({ id, offset: end, rv: listRv })).toString('base64');
        } else {
          this.listSnapshots.delete(id);
        }
        const items = selected
          // Built-in lists carry no per-item type meta; custom resource lists do. (Serialised at
          // once by send(): no copy needed.)
          .map((o) => { if (t.custom) return o; const { apiVersion: _a, kind: _k, ...rest } = o; return rest; });
        this.send(res, 200, {
          apiVersion: t.group ? `${t.group}/${t.version}` : t.version, kind: `${t.kind}List`,
          metadata: { resourceVersion: String(listRv), ...(next ? { continue: next } : {}) }, items,
        });
        return;
      }
      if (req.method === 'POST' && name === undefined && !sub) {
        log('create');
        this.send(res, 201, this.create(t, namespace, parse()));
        return;
      }
      if (name === undefined) throw new ApiError(405, 'MethodNotAllowed', `${req.method} is not supported on a collection here`);
      const key = objKey(t.namespaced ? namespace : undefined, name);
      const existing = map.get(key);
      const notFound = (): ApiError => new ApiError(404, 'NotFound', `${t.plural}${t.group ? `.${t.group}` : ''} "${name}" not found`, { name, group: t.group, kind: t.plural });
      switch (req.method) {
        case 'GET':
          log('get');
          if (!existing) throw notFound();
          this.send(res, 200, clone(existing));
          return;
        case 'PUT': {
          log('update');
          this.beforeUpdate?.(this.requests[this.requests.length - 1]!);
          const current = map.get(key);
          if (!current) throw notFound();
          this.send(res, 200, this.update(t, current, parse(), sub as 'status' | undefined));
          return;
        }
        case 'PATCH': {
          log('patch');
          if (!existing) throw notFound();
          const ctype = (req.headers['content-type'] ?? '').split(';')[0]!.trim();
          let patched: KubeObject;
          try {
            if (ctype === 'application/json-patch+json') patched = jsonPatch(existing, parse() as unknown as JsonPatchOp[]) as KubeObject;
            else if (ctype === 'application/merge-patch+json') patched = mergePatch(existing, parse()) as KubeObject;
            else if (ctype === 'application/strategic-merge-patch+json') {
              if (t.custom) throw new ApiError(415, 'UnsupportedMediaType', `the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml`);
              patched = strategicMergePatch(existing, parse()) as KubeObject;
            } else if (ctype === 'application/apply-patch+yaml') patched = mergePatch(existing, parseYaml(body)) as KubeObject;
            else throw new ApiError(415, 'UnsupportedMediaType', `the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json`);
          } catch (err) {
            if (err instanceof ApiError) throw err;
            throw new ApiError(422, 'Invalid', `the patch could not be applied: ${(err as Error).message}`);
          }
          // A resourceVersion in the patch is a precondition; without one the patch applies to the latest.
          if (!patched.metadata) patched.metadata = {};
          if (patched.metadata.resourceVersion === undefined) patched.metadata.resourceVersion = existing.metadata.resourceVersion;
          this.send(res, 200, this.update(t, existing, patched, sub as 'status' | undefined, false));
          return;
        }
        case 'DELETE':
          log('delete');
          this.send(res, 200, this.delete(t, namespace, name));
          return;
        default:
          throw new ApiError(405, 'MethodNotAllowed', `${req.method} is not supported`);
      }
    } catch (err) {
      if (err instanceof ApiError) this.send(res, err.code, statusBody(err.code, err.reason, err.message, err.details));
      else this.send(res, 500, statusBody(500, 'InternalError', `fixture error: ${(err as Error).stack}`));
    }
  }

  private send(res: ServerResponse, code: number, body: unknown): void {
    // Encoded once: byteLength() plus end(text) walked a 10,000-item list page twice.
    const bytes = Buffer.from(JSON.stringify(body));
    res.writeHead(code, { 'Content-Type': 'application/json', 'Content-Length': bytes.length });
    res.end(bytes);
  }

  private watch(t: ResourceType, namespace: string | undefined, url: URL, res: ServerResponse): void {
    const matches = this.selectors(url);
    const from = url.searchParams.get('resourceVersion') ?? '';
    const w: Watcher = {
      res: resId(t), namespace, matches, type: t, out: res,
      bookmarks: url.searchParams.get('allowWatchBookmarks') === 'true',
    };
    res.writeHead(200, { 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked' });
    res.flushHeaders();
    if (from === '' || from === '0') {
      for (const o of this.store.get(resId(t))!.values()) {
        if ((namespace === undefined || o.metadata.namespace === namespace) && matches(o)) this.writeEvent(w, { type: 'ADDED', object: o });
      }
    } else {
      const n = Number(from);
      if (!Number.isInteger(n) || n < this.compactedRv) {
        this.writeEvent(w, {
          type: 'ERROR',
          object: statusBody(410, 'Expired', `too old resource version: ${from} (${this.compactedRv})`),
        });
        res.end();
        return;
      }
      for (const e of this.history) if (e.rv > n && e.res === w.res) this.deliver(w, e);
    }
    this.watchers.add(w);
    const timeout = Number(url.searchParams.get('timeoutSeconds') ?? 0);
    const timer = timeout > 0 ? setTimeout(() => res.end(), timeout * 1000) : undefined;
    const forget = (): void => { this.watchers.delete(w); if (timer) clearTimeout(timer); };
    res.on('close', forget);
    res.on('finish', forget);
  }
}
