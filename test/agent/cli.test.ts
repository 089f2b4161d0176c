// The lastgasp command as users meet it: help that helps, clear exit codes, config checking.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, readFileSync, statSync } from 'node:fs';
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
  for (const command of ['run --config', 'demo', 'status', 'config check', 'config defaults', 'bms-sim', 'bms probe', 'log inspect', 'keys generate', 'version']) {
    assert.ok(help.stdout.includes(command), `help does not mention ${command}`);
  }
  assert.equal(lastgasp().status, 64);
  const unknown = lastgasp('frobnicate');
  assert.equal(unknown.status, 64);
  assert.match(unknown.stderr, /unknown command "frobnicate"/);
});

test('every command has its own --help', () => {
  for (const command of [['run'], ['demo'], ['status'], ['bms-sim'], ['bms'], ['log'], ['keys'], ['keys', 'generate'], ['keys', 'show']]) {
    const result = lastgasp(...command, '--help');
    assert.equal(result.status, 0, `${command.join(' ')} --help exited ${result.status}: ${result.stderr}`);
    assert.match(result.stdout, /Usage/i, `${command.join(' ')} --help prints no usage`);
  }
});

test('version prints the package version', () => {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
  assert.equal(lastgasp('version').stdout.trim(), `lastgasp ${pkg.version}`);
});

test('config check accepts the shipped example once its secret files exist, and refuses a bad file with exit 78', async () => {
  const dir = await tempDir('cli');
  try {
    // The example names files under /etc/lastgasp: without them, every missing one is reported at once.
    const example = readFileSync(join(ROOT, 'agent', 'packaging', 'agent.example.yaml'), 'utf8');
    const missing = lastgasp('config', 'check', join(ROOT, 'agent', 'packaging', 'agent.example.yaml'));
    assert.equal(missing.status, 78);
    for (const field of ['replication.passwordFile', 'replication.tls.keyFile', 'replication.tls.caFile', 'replication.tls.certFile', 'replication.signing.keyFile']) assert.match(missing.stderr, new RegExp(`: ${field.replace(/\./g, '\\.')}: `), field);
    const etc = join(dir.path, 'etc');
    for (const node of ['gw-a', 'gw-b']) assert.equal(lastgasp('keys', 'generate', '--out', join(etc, 'keys'), '--node', node).status, 0);
    for (const [name, mode] of [['mqtt-password', 0o600], ['gw-a.key', 0o600], ['ca.pem', 0o644], ['gw-a.pem', 0o644]] as const) {
      await writeFile(join(etc, name), 'secret-or-certificate\n', { mode });
      chmodSync(join(etc, name), mode);
    }
    const local = join(dir.path, 'agent.yaml');
    await writeFile(local, example.replaceAll('/etc/lastgasp/', `${etc}/`));
    const ok = lastgasp('config', 'check', local);
    assert.equal(ok.status, 0, ok.stderr);
    assert.match(ok.stdout, /valid \(node gw-a, group line-1, 3 broker\(s\), power source bridge\)/);
    chmodSync(join(etc, 'mqtt-password'), 0o644);
    const loose = lastgasp('config', 'check', local);
    assert.equal(loose.status, 78);
    assert.match(loose.stderr, /replication\.passwordFile: .*mqtt-password is open to the group or other users \(mode 0644\); a secret must be private: chmod 600/);

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

test('keys generate writes a private key only its owner reads and a public key that keys show and the agent agree on', async () => {
  const dir = await tempDir('cli-keys');
  try {
    const out = join(dir.path, 'keys');
    const made = lastgasp('keys', 'generate', '--out', out, '--node', 'gw-a', '--json');
    assert.equal(made.status, 0, made.stderr);
    const generated = JSON.parse(made.stdout) as { node: string; publicKey: string; fingerprint: string; keyFile: string; publicKeyFile: string };
    assert.equal(generated.keyFile, join(out, 'gw-a.key'));
    assert.equal(statSync(generated.keyFile).mode & 0o777, 0o600);
    assert.match(generated.publicKey, /^[A-Za-z0-9+/]{43}=$/);
    assert.match(generated.fingerprint, /^SHA256:([0-9a-f]{2}:){15}[0-9a-f]{2}$/);
    assert.equal(readFileSync(generated.publicKeyFile, 'utf8').trim(), generated.publicKey);
    for (const file of [generated.keyFile, generated.publicKeyFile]) {
      const shown = lastgasp('keys', 'show', file, '--json');
      assert.equal(shown.status, 0, shown.stderr);
      assert.deepEqual(JSON.parse(shown.stdout), { publicKey: generated.publicKey, fingerprint: generated.fingerprint });
    }
    const human = lastgasp('keys', 'generate', '--out', out, '--node', 'gw-b');
    assert.equal(human.status, 0);
    assert.match(human.stdout, /^  gw-b: [A-Za-z0-9+/]{43}=$/m, 'prints the line for replication.signing.publicKeys');
    const again = lastgasp('keys', 'generate', '--out', out, '--node', 'gw-a');
    assert.equal(again.status, 64);
    assert.match(again.stderr, /gw-a\.key exists; a key in use is never overwritten/);
    assert.equal(readFileSync(generated.publicKeyFile, 'utf8').trim(), generated.publicKey, 'the old key is untouched');
    assert.match(lastgasp('keys', 'generate', '--out', out).stderr, /--node NAME is required/);
    assert.match(lastgasp('keys', 'generate', '--out', out, '--node', 'gw/a').stderr, /is not a node name/);
    const garbage = join(dir.path, 'garbage');
    await writeFile(garbage, 'not a key');
    const refused = lastgasp('keys', 'show', garbage);
    assert.equal(refused.status, 1);
    assert.match(refused.stderr, /holds no Ed25519 key/);
  } finally {
    await dir.remove();
  }
});

test('run refuses a group without keys (exit 78, naming the fix) and a private key that is readable by others or not the one listed', async () => {
  const dir = await tempDir('cli-unsigned');
  try {
    const config = { node: 'gw-a', group: 'g', dataDir: join(dir.path, 'data'), siblings: ['gw-b'], api: { listen: `127.0.0.1:${await freePort()}` }, replication: { brokers: [{ url: `mqtt://127.0.0.1:${await freePort()}` }] }, takeover: { brokerWaitMs: 0 }, logging: { json: true } };
    const file = join(dir.path, 'unsigned.json');
    await writeFile(file, JSON.stringify(config));
    const refused = lastgasp('run', '--config', file);
    assert.equal(refused.status, 78);
    assert.match(refused.stderr, /replication\.signing: is not set: .*lastgasp keys generate --out DIR --node NAME/);
    const key = join(dir.path, 'gw-a.key');
    assert.equal(lastgasp('keys', 'generate', '--out', dir.path, '--node', 'gw-a').status, 0);
    chmodSync(key, 0o644);
    await writeFile(file, JSON.stringify({ ...config, replication: { ...config.replication, signing: { keyFile: key, publicKeys: { 'gw-a': join(dir.path, 'gw-a.pub'), 'gw-b': join(dir.path, 'gw-a.pub') } } } }));
    const open = lastgasp('run', '--config', file);
    assert.equal(open.status, 78, 'a private key others may read is refused');
    assert.match(open.stderr, /may be read by others \(mode 644\).*chmod 600/);
    chmodSync(key, 0o600);
    await writeFile(file, JSON.stringify({ ...config, replication: { ...config.replication, signing: { keyFile: key, publicKeys: { 'gw-a': join(dir.path, 'gw-b.pub'), 'gw-b': join(dir.path, 'gw-a.pub') } } } }));
    assert.equal(lastgasp('keys', 'generate', '--out', dir.path, '--node', 'gw-b').status, 0);
    const swapped = lastgasp('run', '--config', file);
    assert.equal(swapped.status, 78, 'a list that gives this node another key is refused');
    assert.match(swapped.stderr, /replication\.signing\.publicKeys\.gw-a: does not match this node's own key/);
  } finally {
    await dir.remove();
  }
});
