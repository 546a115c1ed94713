/**
 * The VIP-address prefilter's content as the control plane keeps it (docs/decisions/0009): how
 * many programmed VIPs (services) use each address and how many addresses use each bit, so that a
 * change costs what it changes, not a rehash of every VIP. Pure: XdpDataplane decides when the
 * value is written to the pinned `vip_filter` map.
 */
import { LAYOUT, encodeVipFilter, vipFilterBit, vipFilterHas } from './codecs.js';

const F = LAYOUT.vip_filter.fields;

export class VipFilter {
  /** VIPs per address. */
  private readonly uses = new Map<string, number>();
  /** The bit of each address in `uses` (computing it takes BigInt arithmetic). */
  private readonly bits = new Map<string, number>();
  /** Addresses per bit. */
  private readonly perBit = new Uint32Array(1 << 16);
  /** The struct vip_filter value: `ready` set, a bit for every address in use. */
  readonly value = Buffer.alloc(LAYOUT.vip_filter.size);

  constructor() {
    this.value.writeUInt32LE(1, F.ready);
  }

  static of(addresses: Iterable<string>): VipFilter {
    const f = new VipFilter();
    for (const a of addresses) f.add(a);
    return f;
  }

  /** One more VIP on `address`. */
  add(address: string): void {
    const n = this.uses.get(address) ?? 0;
    this.uses.set(address, n + 1);
    if (n > 0) return;
    const bit = vipFilterBit(address);
    this.bits.set(address, bit);
    if (this.perBit[bit]!++ === 0) this.value[F.bits + (bit >> 3)]! |= 1 << (bit & 7);
  }

  /** One VIP fewer on `address`; its bit is cleared when no address uses it any more. */
  remove(address: string): void {
    const n = this.uses.get(address);
    if (n === undefined) return;
    if (n > 1) { this.uses.set(address, n - 1); return; }
    this.uses.delete(address);
    const bit = this.bits.get(address)!;
    this.bits.delete(address);
    if (--this.perBit[bit]! === 0) this.value[F.bits + (bit >> 3)]! &= ~(1 << (bit & 7));
  }

  /** Whether the value has the bit of `address` set. */
  has(address: string): boolean {
    return vipFilterHas(this.value, address);
  }

  /** A copy of the value with these addresses' bits set as well (the content stays as it is). */
  withExtra(addresses: Iterable<string>): Buffer {
    return encodeVipFilter(addresses, this.value);
  }
}
