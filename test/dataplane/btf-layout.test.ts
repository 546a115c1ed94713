/**
 * The codecs' LAYOUT against the BTF of the compiled XDP object: same struct sizes, same member
 * offsets, same reason enum order. Needs bpf/director.bpf.o (`make bpf`) and bpftool.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { LAYOUT, XDIR_REASON_NAMES, reasonNameOf, type StructName } from '../../control/dataplane/xdp/codecs.js';

const objectPath = fileURLToPath(new URL('../../bpf/director.bpf.o', import.meta.url));

interface BtfType {
  id: number;
  kind: string;
  name: string;
  size?: number;
  members?: { name: string; bits_offset: number }[];
  values?: { name: string; val: number }[];
}

function btfTypes(): BtfType[] {
  if (!existsSync(objectPath)) throw new Error(`${objectPath} does not exist; build it with \`make bpf\``);
  const out = execFileSync('bpftool', ['-j', 'btf', 'dump', 'file', objectPath], { encoding: 'utf8', maxBuffer: 64 << 20 });
  return (JSON.parse(out) as { types: BtfType[] }).types;
}

const types = btfTypes();

function find(kind: string, name: string): BtfType {
  const found = types.filter((t) => t.kind === kind && t.name === name);
  assert.ok(found.length > 0, `${kind} ${name} is not in the BTF of ${objectPath}: the program must use it (e.g. as a map key/value type)`);
  return found[0]!;
}

for (const name of Object.keys(LAYOUT) as StructName[]) {
  test(`struct ${name}: size and member offsets match the BTF`, () => {
    const t = find('STRUCT', name);
    const layout = LAYOUT[name];
    assert.is(t.size, layout.size, `sizeof(struct ${name})`);
    const btfOffsets = Object.fromEntries(t.members!.map((m) => [m.name, m.bits_offset / 8]));
    assert.equal(btfOffsets, { ...layout.fields }, `members of struct ${name} (name -> byte offset)`);
  });
}

test('enum xdir_reason order matches XDIR_REASON_NAMES', () => {
  const e = find('ENUM', 'xdir_reason');
  const values = [...e.values!].sort((a, b) => a.val - b.val);
  const max = values.find((v) => v.name === 'XDIR_REASON_MAX');
  assert.ok(max, 'XDIR_REASON_MAX is in the enum');
  assert.is(max!.val, XDIR_REASON_NAMES.length);
  const named = values.filter((v) => v.name !== 'XDIR_REASON_MAX');
  assert.equal(named.map((v) => v.val), named.map((_, i) => i), 'values are 0..MAX-1 without gaps');
  assert.equal(named.map((v) => reasonNameOf(v.name)), [...XDIR_REASON_NAMES]);
});

test.run();
