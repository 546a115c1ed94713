/**
 * rtnetlink links: an interface's index by name, asked of the socket's own network namespace
 * (if_nametoindex would answer for the calling thread's namespace instead).
 */
import { Attrs, AttrWriter } from './message.js';
import { NetlinkError, type NetlinkSocket } from './socket.js';

const RTM_GETLINK = 18;
const IFLA_IFNAME = 3;
const IFINFOMSG_LEN = 16; // {u8 family; u8 pad; u16 type; s32 index; u32 flags; u32 change}
const ENODEV = 19;

export interface Link {
  index: number;
  name: string;
  /** IFF_* flags (IFF_UP = 1). */
  flags: number;
}

/** The link named `name`; throws a NetlinkError saying so when there is none. */
export function linkByName(sock: NetlinkSocket, name: string): Link {
  const payload = Buffer.concat([Buffer.alloc(IFINFOMSG_LEN), new AttrWriter().string(IFLA_IFNAME, name).toBuffer()]);
  let replies;
  try {
    replies = sock.request(RTM_GETLINK, 0, payload, { context: `look up interface '${name}'` });
  } catch (err) {
    if (err instanceof NetlinkError && err.errno === ENODEV) {
      throw new NetlinkError(`no interface named '${name}' (check 'ip link show'; names are per network namespace)`, ENODEV);
    }
    throw err;
  }
  const reply = replies[0];
  if (!reply || reply.payload.length < IFINFOMSG_LEN) throw new Error(`look up interface '${name}': empty reply`);
  const attrs = Attrs.parse(reply.payload.subarray(IFINFOMSG_LEN));
  return {
    index: reply.payload.readInt32LE(4),
    name: attrs.string(IFLA_IFNAME) ?? name,
    flags: reply.payload.readUInt32LE(8),
  };
}
