#!/usr/bin/env node
// A real server's UDP echo for tests and the demo: answers each datagram with `NAME <datagram>`.
// Usage: node udp-name.mjs NAME PORT ADDRESS...
// It binds each ADDRESS (the VIPs on lo) rather than the wildcard: a reply must leave with the VIP
// as its source, and a wildcard socket would answer from the interface address instead (the client
// would not recognise it). That is what any UDP service behind a DR director has to do.
// Prints `listening NAME ADDRESS PORT` per address when ready.
import dgram from 'node:dgram';
import { isIPv6 } from 'node:net';

const [name = 'server', portText = '53', ...addresses] = process.argv.slice(2);
const port = Number(portText);
for (const address of addresses) {
  const sock = dgram.createSocket({ type: isIPv6(address) ? 'udp6' : 'udp4', recvBufferSize: 1 << 20 });
  sock.on('message', (msg, rinfo) => {
    sock.send(Buffer.concat([Buffer.from(`${name} `), msg]), rinfo.port, rinfo.address);
  });
  sock.bind(port, address, () => console.log(`listening ${name} ${address} ${port}`));
}
process.on('SIGTERM', () => process.exit(0));
