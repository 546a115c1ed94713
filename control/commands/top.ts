/**
 * `xdir top`: a live view of the director's Watch stream: rates per VIP service, backend and
 * reason. On a terminal the frame is redrawn in place (q or Ctrl-C quits); otherwise each frame is
 * printed in turn, so `xdir top --frames 3 | less` works.
 */
import { parseArgs } from 'node:util';
import type { Readable, Writable } from 'node:stream';
import * as grpc from '@grpc/grpc-js';
import { CLIENT_FLAGS, CLIENT_USAGE, connectDirector, explainCallError } from '../observability/grpc/client.js';
import { unary, type ListServicesResponseMsg, type StatsSnapshotMsg } from '../observability/grpc/proto.js';
import { formatTopFrame } from '../observability/format.js';
import { CompactView } from '../observability/grpc/compact-view.js';

const USAGE = `usage: xdir top [flags]

Live rates per VIP service, backend and drop reason. Keys: q or Ctrl-C quits.

  --interval-ms N             refresh period (default 1000, minimum 100)
  --frames N                  stop after N frames (default: run until quit)
  --rows N                    rows per table (default: fits the terminal, 20 otherwise)
${CLIENT_USAGE}`;

// Backend states and weights change rarely: re-list them every few frames, not every frame.
const RELIST_EVERY_FRAMES = 10;

export interface TopIo {
  stdout: Pick<Writable, 'write'> & { isTTY?: boolean; rows?: number };
  stderr: Pick<Writable, 'write'>;
  stdin: Readable & { isTTY?: boolean; setRawMode?: (raw: boolean) => unknown };
}

const ESC = {
  altScreen: '\x1b[?1049h', mainScreen: '\x1b[?1049l',
  hideCursor: '\x1b[?25l', showCursor: '\x1b[?25h',
  home: '\x1b[H', clearBelow: '\x1b[J', clearLine: '\x1b[K',
};

function positiveInt(text: string | undefined, flag: string, min: number): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!Number.isInteger(n) || n < min) throw new Error(`${flag} '${text}' must be an integer >= ${min}`);
  return n;
}

export async function main(argv: string[], io: TopIo = process): Promise<number> {
  let values;
  let intervalMs: number;
  let frames: number | undefined;
  let rowsFlag: number | undefined;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: { ...CLIENT_FLAGS, 'interval-ms': { type: 'string' }, frames: { type: 'string' }, rows: { type: 'string' } },
      strict: true,
    }));
    intervalMs = positiveInt(values['interval-ms'], '--interval-ms', 100) ?? 1000;
    frames = positiveInt(values.frames, '--frames', 1);
    rowsFlag = positiveInt(values.rows, '--rows', 1);
  } catch (err) {
    io.stderr.write(`xdir top: ${(err as Error).message}\n\n${USAGE}\n`);
    return 2;
  }
  if (values.help) { io.stdout.write(`${USAGE}\n`); return 0; }

  const tty = io.stdout.isTTY === true;
  const { client, target } = connectDirector(values);
  const vips = values.vip ?? [];
  let list: ListServicesResponseMsg | undefined;
  const relist = (): void => {
    unary<unknown, ListServicesResponseMsg>(client, 'ListServices', { vips }).then((l) => { list = l; }, () => {});
  };
  relist();

  return new Promise<number>((resolve) => {
    let shown = 0;
    let finished = false;
    // Changes only, compact: at 10,000 VIPs a complete snapshot is megabytes, and most entries
    // are idle in a given second. The view rebuilds the complete table on this side.
    const stream = client.Watch({ interval_ms: intervalMs, vips, changes_only: true, compact: true });
    const view = new CompactView();
    const keyboard = tty && io.stdin.isTTY === true && typeof io.stdin.setRawMode === 'function';

    const finish = (code: number, message?: string): void => {
      if (finished) return;
      finished = true;
      stream.cancel();
      client.close();
      process.off('SIGINT', onSigint);
      if (keyboard) { io.stdin.setRawMode!(false); io.stdin.off('data', onKey); io.stdin.pause(); }
      if (tty) io.stdout.write(ESC.showCursor + ESC.mainScreen);
      if (message) io.stderr.write(`${message}\n`);
      resolve(code);
    };
    const onKey = (buf: Buffer): void => {
      const k = buf.toString();
      if (k === 'q' || k === 'Q' || k === '\x03') finish(0);
    };
    const onSigint = (): void => finish(0);
    process.on('SIGINT', onSigint);
    if (keyboard) { io.stdin.setRawMode!(true); io.stdin.resume(); io.stdin.on('data', onKey); }
    if (tty) io.stdout.write(ESC.altScreen + ESC.hideCursor);

    stream.on('data', (compact: StatsSnapshotMsg) => {
      let snap: StatsSnapshotMsg | undefined;
      try {
        snap = view.apply(compact);
      } catch (err) {
        finish(1, `xdir top: the director sent a snapshot this version cannot read: ${(err as Error).message}; upgrade xdir`);
        return;
      }
      if (!snap) return; // a name table comes with a later snapshot
      shown += 1;
      if (shown % RELIST_EVERY_FRAMES === 0) relist();
      // Three tables share the screen, with headers and blank lines around them.
      const rows = rowsFlag ?? (tty && io.stdout.rows ? Math.max(3, Math.floor((io.stdout.rows - 10) / 3)) : 20);
      const frame = formatTopFrame(snap, list, rows);
      if (tty) io.stdout.write(ESC.home + frame.split('\n').map((l) => l + ESC.clearLine).join('\n') + ESC.clearBelow);
      else io.stdout.write(`${frame}\n\n`);
      if (frames !== undefined && shown >= frames) finish(0);
    });
    stream.on('error', (err: grpc.ServiceError) => {
      if (err.code === grpc.status.CANCELLED && finished) return;
      finish(1, `xdir top: ${explainCallError(err, target)}`);
    });
    stream.on('end', () => finish(0, 'xdir top: the director ended the stream (it is shutting down?)'));
  });
}
