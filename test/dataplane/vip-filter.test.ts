/**
 * The VIP prefilter's content as the control plane keeps it (control/dataplane/xdp/vip-filter.ts):
 * counted per address and per bit, so removing one VIP never clears a bit another VIP needs.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { VipFilter } from '../../control/dataplane/xdp/vip-filter.js';
import { encodeVipFilter, vipFilterBit } from '../../control/dataplane/xdp/codecs.js';

/** Two different addresses with the same bit. */
function twins(): [string, string] {
  const seen = new Map<number, string>();
  for (let i = 0; ; i++) {
    const a = `198.18.${i >> 8}.${i & 255}`;
    const other = seen.get(vipFilterBit(a));
    if (other) return [other, a];
    seen.set(vipFilterBit(a), a);
  }
}

test('the value is encodeVipFilter of the addresses in use; counts per address and per bit', () => {
  const f = VipFilter.of(['198.18.0.10', '198.18.0.10', 'fd00::10']);
  assert.ok(f.value.equals(encodeVipFilter(['198.18.0.10', 'fd00::10'])));
  f.remove('198.18.0.10');
  assert.ok(f.has('198.18.0.10'), 'a second VIP on the address keeps it');
  f.remove('198.18.0.10');
  assert.ok(f.value.equals(encodeVipFilter(['fd00::10'])), 'the last VIP on the address clears its bit');
  f.remove('198.18.0.99');
  assert.ok(f.value.equals(encodeVipFilter(['fd00::10'])), 'removing an unknown address changes nothing');
  const [a, b] = twins();
  const g = VipFilter.of([a, b]);
  g.remove(a);
  assert.ok(g.has(b), `${b} keeps the bit it shares with ${a}`);
  g.remove(b);
  assert.ok(g.value.equals(encodeVipFilter([])), 'empty, still ready');
});

test('withExtra is a copy with more bits; the content stays', () => {
  const f = VipFilter.of(['198.18.0.10']);
  const wide = f.withExtra(['198.18.0.11']);
  assert.ok(wide.equals(encodeVipFilter(['198.18.0.10', '198.18.0.11'])));
  assert.ok(f.value.equals(encodeVipFilter(['198.18.0.10'])));
});

test.run();
