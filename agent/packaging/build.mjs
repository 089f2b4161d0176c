#!/usr/bin/env node
// `npm run build`: bundle the agent and its command line (agent/cli/entry.ts) into one ESM file,
// dist/lastgasp.mjs, with its source map. A gateway then runs plain JavaScript: no TypeScript loader, whose
// own worker and heap cost memory and start time at every start (issue 11).
//
//   node agent/packaging/build.mjs [--outdir DIR]      (default: dist/ in the package root)
//
// What stays outside the bundle, loaded from node_modules only when used:
// - serialport: a native binding with per-architecture prebuilds (the serial BMS link);
// - cbor-extract: cbor-x's optional native decoder, required by cbor-x at run time if it is there;
// - libsql: native, optional (issue 14).
import { build } from 'esbuild';
import { copyFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export const BUNDLE_EXTERNAL = ['serialport', 'cbor-extract', 'libsql'];

/** Bundle into `outdir`; returns the bundle's path. */
export async function buildBundle(outdir = join(ROOT, 'dist')) {
  const outfile = join(outdir, 'lastgasp.mjs');
  await build({
    entryPoints: [join(ROOT, 'agent', 'cli', 'entry.ts')],
    outfile,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20.6',
    sourcemap: true,
    // Without comments the bundle is ASCII: V8 keeps a script's source in memory for as long as it runs, and
    // one non-ASCII character in a dependency's comment made all of it two bytes a character (3.8 MB instead
    // of 1.2). Names stay as written, and the source map has the lines.
    minifyWhitespace: true,
    // Paths in the source map relative to the package, not to wherever node_modules really lives.
    preserveSymlinks: true,
    external: BUNDLE_EXTERNAL,
    define: { LASTGASP_BUNDLE: 'true' },
    // The CommonJS packages inside (mqtt's dependencies, yaml) call require() for Node's built-ins; an ES
    // module has no require, so the bundle makes one.
    banner: { js: "import { createRequire as __lastgaspCreateRequire } from 'node:module';\nconst require = __lastgaspCreateRequire(import.meta.url);" },
    logLevel: 'warning',
  });
  // The demo's application is a script of its own that the demo runs as `app:` (plain JavaScript already).
  copyFileSync(join(ROOT, 'agent', 'cli', 'demo-app.mjs'), join(outdir, 'demo-app.mjs'));
  return outfile;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const { values } = parseArgs({ options: { outdir: { type: 'string' } } });
  const outfile = await buildBundle(values.outdir);
  console.log(`built ${outfile}`);
}
