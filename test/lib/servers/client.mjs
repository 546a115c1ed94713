#!/usr/bin/env node
// Traffic client run inside a client namespace (by test/lib/traffic.ts). Every mode is bounded.
//   http-burst HOST PORT COUNT CONCURRENCY [SPORT_BASE]
//              COUNT requests, each on a new TCP connection
//   udp-burst  HOST PORT COUNT CONCURRENCY [SPORT_BASE]
//              COUNT datagrams, each from a new socket (a new flow)
//              With SPORT_BASE, request/datagram n binds source port SPORT_BASE+n: the 5-tuples, and
//              so the director's backend picks, are the same on every run, and no flow reuses a
//              5-tuple an earlier burst left in the director's connection table (or in TIME_WAIT).
//              Without it, ephemeral ports (random, so the spread varies from run to run).
//   hold       HOST PORT CONNS INTERVAL_MS MAX_S
//              CONNS long-lived keep-alive connections, one request each every INTERVAL_MS; prints
//              {"event":"ready"} once all have answered; on a stdin line `report` prints the state,
//              on stdin end / SIGTERM / after MAX_S prints the final state and exits.
// Results are one JSON line on stdout: {ok, errors, byServer: {name: n}, errorSamples: [...]}.
import http from 'node:http';
import dgram from 'node:dgram';
import net from 'node:net';
import readline from 'node:readline';

const [mode, host, portText, a, b, c] = process.argv.slice(2);
const port = Number(portText);
const family = net.isIPv6(host) ? 6 : 4;

function tally() {
  return { ok: 0, errors: 0, byServer: {}, errorSamples: [] };
}
function record(t, server, err) {
  if (err) {
    t.errors++;
    if (t.errorSamples.length < 5) t.errorSamples.push(String(err.message ?? err));
  } else {
    t.ok++;
    t.byServer[server] = (t.byServer[server] ?? 0) + 1;
  }
}
async function pool(count, concurrency, one) {
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, async () => {
    while (next < count) { next++; await one(); }
  }));
}

const sportBase = c ? Number(c) : 0;

function httpOnce(seq) {
  return new Promise((resolve) => {
    const req = http.request({ host, port, path: '/', agent: false, family, timeout: 3000,
      ...(sportBase ? { localPort: sportBase + seq } : {}),
      headers: { connection: 'close' } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve([body.trim(), null]));
      res.on('error', (e) => resolve([null, e]));
    });
    req.on('timeout', () => req.destroy(new Error('timeout after 3000 ms')));
    req.on('error', (e) => resolve([null, e]));
    req.end();
  });
}

function udpOnce(seq) {
  return new Promise((resolve) => {
    const sock = dgram.createSocket(family === 6 ? 'udp6' : 'udp4');
    const payload = Buffer.from(`ping ${seq}`);
    let tries = 0;
    let timer;
    const finish = (v) => { clearTimeout(timer); sock.close(); resolve(v); };
    // A flow's first datagram can be dropped while the director resolves a backend's MAC; resend on
    // the same socket (same flow) a few times, as a real UDP client would.
    const send = () => {
      if (tries++ >= 4) { finish([null, new Error('no reply after 4 tries')]); return; }
      sock.send(payload, port, host);
      timer = setTimeout(send, 500);
    };
    sock.on('message', (msg, rinfo) => {
      if (rinfo.address !== host) return finish([null, new Error(`reply from ${rinfo.address}, not the VIP`)]);
      finish([msg.toString().split(' ')[0], null]);
    });
    sock.on('error', (e) => finish([null, e]));
    sock.bind(sportBase ? sportBase + seq : 0, () => send());
  });
}

// One long-lived connection speaking HTTP/1.1 keep-alive by hand, so it is certainly one TCP connection.
class Held {
  constructor(id, intervalMs) {
    this.id = id; this.servers = new Set(); this.requests = 0; this.errors = []; this.closed = false;
    this.buf = ''; this.waiting = false; this.localPort = 0;
    this.sock = net.connect({ host, port, family });
    this.sock.setEncoding('utf8');
    this.sock.setNoDelay(true);
    this.sock.on('connect', () => { this.localPort = this.sock.localPort; this.send(); });
    this.sock.on('data', (d) => this.onData(d));
    this.sock.on('error', (e) => this.errors.push(e.message));
    this.sock.on('close', () => { if (!this.stopping) this.errors.push('connection closed'); this.closed = true; });
    this.timer = setInterval(() => { if (!this.waiting && !this.closed) this.send(); }, intervalMs);
  }
  send() {
    this.waiting = true;
    this.sentAt = Date.now();
    this.sock.write(`GET / HTTP/1.1\r\nhost: ${host}\r\n\r\n`);
  }
  onData(d) {
    this.buf += d;
    for (;;) {
      const end = this.buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      const len = Number(/content-length:\s*(\d+)/i.exec(this.buf.slice(0, end))?.[1] ?? 0);
      if (this.buf.length < end + 4 + len) return;
      const body = this.buf.slice(end + 4, end + 4 + len).trim();
      this.buf = this.buf.slice(end + 4 + len);
      this.servers.add(body); this.requests++; this.waiting = false;
    }
  }
  // A request unanswered for 5 s counts as a broken connection even while the socket is open.
  stalled() { return this.waiting && Date.now() - this.sentAt > 5000; }
  state() {
    return { id: this.id, localPort: this.localPort, servers: [...this.servers], requests: this.requests,
      errors: this.stalled() ? [...this.errors, 'request unanswered for 5 s'] : this.errors, closed: this.closed };
  }
  stop() { this.stopping = true; clearInterval(this.timer); this.sock.destroy(); }
}

async function hold(conns, intervalMs, maxS) {
  const held = Array.from({ length: conns }, (_, i) => new Held(i, intervalMs));
  const report = () => process.stdout.write(`${JSON.stringify({ event: 'report', conns: held.map((h) => h.state()) })}\n`);
  let done = false;
  const finish = () => {
    if (done) return; done = true;
    process.stdout.write(`${JSON.stringify({ event: 'final', conns: held.map((h) => h.state()) })}\n`);
    held.forEach((h) => h.stop());
    setTimeout(() => process.exit(0), 50);
  };
  const started = Date.now();
  const ready = setInterval(() => {
    if (held.every((h) => h.requests > 0)) {
      clearInterval(ready);
      process.stdout.write(`${JSON.stringify({ event: 'ready', conns: held.map((h) => h.state()) })}\n`);
    } else if (Date.now() - started > 15_000) {
      clearInterval(ready); finish();
    }
  }, 20);
  readline.createInterface({ input: process.stdin }).on('line', (l) => { if (l.trim() === 'report') report(); })
    .on('close', finish);
  process.on('SIGTERM', finish);
  setTimeout(finish, maxS * 1000).unref();
}

if (mode === 'http-burst' || mode === 'udp-burst') {
  const t = tally();
  let seq = 0;
  await pool(Number(a), Number(b), async () => {
    const [server, err] = mode === 'http-burst' ? await httpOnce(seq++) : await udpOnce(seq++);
    record(t, server, err);
  });
  process.stdout.write(`${JSON.stringify(t)}\n`);
} else if (mode === 'hold') {
  await hold(Number(a), Number(b), Number(c ?? 300));
} else {
  console.error(`usage: client.mjs http-burst|udp-burst|hold HOST PORT ...`);
  process.exit(2);
}
