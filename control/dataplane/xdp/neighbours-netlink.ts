/**
 * NeighbourResolver over rtnetlink: reads the kernel's neighbour table and, for an address it
 * does not know, asks the kernel to resolve it (NTF_USE), then watches the table for a short while.
 * A stale entry is answered as it is and the kernel is asked to confirm it (NTF_USE again).
 * The kernel does the ARP / NDP itself, with its own retransmit and failure rules.
 */
import { formatAddress, parseAddress } from '../../model/address.js';
import { linkByName } from '../../netlink/link.js';
import { dumpNeighbours, isUsable, triggerResolution } from '../../netlink/neighbour.js';
import { NETLINK_ROUTE, NetlinkSocket } from '../../netlink/socket.js';
import type { NeighbourResolver } from './neighbours.js';

export interface NetlinkNeighbourResolverOptions {
  /** Named network namespace whose neighbour table to use; default: the process's own. */
  netns?: string;
  /** How long lookup() waits for a reply after starting resolution (default 1000 ms; 0 = do not wait). */
  waitMs?: number;
  /** Interval between looks at the table while waiting (default 25 ms). */
  pollMs?: number;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export class NetlinkNeighbourResolver implements NeighbourResolver {
  private sock: NetlinkSocket | null = null;
  private readonly waitMs: number;
  private readonly pollMs: number;
  /**
   * The last dump of each (interface, family) table, reused for `pollMs`: an apply asks about every
   * backend at once, and one dump answers them all (a dump per address would cost backends x table
   * size, synchronously, on the event loop).
   */
  private readonly tables = new Map<string, { atMs: number; macs: Map<string, { mac: string | null; stale: boolean }> }>();
  /** Interface indexes by name, reused for `pollMs` for the same reason (a request per lookup otherwise). */
  private readonly links = new Map<string, { atMs: number; index: number }>();

  constructor(private readonly opts: NetlinkNeighbourResolverOptions = {}) {
    this.waitMs = opts.waitMs ?? 1000;
    this.pollMs = Math.max(1, opts.pollMs ?? 25);
  }

  private socket(): NetlinkSocket {
    this.sock ??= NetlinkSocket.open(NETLINK_ROUTE, { netns: this.opts.netns });
    return this.sock;
  }

  /** address -> usable MAC (null: known but not usable) for one interface and family, at most pollMs old. */
  private table(index: number, family: 4 | 6): Map<string, { mac: string | null; stale: boolean }> {
    const key = `${index}/${family}`;
    const now = Date.now();
    const cached = this.tables.get(key);
    if (cached && now - cached.atMs < this.pollMs) return cached.macs;
    const macs = new Map<string, { mac: string | null; stale: boolean }>();
    for (const n of dumpNeighbours(this.socket(), index, family)) macs.set(n.address, { mac: isUsable(n) ? n.mac : null, stale: n.state === 'stale' });
    this.tables.set(key, { atMs: now, macs });
    return macs;
  }

  private linkIndex(ifname: string): number {
    const now = Date.now();
    const cached = this.links.get(ifname);
    if (cached && now - cached.atMs < this.pollMs) return cached.index;
    const { index } = linkByName(this.socket(), ifname);
    this.links.set(ifname, { atMs: now, index });
    return index;
  }

  /** The usable MAC for `address` on `ifname`, starting resolution when the kernel has none. */
  async lookup(address: string, ifname: string): Promise<string | null> {
    const parsed = parseAddress(address);
    if (!parsed) throw new Error(`neighbour lookup: '${address}' is not an IP address`);
    const canonical = formatAddress(parsed.bytes);
    const index = this.linkIndex(ifname);
    const find = (): string | null => this.table(index, parsed.family).get(canonical)?.mac ?? null;
    const entry = this.table(index, parsed.family).get(canonical);
    if (entry?.mac) {
      // A stale entry is still usable, but nothing the kernel sends re-checks it (XDP traffic does
      // not go through the neighbour table): ask the kernel to confirm it, so a MAC that changed
      // without a gratuitous ARP is learned (the next lookup sees the answer).
      if (entry.stale) {
        try {
          triggerResolution(this.socket(), canonical, index);
        } catch {
          // Best effort: the entry is still usable, and the next lookup asks again.
        }
      }
      return entry.mac;
    }
    triggerResolution(this.socket(), canonical, index);
    const deadline = Date.now() + this.waitMs;
    for (;;) {
      await sleep(Math.min(this.pollMs, Math.max(1, deadline - Date.now())));
      const mac = find();
      if (mac || Date.now() >= deadline) return mac;
    }
  }

  close(): void {
    this.sock?.close();
    this.sock = null;
    this.tables.clear();
    this.links.clear();
  }
}
