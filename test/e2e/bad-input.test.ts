// Bad input never stops the agent and never costs an acknowledged entry: garbage on the serial line, junk
// and forgeries on the replication topics, an oversized entry, a broken config file. Each one is refused
// with a clear error or counted, and replication goes on.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import mqtt from 'mqtt';
import { WireCodec, topics } from '../../agent/replication/index.ts';
import { encodeCbor } from '../../agent/util/index.ts';
import { startMosquitto } from '../support/mosquitto.ts';
import { createPtyPair } from '../support/pty.ts';
import { startBmsSim } from '../support/bms-sim.ts';
import { settledState, startAgent, startPair, writeAgentConfig } from '../support/agents.ts';
import { groupKeys } from '../support/keys.ts';
import { killAll } from '../support/processes.ts';
import { tempDir, waitFor } from '../support/ports.ts';

after(killAll);

const BIN = join(fileURLToPath(import.meta.url), '..', '..', '..', 'agent', 'cli', 'bin.mjs');

test('junk, forgeries and unknown kinds on the replication topics are counted and dropped; replication goes on', async () => {
  const dir = await tempDir('bad-topics');
  const broker = await startMosquitto(dir.path);
  const { a, b } = await startPair(dir.path, 'bad', broker.url);
  const attacker = await mqtt.connectAsync(broker.url, { clientId: 'attacker', protocolVersion: 5 });
  try {
    for (let index = 0; index < 20; index++) await a.client.put(`k${index}`, 'v');
    await waitFor('the sibling to catch up', async () => ((await b.client.status()).watermarks.committed >= 20 ? true : undefined));

    const t = topics('lastgasp', 'bad');
    // The harness signs the pair with per-node keys; gw-a's key here stands for a member that misbehaves.
    const signedByA = new WireCodec(groupKeys(dir.path).auth('gw-a', ['gw-b']));
    const forgedEntries = [{ seq: 21, epoch: 1, timestampMs: Date.now(), payload: encodeCbor([2, 'k0', new TextEncoder().encode('forged')]) }];
    const junk: Array<[string, Uint8Array]> = [
      [t.log('gw-a'), new TextEncoder().encode('definitely not cbor \u0000\u00ff')],
      [t.log('gw-a'), encodeCbor({ v: 1, k: 'telemetry', b: new Uint8Array(4), crc: 0 })],
      [t.log('gw-a'), encodeCbor({ v: 9, k: 'batch' })],
      [t.log('gw-a'), new WireCodec().encodeBatch({ group: 'bad', node: 'gw-a', epoch: 1, entries: forgedEntries })],
      [t.log('gw-a'), signedByA.encodeBatch({ group: 'bad', node: 'gw-x', epoch: 1, entries: forgedEntries })],
      [t.log('gw-a'), signedByA.encodeBatch({ group: 'other', node: 'gw-a', epoch: 1, entries: forgedEntries })],
      [t.log('gw-b'), signedByA.encodeBatch({ group: 'bad', node: 'gw-a', epoch: 1, entries: forgedEntries })],
      [t.leader, new Uint8Array([0x42])],
    ];
    for (const [topic, payload] of junk) await attacker.publishAsync(topic, Buffer.from(payload), { qos: 1 });
    const rejected = await waitFor('eight rejections on the sibling', async () => {
      const counts = (await b.client.status()).replication.rejected as Record<string, number>;
      return Object.values(counts).reduce((sum, count) => sum + count, 0) >= 8 ? counts : undefined;
    });
    assert.deepEqual(rejected, {
      'envelope-cbor-trailing-bytes': 1,
      'envelope-cbor-truncated': 1,
      'unknown-kind': 1,
      'version-9': 1,
      unsigned: 1,
      'signer-mismatch': 1,
      'wrong-group': 1,
      'sender-mismatch': 1,
    });

    for (let index = 20; index < 40; index++) await a.client.put(`k${index}`, 'v');
    await waitFor('replication to go on after the junk', async () => ((await b.client.status()).watermarks.committed >= 40 ? true : undefined));
    assert.equal((await settledState(b, 40)).digest, (await a.client.list()).digest);
    assert.equal(new TextDecoder().decode((await a.client.get('k0'))!), 'v');
  } finally {
    await attacker.endAsync();
    await a.stop();
    await b.stop();
    await broker.stop();
    await dir.remove();
  }
});

test('with a group key, a batch signed with another key is rejected and nothing of it is applied', async () => {
  const dir = await tempDir('bad-hmac');
  const broker = await startMosquitto(dir.path);
  const keyFile = join(dir.path, 'group.key');
  await writeFile(keyFile, Buffer.alloc(32, 7), { mode: 0o600 });
  const { a, b } = await startPair(dir.path, 'signed', broker.url, { extra: { replication: { hmacKeyFile: keyFile } } });
  const attacker = await mqtt.connectAsync(broker.url, { clientId: 'attacker', protocolVersion: 5 });
  try {
    await a.client.put('balance', '100');
    await waitFor('the sibling to catch up', async () => ((await b.client.status()).watermarks.committed >= 1 ? true : undefined));
    const forger = new WireCodec(Buffer.alloc(32, 8));
    const forged = forger.encodeBatch({ group: 'signed', node: 'gw-a', epoch: 1, entries: [{ seq: 2, epoch: 1, timestampMs: Date.now(), payload: encodeCbor([2, 'balance', new TextEncoder().encode('1000000')]) }] });
    await attacker.publishAsync(topics('lastgasp', 'signed').log('gw-a'), Buffer.from(forged), { qos: 1 });
    await waitFor('the forgery to be counted', async () => ((await b.client.status()).replication.rejected['bad-signature'] === 1 ? true : undefined));
    assert.equal((await b.client.status()).watermarks.committed, 1);
    await a.client.put('balance', '90');
    await waitFor('the real write to arrive', async () => ((await b.client.status()).watermarks.committed >= 2 ? true : undefined));
    assert.equal((await settledState(b, 2)).digest, (await a.client.list()).digest);
  } finally {
    await attacker.endAsync();
    await a.stop();
    await b.stop();
    await broker.stop();
    await dir.remove();
  }
});

test('garbage on the serial line is counted, the link and the agent keep going; an oversized entry gets 413', async () => {
  const dir = await tempDir('bad-serial');
  const broker = await startMosquitto(dir.path);
  const pty = await createPtyPair(dir.path);
  const sim = await startBmsSim(['--protocol', 'bridge', '--serial', pty.devicePath]);
  const configA = await writeAgentConfig(dir.path, 'gw-a', {
    group: 'serial',
    role: 'primary',
    siblings: ['gw-b'],
    replication: { brokers: [{ url: broker.url }] },
    log: { entryBytesMax: 4096 },
    power: { source: { kind: 'bridge', transport: { type: 'serial', path: pty.hostPath } } },
  });
  const a = await startAgent('gw-a', configA.file, configA.api);
  try {
    await a.waitForEvent('power-link', (line) => line.state === 'up');
    sim.send('garbage 5000');
    const counters = await waitFor('dropped bytes to be counted', async () => {
      const power = (await a.client.status()).power as { counters: Record<string, number> };
      const dropped = Object.entries(power.counters).filter(([name]) => /drop|garbage|resync|crc/i.test(name)).reduce((sum, [, count]) => sum + count, 0);
      return dropped > 0 ? power.counters : undefined;
    });
    assert.ok(counters);
    const status = await a.client.status();
    assert.equal(status.power.link, 'up');
    assert.equal(status.role, 'primary');
    const big = await a.client.append(new Uint8Array(5000)).catch((error: { code?: string; detail?: { status?: number } }) => error);
    assert.equal((big as { code: string }).code, 'ENTRY_TOO_LARGE');
    assert.equal((big as { detail: { status: number } }).detail.status, 413);
    const ok = await a.client.append(new Uint8Array(100));
    assert.ok(ok.seq >= 1);
    sim.send('ac off');
    await a.waitForEvent('power-state', (line) => line.to === 'ON_BATTERY');
  } finally {
    await a.stop();
    await sim.stop();
    await pty.close();
    await broker.stop();
    await dir.remove();
  }
});

test('a broken config file stops `lastgasp run` with exit code 78 and a message naming the field', async () => {
  const dir = await tempDir('bad-config');
  try {
    const file = join(dir.path, 'agent.yaml');
    await writeFile(file, 'node: gw-a\ngroup: g\ndataDir: /tmp/x\nsiblings: [gw-b]\nreplication:\n  brokers:\n    - url: "mqtt:/nohost"\n  windowMax: 0\n');
    const result = spawnSync(process.execPath, [BIN, 'run', '--config', file], { encoding: 'utf8' });
    assert.equal(result.status, 78);
    assert.match(result.stderr, /replication\.brokers\[0\]\.url: "mqtt:\/nohost" is not a URL \(expected mqtt:\/\/host:port or mqtts:\/\/host:port\)/);
    assert.match(result.stderr, /replication\.windowMax: 0 is out of range \(expected integer 1\.\.1024\)/);
    const missing = spawnSync(process.execPath, [BIN, 'run'], { encoding: 'utf8' });
    assert.equal(missing.status, 64);
    assert.match(missing.stderr, /--config FILE is required/);
  } finally {
    await dir.remove();
  }
});
