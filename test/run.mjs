#!/usr/bin/env node
// `npm test`: make sure the real parts the tests start are installed, then run every test file with
// Node's test runner (TypeScript through tsx).
//
//   npm test                      every test
//   npm test -- test/log          only the files under a path (or several paths)
//
// The tests start their own mosquitto, socat, upsd and nats-server processes on loopback; none of them
// needs to be running. Missing Debian packages are installed when running as root (as CI does), and
// otherwise named so that you can install them.
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(fileURLToPath(import.meta.url), '..', '..');

/** Program the tests run → the Debian package that provides it. */
const REQUIRED = [
  ['mosquitto', 'mosquitto', '/usr/sbin/mosquitto'],
  ['mosquitto_pub', 'mosquitto-clients', '/usr/bin/mosquitto_pub'],
  ['socat', 'socat', '/usr/bin/socat'],
  ['upsd', 'nut-server', '/usr/sbin/upsd'],
  ['upsc', 'nut-client', '/usr/bin/upsc'],
  ['nats-server', 'nats-server', '/usr/sbin/nats-server'],
  // The power-loss file system (test/support/powerloss-fs): libfuse and its mount helper, and the Python binding.
  ['fusermount3', 'fuse3', '/usr/bin/fusermount3'],
  ['fusepy', 'python3-fusepy', '/usr/lib/python3/dist-packages/fusepy.py'],
];

function have(program, usualPath) {
  if (statSync(usualPath, { throwIfNoEntry: false })) return true;
  return spawnSync('sh', ['-c', `command -v ${program}`], { stdio: 'ignore' }).status === 0;
}

function ensureDebianPackages() {
  const missing = REQUIRED.filter(([program, , path]) => !have(program, path));
  if (missing.length === 0) return;
  const packages = [...new Set(missing.map(([, pkg]) => pkg))];
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  if (!isRoot) {
    console.error(`npm test: missing ${missing.map(([p]) => p).join(', ')}.`);
    console.error(`Install them with:  sudo apt-get install -y --no-install-recommends ${packages.join(' ')}`);
    process.exit(2);
  }
  console.error(`npm test: installing ${packages.join(' ')} from Debian (running as root)`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  let result = spawnSync('apt-get', ['install', '-y', '--no-install-recommends', ...packages], { stdio: 'inherit', env });
  if (result.status !== 0) {
    spawnSync('apt-get', ['update'], { stdio: 'inherit', env });
    result = spawnSync('apt-get', ['install', '-y', '--no-install-recommends', ...packages], { stdio: 'inherit', env });
  }
  if (result.status !== 0) {
    console.error(`npm test: apt-get could not install ${packages.join(' ')}`);
    process.exit(2);
  }
}

function findTests(path, out) {
  const stat = statSync(path);
  if (stat.isFile()) {
    if (path.endsWith('.test.ts')) out.push(path);
    return out;
  }
  for (const name of readdirSync(path).sort()) {
    if (name === 'node_modules' || name.startsWith('.')) continue;
    findTests(join(path, name), out);
  }
  return out;
}

ensureDebianPackages();

const args = process.argv.slice(2);
const roots = args.length > 0 ? args : [join(root, 'test')];
const files = roots.flatMap((path) => findTests(path, [])).map((file) => relative(root, file));
if (files.length === 0) {
  console.error(`npm test: no *.test.ts files under ${roots.join(', ')}`);
  process.exit(2);
}

// Two cores on CI: two files at a time keeps the broker- and process-heavy tests from starving each other.
const concurrency = process.env.LASTGASP_TEST_CONCURRENCY ?? '2';
// Five minutes per file by default; longer power-cut campaigns (LASTGASP_POWERLOSS_CUTS) need more.
const timeoutMs = process.env.LASTGASP_TEST_TIMEOUT_MS ?? '300000';
const result = spawnSync(
  process.execPath,
  ['--import', 'tsx', '--test', `--test-concurrency=${concurrency}`, `--test-timeout=${timeoutMs}`, ...files],
  // The sources under test, not a bundle an earlier `npm run build` left in dist/ (agent/cli/bin.mjs);
  // LASTGASP_BIN=bundle npm test runs every test on the bundle instead.
  { cwd: root, stdio: 'inherit', env: { ...process.env, LASTGASP_BIN: process.env.LASTGASP_BIN ?? 'sources' } },
);
process.exit(result.status ?? 1);
