/**
 * The `xdir run` process inside a topology's director namespace, as the e2e tests, the demo and
 * the benchmark run it: a real child process, its JSON log lines collected for assertions.
 */
import type { ChildProcess } from 'node:child_process';
import { renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as readline from 'node:readline';
import type { DirectorPeerSetup, Topology } from './topology.js';
import { waitExit, waitFor } from './netns.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const CLI = join(ROOT, 'control', 'cli.ts');

export interface LogLine {
  level: number;
  msg: string;
  component?: string;
  [k: string]: unknown;
}

export interface DirectorOptions {
  config: string;
  xdpMode?: 'native' | 'generic' | 'auto';
  /** Default: a `xdir` directory in the topology's private bpffs (kept across restarts). */
  pinRoot?: string;
  extraArgs?: string[];
  /**
   * The CLI entry point node runs. Default: control/cli.ts through tsx. A prebuilt bundle
   * (test/guest/bundle.ts) runs as is; under the IPVS guest's emulation that saves tens of seconds a start.
   */
  cli?: string;
  /** Wait for `director running` (default true). */
  waitReady?: boolean;
}

export class DirectorProcess {
  readonly logs: LogLine[] = [];
  /** Non-JSON stderr/stdout lines (crashes, usage errors). */
  readonly rawOutput: string[] = [];
  private constructor(readonly child: ChildProcess, readonly opts: DirectorOptions) {
    const take = (line: string) => {
      try { this.logs.push(JSON.parse(line) as LogLine); } catch { this.rawOutput.push(line); }
    };
    readline.createInterface({ input: child.stderr! }).on('line', take);
    readline.createInterface({ input: child.stdout! }).on('line', take);
  }

  static async start(t: Topology, opts: DirectorOptions): Promise<DirectorProcess> {
    const pinRoot = opts.pinRoot ?? join(t.bpffs(), 'xdir');
    const args = [process.execPath, ...(opts.cli ? [opts.cli] : ['--import', 'tsx', CLI]), 'run', '--config', opts.config, '--interface', t.director.ifname,
      '--xdp-mode', opts.xdpMode ?? 'native', '--pin-root', pinRoot, '--ring-size', '4099', '--flow-table-size', '65536', '--max-vips', '16', '--max-backends', '64',
      // Per-topology endpoints: the default unix socket is host-wide, and tests may run directors side by side.
      '--grpc', directorGrpcTarget(t), '--ipvs-state-file', join(dirname(t.bpffs()), 'ipvs-services.json'),
      ...(opts.extraArgs ?? [])];
    const child = t.spawn(t.director, args, { cwd: ROOT, env: { ...process.env, XDIR_LOG_LEVEL: 'debug' } });
    const d = new DirectorProcess(child, { ...opts, pinRoot });
    if (opts.waitReady ?? true) await d.waitForLog(/director running/, 30_000);
    return d;
  }

  /** Waits for a log line whose msg matches; fails early (with the output) if the process exits. */
  async waitForLog(re: RegExp, timeoutMs = 10_000, from = 0): Promise<LogLine> {
    return waitFor(`director log /${re.source}/`, () => {
      const hit = this.logs.slice(from).find((l) => re.test(l.msg));
      if (hit) return hit;
      if (this.child.exitCode !== null || this.child.signalCode !== null) {
        throw new Error(`xdir run exited (${this.child.exitCode ?? this.child.signalCode}):\n${this.output()}`);
      }
      return null;
    }, timeoutMs, 50);
  }

  output(): string {
    return [...this.logs.map((l) => `${l.component ?? ''}: ${l.msg} ${JSON.stringify({ ...l, msg: undefined, level: undefined, time: undefined, component: undefined })}`), ...this.rawOutput].join('\n');
  }

  /** SIGTERM (or `signal`) and wait; resolves with the exit code. */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<number | string> {
    if (this.child.exitCode !== null) return this.child.exitCode;
    // `ip netns exec` execs the command, so the pid is node's own.
    this.child.kill(signal);
    return waitExit(this.child, 15_000);
  }
}

/** The gRPC target of the director a topology runs (a unix socket in the topology's own directory). */
export function directorGrpcTarget(t: Topology): string {
  return `unix:${join(dirname(t.bpffs()), 'xdir.sock')}`;
}

/**
 * Writes a config file for the topology's VIPs: one TCP/80 and one UDP/53 service per family.
 * Written the way editors and config tools do it (a temporary file renamed over the old one), so
 * the director never reads a half-written file.
 */
export function writeConfig(path: string, t: Topology, backends: { server: string; weight?: number }[], opts: { families?: (4 | 6)[] } = {}): void {
  const families = opts.families ?? [4, 6];
  const lines = ['services:'];
  for (const fam of families) {
    for (const [proto, port] of [['tcp', 80], ['udp', 53]] as const) {
      lines.push(`  - vip: ${fam === 4 ? t.vip4 : t.vip6}`, `    port: ${port}`, `    protocol: ${proto}`, '    backends:');
      for (const b of backends) {
        const node = t.servers.find((s) => s.name === b.server);
        if (!node) throw new Error(`no real server ${b.server}`);
        lines.push(`      - address: ${fam === 4 ? node.ipv4 : node.ipv6}`, `        weight: ${b.weight ?? 1}`);
      }
    }
  }
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, `${lines.join('\n')}\n`);
  renameSync(tmp, path);
}

export type { DirectorPeerSetup };
