#!/usr/bin/env node
// UDP packet source for the guest benchmark, run inside a client namespace: sends COUNT small
// datagrams to HOST:PORT from one socket (one flow) as fast as it can, for at most SECONDS.
// Prints one JSON line {sent, ms}. Bounded in count and time.
import dgram from 'node:dgram';
import { isIPv6 } from 'node:net';

const [host, portText, countText, secondsText] = process.argv.slice(2);
const port = Number(portText), count = Number(countText), deadline = Date.now() + Number(secondsText) * 1000;
const sock = dgram.createSocket({ type: isIPv6(host) ? 'udp6' : 'udp4', sendBufferSize: 1 << 20 });
const payload = Buffer.alloc(18, 0x78);
const WINDOW = 256;
let sent = 0, inflight = 0;
const start = performance.now();
await new Promise((resolve) => {
  const pump = () => {
    while (inflight < WINDOW && sent < count && Date.now() < deadline) {
      inflight++; sent++;
      sock.send(payload, port, host, () => { inflight--; if (inflight === 0 && (sent >= count || Date.now() >= deadline)) resolve(); else pump(); });
    }
  };
  pump();
});
const ms = performance.now() - start;
sock.close();
process.stdout.write(`${JSON.stringify({ sent, ms })}\n`);
