/**
 * Connecting to the director's gRPC API from the command line (`xdir status`, `xdir top`):
 * the flags, the credentials, and errors that say what to try next.
 */
import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { directorClientConstructor, type DirectorClient } from './proto.js';
import { DEFAULT_GRPC_ADDRESS, parseListenAddress } from './listen-address.js';

export const CLIENT_FLAGS = {
  grpc: { type: 'string' },
  'grpc-tls-ca': { type: 'string' },
  'grpc-tls-cert': { type: 'string' },
  'grpc-tls-key': { type: 'string' },
  'grpc-tls-server-name': { type: 'string' },
  vip: { type: 'string', multiple: true },
  help: { type: 'boolean', short: 'h' },
} as const;

export const CLIENT_USAGE = `connection:
  --grpc ADDR                 director API: unix:/path, HOST:PORT, [IPv6]:PORT (default ${DEFAULT_GRPC_ADDRESS})
  --grpc-tls-ca FILE          verify the director's certificate with this CA (turns TLS on)
  --grpc-tls-cert FILE        client certificate for mutual TLS (with --grpc-tls-key)
  --grpc-tls-key FILE         client private key for mutual TLS
  --grpc-tls-server-name NAME name the director's certificate must carry (default: the host in --grpc)
  --vip VIP                   only this VIP or service key (tcp/198.18.0.10:80); repeatable`;

export interface ClientFlagValues {
  grpc?: string;
  'grpc-tls-ca'?: string;
  'grpc-tls-cert'?: string;
  'grpc-tls-key'?: string;
  'grpc-tls-server-name'?: string;
}

function readPem(path: string, flag: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new Error(`cannot read ${flag} ${path}: ${(err as Error).message}`);
  }
}

export function connectDirector(v: ClientFlagValues): { client: DirectorClient; target: string } {
  const addr = parseListenAddress(v.grpc ?? DEFAULT_GRPC_ADDRESS);
  const tls = v['grpc-tls-ca'] || v['grpc-tls-cert'] || v['grpc-tls-key'];
  if (!!v['grpc-tls-cert'] !== !!v['grpc-tls-key']) {
    throw new Error('mutual TLS needs both --grpc-tls-cert and --grpc-tls-key');
  }
  const creds = tls
    ? grpc.credentials.createSsl(
      v['grpc-tls-ca'] ? readPem(v['grpc-tls-ca'], '--grpc-tls-ca') : null,
      v['grpc-tls-key'] ? readPem(v['grpc-tls-key'], '--grpc-tls-key') : null,
      v['grpc-tls-cert'] ? readPem(v['grpc-tls-cert'], '--grpc-tls-cert') : null,
    )
    : grpc.credentials.createInsecure();
  const options: grpc.ClientOptions = {};
  if (v['grpc-tls-server-name']) options['grpc.ssl_target_name_override'] = v['grpc-tls-server-name'];
  const Ctor = directorClientConstructor();
  return { client: new Ctor(addr.target, creds, options), target: addr.target };
}

/** A gRPC failure as a sentence with a next step. */
export function explainCallError(err: unknown, target: string): string {
  const e = err as Partial<grpc.ServiceError>;
  if (e.code === grpc.status.UNAVAILABLE) {
    return `cannot reach the director at ${target}: ${e.details ?? e.message}. Is 'xdir run' running? ` +
      'Point --grpc at its API address (and give --grpc-tls-* flags if it uses TLS).';
  }
  if (e.code === grpc.status.DEADLINE_EXCEEDED) {
    return `the director at ${target} did not answer in time; it may be overloaded, retry`;
  }
  return `director at ${target}: ${e.details ?? e.message ?? String(err)}`;
}
