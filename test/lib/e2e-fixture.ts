/**
 * The per-file setup the end-to-end tests share: one namespace topology (1 client, N real servers
 * running their HTTP/UDP servers) and a temporary directory for the whole file, torn down after the
 * last test together with the `xdir run` process the file started, if any.
 *
 * Privileges are checked when the file loads (see privileged.ts): without root the file's tests are
 * skipped, and under CI=true that throws, so the file fails instead.
 */
import type { Callback, Test } from 'uvu';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { privilegeGap } from './privileged.js';
import { cleanupStale, Topology, type ServerProcesses } from './topology.js';
import type { DirectorProcess } from './director.js';

export interface E2eFixtureOptions {
  /** Prefix of the temporary directory's name (under the OS temp dir), e.g. `xdir-e2e-`. */
  tmpPrefix: string;
  /** Real servers in the topology (default 3). */
  servers?: number;
  /** What the real servers run (default: HTTP on 80, UDP echo on 53). */
  serverProcesses?: ServerProcesses;
}

export class E2eFixture {
  /** `test`, or `test.skip` when this host lacks the privileges (outside CI only). */
  readonly ptest: (name: string, fn: Callback) => void;
  private topology: Topology | undefined;
  private tmpDir: string | undefined;
  private process: DirectorProcess | undefined;
  private readonly gap: string | null;

  constructor(private readonly test: Test, opts: E2eFixtureOptions) {
    this.gap = privilegeGap();
    this.ptest = this.gap ? test.skip : test;
    this.before(() => this.setUp(opts));
    if (!this.gap) test.after(() => this.tearDown());
  }

  /** The file's own set-up: runs after the fixture's, and not at all when the tests are skipped. */
  before(hook: () => Promise<void>): void {
    if (!this.gap) this.test.before(hook);
  }

  get t(): Topology {
    if (!this.topology) throw new Error('no topology: the e2e fixture has not been set up (did its before hook fail?)');
    return this.topology;
  }

  get dir(): string {
    if (!this.tmpDir) throw new Error('no temporary directory: the e2e fixture has not been set up (did its before hook fail?)');
    return this.tmpDir;
  }

  /** The `xdir run` process the file's tests started; stopped after the last test. */
  get director(): DirectorProcess {
    if (!this.process) throw new Error('no director running: an earlier test or hook was to start it');
    return this.process;
  }

  set director(d: DirectorProcess | undefined) {
    this.process = d;
  }

  private async setUp(opts: E2eFixtureOptions): Promise<void> {
    cleanupStale();
    this.topology = await Topology.create({ clients: 1, servers: opts.servers ?? 3 });
    await this.topology.startServers(opts.serverProcesses);
    this.tmpDir = mkdtempSync(join(tmpdir(), opts.tmpPrefix));
  }

  /** Copes with a set-up that failed half way. */
  private async tearDown(): Promise<void> {
    await this.process?.stop();
    await this.topology?.destroy();
    if (this.tmpDir) rmSync(this.tmpDir, { recursive: true, force: true });
  }
}

/**
 * Registers the fixture's before/after hooks on `test` and returns it. Register the file's own
 * set-up with `fx.before` after this call; read `t`, `dir` and `director` inside tests and hooks only.
 */
export function e2eFixture(test: Test, opts: E2eFixtureOptions): E2eFixture {
  return new E2eFixture(test, opts);
}
