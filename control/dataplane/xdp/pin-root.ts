/**
 * Where the XDP data path pins its maps and program link by default. Its own module, free of
 * libbpf, so callers that only need the path (the instance lock) do not load libbpf.
 */
export function defaultPinRoot(ifname: string): string {
  return `/sys/fs/bpf/xdir/${ifname}`;
}
