#!/usr/bin/env node
// The `lastgasp` command on Node. It runs the bundle that `npm run build` writes (dist/lastgasp.mjs) when
// there is one, as on a gateway; otherwise the TypeScript sources through tsx's loader (development). The
// test runner sets LASTGASP_BIN=sources so that a bundle left from an earlier build never stands in for the
// code under test; LASTGASP_BIN=bundle insists on the bundle.
import { existsSync } from 'node:fs';

const bundle = new URL('../../dist/lastgasp.mjs', import.meta.url);
const choice = process.env.LASTGASP_BIN;
if (choice === 'bundle' || (choice !== 'sources' && existsSync(bundle))) {
  await import(bundle.href);
} else {
  const tsx = await import('tsx/esm/api').catch(() => undefined);
  if (!tsx) {
    process.stderr.write('lastgasp: neither dist/lastgasp.mjs nor tsx is installed: run "npm run build" (a checkout with dev dependencies), or install a release tarball\n');
    process.exit(1);
  }
  tsx.register();
  await import('./entry.ts');
}
