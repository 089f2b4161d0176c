/**
 * Where this program's own files are. The same code runs from the sources (agent/cli/*.ts, through tsx or
 * Deno) and from the bundle that `npm run build` writes (dist/lastgasp.mjs), whose `import.meta.url` is the
 * bundle's; the build defines LASTGASP_BUNDLE so that each knows which it is.
 */
import { fileURLToPath } from 'node:url';

declare const LASTGASP_BUNDLE: boolean | undefined;

/** True in dist/lastgasp.mjs; `typeof` keeps the sources valid where the build defined nothing. */
export const BUNDLED = typeof LASTGASP_BUNDLE !== 'undefined' && LASTGASP_BUNDLE === true;

/** The package's root: the parent of dist/ for the bundle, two levels above agent/cli/ for the sources. */
export const PACKAGE_ROOT = fileURLToPath(new URL(BUNDLED ? '..' : '../..', import.meta.url));

/**
 * The script that runs this same command line in a child process (the demo starts its agents and the BMS
 * simulator with it): the bundle itself, or bin.mjs, which picks the bundle or tsx.
 */
export const CLI_SCRIPT = BUNDLED ? fileURLToPath(import.meta.url) : fileURLToPath(new URL('./bin.mjs', import.meta.url));
