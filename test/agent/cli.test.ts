// The lastgasp command as users meet it: help that helps, clear exit codes, config checking.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, tempDir } from '../support/ports.ts';

const ROOT = join(fileURLToPath(import.meta.url), '..', '..', '..');
const BIN = join(ROOT, 'agent', 'cli', 'bin.mjs');

function lastgasp(...args: string[]) {
  return spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 60_000 });
}

test('help lists every command; no command is a usage error, an unknown one too', () => {
  const help = lastgasp('--help');
  assert.equal(help.status, 0);
  for (const command of ['run --config', 'demo', 'status', 'config check', 'config defaults', 'bms-sim', 'bms probe', 'log inspect', 'version']) {
    assert.ok(help.stdout.includes(command), `help does not mention ${command}`);
  }
  assert.equal(lastgasp().status, 2);
  const unknown = lastgasp('frobnicate');
  assert.equal(unknown.status, 2);
  assert.match(unknown.stderr, /unknown command "frobnicate"/);
});

test('every command has its own --help', () => {
  for (const command of [['run'], ['demo'], ['status'], ['bms-sim'], ['bms'], ['log']]) {
    const result = lastgasp(...command, '--help');
    assert.equal(result.status, 0, `${command.join(' ')} --help exited ${result.status}: ${result.stderr}`);
    assert.match(result.stdout, /Usage/i, `${command.join(' ')} --help prints no usage`);
  }
});

test('version prints the package version', () => {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
  assert.equal(lastgasp('version').stdout.trim(), `lastgasp ${pkg.version}`);
});

test('config check accepts the shipped example and refuses a bad file with exit 78', async () => {
  const ok = lastgasp('config', 'check', join(ROOT, 'agent', 'packaging', 'agent.example.yaml'));
  assert.equal(ok.status, 0, ok.stderr);
  assert.match(ok.stdout, /valid \(node gw-a, group line-1, 3 broker\(s\), power source bridge\)/);
  const dir = await tempDir('cli');
  try {
    const bad = join(dir.path, 'bad.yaml');
    await writeFile(bad, 'node: gw-a\ngroup: g\n');
    const result = lastgasp('config', 'check', bad);
    assert.equal(result.status, 78);
    assert.match(result.stderr, /dataDir: is required/);
    assert.match(result.stderr, /replication: is required/);
  } finally {
    await dir.remove();
  }
});

test('config defaults is valid YAML documentation of the schema', () => {
  const result = lastgasp('config', 'defaults');
  assert.equal(result.status, 0);
  assert.match(result.stdout, /^# lastgasp agent configuration/);
  assert.match(result.stdout, /\n {2}lingerMs: 2\n/);
});

test('status against an address where no agent runs says so and exits 1', async () => {
  const port = await freePort();
  const result = lastgasp('status', '--api', `127.0.0.1:${port}`);
  assert.equal(result.status, 1);
  assert.match(result.stderr, new RegExp(`no agent answered at 127\\.0\\.0\\.1:${port}`));
});
