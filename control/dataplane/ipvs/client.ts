/**
 * An IPVS client over generic netlink: list, create, change and delete virtual services and their
 * destinations, read the kernel's counters. One method per kernel command; errors name the service
 * or destination and say what to check.
 */
import { GenlSocket, FamilyNotFoundError } from '../../netlink/genl.js';
import { AttrWriter, NLM_F_CREATE, NLM_F_EXCL } from '../../netlink/message.js';
import { NetlinkError, type OpenOptions } from '../../netlink/socket.js';
import {
  IPVS_CMD, IPVS_GENL_NAME, decodeDest, decodeInfo, decodeService, destAttrs, ipvsServiceKey, serviceAttrs,
  serviceIdAttrs, type IpvsDest, type IpvsInfo, type IpvsService, type IpvsServiceId, type IpvsStats,
} from './codec.js';

const EPERM = 1;
const ENOENT = 2;

export type ServiceReading = IpvsService & { stats: IpvsStats };
export type DestReading = IpvsDest & { stats: IpvsStats; activeConns: number; inactiveConns: number };

/** Why IPVS cannot be used here, in words a user can act on. */
export class IpvsUnavailableError extends Error {
  constructor(message: string, cause?: unknown) {
    super(message, { cause });
    this.name = 'IpvsUnavailableError';
  }
}

export class IpvsClient {
  private constructor(private readonly sock: GenlSocket) {}

  /** Opens the IPVS family; IpvsUnavailableError says what is missing when it cannot. */
  static open(opts: OpenOptions = {}): IpvsClient {
    let sock: GenlSocket;
    try {
      sock = GenlSocket.open(IPVS_GENL_NAME, opts);
    } catch (err) {
      if (err instanceof FamilyNotFoundError) {
        throw new IpvsUnavailableError(
          'IPVS is not available: the kernel has no IPVS (CONFIG_IP_VS unset or the ip_vs module cannot be loaded); ' +
          'load it with `modprobe ip_vs` or use a kernel built with CONFIG_IP_VS', err);
      }
      throw err;
    }
    const client = new IpvsClient(sock);
    try {
      client.info(); // GET_INFO needs CAP_NET_ADMIN like every IPVS command: fail here, not mid-apply.
    } catch (err) {
      sock.close();
      if (err instanceof NetlinkError && err.errno === EPERM) {
        throw new IpvsUnavailableError('IPVS refused us: managing IPVS needs CAP_NET_ADMIN (run as root or grant the capability)', err);
      }
      throw err;
    }
    return client;
  }

  info(): IpvsInfo {
    const [reply] = this.sock.request(IPVS_CMD.GET_INFO, 0, new AttrWriter(), 'read IPVS info');
    if (!reply) throw new Error('read IPVS info: the kernel answered without data');
    return decodeInfo(reply.attrs);
  }

  services(): ServiceReading[] {
    return this.sock.dump(IPVS_CMD.GET_SERVICE, new AttrWriter(), 'list IPVS services').map((m) => decodeService(m.attrs));
  }

  dests(svc: IpvsServiceId): DestReading[] {
    const ctx = `list destinations of IPVS service ${ipvsServiceKey(svc)}`;
    return this.sock.dump(IPVS_CMD.GET_DEST, serviceIdAttrs(svc), ctx).map((m) => decodeDest(m.attrs, svc.family));
  }

  addService(s: IpvsService): void {
    this.withSchedulerHint(s, () => this.sock.request(IPVS_CMD.NEW_SERVICE, NLM_F_CREATE | NLM_F_EXCL, serviceAttrs(s),
      `create IPVS service ${ipvsServiceKey(s)} (scheduler ${s.scheduler})`));
  }

  editService(s: IpvsService): void {
    this.withSchedulerHint(s, () => this.sock.request(IPVS_CMD.SET_SERVICE, 0, serviceAttrs(s),
      `change IPVS service ${ipvsServiceKey(s)} (scheduler ${s.scheduler})`));
  }

  /** The kernel answers ENOENT when a scheduler's module is missing; say which one. */
  private withSchedulerHint(s: IpvsService, fn: () => unknown): void {
    try {
      fn();
    } catch (err) {
      if (err instanceof NetlinkError && err.errno === ENOENT) {
        throw new NetlinkError(`${err.message}; is the scheduler available? (modprobe ip_vs_${s.scheduler})`, err.errno, err.kernelMessage);
      }
      throw err;
    }
  }

  deleteService(id: IpvsServiceId): void {
    this.sock.request(IPVS_CMD.DEL_SERVICE, 0, serviceIdAttrs(id), `delete IPVS service ${ipvsServiceKey(id)}`);
  }

  addDest(svc: IpvsServiceId, d: IpvsDest): void {
    this.sock.request(IPVS_CMD.NEW_DEST, NLM_F_CREATE | NLM_F_EXCL, destAttrs(svc, d), `add real server ${d.address} to IPVS service ${ipvsServiceKey(svc)}`);
  }

  editDest(svc: IpvsServiceId, d: IpvsDest): void {
    this.sock.request(IPVS_CMD.SET_DEST, 0, destAttrs(svc, d), `change real server ${d.address} of IPVS service ${ipvsServiceKey(svc)}`);
  }

  deleteDest(svc: IpvsServiceId, d: IpvsDest): void {
    this.sock.request(IPVS_CMD.DEL_DEST, 0, destAttrs(svc, d, false), `remove real server ${d.address} from IPVS service ${ipvsServiceKey(svc)}`);
  }

  close(): void {
    this.sock.close();
  }
}
