#!/usr/bin/env node
// A real server's HTTP service for tests, the demo and the benchmarks: answers every request with
// its own name, so a client can see which real server a connection reached.
// Usage: node http-name.mjs NAME [PORT ...]   (listens on [::]:PORT, dual stack; default port 80)
// Prints `listening NAME PORT` once per port when ready.
import http from 'node:http';

const [name = 'server', ...ports] = process.argv.slice(2);
const body = `${name}\n`;
for (const port of ports.length ? ports.map(Number) : [80]) {
  const server = http.createServer((req, res) => {
    req.resume();
    // /hold?ms=N answers after N ms (bounded), to keep a request in flight across a reconfiguration.
    const hold = Math.min(Number(new URL(req.url ?? '/', 'http://x').searchParams.get('ms') ?? 0) || 0, 60_000);
    const reply = () => res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length, 'x-server': name }).end(body);
    if (hold > 0) setTimeout(reply, hold); else reply();
  });
  // Long-lived keep-alive connections are part of the tests: never close an idle one ourselves.
  server.keepAliveTimeout = 0;
  server.requestTimeout = 0;
  server.headersTimeout = 60_000;
  server.listen({ port, host: '::', ipv6Only: false, backlog: 4096 }, () => console.log(`listening ${name} ${port}`));
}
process.on('SIGTERM', () => process.exit(0));
