/**
 * The netlink wire format: messages (struct nlmsghdr + payload) and attributes (struct nlattr,
 * possibly nested), both padded to 4 bytes. Pure: builds and parses Buffers, no I/O.
 * Integers are in host byte order (little-endian on every machine we run on) unless an attribute
 * is documented as network order (ports, addresses), which callers write with the *be helpers.
 */

export const NLMSG_HDRLEN = 16;
export const NLA_HDRLEN = 4;

export const NLMSG_NOOP = 1;
export const NLMSG_ERROR = 2;
export const NLMSG_DONE = 3;
export const NLMSG_OVERRUN = 4;

export const NLM_F_REQUEST = 0x01;
export const NLM_F_MULTI = 0x02;
export const NLM_F_ACK = 0x04;
export const NLM_F_ECHO = 0x08;
export const NLM_F_DUMP_INTR = 0x10;
// GET modifiers
export const NLM_F_ROOT = 0x100;
export const NLM_F_MATCH = 0x200;
export const NLM_F_DUMP = NLM_F_ROOT | NLM_F_MATCH;
// NEW modifiers
export const NLM_F_REPLACE = 0x100;
export const NLM_F_EXCL = 0x200;
export const NLM_F_CREATE = 0x400;
export const NLM_F_APPEND = 0x800;
// flags on an NLMSG_ERROR message
export const NLM_F_CAPPED = 0x100;
export const NLM_F_ACK_TLVS = 0x200;

export const NLA_F_NESTED = 0x8000;
export const NLA_F_NET_BYTEORDER = 0x4000;
export const NLA_TYPE_MASK = ~(NLA_F_NESTED | NLA_F_NET_BYTEORDER) & 0xffff;

// extended ACK attributes (NLMSGERR_ATTR_*)
const NLMSGERR_ATTR_MSG = 1;

export function align4(n: number): number {
  return (n + 3) & ~3;
}

export interface MessageHeader {
  type: number;
  flags: number;
  seq: number;
  /** Port id of the sender; 0 = the kernel. */
  pid: number;
}

export interface Message extends MessageHeader {
  /** The bytes after the 16-byte header, without trailing padding. */
  payload: Buffer;
}

/** One netlink message: header + payload, the length field covering both (padding excluded). */
export function encodeMessage(header: MessageHeader, payload: Buffer): Buffer {
  const len = NLMSG_HDRLEN + payload.length;
  const out = Buffer.alloc(align4(len));
  out.writeUInt32LE(len, 0);
  out.writeUInt16LE(header.type, 4);
  out.writeUInt16LE(header.flags, 6);
  out.writeUInt32LE(header.seq >>> 0, 8);
  out.writeUInt32LE(header.pid >>> 0, 12);
  payload.copy(out, NLMSG_HDRLEN);
  return out;
}

/** Splits one datagram into its messages. A malformed length is an error, never a silent stop. */
export function parseMessages(buf: Buffer): Message[] {
  const out: Message[] = [];
  let off = 0;
  while (off + NLMSG_HDRLEN <= buf.length) {
    const len = buf.readUInt32LE(off);
    if (len < NLMSG_HDRLEN || off + len > buf.length) {
      throw new Error(`malformed netlink message at offset ${off}: length ${len}, ${buf.length - off} bytes left`);
    }
    out.push({
      type: buf.readUInt16LE(off + 4),
      flags: buf.readUInt16LE(off + 6),
      seq: buf.readUInt32LE(off + 8),
      pid: buf.readUInt32LE(off + 12),
      payload: buf.subarray(off + NLMSG_HDRLEN, off + len),
    });
    off += align4(len);
  }
  return out;
}

/** Builds a list of attributes; nested() writes an attribute whose payload is more attributes. */
export class AttrWriter {
  private readonly parts: Buffer[] = [];

  bytes(type: number, value: Uint8Array): this {
    const len = NLA_HDRLEN + value.length;
    const b = Buffer.alloc(align4(len));
    b.writeUInt16LE(len, 0);
    b.writeUInt16LE(type, 2);
    b.set(value, NLA_HDRLEN);
    this.parts.push(b);
    return this;
  }

  u8(type: number, v: number): this {
    return this.bytes(type, Uint8Array.of(v));
  }

  u16(type: number, v: number): this {
    const b = Buffer.alloc(2);
    b.writeUInt16LE(v);
    return this.bytes(type, b);
  }

  /** A 16-bit value in network byte order (ports). */
  u16be(type: number, v: number): this {
    const b = Buffer.alloc(2);
    b.writeUInt16BE(v);
    return this.bytes(type, b);
  }

  u32(type: number, v: number): this {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v >>> 0);
    return this.bytes(type, b);
  }

  u64(type: number, v: bigint): this {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(v);
    return this.bytes(type, b);
  }

  /** A NUL-terminated string (NLA_NUL_STRING / NLA_STRING both accept it). */
  string(type: number, s: string): this {
    return this.bytes(type, Buffer.from(`${s}\0`, 'utf8'));
  }

  nested(type: number, fill: (w: AttrWriter) => void): this {
    const inner = new AttrWriter();
    fill(inner);
    return this.bytes(type | NLA_F_NESTED, inner.toBuffer());
  }

  toBuffer(): Buffer {
    return Buffer.concat(this.parts);
  }
}

/** Parsed attributes by type (flags masked off); typed getters say what an attribute holds. */
export class Attrs {
  private constructor(private readonly byType: Map<number, Buffer>) {}

  static parse(buf: Buffer): Attrs {
    const m = new Map<number, Buffer>();
    let off = 0;
    while (off + NLA_HDRLEN <= buf.length) {
      const len = buf.readUInt16LE(off);
      const type = buf.readUInt16LE(off + 2) & NLA_TYPE_MASK;
      if (len < NLA_HDRLEN || off + len > buf.length) {
        throw new Error(`malformed netlink attribute at offset ${off}: length ${len}, ${buf.length - off} bytes left`);
      }
      m.set(type, buf.subarray(off + NLA_HDRLEN, off + len));
      off += align4(len);
    }
    return new Attrs(m);
  }

  has(type: number): boolean {
    return this.byType.has(type);
  }

  types(): number[] {
    return [...this.byType.keys()];
  }

  bytes(type: number): Buffer | undefined {
    return this.byType.get(type);
  }

  u8(type: number): number | undefined {
    return this.byType.get(type)?.readUInt8(0);
  }

  u16(type: number): number | undefined {
    return this.byType.get(type)?.readUInt16LE(0);
  }

  u16be(type: number): number | undefined {
    return this.byType.get(type)?.readUInt16BE(0);
  }

  u32(type: number): number | undefined {
    return this.byType.get(type)?.readUInt32LE(0);
  }

  u64(type: number): bigint | undefined {
    return this.byType.get(type)?.readBigUInt64LE(0);
  }

  string(type: number): string | undefined {
    const b = this.byType.get(type);
    if (!b) return undefined;
    const nul = b.indexOf(0);
    return b.subarray(0, nul === -1 ? b.length : nul).toString('utf8');
  }

  nested(type: number): Attrs | undefined {
    const b = this.byType.get(type);
    return b ? Attrs.parse(b) : undefined;
  }
}

/** What an NLMSG_ERROR message says: errno 0 is an ACK. */
export interface ErrorPayload {
  /** Positive errno (the kernel sends it negated); 0 for an ACK. */
  errno: number;
  /** The header of the request this answers. */
  request: MessageHeader;
  /** The kernel's extended-ACK text, when it gave one. */
  kernelMessage?: string;
}

export function parseError(msg: Message): ErrorPayload {
  const p = msg.payload;
  if (p.length < 4 + NLMSG_HDRLEN) throw new Error(`truncated NLMSG_ERROR (${p.length} bytes)`);
  const errno = -p.readInt32LE(0);
  const request = {
    type: p.readUInt16LE(8),
    flags: p.readUInt16LE(10),
    seq: p.readUInt32LE(12),
    pid: p.readUInt32LE(16),
  };
  let kernelMessage: string | undefined;
  if (msg.flags & NLM_F_ACK_TLVS) {
    // Without NLM_F_CAPPED the whole request is echoed back before the TLVs.
    const echoed = msg.flags & NLM_F_CAPPED ? NLMSG_HDRLEN : align4(p.readUInt32LE(4));
    const tlvStart = 4 + echoed;
    if (tlvStart <= p.length) {
      try {
        kernelMessage = Attrs.parse(p.subarray(tlvStart)).string(NLMSGERR_ATTR_MSG);
      } catch {
        // A garbled extended ACK only costs us the kernel's hint; the errno still stands.
      }
    }
  }
  return { errno: errno < 0 ? -errno : errno, request, kernelMessage };
}
