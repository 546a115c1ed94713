/** The loader: libbpf through koffi. See docs/decisions/0001-koffi-for-libbpf.md. */
export { BpfError } from './errors.js';
export { BpfObject, type LoadOptions } from './object.js';
export { BpfMap, possibleCpus, BPF_MAP_TYPE, type MapUpdateFlag } from './map.js';
export { BpfProgram, XDP_ACTION } from './program.js';
export { attachXdp, detachXdp, queryXdp, ifindexOf, type XdpMode } from './xdp.js';
export { ensureBpffs, bpffsMissingMessage, isBpffs, DEFAULT_BPFFS } from './bpffs.js';
