/**
 * A counted UDP burst for counter assertions: `flows` sockets (flows) each send `perFlow`
 * datagrams exactly once (no retries, which a request/response client would add), so the sender
 * knows precisely how many packets crossed the director.
 */
import type { NetNode, Topology } from './topology.js';

export interface CountedBurst {
  sent: number;
  /** Replies received (each datagram is answered by a real server, straight to the client). */
  replies: number;
}

export async function sendCountedDatagrams(t: Topology, client: NetNode, vip: string,
  opts: { flows: number; perFlow: number; port?: number }): Promise<CountedBurst> {
  // Sockets stay open until every reply is in: a reply to a closed socket would make the client
  // send an ICMP port-unreachable to the VIP, which the director (rightly) forwards and counts.
  // Bounded: at most 5 s of waiting for replies.
  const script = `
    const dgram = require('node:dgram');
    const [vip, port, flows, perFlow] = process.argv.slice(1);
    (async () => {
      let sent = 0, replies = 0;
      const socks = [];
      for (let f = 0; f < +flows; f++) {
        const s = dgram.createSocket(vip.includes(':') ? 'udp6' : 'udp4');
        s.on('message', () => { replies++; });
        socks.push(s);
        for (let i = 0; i < +perFlow; i++) {
          await new Promise((res, rej) => s.send(Buffer.from('xdir ' + f + ' ' + i), +port, vip, (e) => (e ? rej(e) : res())));
          sent++;
        }
      }
      for (let i = 0; i < 100 && replies < sent; i++) await new Promise((r) => setTimeout(r, 50));
      for (const s of socks) s.close();
      console.log(JSON.stringify({ sent, replies }));
    })();`;
  const args = [process.execPath, '-e', script, vip, String(opts.port ?? 53), String(opts.flows), String(opts.perFlow)];
  const { stdout } = await t.exec(client, args, { timeoutMs: 30_000 });
  return JSON.parse(stdout.trim()) as CountedBurst;
}
