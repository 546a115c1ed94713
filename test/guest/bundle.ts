/**
 * Bundles a TypeScript entry point into one ES module for the IPVS guest. Under software
 * emulation, tsx compiling dozens of files at every start costs tens of seconds; one prebuilt file
 * starts in a few. npm packages stay external (resolved from the repo's node_modules, which the
 * guest sees read-only), and every `import.meta.url` keeps the value of its own source file, so
 * code that finds files next to itself (test servers, the BPF object) works unchanged.
 */
import { build, type Plugin } from 'esbuild';
import { readFile } from 'node:fs/promises';
import { pathToFileURL } from 'node:url';

const keepImportMetaUrl: Plugin = {
  name: 'keep-import-meta-url',
  setup(b) {
    b.onLoad({ filter: /\.[cm]?ts$/ }, async (args) => {
      const text = await readFile(args.path, 'utf8');
      return { contents: text.replaceAll('import.meta.url', JSON.stringify(pathToFileURL(args.path).href)), loader: 'ts' };
    });
  },
};

/** Writes `outfile` (inside the repo, so node_modules resolve) from `entry`. */
export async function bundleForGuest(entry: string, outfile: string): Promise<void> {
  await build({
    entryPoints: [entry], outfile, bundle: true, platform: 'node', format: 'esm', target: 'node20',
    packages: 'external', sourcemap: 'inline', logLevel: 'warning', plugins: [keepImportMetaUrl],
  });
}
