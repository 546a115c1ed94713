/**
 * Runs inside a test network namespace (under `ip netns exec`) for test/bpf/xdp-attach.test.ts:
 * koffi calls happen in the calling process, so the namespace must be this process's.
 *
 *   steps <object.o> '<json steps>'   run attach/detach/query steps, print one JSON result per step
 *   poll <ifname>                     query until stdin closes; print how often no program was seen
 */
import { BpfObject, attachXdp, detachXdp, queryXdp, type XdpMode } from '../../control/bpf/index.js';

type Step =
  | { op: 'attach'; ifname: string; prog: 'A' | 'B'; mode: XdpMode | 'auto' }
  | { op: 'detach' | 'query'; ifname: string }
  | { op: 'ids' }
  | { op: 'flip'; ifname: string; times: number };

function runSteps(objectPath: string, steps: Step[]): void {
  // Two loads of the same object: two programs with different ids.
  const objs = { A: BpfObject.open({ objectPath }), B: BpfObject.open({ objectPath }) };
  const prog = (k: 'A' | 'B') => objs[k].program('xdp_fixture');
  for (const s of steps) {
    try {
      switch (s.op) {
        case 'attach': console.log(JSON.stringify({ ok: attachXdp(s.ifname, prog(s.prog), { mode: s.mode }) })); break;
        case 'detach': detachXdp(s.ifname); console.log(JSON.stringify({ ok: true })); break;
        case 'query': console.log(JSON.stringify({ ok: queryXdp(s.ifname) })); break;
        case 'ids': console.log(JSON.stringify({ ok: { A: prog('A').id, B: prog('B').id } })); break;
        case 'flip':
          for (let i = 0; i < s.times; i++) attachXdp(s.ifname, prog(i % 2 ? 'A' : 'B'), { mode: 'native' });
          console.log(JSON.stringify({ ok: queryXdp(s.ifname) }));
          break;
      }
    } catch (err) {
      console.log(JSON.stringify({ error: (err as Error).message }));
    }
  }
  // Exit without detaching: the attachment must outlive this process.
  objs.A.close();
  objs.B.close();
}

async function poll(ifname: string): Promise<void> {
  let stop = false;
  process.stdin.on('end', () => { stop = true; }).resume();
  let queries = 0;
  let gaps = 0;
  const ids = new Set<number>();
  console.log('ready');
  while (!stop && queries < 2_000_000) {
    for (let i = 0; i < 500; i++, queries++) {
      const q = queryXdp(ifname);
      if (q) ids.add(q.progId);
      else gaps++;
    }
    await new Promise((r) => setImmediate(r));
  }
  console.log(JSON.stringify({ queries, gaps, ids: [...ids] }));
}

const [cmd, a, b] = process.argv.slice(2);
if (cmd === 'steps') runSteps(a, JSON.parse(b) as Step[]);
else if (cmd === 'poll') await poll(a);
else throw new Error(`unknown command ${cmd}`);
