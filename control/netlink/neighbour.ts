/**
 * rtnetlink neighbours (the kernel's ARP / NDP table): read entries of one interface, and ask the
 * kernel to resolve an address it does not know yet. Resolution uses RTM_NEWNEIGH with NTF_USE,
 * the same as a packet wanting to go out: the kernel creates the entry if needed and sends its own
 * ARP request / neighbour solicitation, so the director never builds probe packets itself.
 */
import { formatAddress, formatMac, parseAddress } from '../model/address.js';
import type { Family } from '../model/types.js';
import { Attrs, AttrWriter, NLM_F_CREATE } from './message.js';
import type { NetlinkSocket } from './socket.js';

const RTM_NEWNEIGH = 28;
const RTM_GETNEIGH = 30;
const NDMSG_LEN = 12; // {u8 family; u8 pad1; u16 pad2; s32 ifindex; u16 state; u8 flags; u8 type}
const NDA_DST = 1;
const NDA_LLADDR = 2;
const NDA_IFINDEX = 8;
const NTF_USE = 0x01;
const AF_INET = 2;
const AF_INET6 = 10;

/** NUD_* states by bit, in the kernel's names. */
const NUD_NAMES: readonly [number, NeighbourState][] = [
  [0x01, 'incomplete'], [0x02, 'reachable'], [0x04, 'stale'], [0x08, 'delay'],
  [0x10, 'probe'], [0x20, 'failed'], [0x40, 'noarp'], [0x80, 'permanent'],
];
export type NeighbourState =
  | 'none' | 'incomplete' | 'reachable' | 'stale' | 'delay' | 'probe' | 'failed' | 'noarp' | 'permanent';

/** States in which the entry's link-layer address can be used to send (NUD_VALID). */
const USABLE: ReadonlySet<NeighbourState> = new Set(['reachable', 'stale', 'delay', 'probe', 'noarp', 'permanent']);

export interface Neighbour {
  address: string;
  /** aa:bb:cc:dd:ee:ff, or null while the kernel has none (incomplete, failed). */
  mac: string | null;
  state: NeighbourState;
}

export function isUsable(n: Neighbour): boolean {
  return n.mac !== null && USABLE.has(n.state);
}

function ndmsg(family: number, ifindex: number, state: number, flags: number): Buffer {
  const b = Buffer.alloc(NDMSG_LEN);
  b.writeUInt8(family, 0);
  b.writeInt32LE(ifindex, 4);
  b.writeUInt16LE(state, 8);
  b.writeUInt8(flags, 10);
  return b;
}

function stateName(bits: number): NeighbourState {
  return NUD_NAMES.find(([bit]) => bits & bit)?.[1] ?? 'none';
}

/** The neighbour entries of one interface and address family. */
export function dumpNeighbours(sock: NetlinkSocket, ifindex: number, family: Family): Neighbour[] {
  const af = family === 4 ? AF_INET : AF_INET6;
  // Strict dump checking wants the ifindex filter as NDA_IFINDEX, with ndm_ifindex zero.
  const payload = Buffer.concat([ndmsg(af, 0, 0, 0), new AttrWriter().u32(NDA_IFINDEX, ifindex).toBuffer()]);
  const replies = sock.dump(RTM_GETNEIGH, payload, { context: `read IPv${family} neighbours of ifindex ${ifindex}` });
  const out: Neighbour[] = [];
  for (const m of replies) {
    const p = m.payload;
    // Filter again ourselves: kernels without strict checking ignore the filter.
    if (p.length < NDMSG_LEN || p.readUInt8(0) !== af || p.readInt32LE(4) !== ifindex) continue;
    const attrs = Attrs.parse(p.subarray(NDMSG_LEN));
    const dst = attrs.bytes(NDA_DST);
    if (!dst || (dst.length !== 4 && dst.length !== 16)) continue;
    const ll = attrs.bytes(NDA_LLADDR);
    out.push({
      address: formatAddress(dst),
      mac: ll && ll.length === 6 ? formatMac(ll) : null,
      state: stateName(p.readUInt16LE(8)),
    });
  }
  return out;
}

/**
 * Asks the kernel to resolve `address` on `ifindex` as if a packet wanted to go there: creates an
 * incomplete entry when there is none and starts ARP / neighbour solicitation. Returns at once;
 * the answer shows up in the table (dumpNeighbours) when the neighbour replies.
 */
export function triggerResolution(sock: NetlinkSocket, address: string, ifindex: number): void {
  const parsed = parseAddress(address);
  if (!parsed) throw new Error(`resolve neighbour: '${address}' is not an IP address`);
  const af = parsed.family === 4 ? AF_INET : AF_INET6;
  const payload = Buffer.concat([
    ndmsg(af, ifindex, 0, NTF_USE),
    new AttrWriter().bytes(NDA_DST, parsed.bytes).toBuffer(),
  ]);
  sock.request(RTM_NEWNEIGH, NLM_F_CREATE, payload, { context: `start resolving neighbour ${address} on ifindex ${ifindex}` });
}
