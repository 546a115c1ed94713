/**
 * koffi bindings to libbpf 1.1 (libbpf.so.1) and the few libc calls the loader needs. Bindings only:
 * no policy, no error handling. Everything else in control/bpf/ builds on these.
 *
 * Option structs (bpf_object_open_opts, bpf_test_run_opts, ...) are passed as Buffers laid out by
 * hand (see OPTS below): they carry a `sz` field and padding rules that are easiest to get exactly
 * right as explicit offsets, checked against `offsetof()` in libbpf 1.1.2's headers. Opaque libbpf
 * objects (struct bpf_object *, ...) come back from koffi 3 as BigInt addresses, or null.
 */
import koffi from 'koffi';

export type Ptr = bigint;

const lib = koffi.load('libbpf.so.1');
const libc = koffi.load('libc.so.6');

koffi.opaque('bpf_object');
koffi.opaque('bpf_map');
koffi.opaque('bpf_program');
koffi.opaque('btf');

/** Pointers to memory given to libbpf: a Buffer is passed as its address. */
const VP = 'void *';

export const libbpf = {
  // object lifecycle
  bpf_object__open_file: lib.func('bpf_object *bpf_object__open_file(const char *path, void *opts)'),
  bpf_object__load: lib.func('int bpf_object__load(bpf_object *obj)'),
  bpf_object__close: lib.func('void bpf_object__close(bpf_object *obj)'),
  bpf_object__name: lib.func('const char *bpf_object__name(bpf_object *obj)'),
  bpf_object__btf: lib.func('btf *bpf_object__btf(bpf_object *obj)'),
  bpf_object__next_map: lib.func('bpf_map *bpf_object__next_map(bpf_object *obj, bpf_map *prev)'),
  bpf_object__next_program: lib.func('bpf_program *bpf_object__next_program(bpf_object *obj, bpf_program *prev)'),
  bpf_object__find_map_by_name: lib.func('bpf_map *bpf_object__find_map_by_name(bpf_object *obj, const char *name)'),

  // maps as declared in the object
  bpf_map__name: lib.func('const char *bpf_map__name(bpf_map *map)'),
  bpf_map__fd: lib.func('int bpf_map__fd(bpf_map *map)'),
  bpf_map__type: lib.func('int bpf_map__type(bpf_map *map)'),
  bpf_map__key_size: lib.func('uint32_t bpf_map__key_size(bpf_map *map)'),
  bpf_map__value_size: lib.func('uint32_t bpf_map__value_size(bpf_map *map)'),
  bpf_map__max_entries: lib.func('uint32_t bpf_map__max_entries(bpf_map *map)'),
  bpf_map__map_flags: lib.func('uint32_t bpf_map__map_flags(bpf_map *map)'),
  bpf_map__set_max_entries: lib.func('int bpf_map__set_max_entries(bpf_map *map, uint32_t n)'),
  bpf_map__set_value_size: lib.func('int bpf_map__set_value_size(bpf_map *map, uint32_t size)'),
  bpf_map__inner_map: lib.func('bpf_map *bpf_map__inner_map(bpf_map *map)'),
  bpf_map__initial_value: lib.func(`void *bpf_map__initial_value(bpf_map *map, ${VP} psize)`),
  bpf_map__set_initial_value: lib.func('int bpf_map__set_initial_value(bpf_map *map, void *data, size_t size)'),
  bpf_map__pin_path: lib.func('const char *bpf_map__pin_path(bpf_map *map)'),
  bpf_map__set_pin_path: lib.func('int bpf_map__set_pin_path(bpf_map *map, const char *path)'),

  // programs
  bpf_program__name: lib.func('const char *bpf_program__name(bpf_program *prog)'),
  bpf_program__fd: lib.func('int bpf_program__fd(bpf_program *prog)'),
  bpf_program__type: lib.func('int bpf_program__type(bpf_program *prog)'),

  // BTF
  btf__find_by_name_kind: lib.func('int32_t btf__find_by_name_kind(btf *btf, const char *name, uint32_t kind)'),
  btf__type_by_id: lib.func('void *btf__type_by_id(btf *btf, uint32_t id)'),
  btf__name_by_offset: lib.func('const char *btf__name_by_offset(btf *btf, uint32_t off)'),

  // fd-based syscall wrappers (bpf.h); all return 0 or a negative errno
  bpf_map_lookup_elem: lib.func(`int bpf_map_lookup_elem(int fd, ${VP} key, ${VP} value)`),
  bpf_map_update_elem: lib.func(`int bpf_map_update_elem(int fd, ${VP} key, ${VP} value, uint64_t flags)`),
  bpf_map_delete_elem: lib.func(`int bpf_map_delete_elem(int fd, ${VP} key)`),
  bpf_map_get_next_key: lib.func(`int bpf_map_get_next_key(int fd, ${VP} key, ${VP} next)`),
  bpf_map_lookup_batch: lib.func(
    `int bpf_map_lookup_batch(int fd, ${VP} inBatch, ${VP} outBatch, ${VP} keys, ${VP} values, ${VP} count, ${VP} opts)`,
  ),
  bpf_map_update_batch: lib.func(
    `int bpf_map_update_batch(int fd, ${VP} keys, ${VP} values, ${VP} count, ${VP} opts)`,
  ),
  bpf_map_delete_batch: lib.func(`int bpf_map_delete_batch(int fd, ${VP} keys, ${VP} count, ${VP} opts)`),
  bpf_map_create: lib.func(
    `int bpf_map_create(int type, const char *name, uint32_t keySize, uint32_t valueSize, uint32_t maxEntries, ${VP} opts)`,
  ),
  bpf_map_get_fd_by_id: lib.func('int bpf_map_get_fd_by_id(uint32_t id)'),
  bpf_prog_get_fd_by_id: lib.func('int bpf_prog_get_fd_by_id(uint32_t id)'),
  bpf_obj_get_info_by_fd: lib.func(`int bpf_obj_get_info_by_fd(int fd, ${VP} info, ${VP} len)`),
  bpf_obj_get: lib.func('int bpf_obj_get(const char *path)'),
  bpf_prog_test_run_opts: lib.func(`int bpf_prog_test_run_opts(int fd, ${VP} opts)`),

  // XDP (netlink inside libbpf)
  bpf_xdp_attach: lib.func(`int bpf_xdp_attach(int ifindex, int progFd, uint32_t flags, ${VP} opts)`),
  bpf_xdp_detach: lib.func(`int bpf_xdp_detach(int ifindex, uint32_t flags, ${VP} opts)`),
  bpf_xdp_query: lib.func(`int bpf_xdp_query(int ifindex, int flags, ${VP} opts)`),

  libbpf_num_possible_cpus: lib.func('int libbpf_num_possible_cpus(void)'),
  libbpf_set_print: lib.func('void *libbpf_set_print(void *fn)'),
};

/** libbpf's print callback: `int (*)(enum libbpf_print_level, const char *fmt, va_list ap)`. va_list is
 * passed by reference on x86-64 and arm64, so it travels as a plain pointer to vsnprintf. */
export const LibbpfPrintFn = koffi.proto('int libbpf_print_fn(int level, const char *fmt, void *ap)');

export const libcFns = {
  vsnprintf: libc.func(`int vsnprintf(${VP} buf, size_t n, const char *fmt, void *ap)`),
  if_nametoindex: libc.func('unsigned int if_nametoindex(const char *name)'),
  close: libc.func('int close(int fd)'),
  mount: libc.func('int mount(const char *src, const char *target, const char *fstype, unsigned long flags, void *data)'),
};

export const LIBBPF_WARN = 0;
export const LIBBPF_INFO = 1;
export const LIBBPF_DEBUG = 2;

export const BTF_KIND_VAR = 14;
export const BTF_KIND_DATASEC = 15;

/** Byte offsets of option/info structs in libbpf 1.1.2 / linux uapi (x86-64 and arm64, LP64). */
export const OPTS = {
  objectOpen: { size: 80, pinRootPath: 24, kernelLogBuf: 56, kernelLogSize: 64, kernelLogLevel: 72 },
  mapBatch: { size: 24, elemFlags: 8, flags: 16 },
  testRun: {
    size: 80, dataIn: 8, dataOut: 16, dataSizeIn: 24, dataSizeOut: 28, ctxIn: 32, ctxOut: 40,
    ctxSizeIn: 48, ctxSizeOut: 52, retval: 56, repeat: 60, duration: 64,
  },
  xdpAttach: { size: 16, oldProgFd: 8 },
  xdpQuery: { size: 32, progId: 8, drvProgId: 12, hwProgId: 16, skbProgId: 20, attachMode: 24 },
  mapCreate: { size: 48, innerMapFd: 24, mapFlags: 28 },
  mapInfo: { size: 88, type: 0, id: 4, keySize: 8, valueSize: 12, maxEntries: 16, mapFlags: 20, name: 24 },
  progInfo: { size: 232, id: 4 },
  xdpMd: { size: 24, data: 0, dataEnd: 4, ingressIfindex: 12 },
} as const;

/** A zeroed option struct with its leading `size_t sz` set, as LIBBPF_OPTS() does in C. */
export function opts(size: number): Buffer {
  const b = Buffer.alloc(size);
  b.writeBigUInt64LE(BigInt(size), 0);
  return b;
}

/** Address of a Buffer's memory, for pointer fields inside option structs. The caller keeps the
 * Buffer referenced for as long as libbpf may read it. */
export function addressOf(b: Buffer): bigint {
  return koffi.address(b) as bigint;
}

/** Copies `len` bytes from native memory into a new Buffer. */
export function readMemory(ptr: Ptr, len: number): Buffer {
  return Buffer.from(new Uint8Array(koffi.view(ptr, len)));
}

export { koffi };
