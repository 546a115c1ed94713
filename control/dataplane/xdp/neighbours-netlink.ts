/**
 * NeighbourResolver over rtnetlink: reads the kernel's neighbour table and, for an address it
 * does not know, asks the kernel to resolve it (NTF_USE), then watches the table for a short while.
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

  constructor(private readonly opts: NetlinkNeighbourResolverOptions = {}) {
    this.waitMs = opts.waitMs ?? 1000;
    this.pollMs = Math.max(1, opts.pollMs ?? 25);
  }

  private socket(): NetlinkSocket {
    this.sock ??= NetlinkSocket.open(NETLINK_ROUTE, { netns: this.opts.netns });
    return this.sock;
  }

  /** The usable MAC for `address` on `ifname`, starting resolution when the kernel has none. */
  async lookup(address: string, ifname: string): Promise<string | null> {
    const parsed = parseAddress(address);
    if (!parsed) throw new Error(`neighbour lookup: '${address}' is not an IP address`);
    const canonical = formatAddress(parsed.bytes);
    const sock = this.socket();
    const { index } = linkByName(sock, ifname);
    const find = (): string | null => {
      const n = dumpNeighbours(sock, index, parsed.family).find((e) => e.address === canonical);
      return n && isUsable(n) ? n.mac : null;
    };
    const known = find();
    if (known) return known;
    triggerResolution(sock, canonical, index);
    const deadline = Date.now() + this.waitMs;
    for (;;) {
      const mac = find();
      if (mac || Date.now() >= deadline) return mac;
      await sleep(Math.min(this.pollMs, Math.max(1, deadline - Date.now())));
    }
  }

  close(): void {
    this.sock?.close();
    this.sock = null;
  }
}
