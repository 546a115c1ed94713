/**
 * The YAML config file -> DesiredState, with a line number and a reason for every problem. Pure:
 * text in, state or errors out. The file is all or nothing: one error anywhere rejects the whole
 * edit (the caller keeps the last good state), because a partially applied file would silently
 * remove the services that failed, and a typo must never take a service down.
 *
 *   defaults:                 # optional; values every service/backend gets unless it sets its own
 *     protocol: tcp           # tcp | udp
 *     scheduler: mh           # IPVS scheduler (mh sh rr wrr lc wlc); XDP always uses Maglev
 *     persistence: 0          # seconds of client affinity, 0 = off
 *     weight: 1               # backend weight
 *   services:
 *     - vip: 198.19.0.10
 *       port: 80              # 1..65535, or 0 / "*" for all ports
 *       protocol: tcp
 *       backends:
 *         - address: 198.18.0.21
 *           weight: 2         # 0 = draining: no new flows, existing flows stay
 *           mac: 02:00:00:00:00:21   # optional, else learned from the neighbour table
 *         - address: 198.18.0.22
 *           drain: true       # same as weight 0, keeping the weight written down
 *         - 198.18.0.23       # just an address: default weight
 *
 * Structure (unknown keys, wrong types) is checked here with exact lines; the meaning of values
 * (address syntax, ranges, families, duplicates) by control/model/validate.ts, reported at the
 * line of the service it belongs to.
 */
import { isMap, isScalar, isSeq, LineCounter, parseDocument, type Node, type Pair, type YAMLMap } from 'yaml';
import { SCHEDULERS, type Backend, type DesiredState, type Protocol, type Scheduler, type VirtualService } from '../../model/types.js';
import { formatValidationError, validateDesiredState } from '../../model/validate.js';

export interface ConfigError {
  /** 1-based line in the file (0 when the problem has no place, e.g. an empty file). */
  line: number;
  message: string;
}

export type ParseResult =
  | { ok: true; state: DesiredState }
  | { ok: false; errors: ConfigError[] };

interface Defaults {
  protocol: Protocol;
  scheduler: Scheduler;
  persistence: number;
  weight: number;
}

const BUILTIN_DEFAULTS: Defaults = { protocol: 'tcp', scheduler: 'mh', persistence: 0, weight: 1 };
const TOP_KEYS = ['services', 'defaults'];
const DEFAULT_KEYS = ['protocol', 'scheduler', 'persistence', 'weight'];
const SERVICE_KEYS = ['vip', 'port', 'protocol', 'scheduler', 'persistence', 'backends'];
const BACKEND_KEYS = ['address', 'weight', 'mac', 'drain'];

/** `file:PATH:LINE`, the origin a service carries into logs and status output. */
export function originOf(path: string, line: number): string {
  return `file:${path}:${line}`;
}

/**
 * Parses and validates a config file's text. `path` only labels origins. The result is either a
 * complete, validated DesiredState or the full list of problems (sorted by line).
 */
export function parseConfig(text: string, path: string): ParseResult {
  const errors: ConfigError[] = [];
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: true, uniqueKeys: true });
  const lineOf = (node: Node | null | undefined): number => (node?.range ? lines.linePos(node.range[0]).line : 0);
  const fail = (node: Node | null | undefined, message: string) => errors.push({ line: lineOf(node), message });

  for (const e of doc.errors) {
    errors.push({ line: e.linePos?.[0]?.line ?? 0, message: `YAML syntax: ${e.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '')}` });
  }
  if (errors.length) return { ok: false, errors };

  const root = doc.contents;
  if (!isMap(root)) {
    // An empty file is far more often a write in progress or a mistake than a wish to remove every
    // service; removing everything takes an explicit `services: []`.
    fail(root, root == null
      ? 'the file is empty; write `services: []` to remove every service on purpose'
      : 'the top level must be a mapping with a `services:` list');
    return { ok: false, errors };
  }
  checkKeys(root, TOP_KEYS, 'top level', fail);

  const defaults = readDefaults(root.get('defaults', true) as Node | undefined, fail);
  const servicesNode = root.get('services', true) as Node | undefined;
  if (servicesNode === undefined) {
    fail(root, 'no `services:` list; write `services: []` to remove every service on purpose');
    return { ok: false, errors };
  }
  if (!isSeq(servicesNode)) {
    fail(servicesNode, '`services` must be a list (each item starts with `- vip: ...`)');
    return { ok: false, errors };
  }

  const raws: { raw: VirtualService; line: number }[] = [];
  servicesNode.items.forEach((item, i) => {
    const node = item as Node;
    if (!isMap(node)) { fail(node, `service #${i + 1} must be a mapping with vip, port, protocol and backends`); return; }
    checkKeys(node, SERVICE_KEYS, `service #${i + 1}`, fail);
    const line = lineOf(node);
    const vip = scalar(node, 'vip');
    if (vip === undefined) fail(node, `service #${i + 1} has no \`vip\``);
    else if (typeof vip !== 'string') fail(node.get('vip', true) as Node, `vip must be an IP address, got ${JSON.stringify(vip)}`);
    const portRaw = scalar(node, 'port');
    let port: unknown = portRaw;
    if (portRaw === undefined) fail(node, `service #${i + 1} has no \`port\` (use 0 or "*" for all ports)`);
    else if (portRaw === '*') port = 0;
    const backendsNode = node.get('backends', true) as Node | undefined;
    const backends: Backend[] = [];
    if (backendsNode === undefined) fail(node, `service #${i + 1} has no \`backends\` list (an empty list \`[]\` is allowed)`);
    else if (!isSeq(backendsNode)) fail(backendsNode, '`backends` must be a list');
    else {
      for (const b of backendsNode.items as Node[]) {
        const backend = readBackend(b, defaults, fail);
        if (backend) backends.push(backend);
      }
    }
    const raw = {
      vip: vip as string,
      port: port as number,
      protocol: (scalar(node, 'protocol') ?? defaults.protocol) as Protocol,
      scheduler: (scalar(node, 'scheduler') ?? defaults.scheduler) as Scheduler,
      persistence: (scalar(node, 'persistence') ?? defaults.persistence) as number,
      backends,
      origin: originOf(path, line),
    };
    raws.push({ raw, line });
  });
  if (errors.length) return { ok: false, errors: sortByLine(errors) };

  const { state, errors: invalid } = validateDesiredState({ services: raws.map((r) => r.raw) });
  for (const e of invalid) {
    const line = Number(/:(\d+)$/.exec(e.origin ?? '')?.[1] ?? 0);
    errors.push({ line, message: formatValidationError({ ...e, origin: undefined }).replace(/; the service is skipped until fixed$/, '') });
  }
  if (errors.length) return { ok: false, errors: sortByLine(errors) };
  return { ok: true, state };
}

/** One line per error: `PATH:LINE: reason`, the form editors and terminals link to. */
export function formatConfigErrors(path: string, errors: readonly ConfigError[]): string[] {
  return errors.map((e) => `${path}:${e.line}: ${e.message}`);
}

type Fail = (node: Node | null | undefined, message: string) => void;

function sortByLine(errors: ConfigError[]): ConfigError[] {
  return [...errors].sort((a, b) => a.line - b.line);
}

function keyName(pair: Pair): string {
  return isScalar(pair.key) ? String(pair.key.value) : String(pair.key);
}

function checkKeys(map: YAMLMap, allowed: readonly string[], where: string, fail: Fail): void {
  for (const pair of map.items) {
    const k = keyName(pair);
    if (!allowed.includes(k)) fail(pair.key as Node, `unknown key \`${k}\` in ${where}; expected one of ${allowed.join(', ')}`);
  }
}

/** A scalar value by key: undefined when absent; a non-scalar (list, map) is returned as a marker object. */
function scalar(map: YAMLMap, key: string): unknown {
  const node = map.get(key, true) as Node | undefined;
  if (node === undefined) return undefined;
  if (isScalar(node)) return node.value;
  return { notScalar: true };
}

function readDefaults(node: Node | undefined, fail: Fail): Defaults {
  if (node === undefined) return BUILTIN_DEFAULTS;
  if (!isMap(node)) { fail(node, '`defaults` must be a mapping'); return BUILTIN_DEFAULTS; }
  checkKeys(node, DEFAULT_KEYS, 'defaults', fail);
  const d = { ...BUILTIN_DEFAULTS };
  const protocol = scalar(node, 'protocol');
  if (protocol !== undefined) {
    if (protocol === 'tcp' || protocol === 'udp') d.protocol = protocol;
    else fail(node.get('protocol', true) as Node, `defaults.protocol ${JSON.stringify(protocol)} is not tcp or udp`);
  }
  const scheduler = scalar(node, 'scheduler');
  if (scheduler !== undefined) {
    if (SCHEDULERS.includes(scheduler as Scheduler)) d.scheduler = scheduler as Scheduler;
    else fail(node.get('scheduler', true) as Node, `defaults.scheduler ${JSON.stringify(scheduler)} is not one of ${SCHEDULERS.join(', ')}`);
  }
  for (const k of ['persistence', 'weight'] as const) {
    const v = scalar(node, k);
    if (v === undefined) continue;
    if (typeof v === 'number' && Number.isInteger(v) && v >= 0) d[k] = v;
    else fail(node.get(k, true) as Node, `defaults.${k} ${JSON.stringify(v)} is not a non-negative integer`);
  }
  return d;
}

function readBackend(node: Node, defaults: Defaults, fail: Fail): Backend | null {
  if (isScalar(node)) {
    if (typeof node.value !== 'string') { fail(node, `backend ${JSON.stringify(node.value)} is not an IP address`); return null; }
    return { address: node.value, weight: defaults.weight };
  }
  if (!isMap(node)) { fail(node, 'a backend is an address or a mapping with `address:`'); return null; }
  checkKeys(node, BACKEND_KEYS, 'backend', fail);
  const address = scalar(node, 'address');
  if (address === undefined) { fail(node, 'backend has no `address`'); return null; }
  if (typeof address !== 'string') { fail(node.get('address', true) as Node, `backend address ${JSON.stringify(address)} is not an IP address`); return null; }
  const drain = scalar(node, 'drain');
  if (drain !== undefined && typeof drain !== 'boolean') fail(node.get('drain', true) as Node, `drain must be true or false, got ${JSON.stringify(drain)}`);
  const mac = scalar(node, 'mac');
  if (mac !== undefined && typeof mac !== 'string') {
    fail(node.get('mac', true) as Node, `mac ${JSON.stringify(mac)} must be written aa:bb:cc:dd:ee:ff (quote it if YAML reads it as a number)`);
  }
  const weight = drain === true ? 0 : (scalar(node, 'weight') ?? defaults.weight);
  return typeof mac === 'string' ? { address, weight: weight as number, mac } : { address, weight: weight as number };
}
