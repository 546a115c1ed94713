/**
 * Where the gRPC API listens, and the safety rule for it: a unix socket or loopback by default;
 * any other address needs TLS, or an explicit --grpc-insecure.
 */
import { isIP } from 'node:net';

export const DEFAULT_GRPC_ADDRESS = 'unix:/run/xdir/xdir.sock';

export type ListenAddress =
  | { kind: 'unix'; path: string; target: string }
  | { kind: 'tcp'; host: string; port: number; loopback: boolean; target: string };

/** `unix:/run/xdir/xdir.sock`, `unix:///run/x.sock`, `127.0.0.1:50051`, `[::1]:50051`, `localhost:50051`. */
export function parseListenAddress(text: string): ListenAddress {
  const t = text.trim();
  if (t.startsWith('unix:')) {
    const path = t.slice('unix:'.length).replace(/^\/\/(?=\/)/, '');
    if (!path.startsWith('/')) {
      throw new Error(`gRPC address '${text}': a unix socket needs an absolute path, e.g. unix:/run/xdir/xdir.sock`);
    }
    return { kind: 'unix', path, target: `unix:${path}` };
  }
  if (t.startsWith('/')) return { kind: 'unix', path: t, target: `unix:${t}` };
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(t);
  if (!m) {
    throw new Error(`gRPC address '${text}' is not unix:/path, HOST:PORT or [IPv6]:PORT (e.g. 127.0.0.1:50051)`);
  }
  const host = (m[1] ?? m[2])!;
  const port = Number(m[3]);
  if (port > 65535) throw new Error(`gRPC address '${text}': port ${port} is out of range (0..65535)`);
  if (m[1] && isIP(host) !== 6) throw new Error(`gRPC address '${text}': '${host}' is not an IPv6 address`);
  const target = isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`;
  return { kind: 'tcp', host, port, loopback: isLoopbackHost(host), target };
}

export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase();
  if (h === 'localhost' || h === '::1' || h === '0:0:0:0:0:0:0:1') return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  return h.startsWith('::ffff:127.');
}

/**
 * Throws when `addr` would expose the API beyond this host without TLS and the operator did not
 * ask for it explicitly.
 */
export function checkExposure(addr: ListenAddress, tls: boolean, insecure: boolean): void {
  if (addr.kind === 'unix' || addr.loopback || tls || insecure) return;
  throw new Error(
    `refusing to serve the gRPC API on ${addr.target} without TLS: it is not a loopback address, so ` +
    'anyone who can reach it could read the director\'s state. Give --grpc-tls-cert and --grpc-tls-key ' +
    '(and --grpc-tls-client-ca for mutual TLS), listen on a unix socket or 127.0.0.1, or pass ' +
    '--grpc-insecure if the network is trusted',
  );
}
