/**
 * Generic netlink: families (IPVS, nlctrl, ...) are addressed by a number the kernel assigns at
 * registration, resolved here by name through the controller family (CTRL_CMD_GETFAMILY).
 * Every generic netlink payload starts with struct genlmsghdr {u8 cmd; u8 version; u16 reserved}.
 */
import { Attrs, AttrWriter, type Message } from './message.js';
import { NETLINK_GENERIC, NetlinkError, NetlinkSocket, type OpenOptions } from './socket.js';

export const GENL_HDRLEN = 4;
export const GENL_ID_CTRL = 0x10;
const CTRL_CMD_GETFAMILY = 3;
const CTRL_ATTR_FAMILY_ID = 1;
const CTRL_ATTR_FAMILY_NAME = 2;
const CTRL_ATTR_VERSION = 3;
const CTRL_ATTR_HDRSIZE = 4;
const CTRL_ATTR_MAXATTR = 5;
const ENOENT = 2;

export interface GenlFamily {
  name: string;
  id: number;
  version: number;
  /** Bytes of family-specific header after genlmsghdr (0 for most families, IPVS included). */
  hdrSize: number;
  maxAttr: number;
}

export interface GenlMessage {
  cmd: number;
  version: number;
  attrs: Attrs;
  raw: Message;
}

/** A generic netlink family was asked for by name and the kernel has none by that name. */
export class FamilyNotFoundError extends NetlinkError {
  constructor(readonly family: string, hint: string) {
    super(`generic netlink family '${family}' not found: the running kernel does not provide it${hint}`, ENOENT);
    this.name = 'FamilyNotFoundError';
  }
}

/** What to tell the user when a well-known family is missing. */
const MISSING_HINTS: Record<string, string> = {
  IPVS: ' (IPVS needs a kernel built with CONFIG_IP_VS, or the ip_vs module: modprobe ip_vs)',
};

export function encodeGenl(cmd: number, version: number, attrs: AttrWriter | Buffer): Buffer {
  const body = attrs instanceof AttrWriter ? attrs.toBuffer() : attrs;
  const out = Buffer.alloc(GENL_HDRLEN + body.length);
  out.writeUInt8(cmd, 0);
  out.writeUInt8(version, 1);
  body.copy(out, GENL_HDRLEN);
  return out;
}

export function decodeGenl(msg: Message, hdrSize = 0): GenlMessage {
  if (msg.payload.length < GENL_HDRLEN + hdrSize) {
    throw new Error(`truncated generic netlink message (type ${msg.type}, ${msg.payload.length} bytes)`);
  }
  return {
    cmd: msg.payload.readUInt8(0),
    version: msg.payload.readUInt8(1),
    attrs: Attrs.parse(msg.payload.subarray(GENL_HDRLEN + hdrSize)),
    raw: msg,
  };
}

/** A generic netlink socket bound to one family. */
export class GenlSocket {
  private constructor(private readonly sock: NetlinkSocket, readonly family: GenlFamily) {}

  /** Opens a socket and resolves `family`; throws FamilyNotFoundError when the kernel lacks it. */
  static open(family: string, opts: OpenOptions = {}): GenlSocket {
    const sock = NetlinkSocket.open(NETLINK_GENERIC, opts);
    try {
      return new GenlSocket(sock, resolveFamily(sock, family));
    } catch (err) {
      sock.close();
      throw err;
    }
  }

  /** A request answered by an ACK; returns any replies that came before it. */
  request(cmd: number, flags: number, attrs: AttrWriter, context: string): GenlMessage[] {
    const replies = this.sock.request(this.family.id, flags, encodeGenl(cmd, this.family.version, attrs), { context });
    return replies.map((m) => decodeGenl(m, this.family.hdrSize));
  }

  dump(cmd: number, attrs: AttrWriter, context: string): GenlMessage[] {
    const replies = this.sock.dump(this.family.id, encodeGenl(cmd, this.family.version, attrs), { context });
    return replies.map((m) => decodeGenl(m, this.family.hdrSize));
  }

  close(): void {
    this.sock.close();
  }
}

/** Resolves a family's id and version by name on an open NETLINK_GENERIC socket. */
export function resolveFamily(sock: NetlinkSocket, name: string): GenlFamily {
  const attrs = new AttrWriter().string(CTRL_ATTR_FAMILY_NAME, name);
  let replies: Message[];
  try {
    replies = sock.request(GENL_ID_CTRL, 0, encodeGenl(CTRL_CMD_GETFAMILY, 1, attrs), {
      context: `resolve generic netlink family '${name}'`,
    });
  } catch (err) {
    if (err instanceof NetlinkError && err.errno === ENOENT) throw new FamilyNotFoundError(name, MISSING_HINTS[name] ?? '');
    throw err;
  }
  const reply = replies[0];
  if (!reply) throw new Error(`resolve generic netlink family '${name}': the kernel sent an ACK but no family`);
  const a = decodeGenl(reply).attrs;
  const id = a.u16(CTRL_ATTR_FAMILY_ID);
  if (id === undefined) throw new Error(`resolve generic netlink family '${name}': reply has no family id`);
  return {
    name: a.string(CTRL_ATTR_FAMILY_NAME) ?? name,
    id,
    version: a.u32(CTRL_ATTR_VERSION) ?? 1,
    hdrSize: a.u32(CTRL_ATTR_HDRSIZE) ?? 0,
    maxAttr: a.u32(CTRL_ATTR_MAXATTR) ?? 0,
  };
}
