/**
 * BpfProgram: a loaded program, and BPF_PROG_TEST_RUN on it (the kernel runs the real program on a
 * packet we give it, so tests exercise the verified code, not a model of it).
 */
import { constants } from 'node:os';
import { BpfError, check } from './errors.js';
import { OPTS, addressOf, libbpf, opts } from './libbpf.js';

/** XDP verdicts (enum xdp_action). */
export const XDP_ACTION = { XDP_ABORTED: 0, XDP_DROP: 1, XDP_PASS: 2, XDP_TX: 3, XDP_REDIRECT: 4 } as const;

/** Room for programs that grow the packet (bpf_xdp_adjust_head/tail) during a test run. */
const TEST_RUN_HEADROOM = 512;

/** Kernel id of the program behind `fd` (BPF_OBJ_GET_INFO_BY_FD). */
export function progIdByFd(fd: number, what: string): number {
  const info = Buffer.alloc(OPTS.progInfo.size);
  const len = new Uint32Array([info.length]);
  check(`reading info of ${what}`, libbpf.bpf_obj_get_info_by_fd(fd, info, len) as number);
  return info.readUInt32LE(OPTS.progInfo.id);
}

export class BpfProgram {
  /** @param fd owned by the BpfObject the program belongs to. */
  constructor(readonly name: string, readonly fd: number, readonly type: number) {}

  /** The kernel's id of the loaded program (what `queryXdp` reports once it is attached). */
  get id(): number {
    return progIdByFd(this.fd, `program '${this.name}'`);
  }

  /** Runs the program on `data` in the kernel. `ingressIfindex` fills xdp_md.ingress_ifindex (the
   * interface must exist in this network namespace). durationNs is the kernel's average per run. */
  testRun(o: { data: Buffer; repeat?: number; ingressIfindex?: number }): { retval: number; data: Buffer; durationNs: number } {
    const t = OPTS.testRun;
    const runOpts = opts(t.size);
    const out = Buffer.alloc(o.data.length + TEST_RUN_HEADROOM);
    runOpts.writeBigUInt64LE(addressOf(o.data), t.dataIn);
    runOpts.writeBigUInt64LE(addressOf(out), t.dataOut);
    runOpts.writeUInt32LE(o.data.length, t.dataSizeIn);
    runOpts.writeUInt32LE(out.length, t.dataSizeOut);
    runOpts.writeInt32LE(o.repeat ?? 1, t.repeat);
    let ctx: Buffer | undefined;
    if (o.ingressIfindex !== undefined) {
      const x = OPTS.xdpMd;
      ctx = Buffer.alloc(x.size);
      ctx.writeUInt32LE(0, x.data);
      ctx.writeUInt32LE(o.data.length, x.dataEnd);
      ctx.writeUInt32LE(o.ingressIfindex, x.ingressIfindex);
      runOpts.writeBigUInt64LE(addressOf(ctx), t.ctxIn);
      runOpts.writeUInt32LE(ctx.length, t.ctxSizeIn);
    }
    const ret = libbpf.bpf_prog_test_run_opts(this.fd, runOpts) as number;
    if (ret === -constants.errno.ENODEV && o.ingressIfindex !== undefined) {
      throw new BpfError(`test run of program '${this.name}': no interface with ifindex ${o.ingressIfindex}`, {
        errno: constants.errno.ENODEV, hint: 'pass the ifindex of an interface in the current network namespace',
      });
    }
    check(`test run of program '${this.name}'`, ret);
    ctx?.readUInt32LE(0); // ctx was passed by address only: keep it alive past the call
    return {
      retval: runOpts.readUInt32LE(t.retval),
      data: Buffer.from(out.subarray(0, runOpts.readUInt32LE(t.dataSizeOut))),
      durationNs: runOpts.readUInt32LE(t.duration),
    };
  }
}
