import * as grpc from '@grpc/grpc-js';
import { spawn } from 'node:child_process';
import * as readline from 'node:readline';
import { directorServiceDefinition } from './control/observability/grpc/proto.js';
const vips = process.argv[2]!; const nsubs = Number(process.argv[3]); const ms = Number(process.argv[4]);
const child = spawn(process.execPath, ['--import', 'tsx', 'bench/lib/stats-director.child.ts', '/sys/fs/bpf/xdir-dbg', '/tmp/dbg.sock', vips, '10', '251'], { stdio: ['pipe', 'pipe', 'inherit'], env: { ...process.env, XDIR_LOG_LEVEL: 'warn' } });
await new Promise((r) => readline.createInterface({ input: child.stdout! }).once('line', r));
const watch = directorServiceDefinition().Watch as grpc.MethodDefinition<unknown, unknown>;
let n = 0; const clients: grpc.Client[] = []; const calls: any[] = [];
for (let i = 0; i < nsubs; i++) {
  if (i % 10 === 0) clients.push(new grpc.Client('unix:/tmp/dbg.sock', grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1, 'grpc.max_receive_message_length': -1, 'grpc-node.flow_control_window': 32 << 20 }));
  const call = clients.at(-1)!.makeServerStreamRequest<unknown, number>(watch.path, watch.requestSerialize, (b: Buffer) => b.length, { interval_ms: 1000 });
  call.on('data', () => { n++; });
  call.on('error', (e: Error) => { if (!/Cancelled/.test(e.message)) console.log('err', e.message); });
  calls.push(call);
}
const t0 = Date.now();
const iv = setInterval(() => console.log(((Date.now() - t0) / 1000).toFixed(1), 'received', n), 1000);
await new Promise((r) => setTimeout(r, ms));
clearInterval(iv);
for (const c of calls) c.cancel(); for (const c of clients) c.close(); child.stdin!.end();
await new Promise((r) => child.once('exit', r));
