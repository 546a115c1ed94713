/**
 * BpfObject: open a compiled BPF object, size its maps, set its load-time constants, load it
 * through the verifier, and pin (or re-adopt pinned) maps. The steps run in that order because
 * sizes and .rodata are frozen once the kernel has the maps.
 */
import { existsSync } from 'node:fs';
import { constants } from 'node:os';
import { logger } from '../log.js';
import { preparePinRoot } from './bpffs.js';
import { BpfError, PRIVILEGE_HINT, check, errnoName, logTail } from './errors.js';
import {
  BTF_KIND_DATASEC, OPTS, type Ptr, addressOf, koffi, libbpf, libcFns, opts, readMemory,
} from './libbpf.js';
import { BpfMap, type MapInfo, mapInfoByFd } from './map.js';
import { installLibbpfPrint, warningMark, warningsSince } from './print.js';
import { BpfProgram } from './program.js';

export { BpfMap, possibleCpus, type MapUpdateFlag } from './map.js';
export { BpfProgram } from './program.js';

const log = logger('bpf');

export interface LoadOptions {
  objectPath: string;
  /** Directory in bpffs; maps declared with LIBBPF_PIN_BY_NAME are pinned here, and re-adopted
   * (reused, contents intact) when a compatible pinned map already exists. Without it nothing is
   * pinned (libbpf alone would pin such maps straight into /sys/fs/bpf). */
  pinRoot?: string;
  maxEntries?: Record<string, number>;
  innerValueSize?: Record<string, number>;
  rodata?: Record<string, number | bigint>;
}

/** Verifier logs of large programs run to megabytes; the kernel keeps the tail if this overflows. */
const VERIFIER_LOG_SIZE = 4 << 20;

export class BpfObject {
  private readonly maps = new Map<string, BpfMap>();
  private readonly programs = new Map<string, BpfProgram>();
  private closed = false;
  /** Names of pinned maps that existed before the load and were reused rather than created. */
  readonly adoptedMaps: string[];

  private constructor(
    private readonly obj: Ptr,
    readonly objectPath: string,
    adopted: string[],
    // Memory libbpf holds pointers to (pin root string, verifier log): alive as long as the object.
    private readonly keepAlive: Buffer[],
  ) {
    this.adoptedMaps = adopted;
    for (let m = libbpf.bpf_object__next_map(obj, null) as Ptr | null; m; m = libbpf.bpf_object__next_map(obj, m) as Ptr | null) {
      const name = libbpf.bpf_map__name(m) as string;
      this.maps.set(name, new BpfMap(
        name, libbpf.bpf_map__fd(m) as number, libbpf.bpf_map__type(m) as number,
        libbpf.bpf_map__key_size(m) as number, libbpf.bpf_map__value_size(m) as number,
        libbpf.bpf_map__max_entries(m) as number, false, libbpf.bpf_map__map_flags(m) as number,
      ));
    }
    for (let p = libbpf.bpf_object__next_program(obj, null) as Ptr | null; p; p = libbpf.bpf_object__next_program(obj, p) as Ptr | null) {
      const name = libbpf.bpf_program__name(p) as string;
      this.programs.set(name, new BpfProgram(name, libbpf.bpf_program__fd(p) as number, libbpf.bpf_program__type(p) as number));
    }
  }

  /** Open, size, set .rodata, load (verifier) and pin/re-adopt. Throws BpfError with a next step. */
  static open(o: LoadOptions): BpfObject {
    installLibbpfPrint();
    if (!existsSync(o.objectPath)) {
      throw new BpfError(`cannot open BPF object ${o.objectPath}: no such file`, {
        errno: constants.errno.ENOENT, hint: 'build it with `make bpf`',
      });
    }
    if (o.pinRoot) preparePinRoot(o.pinRoot);

    const openOpts = opts(OPTS.objectOpen.size);
    const keepAlive: Buffer[] = [openOpts];
    if (o.pinRoot) {
      const root = Buffer.from(`${o.pinRoot}\0`);
      keepAlive.push(root);
      openOpts.writeBigUInt64LE(addressOf(root), OPTS.objectOpen.pinRootPath);
    }
    // Level 0: no log on success; on a failure libbpf reloads with level 1 into this buffer.
    const verifierLog = Buffer.alloc(VERIFIER_LOG_SIZE);
    keepAlive.push(verifierLog);
    openOpts.writeBigUInt64LE(addressOf(verifierLog), OPTS.objectOpen.kernelLogBuf);
    openOpts.writeBigUInt64LE(BigInt(verifierLog.length), OPTS.objectOpen.kernelLogSize);

    const mark = warningMark();
    const obj = libbpf.bpf_object__open_file(o.objectPath, openOpts) as Ptr | null;
    if (!obj) {
      const errno = koffi.errno();
      throw new BpfError(`cannot open BPF object ${o.objectPath}: ${errnoName(errno)}`, {
        errno, hint: withLibbpfSays('is it a BPF ELF object built by `make bpf` (clang -target bpf -g)?', warningsSince(mark)),
      });
    }
    try {
      if (!o.pinRoot) unpinAll(obj);
      applySizes(obj, o);
      if (o.rodata && Object.keys(o.rodata).length) applyRodata(obj, o.rodata, o.objectPath);
      const adopted = o.pinRoot ? checkPinnedMaps(obj, o.pinRoot) : [];
      load(obj, o.objectPath, verifierLog, mark);
      const loaded = new BpfObject(obj, o.objectPath, adopted, keepAlive);
      log.debug({ object: o.objectPath, pinRoot: o.pinRoot, adopted }, 'BPF object loaded');
      return loaded;
    } catch (err) {
      libbpf.bpf_object__close(obj);
      throw err;
    }
  }

  /** Names of all maps, as libbpf names them (the .rodata map is `<object>.rodata`). */
  mapNames(): string[] {
    return [...this.maps.keys()];
  }

  programNames(): string[] {
    return [...this.programs.keys()];
  }

  map(name: string): BpfMap {
    this.assertOpen();
    const m = this.maps.get(name) ?? (name.startsWith('.') ? [...this.maps.values()].find((x) => x.name.endsWith(name)) : undefined);
    if (!m) throw new BpfError(`no map '${name}' in ${this.objectPath}; it has: ${this.mapNames().join(', ')}`);
    return m;
  }

  program(name: string): BpfProgram {
    this.assertOpen();
    const p = this.programs.get(name);
    if (!p) throw new BpfError(`no program '${name}' in ${this.objectPath}; it has: ${this.programNames().join(', ')}`);
    return p;
  }

  /** Closes the object's fds. Pinned maps, and a program attached to an interface, stay in the kernel. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    libbpf.bpf_object__close(this.obj);
    this.keepAlive.length = 0;
  }

  private assertOpen(): void {
    if (this.closed) throw new BpfError(`BPF object ${this.objectPath} is closed`);
  }
}

function withLibbpfSays(hint: string, warnings: string[]): string {
  const said = warnings.map((w) => w.replace(/^libbpf: /, '')).filter(Boolean).slice(-5);
  return said.length ? `${hint} (libbpf: ${said.join(' | ')})` : hint;
}

function mapsOf(obj: Ptr): Map<string, Ptr> {
  const out = new Map<string, Ptr>();
  for (let m = libbpf.bpf_object__next_map(obj, null) as Ptr | null; m; m = libbpf.bpf_object__next_map(obj, m) as Ptr | null) {
    out.set(libbpf.bpf_map__name(m) as string, m);
  }
  return out;
}

function findMap(maps: Map<string, Ptr>, name: string, option: string, objectPath: string): Ptr {
  const m = maps.get(name);
  if (!m) {
    throw new BpfError(`${option}: no map '${name}' in ${objectPath}; it has: ${[...maps.keys()].join(', ')}`);
  }
  return m;
}

function unpinAll(obj: Ptr): void {
  for (const [name, m] of mapsOf(obj)) {
    if (libbpf.bpf_map__pin_path(m)) check(`clearing the pin path of map '${name}'`, libbpf.bpf_map__set_pin_path(m, null) as number);
  }
}

function applySizes(obj: Ptr, o: LoadOptions): void {
  const maps = mapsOf(obj);
  for (const [name, n] of Object.entries(o.maxEntries ?? {})) {
    if (!Number.isInteger(n) || n <= 0 || n > 0xffffffff) throw new BpfError(`maxEntries of map '${name}' must be a positive integer, got ${n}`);
    check(`setting max_entries of map '${name}' to ${n}`, libbpf.bpf_map__set_max_entries(findMap(maps, name, 'maxEntries', o.objectPath), n) as number);
  }
  for (const [name, size] of Object.entries(o.innerValueSize ?? {})) {
    if (!Number.isInteger(size) || size <= 0) throw new BpfError(`innerValueSize of map '${name}' must be a positive integer, got ${size}`);
    const inner = libbpf.bpf_map__inner_map(findMap(maps, name, 'innerValueSize', o.objectPath)) as Ptr | null;
    if (!inner) throw new BpfError(`innerValueSize: map '${name}' is not a map-in-map (it has no inner map template)`);
    check(`setting the inner value size of map '${name}' to ${size}`, libbpf.bpf_map__set_value_size(inner, size) as number);
  }
}

/** One `const volatile` global in .rodata: where it sits and how big it is (from BTF). */
interface RodataVar { offset: number; size: number }

function rodataVars(obj: Ptr, objectPath: string): Map<string, RodataVar> {
  const btf = libbpf.bpf_object__btf(obj) as Ptr | null;
  if (!btf) throw new BpfError(`${objectPath} has no BTF`, { hint: 'build it with `clang -g` (`make bpf` does)' });
  const secId = libbpf.btf__find_by_name_kind(btf, '.rodata', BTF_KIND_DATASEC) as number;
  if (secId <= 0) throw new BpfError(`${objectPath} has no .rodata section (no \`const volatile\` globals)`);
  // struct btf_type { u32 name_off; u32 info; u32 size; } then vlen x btf_var_secinfo { u32 type, offset, size }
  const sec = libbpf.btf__type_by_id(btf, secId) as Ptr;
  const vlen = readMemory(sec, 12).readUInt32LE(4) & 0xffff;
  const infos = readMemory(sec + 12n, 12 * vlen);
  const vars = new Map<string, RodataVar>();
  for (let i = 0; i < vlen; i++) {
    const varType = libbpf.btf__type_by_id(btf, infos.readUInt32LE(i * 12)) as Ptr;
    const name = libbpf.btf__name_by_offset(btf, readMemory(varType, 4).readUInt32LE(0)) as string;
    vars.set(name, { offset: infos.readUInt32LE(i * 12 + 4), size: infos.readUInt32LE(i * 12 + 8) });
  }
  return vars;
}

function writeConstant(image: Buffer, name: string, v: RodataVar, value: number | bigint): void {
  const big = BigInt(value);
  const bits = BigInt(v.size * 8);
  if (![1, 2, 4, 8].includes(v.size) || big >= 1n << bits || big < -(1n << (bits - 1n))) {
    throw new BpfError(`rodata '${name}' is a ${v.size}-byte value; ${value} does not fit`);
  }
  const le = Buffer.alloc(8);
  le.writeBigUInt64LE(BigInt.asUintN(64, big));
  le.copy(image, v.offset, 0, v.size);
}

function applyRodata(obj: Ptr, rodata: Record<string, number | bigint>, objectPath: string): void {
  const map = libbpf.bpf_object__find_map_by_name(obj, '.rodata') as Ptr | null;
  if (!map) throw new BpfError(`${objectPath} has no .rodata map (no \`const volatile\` globals)`);
  const vars = rodataVars(obj, objectPath);
  const sizeOut = Buffer.alloc(8);
  const initial = libbpf.bpf_map__initial_value(map, sizeOut) as Ptr | null;
  const size = Number(sizeOut.readBigUInt64LE(0));
  if (!initial || size === 0) throw new BpfError(`${objectPath}: .rodata has no initial image`);
  const image = readMemory(initial, size);
  for (const [name, value] of Object.entries(rodata)) {
    const v = vars.get(name);
    if (!v) throw new BpfError(`rodata: no \`const volatile\` global '${name}' in ${objectPath}; it has: ${[...vars.keys()].join(', ')}`);
    writeConstant(image, name, v, value);
  }
  check('setting .rodata', libbpf.bpf_map__set_initial_value(map, image, size) as number);
}

const MAP_FIELDS: [keyof MapInfo, string][] = [
  ['type', 'type'], ['keySize', 'key size'], ['valueSize', 'value size'], ['maxEntries', 'max_entries'], ['flags', 'flags'],
];

/**
 * libbpf refuses a pinned map whose shape differs from the object's with a bare EINVAL; check
 * first and say which map and what differs. Returns the names of maps that will be re-adopted.
 */
function checkPinnedMaps(obj: Ptr, pinRoot: string): string[] {
  const adopted: string[] = [];
  for (const [name, m] of mapsOf(obj)) {
    const pinPath = libbpf.bpf_map__pin_path(m) as string | null;
    if (!pinPath || !existsSync(pinPath)) continue;
    const fd = check(`opening pinned map ${pinPath}`, libbpf.bpf_obj_get(pinPath) as number);
    try {
      const pinned = mapInfoByFd(fd, `pinned map ${pinPath}`);
      const wanted: MapInfo = {
        ...pinned,
        type: libbpf.bpf_map__type(m) as number, keySize: libbpf.bpf_map__key_size(m) as number,
        valueSize: libbpf.bpf_map__value_size(m) as number, maxEntries: libbpf.bpf_map__max_entries(m) as number,
        flags: libbpf.bpf_map__map_flags(m) as number,
      };
      const diffs = MAP_FIELDS.filter(([k]) => pinned[k] !== wanted[k]).map(([k, label]) => `${label} ${pinned[k]} pinned, ${wanted[k]} requested`);
      const inner = libbpf.bpf_map__inner_map(m) as Ptr | null;
      if (inner) {
        const innerDiff = pinnedInnerValueSize(fd, libbpf.bpf_map__value_size(inner) as number);
        if (innerDiff) diffs.push(innerDiff);
      }
      if (diffs.length) {
        throw new BpfError(`pinned map '${name}' at ${pinPath} is incompatible: ${diffs.join('; ')}`, {
          errno: constants.errno.EINVAL,
          hint: `start with the same size flags as before, or remove the old maps with \`rm -r ${pinRoot}\` (this drops live flows)`,
        });
      }
      adopted.push(name);
    } finally {
      libcFns.close(fd);
    }
  }
  return adopted;
}

/** The kernel does not report a map-in-map's inner template; an existing inner map shows it. */
function pinnedInnerValueSize(outerFd: number, wanted: number): string | null {
  const key = Buffer.alloc(mapInfoByFd(outerFd, 'pinned map-in-map').keySize);
  if (libbpf.bpf_map_get_next_key(outerFd, null, key) !== 0) return null;
  const id = Buffer.alloc(4);
  if (libbpf.bpf_map_lookup_elem(outerFd, key, id) !== 0) return null;
  const fd = libbpf.bpf_map_get_fd_by_id(id.readUInt32LE(0)) as number;
  if (fd < 0) return null;
  try {
    const have = mapInfoByFd(fd, 'inner map').valueSize;
    return have === wanted ? null : `inner value size ${have} pinned, ${wanted} requested`;
  } finally {
    libcFns.close(fd);
  }
}

function load(obj: Ptr, objectPath: string, verifierLog: Buffer, mark: number): void {
  const ret = libbpf.bpf_object__load(obj) as number;
  if (ret >= 0) return;
  const errno = -ret;
  const said = warningsSince(mark);
  const logText = verifierLog.toString('utf8', 0, Math.max(0, verifierLog.indexOf(0)));
  if (errno === constants.errno.EPERM) {
    throw new BpfError(`cannot load ${objectPath}: ${errnoName(errno)}`, { errno, hint: PRIVILEGE_HINT });
  }
  // libbpf names the program it failed on; the buffer then holds that program's verifier log.
  const failedProg = said.map((l) => /prog '([^']+)': failed to load/.exec(l)?.[1]).find(Boolean);
  if (logText.trim() && (failedProg || errno === constants.errno.EACCES)) {
    const tail = logTail(logText);
    throw new BpfError(
      `the BPF verifier rejected ${failedProg ? `program '${failedProg}'` : 'a program'} in ${objectPath} (${errnoName(errno)}); last lines of the verifier log:\n${tail}\n`,
      { errno, verifierLog: tail, hint: 'the failing instruction is at the end of the log; fix the program and rebuild with `make bpf`' },
    );
  }
  throw new BpfError(`cannot load ${objectPath}: ${errnoName(errno)}`, {
    errno, hint: withLibbpfSays('set XDIR_LOG_LEVEL=debug to see all of libbpf\'s messages', said),
  });
}
