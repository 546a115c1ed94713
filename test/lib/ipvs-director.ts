/**
 * Makes the director of a test topology (test/lib/topology.ts) an IPVS DR director: the VIPs go
 * on its `lo` (IPVS takes VIP packets at LOCAL_IN; `lo` addresses are never announced on eth0,
 * so clients still reach the VIPs through their routes via the director) and the IPVS data path
 * is started in its namespace. Needs a kernel with IPVS: the guest of test/guest/.
 * For the guest tests and for benchmarks that compare IPVS with the other data paths.
 */
import { createDataplane, type SelectedDataplane } from '../../control/dataplane/select.js';
import { ipIn } from './netns.js';
import type { Topology } from './topology.js';

export async function startIpvsDirector(t: Topology, ownershipFile: string): Promise<SelectedDataplane> {
  const ns = t.director.ns;
  const present = (await ipIn(ns, 'addr', 'show', 'dev', 'lo')).stdout;
  if (!present.includes(` ${t.vip4}/32`)) await ipIn(ns, 'addr', 'add', `${t.vip4}/32`, 'dev', 'lo');
  if (!present.includes(` ${t.vip6}/128`)) await ipIn(ns, 'addr', 'add', `${t.vip6}/128`, 'dev', 'lo');
  return createDataplane({ dataplane: 'ipvs', ipvs: { netns: ns, ownershipFile } });
}
