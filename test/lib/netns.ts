/**
 * Running commands inside network namespaces, for tests, the demo and the benchmarks.
 *
 * Every command goes through `ip netns exec NS ...`, which also gives the child a /sys that
 * describes that namespace (so tools reading /sys/class/net see the namespace's interfaces).
 * Processes started here are remembered, so a topology can end them by pid when it is torn down.
 */
import { execFile, execFileSync, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';

export interface ExecResult {
  stdout: string;
  stderr: string;
}

export interface ExecOptions {
  /** Kill the command after this long (default 30 s): every test command is bounded. */
  timeoutMs?: number;
  /** Resolve instead of rejecting on a non-zero exit (the result then holds what was printed). */
  allowFail?: boolean;
  input?: string;
  env?: NodeJS.ProcessEnv;
}

/** Runs a command on the host (no namespace) and returns its output; rejects with the command, exit and stderr. */
export function run(cmd: string, args: readonly string[], opts: ExecOptions = {}): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    const child = execFile(cmd, args, {
      timeout: opts.timeoutMs ?? 30_000,
      maxBuffer: 64 * 1024 * 1024,
      env: opts.env ?? process.env,
    }, (err, stdout, stderr) => {
      if (err && !opts.allowFail) {
        const code = (err as NodeJS.ErrnoException & { code?: unknown }).code;
        reject(new Error(`\`${[cmd, ...args].join(' ')}\` failed (exit ${String(code)}${err.killed ? ', killed by timeout' : ''}): ${stderr.trim() || err.message}`));
        return;
      }
      resolve({ stdout, stderr });
    });
    if (opts.input !== undefined) child.stdin?.end(opts.input);
  });
}

/** Runs a command inside network namespace `ns`. */
export function nsRun(ns: string, args: readonly string[], opts: ExecOptions = {}): Promise<ExecResult> {
  return run('ip', ['netns', 'exec', ns, ...args], opts);
}

/** Shorthand for `ip -n NS ...` (iproute2 configuration inside a namespace). */
export function ipIn(ns: string, ...args: string[]): Promise<ExecResult> {
  return run('ip', ['-n', ns, ...args]);
}

/** Sets sysctls inside a namespace: `{ 'net.ipv4.ip_forward': 1 }`. */
export async function sysctlIn(ns: string, values: Record<string, string | number>): Promise<void> {
  const args = Object.entries(values).map(([k, v]) => `${k}=${v}`);
  if (args.length) await nsRun(ns, ['sysctl', '-q', '-w', ...args]);
}

const started = new Set<ChildProcess>();

/**
 * Starts a long-running process inside `ns`. It is tracked until it exits, so `killStarted`
 * (called by the topology on teardown and at process exit) can end it by pid.
 */
export function nsSpawn(ns: string, args: readonly string[], opts: SpawnOptions = {}): ChildProcess {
  const child = spawn('ip', ['netns', 'exec', ns, ...args], { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
  started.add(child);
  child.once('exit', () => started.delete(child));
  return child;
}

/** The processes started by nsSpawn that have not exited yet. */
export function startedChildren(): ChildProcess[] {
  return [...started];
}

/** Sends `signal` to every process this module started that is still running (synchronous: safe in an exit handler). */
export function killStarted(signal: NodeJS.Signals = 'SIGKILL', only?: (c: ChildProcess) => boolean): void {
  for (const child of started) {
    if (child.pid === undefined || child.exitCode !== null || (only && !only(child))) continue;
    try { process.kill(child.pid, signal); } catch { /* already gone */ }
  }
}

/** Waits for a child to exit (or kills it after `timeoutMs`); resolves with its exit code or signal. */
export function waitExit(child: ChildProcess, timeoutMs = 10_000): Promise<number | string> {
  if (child.exitCode !== null) return Promise.resolve(child.exitCode);
  if (child.signalCode !== null) return Promise.resolve(child.signalCode);
  return new Promise((resolve) => {
    const timer = setTimeout(() => { try { child.kill('SIGKILL'); } catch { /* gone */ } }, timeoutMs);
    child.once('exit', (code, signal) => { clearTimeout(timer); resolve(code ?? signal ?? -1); });
  });
}

/** Names of all network namespaces on the host (`ip netns list`), synchronously. */
export function listNamespacesSync(): string[] {
  const out = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' });
  return out.split('\n').map((l) => l.split(' ')[0]!).filter(Boolean);
}

/** Pids of the processes inside a namespace (`ip netns pids`), synchronously. */
export function namespacePidsSync(ns: string): number[] {
  try {
    const out = execFileSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' });
    return out.split('\n').map(Number).filter((n) => Number.isInteger(n) && n > 0);
  } catch {
    return [];
  }
}

/** Kills every process inside `ns` and deletes it, synchronously; errors are ignored (best effort teardown). */
export function deleteNamespaceSync(ns: string): void {
  for (const pid of namespacePidsSync(ns)) {
    try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
  }
  try { execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' }); } catch { /* already gone */ }
}

/** Resolves after `ms` milliseconds (for polling loops; never as a timed assertion). */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
  });
}

/** Polls `probe` until it returns a truthy value or `timeoutMs` passes; throws `what` on timeout. */
export async function waitFor<T>(what: string, probe: () => Promise<T | null | undefined | false> | T | null | undefined | false,
  timeoutMs = 10_000, intervalMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastErr: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v) return v;
    } catch (err) { lastErr = err; }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastErr ? `: ${String((lastErr as Error).message ?? lastErr)}` : ''}`);
    }
    await sleep(intervalMs);
  }
}
