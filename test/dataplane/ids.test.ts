import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { IdAllocator } from '../../control/dataplane/xdp/ids.js';

test('ids are stable per key and handed out lowest first', () => {
  const a = new IdAllocator(4, 'backend');
  assert.is(a.allocate('x'), 0);
  assert.is(a.allocate('y'), 1);
  assert.is(a.allocate('x'), 0, 'same key, same id');
  assert.is(a.get('y'), 1);
  assert.is(a.keyOf(1), 'y');
  assert.is(a.size, 2);
});

test('a freed id goes to the back of the queue (FIFO), and allocation fails only when all are taken', () => {
  const a = new IdAllocator(3, 'backend');
  a.allocate('a'); a.allocate('b');
  assert.is(a.release('a'), 0);
  assert.is(a.allocate('c'), 2, 'the never-used id comes before the just-freed one');
  assert.is(a.allocate('d'), 0);
  assert.is(a.allocate('e'), null);
  assert.is(a.release('nope'), undefined);
});

test('adopt rebuilds from the maps and refuses contradictions', () => {
  const a = IdAllocator.adopt(4, 'backend', [['198.18.2.1', 2], ['198.18.2.2', 0]]);
  assert.is(a.get('198.18.2.1'), 2);
  assert.is(a.allocate('new'), 1, 'free ids in ascending order after a restart');
  assert.is(a.allocate('new2'), 3);
  assert.is(a.allocate('new3'), null);
  assert.throws(() => IdAllocator.adopt(4, 'backend', [['a', 1], ['b', 1]]), /id 1 is held by both a and b/);
  assert.throws(() => IdAllocator.adopt(4, 'backend', [['a', 1], ['a', 2]]), /a holds two ids/);
  assert.throws(() => IdAllocator.adopt(4, 'VIP', [['a', 4]]), /outside 0\.\.3/);
});

test('a draft sees its own changes, leaves the allocator alone, and commit replays the same ids', () => {
  const a = new IdAllocator(4, 'backend');
  a.allocate('x'); a.allocate('y'); a.release('x'); // queue: 2, 3, 0
  const d = a.draft();
  assert.is(d.allocate('z'), 2);
  assert.is(d.release('y'), 1);
  assert.is(d.allocate('w'), 3);
  assert.is(d.allocate('v'), 0);
  assert.is(d.allocate('u'), 1, 'an id freed in the draft comes last');
  assert.is(d.allocate('t'), null);
  assert.equal(d.entries(), [['v', 0], ['u', 1], ['z', 2], ['w', 3]]);
  assert.is(d.size, 4);
  assert.equal(a.entries(), [['y', 1]], 'the allocator is untouched until commit');
  assert.is(d.commit(), a);
  assert.equal(a.entries(), [['v', 0], ['u', 1], ['z', 2], ['w', 3]]);
  assert.throws(() => d.allocate('s'), /already committed/);
});

test('rollbackTo puts ids back where they were in the queue; a stale draft refuses to work', () => {
  const a = new IdAllocator(3, 'VIP');
  const d = a.draft();
  d.allocate('a');
  const mark = d.mark();
  d.allocate('b'); d.release('a'); d.allocate('c');
  d.rollbackTo(mark);
  assert.equal(d.entries(), [['a', 0]]);
  assert.is(d.allocate('b'), 1, 'the rolled-back id is handed out first again');
  const other = a.draft();
  d.commit();
  assert.throws(() => other.allocate('x'), /stale/);
  // A draft over a draft commits into it.
  const d2 = a.draft(), d3 = d2.draft();
  d3.allocate('z');
  assert.is(d2.get('z'), undefined);
  d3.commit();
  assert.is(d2.get('z'), 2);
  assert.is(a.get('z'), undefined);
});

test.run();
