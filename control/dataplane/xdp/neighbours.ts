/**
 * Where the XDP data path learns a backend's MAC when the config gives none: the kernel's
 * neighbour table (ARP / NDP) on the interface the director transmits on.
 */
export interface NeighbourResolver {
  /**
   * The MAC (aa:bb:cc:dd:ee:ff) the kernel knows for `address` on `ifname`, or null while it is
   * unresolved. A null answer may have started resolution, so asking again later can succeed.
   */
  lookup(address: string, ifname: string): Promise<string | null>;
}
