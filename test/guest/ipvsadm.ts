/**
 * `ipvsadm -Ln` (and `-Ln --stats --exact`) parsed into plain records: the independent view of
 * what IPVS holds, for the guest tests. Only the output format of ipvsadm 1.31 is assumed.
 */
import { nsRun, run } from '../lib/netns.js';

export interface IpvsadmDest {
  address: string;
  port: number;
  forward: string; // Route, Masq, Tunnel, Local
  weight: number;
  activeConns: number;
  inactiveConns: number;
}

export interface IpvsadmService {
  /** tcp/198.19.0.10:80, udp/[fd00:19::10]:53, tcp/198.19.0.10:* — the director's serviceKey(). */
  key: string;
  scheduler: string;
  /** Persistence timeout in seconds, 0 when not persistent. */
  persistent: number;
  /** The raw flags text after the scheduler (e.g. `persistent 300`). */
  flags: string;
  dests: IpvsadmDest[];
}

export interface IpvsadmStats {
  conns: number;
  inPackets: number;
  outPackets: number;
  inBytes: number;
  outBytes: number;
}

function splitHostPort(text: string): { host: string; port: number } {
  const i = text.lastIndexOf(':');
  return { host: text.slice(0, i).replace(/^\[|\]$/g, ''), port: Number(text.slice(i + 1)) };
}

function keyOf(proto: string, hostPort: string): string {
  const { host, port } = splitHostPort(hostPort);
  const h = host.includes(':') ? `[${host}]` : host;
  return `${proto.toLowerCase()}/${h}:${port === 0 ? '*' : port}`;
}

export function parseIpvsadmList(text: string): IpvsadmService[] {
  const out: IpvsadmService[] = [];
  for (const line of text.split('\n')) {
    const svc = /^(TCP|UDP|SCTP|FWM)\s+(\S+)\s+(\S+)\s*(.*?)\s*$/.exec(line);
    if (svc) {
      const flags = svc[4]!;
      const p = /persistent (\d+)/.exec(flags);
      out.push({
        key: svc[1] === 'FWM' ? `fwmark/${svc[2]}` : keyOf(svc[1]!, svc[2]!),
        scheduler: svc[3]!, persistent: p ? Number(p[1]) : 0, flags, dests: [],
      });
      continue;
    }
    const d = /^\s+->\s+(\S+)\s+(\w+)\s+(\d+)\s+(\d+)\s+(\d+)\s*$/.exec(line);
    if (d && out.length) {
      const { host, port } = splitHostPort(d[1]!);
      out[out.length - 1]!.dests.push({
        address: host, port, forward: d[2]!, weight: Number(d[3]), activeConns: Number(d[4]), inactiveConns: Number(d[5]),
      });
    }
  }
  return out;
}

/** `ipvsadm -Ln --stats --exact`: counters by service key, and by `key -> dest address`. */
export function parseIpvsadmStats(text: string): Map<string, IpvsadmStats> {
  const out = new Map<string, IpvsadmStats>();
  let current = '';
  const nums = (m: RegExpExecArray): IpvsadmStats => ({
    conns: Number(m[1]), inPackets: Number(m[2]), outPackets: Number(m[3]), inBytes: Number(m[4]), outBytes: Number(m[5]),
  });
  for (const line of text.split('\n')) {
    const svc = /^(TCP|UDP|SCTP)\s+(\S+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*$/.exec(line);
    if (svc) {
      current = keyOf(svc[1]!, svc[2]!);
      out.set(current, nums(/(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*$/.exec(line)!));
      continue;
    }
    const d = /^\s+->\s+(\S+)\s+\d+\s+\d+\s+\d+\s+\d+\s+\d+\s*$/.exec(line);
    if (d && current) out.set(`${current} -> ${splitHostPort(d[1]!).host}`, nums(/(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*$/.exec(line)!));
  }
  return out;
}

/** Runs ipvsadm (in a namespace when `ns` is given) and returns its stdout. */
export async function ipvsadm(ns: string | null, ...args: string[]): Promise<string> {
  const r = ns ? await nsRun(ns, ['ipvsadm', ...args]) : await run('ipvsadm', args);
  return r.stdout;
}

export async function listServices(ns: string | null): Promise<IpvsadmService[]> {
  return parseIpvsadmList(await ipvsadm(ns, '-Ln'));
}

export async function readStats(ns: string | null): Promise<Map<string, IpvsadmStats>> {
  return parseIpvsadmStats(await ipvsadm(ns, '-Ln', '--stats', '--exact'));
}
