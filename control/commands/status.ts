/**
 * `xdir status`: one table of the virtual services, their backends and counters, and the drops,
 * read from a running director over its gRPC API.
 */
import { parseArgs } from 'node:util';
import type { Writable } from 'node:stream';
import * as grpc from '@grpc/grpc-js';
import { CLIENT_FLAGS, CLIENT_USAGE, connectDirector, explainCallError } from '../observability/grpc/client.js';
import { unary, type ListServicesResponseMsg, type StatsSnapshotMsg } from '../observability/grpc/proto.js';
import { formatStatus } from '../observability/format.js';

const USAGE = `usage: xdir status [flags]

Prints the virtual services as programmed, with backends, weights, states and counters.

  --json                      print the ListServices and GetSnapshot answers as JSON
${CLIENT_USAGE}`;

export interface CommandIo {
  stdout: Pick<Writable, 'write'>;
  stderr: Pick<Writable, 'write'>;
}

export async function main(argv: string[], io: CommandIo = process): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({ args: argv, options: { ...CLIENT_FLAGS, json: { type: 'boolean' } }, strict: true }));
  } catch (err) {
    io.stderr.write(`xdir status: ${(err as Error).message}\n\n${USAGE}\n`);
    return 2;
  }
  if (values.help) { io.stdout.write(`${USAGE}\n`); return 0; }
  const { client, target } = connectDirector(values);
  try {
    const vips = values.vip ?? [];
    const list = await unary<unknown, ListServicesResponseMsg>(client, 'ListServices', { vips });
    let snap: StatsSnapshotMsg | undefined;
    try {
      snap = await unary<unknown, StatsSnapshotMsg>(client, 'GetSnapshot', { vips });
    } catch (err) {
      // No reading yet right after start: the services are still worth showing.
      if ((err as grpc.ServiceError).code !== grpc.status.UNAVAILABLE) throw err;
    }
    io.stdout.write(values.json ? `${JSON.stringify({ services: list, snapshot: snap ?? null }, null, 2)}\n` : `${formatStatus(list, snap)}\n`);
    return 0;
  } catch (err) {
    io.stderr.write(`xdir status: ${explainCallError(err, target)}\n`);
    return 1;
  } finally {
    client.close();
  }
}
