/**
 * Gate for tests that need root (BPF, network namespaces). Under CI (CI=true) a missing privilege
 * is a failure, never a skip: CI runs as root and every privileged test must really run there.
 */
import { test as uvuTest } from 'uvu';

export function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

/**
 * Returns a reason to skip, or null when the test can run. Throws under CI when privileges are
 * missing, so the caller's test fails loudly.
 */
export function privilegeGap(): string | null {
  if (isRoot()) return null;
  const why = 'needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN, CAP_BPF)';
  if (process.env.CI === 'true') throw new Error(`${why}, and CI=true forbids skipping privileged tests`);
  return why;
}

/** uvu `test` for privileged cases: skipped outside CI without root, failing under CI without root. */
export function privilegedTest(name: string, fn: () => unknown | Promise<unknown>): void {
  let gap: string | null;
  try {
    gap = privilegeGap();
  } catch (err) {
    uvuTest(name, () => { throw err; });
    return;
  }
  if (gap) uvuTest.skip(`${name} (${gap})`, () => {});
  else uvuTest(name, fn as () => Promise<void>);
}
