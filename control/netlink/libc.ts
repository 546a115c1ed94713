/**
 * The few libc calls a netlink socket needs, bound through koffi. Buffers are passed as pointers
 * in place (no copies); errors come back as errno, read right after the failing call.
 */
import koffi from 'koffi';

const libc = koffi.load('libc.so.6');

export const sys = {
  socket: libc.func('int socket(int domain, int type, int protocol)') as (d: number, t: number, p: number) => number,
  bind: libc.func('int bind(int fd, const void *addr, uint32_t len)') as (fd: number, a: Buffer, l: number) => number,
  getsockname: libc.func('int getsockname(int fd, _Out_ void *addr, _Inout_ uint32_t *len)') as (
    fd: number, a: Buffer, l: Uint32Array) => number,
  setsockopt: libc.func('int setsockopt(int fd, int level, int name, const void *val, uint32_t len)') as (
    fd: number, level: number, name: number, v: Buffer, l: number) => number,
  sendto: libc.func('intptr_t sendto(int fd, const void *buf, size_t len, int flags, const void *addr, uint32_t alen)') as (
    fd: number, b: Buffer, l: number, f: number, a: Buffer, al: number) => number,
  recv: libc.func('intptr_t recv(int fd, _Out_ void *buf, size_t len, int flags)') as (
    fd: number, b: Buffer, l: number, f: number) => number,
  close: libc.func('int close(int fd)') as (fd: number) => number,
  setns: libc.func('int setns(int fd, int nstype)') as (fd: number, t: number) => number,
  flock: libc.func('int flock(int fd, int operation)') as (fd: number, op: number) => number,
};

const strerrorFn = libc.func('const char *strerror(int errnum)') as (e: number) => string;
const errnoNames = new Map<number, string>(
  Object.entries(koffi.os.errno as Record<string, number>).map(([name, value]) => [value, name]),
);

/** errno of the last failed libc call on this thread. */
export function lastErrno(): number {
  return koffi.errno();
}

/** `ENOENT (No such file or directory)` for an errno value. */
export function describeErrno(errno: number): string {
  return `${errnoNames.get(errno) ?? `errno ${errno}`} (${strerrorFn(errno)})`;
}

/** The errno value for a name such as `ENOENT`. */
export function errnoValue(name: string): number {
  const v = (koffi.os.errno as Record<string, number>)[name];
  if (v === undefined) throw new Error(`unknown errno name ${name}`);
  return v;
}
