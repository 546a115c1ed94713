/**
 * Which IPVS services belong to this director. IPVS has no owner field, and every spare bit of a
 * service (flags, pe_name, netmask) changes how the kernel treats it, so ownership lives outside
 * the kernel: a small JSON file of service keys, by default under /run (a tmpfs, emptied at boot
 * exactly when the kernel's IPVS table is). A key is recorded before its service is created and
 * forgotten after it is deleted, so a crash can leave at most a recorded key with no service,
 * which the next start simply drops. Services not listed are never touched.
 */
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';

export const DEFAULT_OWNERSHIP_FILE = '/run/xdir/ipvs-services.json';

interface FileFormat {
  version: 1;
  /** serviceKey() of every IPVS service this director created. */
  services: string[];
}

export class OwnershipFile {
  constructor(readonly path: string = DEFAULT_OWNERSHIP_FILE) {}

  load(): Set<string> {
    let text: string;
    try {
      text = readFileSync(this.path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return new Set();
      throw new Error(`cannot read IPVS ownership file ${this.path}: ${(err as Error).message}`);
    }
    let parsed: FileFormat;
    try {
      parsed = JSON.parse(text) as FileFormat;
    } catch (err) {
      throw new Error(`IPVS ownership file ${this.path} is not valid JSON (${(err as Error).message}); ` +
        'fix or delete it (deleting it makes the director treat its existing services as foreign)');
    }
    if (parsed?.version !== 1 || !Array.isArray(parsed.services)) {
      throw new Error(`IPVS ownership file ${this.path} has an unknown format; expected {"version":1,"services":[...]}`);
    }
    return new Set(parsed.services.filter((s) => typeof s === 'string'));
  }

  /** Replaces the file atomically (write + rename), so a crash leaves the old or the new list. */
  save(keys: Iterable<string>): void {
    mkdirSync(dirname(this.path), { recursive: true });
    const body: FileFormat = { version: 1, services: [...keys].sort() };
    const tmp = `${this.path}.${process.pid}.tmp`;
    writeFileSync(tmp, `${JSON.stringify(body, null, 2)}\n`, { mode: 0o644 });
    renameSync(tmp, this.path);
  }

  remove(): void {
    rmSync(this.path, { force: true });
  }
}
