/**
 * Real client traffic from a client namespace, through test/lib/servers/client.mjs: bursts of new
 * HTTP connections or UDP flows, and long-lived keep-alive connections that are watched while the
 * director is reconfigured or restarted. Every load is bounded in count and time.
 */
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as readline from 'node:readline';
import type { NetNode, Topology } from './topology.js';
import { waitExit, waitFor } from './netns.js';

const CLIENT = join(fileURLToPath(new URL('./servers/', import.meta.url)), 'client.mjs');

export interface BurstResult {
  ok: number;
  errors: number;
  /** Replies by real-server name. */
  byServer: Record<string, number>;
  errorSamples: string[];
}

async function burst(t: Topology, client: NetNode, mode: 'http-burst' | 'udp-burst', host: string, port: number,
  count: number, concurrency: number, extra: string[] = []): Promise<BurstResult> {
  const { stdout } = await t.exec(client, [process.execPath, CLIENT, mode, host, String(port), String(count), String(concurrency), ...extra],
    { timeoutMs: 60_000 });
  return JSON.parse(stdout.trim().split('\n').at(-1)!) as BurstResult;
}

/**
 * `count` HTTP requests to host:port, each on a new TCP connection (so each is a new flow).
 * `sourcePortBase` binds source ports base..base+count-1 (below the ephemeral range, 32768, and
 * not reused within a topology: the client's side of a closed connection sits in TIME_WAIT), so
 * the flows, and the director's backend picks, are the same on every run.
 */
export function httpBurst(t: Topology, client: NetNode, host: string, count: number,
  opts: { port?: number; concurrency?: number; sourcePortBase?: number } = {}) {
  return burst(t, client, 'http-burst', host, opts.port ?? 80, count, opts.concurrency ?? 8,
    opts.sourcePortBase ? [String(opts.sourcePortBase)] : []);
}

/**
 * `count` UDP datagrams to host:port, each from a new socket (a new flow), each answered by the
 * server's name. `sourcePortBase` binds source ports base..base+count-1 (keep them below the
 * ephemeral range, 32768): the spread is then the same on every run; and a UDP 5-tuple seen before
 * is the *same* flow to the director until it idles out, so bursts that must be new flows use
 * fresh ports.
 */
export function udpBurst(t: Topology, client: NetNode, host: string, count: number,
  opts: { port?: number; concurrency?: number; sourcePortBase?: number } = {}) {
  return burst(t, client, 'udp-burst', host, opts.port ?? 53, count, opts.concurrency ?? 8,
    opts.sourcePortBase ? [String(opts.sourcePortBase)] : []);
}

export interface HeldConnection {
  id: number;
  localPort: number;
  /** Every real server that answered on this connection: exactly one while it is healthy. */
  servers: string[];
  requests: number;
  errors: string[];
  closed: boolean;
}

/** Long-lived TCP connections, each sending a request every `intervalMs`. */
export class HeldConnections {
  private lines: { event: string; conns: HeldConnection[] }[] = [];
  private constructor(private readonly child: ChildProcess) {
    readline.createInterface({ input: child.stdout! }).on('line', (l) => {
      try { this.lines.push(JSON.parse(l)); } catch { /* ignore */ }
    });
  }

  static async open(t: Topology, client: NetNode, host: string, conns: number, opts: { port?: number; intervalMs?: number; maxS?: number } = {}) {
    const child = t.spawn(client, [process.execPath, CLIENT, 'hold', host, String(opts.port ?? 80), String(conns),
      String(opts.intervalMs ?? 100), String(opts.maxS ?? 240)], { stdio: ['pipe', 'pipe', 'pipe'] });
    const h = new HeldConnections(child);
    const ready = await waitFor('held connections ready', () => h.lines.find((l) => l.event === 'ready' || l.event === 'final'), 20_000);
    if (ready.event !== 'ready') throw new Error(`held connections failed to open: ${JSON.stringify(ready.conns)}`);
    return h;
  }

  /** The connections' state now. */
  async report(): Promise<HeldConnection[]> {
    const before = this.lines.length;
    this.child.stdin!.write('report\n');
    const r = await waitFor('held connections report', () => this.lines.slice(before).find((l) => l.event === 'report'), 10_000);
    return r.conns;
  }

  /** Closes every connection and returns their final state. */
  async close(): Promise<HeldConnection[]> {
    this.child.stdin!.end();
    await waitExit(this.child, 10_000);
    const final = this.lines.find((l) => l.event === 'final');
    if (!final) throw new Error('held-connection client exited without a final report');
    return final.conns;
  }
}

/** Problems of held connections: any error, any close, or more than one server on a connection. */
export function heldProblems(conns: HeldConnection[]): string[] {
  const out: string[] = [];
  for (const c of conns) {
    if (c.errors.length) out.push(`connection ${c.id} (port ${c.localPort}): ${c.errors.join(', ')}`);
    if (c.closed) out.push(`connection ${c.id} closed`);
    if (c.servers.length !== 1) out.push(`connection ${c.id} answered by ${c.servers.join(' and ')}`);
  }
  return out;
}
