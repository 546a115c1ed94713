/**
 * The config-file source: reads a YAML file of virtual services (schema in parse.ts), emits its
 * DesiredState, and watches the file for edits.
 *
 * Watching: fs.watch on the *directory*, not the file, because editors and config tools replace a
 * file by writing a temporary one and renaming it over the old (the old inode, and a watch on it,
 * is gone). Events are debounced (a save is often several events, or a truncate then a write), and
 * the content's hash decides whether anything changed. A slow poll backs the watcher up, since
 * fs.watch can miss events (network filesystems, the directory itself being replaced).
 *
 * An invalid edit is reported (`PATH:LINE: reason`, one log line each) and ignored: the last good
 * state stays applied. Only a valid edit is emitted. At start an invalid or missing file is an
 * error: nothing good is known yet, and running with no services would be a silent failure.
 */
import { createHash } from 'node:crypto';
import { watch, type FSWatcher } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, dirname, resolve } from 'node:path';
import { logger, type Logger } from '../../log.js';
import type { DesiredState } from '../../model/types.js';
import { formatConfigErrors, parseConfig, type ConfigError } from './parse.js';

export interface FileSourceOptions {
  path: string;
  /** Called with every accepted state: once at start, then after each valid edit. */
  onState: (state: DesiredState) => void;
  /** Called for each rejected edit (already logged). */
  onRejected?: (errors: ConfigError[]) => void;
  /** Quiet time after the last file event before the file is read (default 100 ms). */
  debounceMs?: number;
  /** Safety-net poll of the content hash (default 2000 ms; 0 = off). */
  pollMs?: number;
  log?: Logger;
}

export class ConfigFileError extends Error {
  constructor(readonly path: string, readonly errors: ConfigError[]) {
    super(`${path} is not a valid config; fix it and start again:\n  ${formatConfigErrors(path, errors).join('\n  ')}`);
    this.name = 'ConfigFileError';
  }
}

export class FileSource {
  readonly name: string;
  private readonly path: string;
  private readonly log: Logger;
  private watcher: FSWatcher | null = null;
  private pollTimer: NodeJS.Timeout | null = null;
  private debounceTimer: NodeJS.Timeout | null = null;
  /** Hash of the content last looked at (valid or not), so an unchanged file is not re-reported. */
  private seenHash = '';
  /** Hash of the content whose state is applied. */
  private goodHash = '';
  private reading: Promise<void> = Promise.resolve();
  private stopped = false;

  constructor(private readonly opts: FileSourceOptions) {
    this.path = resolve(opts.path);
    this.name = `file:${this.path}`;
    this.log = opts.log ?? logger('file-source');
  }

  /** Reads and emits the file's state; throws ConfigFileError if it is invalid, then watches it. */
  async start(signal?: AbortSignal): Promise<void> {
    const text = await readFile(this.path, 'utf8').catch((err: NodeJS.ErrnoException) => {
      throw new Error(`cannot read config ${this.path}: ${err.code ?? err.message}; check the path given to --config`);
    });
    const result = parseConfig(text, this.path);
    if (!result.ok) throw new ConfigFileError(this.path, result.errors);
    this.seenHash = this.goodHash = hash(text);
    this.log.info({ path: this.path, services: result.state.services.length }, 'config loaded');
    this.opts.onState(result.state);

    const file = basename(this.path);
    this.watcher = watch(dirname(this.path), { persistent: false }, (_event, name) => {
      if (name === null || name === file) this.schedule();
    });
    this.watcher.on('error', (err) => this.log.warn({ err: err.message }, 'watching the config directory failed; falling back to polling'));
    const pollMs = this.opts.pollMs ?? 2000;
    if (pollMs > 0) this.pollTimer = setInterval(() => this.schedule(0), pollMs).unref();
    signal?.addEventListener('abort', () => { void this.stop(); }, { once: true });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.watcher?.close();
    this.watcher = null;
    if (this.pollTimer) clearInterval(this.pollTimer);
    if (this.debounceTimer) clearTimeout(this.debounceTimer);
    this.pollTimer = this.debounceTimer = null;
    await this.reading;
  }

  /** Re-reads the file now (after the debounce), e.g. on SIGHUP. */
  reload(): void {
    this.schedule(0);
  }

  private schedule(delayMs = this.opts.debounceMs ?? 100): void {
    if (this.stopped) return;
    if (this.debounceTimer) clearTimeout(this.debounceTimer);
    this.debounceTimer = setTimeout(() => {
      this.debounceTimer = null;
      // Reads never overlap: a new one waits for the previous, and each sees the file as it is then.
      this.reading = this.reading.then(() => this.check());
    }, delayMs);
  }

  private async read(): Promise<string | null> {
    try {
      return await readFile(this.path, 'utf8');
    } catch (err) {
      // Between an editor's unlink and rename the file briefly does not exist: wait for the next event.
      const code = (err as NodeJS.ErrnoException).code;
      if (this.seenHash !== `missing:${code}`) {
        this.seenHash = `missing:${code}`;
        this.log.warn({ path: this.path, code }, 'config file unreadable; keeping the last good state');
      }
      return null;
    }
  }

  private async check(): Promise<void> {
    if (this.stopped) return;
    let text = await this.read();
    if (text === null) return;
    let h = hash(text);
    if (h === this.seenHash) return;
    let result = parseConfig(text, this.path);
    // A writer that rewrites the file in place can be caught half-way (truncated, or part written).
    // Before calling an edit invalid, look again after a quiet moment: if it changed, judge that.
    for (let settle = 0; !result.ok && settle < 3 && !this.stopped; settle++) {
      await new Promise((r) => setTimeout(r, this.opts.debounceMs ?? 100));
      const again = await this.read();
      if (again === null || again === text) break;
      text = again;
      h = hash(text);
      result = parseConfig(text, this.path);
    }
    if (this.stopped || h === this.seenHash) return;
    this.seenHash = h;
    if (h === this.goodHash) {
      this.log.info({ path: this.path }, 'config is back to the state already applied');
      return;
    }
    if (text.trim() === '') {
      // Almost always a writer between truncate and write (`>` in a shell, writeFile): the next
      // event brings the content. Rejected like any invalid edit, but not worth an error.
      this.log.warn({ path: this.path }, 'config file is empty (a write in progress?); keeping the last good state');
      return;
    }
    if (!result.ok) {
      for (const line of formatConfigErrors(this.path, result.errors)) this.log.error(line);
      this.log.error({ path: this.path, errors: result.errors.length }, 'config edit rejected; the last good state keeps running');
      this.opts.onRejected?.(result.errors);
      return;
    }
    this.goodHash = h;
    this.log.info({ path: this.path, services: result.state.services.length }, 'config changed');
    this.opts.onState(result.state);
  }
}

function hash(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}
