#!/usr/bin/env node
// `npm run package`: one tarball per gateway architecture, dist/lastgasp-VERSION-linux-ARCH.tar.gz, holding
// everything a gateway needs under lastgasp/: the bundle (built first), package.json, the production
// node_modules with that architecture's prebuilt native parts, bin.mjs, the packaging files and the README.
//
//   node agent/packaging/package.mjs [--arch x64,arm64]
//
// node_modules comes from `npm ci --omit=dev` in a staging directory with --os/--cpu/--libc set to the
// target, so npm picks the platform packages built for it (cbor-extract's and libsql's); serialport ships
// the prebuilds of every platform in one package, and those of the other platforms are removed. No install
// script runs (--ignore-scripts): every native part used is prebuilt. It needs the npm registry, or a cache
// that holds the locked versions.
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { buildBundle } from './build.mjs';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const ARCHES = ['x64', 'arm64'];

/** What the tarball holds besides node_modules, as paths in the package. */
export const RELEASE_FILES = [
  'package.json',
  'package-lock.json',
  'README.md',
  'agent/cli/bin.mjs',
  'agent/packaging/lastgasp.service',
  'agent/packaging/lastgasp.sysusers.conf',
  'agent/packaging/lastgasp.tmpfiles.conf',
  'agent/packaging/agent.example.yaml',
  'agent/packaging/install.sh',
];

function run(command, args, cwd) {
  const result = spawnSync(command, args, { cwd, stdio: ['ignore', 'inherit', 'inherit'] });
  if (result.status !== 0) throw new Error(`${command} ${args.join(' ')} failed (${result.status ?? result.signal}) in ${cwd}`);
}

/**
 * Keep only the native parts for `arch` with glibc: serialport's package carries the prebuilds of every
 * platform, and npm installs libsql's musl builds even with --libc=glibc (they declare no libc).
 */
function pruneOtherPlatforms(modules, arch) {
  const prebuilds = join(modules, '@serialport', 'bindings-cpp', 'prebuilds');
  if (existsSync(prebuilds)) for (const name of readdirSync(prebuilds)) if (name !== `linux-${arch}`) rmSync(join(prebuilds, name), { recursive: true });
  const libsql = join(modules, '@libsql');
  if (existsSync(libsql)) for (const name of readdirSync(libsql)) if (name.endsWith('-musl')) rmSync(join(libsql, name), { recursive: true });
}

/** The native parts the agent loads on `arch`, checked present: a tarball without them fails on the gateway. */
function checkNativeParts(modules, arch) {
  const wanted = [join('@serialport', 'bindings-cpp', 'prebuilds', `linux-${arch}`), join('@cbor-extract', `cbor-extract-linux-${arch}`)];
  const missing = wanted.filter((path) => !existsSync(join(modules, path)));
  if (missing.length > 0) throw new Error(`linux-${arch}: node_modules lacks ${missing.join(', ')}`);
}

export async function packageArch(arch, outdir = join(ROOT, 'dist')) {
  const version = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version;
  const staging = mkdtempSync(join(tmpdir(), `lastgasp-package-${arch}-`));
  const top = join(staging, 'lastgasp');
  try {
    for (const file of RELEASE_FILES) cpSync(join(ROOT, file), join(top, file));
    cpSync(join(outdir, 'lastgasp.mjs'), join(top, 'dist', 'lastgasp.mjs'));
    cpSync(join(outdir, 'lastgasp.mjs.map'), join(top, 'dist', 'lastgasp.mjs.map'));
    cpSync(join(outdir, 'demo-app.mjs'), join(top, 'dist', 'demo-app.mjs'));
    run('npm', ['ci', '--omit=dev', '--ignore-scripts', '--os=linux', `--cpu=${arch}`, '--libc=glibc', '--no-audit', '--no-fund'], top);
    pruneOtherPlatforms(join(top, 'node_modules'), arch);
    checkNativeParts(join(top, 'node_modules'), arch);
    mkdirSync(outdir, { recursive: true });
    const tarball = join(outdir, `lastgasp-${version}-linux-${arch}.tar.gz`);
    run('tar', ['-czf', tarball, '--owner=0', '--group=0', '-C', staging, 'lastgasp'], staging);
    return tarball;
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const { values } = parseArgs({ options: { arch: { type: 'string', default: ARCHES.join(',') } } });
  await buildBundle();
  for (const arch of values.arch.split(',')) console.log(`packaged ${await packageArch(arch)}`);
}
