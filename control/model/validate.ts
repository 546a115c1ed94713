/**
 * Checks a DesiredState from any source and puts it in canonical form. A service with any error
 * is dropped and reported; every valid service is kept, so one bad entry never takes the working
 * ones down with it. Data paths may assume what this guarantees: canonical address text (the
 * identity of VIPs and backends), backends of the VIP's family, integers in range, a MAC in
 * lower-case colon form, one service per serviceKey and one entry per backend address.
 * Input is treated as untrusted (it may come straight from YAML or a Kubernetes object).
 */
import { canonicalAddress, formatAddress, formatMac, parseAddress, parseMac } from './address.js';
import { SCHEDULERS, serviceKey, type Backend, type DesiredState, type Scheduler, type VirtualService } from './types.js';

export interface ValidationError {
  /** serviceKey() when the service got far enough to have one, else `service #<index>`. */
  service: string;
  /**
   * serviceKey() of a rejected service whose VIP, port and protocol are valid. A data path keeps
   * such a service as last programmed rather than removing it (bad input never wipes a working
   * service). Absent for duplicates: the first definition stays in the state.
   */
  key?: string;
  origin?: string;
  /** What is wrong and what to do about it. */
  message: string;
}

export interface ValidationResult {
  state: DesiredState;
  errors: ValidationError[];
}

/** checkService's verdict on one input object. */
interface CheckedService {
  key: string | undefined;
  ok: VirtualService | null;
  problems: string[];
}

/**
 * What validateDesiredState keeps between calls for a caller that validates states again and again
 * (a data path): a service handed over again as the same object is not checked again, and keeps
 * its canonical object (so later stages can tell it is unchanged by identity); duplicate keys are
 * found without building a map of every key per call. Input objects must not be modified once
 * validated; sources build new objects for changes.
 */
export class ValidationMemo {
  /** Verdicts by input object. */
  readonly checked = new WeakMap<object, CheckedService>();
  /** Per service key: the call that last kept a service under it, and that service's origin. */
  readonly kept = new Map<string, { call: number; origin: string | undefined }>();
  calls = 0;
  /**
   * The last result, when the next state may be validated from its delta (DesiredState.delta):
   * its input's revision, the valid services and where each sits, and the errors by key. Null
   * after a state without a revision or with errors that name no key (their `service #N` names
   * depend on positions a delta does not give).
   */
  last: { revision: number; services: VirtualService[]; slot: Map<string, number>; errors: Map<string, ValidationError> } | null = null;
  /** Calls answered from a delta (read by tests). */
  deltaCalls = 0;
}

/** Largest persistence timeout (seconds): IPVS keeps it in jiffies in 32 bits (about 49 days at HZ=1000). */
export const MAX_PERSISTENCE_S = 31 * 24 * 3600;

function isIntIn(v: unknown, lo: number, hi: number): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= lo && v <= hi;
}

function show(v: unknown): string {
  return typeof v === 'string' ? JSON.stringify(v) : String(v);
}

/**
 * Family and canonical text of a backend address, remembered: 10,000 Services on 10 nodes name the
 * same 10 addresses 100,000 times, and parsing each was most of validating them. Bounded: cleared
 * whole when it outgrows any plausible number of real servers.
 */
const backendAddresses = new Map<string, { family: 4 | 6; canonical: string } | null>();
const BACKEND_ADDRESS_MEMO = 16384;

function backendAddress(text: unknown): { family: 4 | 6; canonical: string } | null {
  if (typeof text !== 'string') return null;
  let known = backendAddresses.get(text);
  if (known === undefined) {
    const parsed = parseAddress(text);
    known = parsed ? { family: parsed.family, canonical: formatAddress(parsed.bytes) } : null;
    if (backendAddresses.size >= BACKEND_ADDRESS_MEMO) backendAddresses.clear();
    backendAddresses.set(text, known);
  }
  return known;
}

/** The canonical form of one service, or the reasons it has none. */
function checkService(raw: VirtualService, problems: string[]): VirtualService | null {
  const vip = parseAddress(raw.vip);
  if (!vip) problems.push(`VIP ${show(raw.vip)} is not an IPv4 or IPv6 address (no brackets, prefix or zone)`);
  if (!isIntIn(raw.port, 0, 65535)) problems.push(`port ${show(raw.port)} is not an integer 0..65535 (0 = all ports)`);
  if (raw.protocol !== 'tcp' && raw.protocol !== 'udp') problems.push(`protocol ${show(raw.protocol)} is not tcp or udp`);
  const scheduler: Scheduler = raw.scheduler ?? 'mh';
  if (!SCHEDULERS.includes(scheduler)) problems.push(`scheduler ${show(raw.scheduler)} is not one of ${SCHEDULERS.join(', ')}`);
  const persistence = raw.persistence ?? 0;
  if (!isIntIn(persistence, 0, MAX_PERSISTENCE_S)) {
    problems.push(`persistence ${show(raw.persistence)} is not an integer number of seconds 0..${MAX_PERSISTENCE_S}`);
  }
  if (!Array.isArray(raw.backends)) {
    problems.push('backends is not a list');
    return null;
  }
  const backends: Backend[] = [];
  const seen = new Set<string>();
  raw.backends.forEach((b: Backend, i: number) => {
    const where = `backend #${i + 1}`;
    if (b === null || typeof b !== 'object') { problems.push(`${where} is not an object`); return; }
    const addr = backendAddress(b.address);
    if (!addr) { problems.push(`${where}: ${show(b.address)} is not an IPv4 or IPv6 address`); return; }
    const address = addr.canonical;
    if (vip && addr.family !== vip.family) {
      problems.push(`backend ${address} is IPv${addr.family} but the VIP is IPv${vip.family}; direct routing keeps the packet's family`);
    }
    if (seen.has(address)) problems.push(`backend ${address} is listed twice; list each backend once`);
    seen.add(address);
    if (!isIntIn(b.weight, 0, 65535)) problems.push(`backend ${address}: weight ${show(b.weight)} is not an integer 0..65535 (0 = draining)`);
    let mac: string | undefined;
    if (b.mac !== undefined) {
      const bytes = parseMac(b.mac);
      if (!bytes) problems.push(`backend ${address}: MAC ${show(b.mac)} is not of the form aa:bb:cc:dd:ee:ff`);
      else if ((bytes[0]! & 1) === 1) problems.push(`backend ${address}: MAC ${formatMac(bytes)} is a multicast address, not a host's`);
      else mac = formatMac(bytes);
    }
    backends.push(mac === undefined ? { address, weight: b.weight } : { address, weight: b.weight, mac });
  });
  if (problems.length > 0) return null;
  const out: VirtualService = {
    vip: canonicalAddress(raw.vip)!,
    port: raw.port,
    protocol: raw.protocol,
    scheduler,
    persistence,
    backends,
  };
  return raw.origin === undefined ? out : { ...out, origin: raw.origin };
}

/** The service's key when its VIP, port and protocol are valid, whatever else is wrong with it. */
function keyOf(raw: VirtualService): string | undefined {
  const vip = canonicalAddress(raw.vip);
  if (vip && isIntIn(raw.port, 0, 65535) && (raw.protocol === 'tcp' || raw.protocol === 'udp')) {
    return serviceKey({ vip, port: raw.port, protocol: raw.protocol });
  }
  return undefined;
}

/** `key` only for an error whose service keeps its last good version programmed (see ValidationError.key). */
function pushError(errors: ValidationError[], service: string, origin: string | undefined, key: string | undefined, message: string): void {
  errors.push({
    service, message,
    ...(origin === undefined ? {} : { origin }),
    ...(key === undefined ? {} : { key }),
  });
}

/**
 * validateDesiredState for a state whose delta starts at the memo's last state: the same result
 * (up to the order of services), from the changed services alone. Null when the delta cannot be
 * used (a change whose key differs from the one it is filed under, or not an object): the caller
 * then validates everything.
 */
function validateDelta(input: DesiredState, memo: ValidationMemo): ValidationResult | null {
  const last = memo.last!;
  const delta = input.delta!;
  const verdicts = new Map<string, CheckedService | null>();
  for (const [k, raw] of delta.changes) {
    if (raw === null) { verdicts.set(k, null); continue; }
    if (typeof raw !== 'object') return null;
    let checked = memo.checked.get(raw);
    if (!checked) {
      const problems: string[] = [];
      checked = { key: keyOf(raw), ok: checkService(raw, problems), problems };
      memo.checked.set(raw, checked);
    }
    if (checked.key !== k) return null;
    verdicts.set(k, checked);
  }
  const services = last.services.slice();
  const slot = last.slot; // the memo's own: nobody else holds it
  const errors = new Map(last.errors);
  const changes = new Map<string, VirtualService | null>();
  for (const [k, checked] of verdicts) {
    const at = slot.get(k);
    const before = at === undefined ? null : services[at]!;
    const hadError = errors.delete(k);
    const ok = checked?.ok ?? null;
    if (ok) {
      if (at !== undefined) services[at] = ok;
      else { slot.set(k, services.length); services.push(ok); }
    } else {
      if (checked) {
        const raw = delta.changes.get(k)!;
        const list: ValidationError[] = [];
        pushError(list, k, typeof raw.origin === 'string' ? raw.origin : undefined, k, `${checked.problems.join('; ')}; the service is skipped until fixed`);
        errors.set(k, list[0]!);
      }
      if (at !== undefined) {
        // Swap-remove: order carries no meaning.
        const moved = services.pop()!;
        slot.delete(k);
        if (at < services.length) { services[at] = moved; slot.set(serviceKey(moved), at); }
      }
    }
    // A key that was rejected (kept as programmed through its keyed error) and is now deleted, or
    // rejected again, names no valid service before or after, yet the data path must hear of it:
    // null with no error now means "remove what you kept".
    if (ok !== before || (ok === null && hadError)) changes.set(k, ok);
  }
  memo.deltaCalls++;
  memo.last = { revision: input.revision!, services, slot, errors };
  return { state: { services, revision: input.revision, delta: { since: delta.since, changes } }, errors: [...errors.values()] };
}

/**
 * With a memo, a state whose delta (DesiredState.delta) starts at the previous call's state is
 * validated from its changes alone; the result then carries the delta of the valid services (a
 * key whose new definition is rejected maps to null there and has an error with `key`).
 */
export function validateDesiredState(input: DesiredState, memo?: ValidationMemo): ValidationResult {
  if (memo?.last && input?.delta && input.revision !== undefined && input.delta.since === memo.last.revision) {
    const fromDelta = validateDelta(input, memo);
    if (fromDelta) return fromDelta;
  }
  const errors: ValidationError[] = [];
  const services: VirtualService[] = [];
  const call = memo ? ++memo.calls : 0;
  const firstOrigin = new Map<string, string | undefined>();
  /** The service kept under `key` earlier in this call, or null (after noting this one as the first). */
  const keptBefore = (key: string, origin: string | undefined): { origin: string | undefined } | null => {
    if (!memo) {
      if (firstOrigin.has(key)) return { origin: firstOrigin.get(key) };
      firstOrigin.set(key, origin);
      return null;
    }
    const rec = memo.kept.get(key);
    if (rec?.call === call) return rec;
    if (rec) { rec.call = call; rec.origin = origin; } else memo.kept.set(key, { call, origin });
    return null;
  };
  const list: readonly VirtualService[] = Array.isArray(input?.services) ? input.services : [];
  if (!Array.isArray(input?.services)) {
    errors.push({ service: '(all)', message: 'desired state has no services list; nothing is programmed from it' });
  }
  list.forEach((raw, index) => {
    if (raw === null || typeof raw !== 'object') {
      errors.push({ service: `service #${index + 1}`, message: 'is not an object' });
      return;
    }
    let checked = memo?.checked.get(raw);
    if (!checked) {
      const problems: string[] = [];
      checked = { key: keyOf(raw), ok: checkService(raw, problems), problems };
      memo?.checked.set(raw, checked);
    }
    const { key, ok, problems } = checked;
    const service = key ?? `service #${index + 1}`;
    const origin = typeof raw.origin === 'string' ? raw.origin : undefined;
    if (!ok) {
      pushError(errors, service, origin, key, `${problems.join('; ')}; the service is skipped until fixed`);
      return;
    }
    const first = keptBefore(service, origin);
    if (first) {
      pushError(errors, service, origin, undefined,
        `duplicate service ${service}${first.origin ? ` (first defined at ${first.origin})` : ''}; the first definition is kept, remove or change this one`);
      return;
    }
    services.push(ok);
  });
  // Forget keys no longer in use (amortised: only once they outnumber the services in use).
  if (memo && memo.kept.size > 2 * services.length + 1024) {
    for (const [key, rec] of memo.kept) if (rec.call !== call) memo.kept.delete(key);
  }
  if (memo) {
    const keyed = errors.every((e) => e.key !== undefined) && new Set(errors.map((e) => e.key)).size === errors.length;
    memo.last = input.revision !== undefined && keyed ? {
      revision: input.revision, services: services.slice(),
      slot: new Map(services.map((s, i) => [serviceKey(s), i])),
      errors: new Map(errors.map((e) => [e.key!, e])),
    } : null;
  }
  return { state: input?.revision === undefined ? { services } : { services, revision: input.revision }, errors };
}

/** One line per error, for logs and CLI output. */
export function formatValidationError(e: ValidationError): string {
  return `${e.service}${e.origin ? ` (${e.origin})` : ''}: ${e.message}`;
}
