// broker-config/mosquitto/auth.conf + acl.conf, started for real: who may connect, what each gateway may
// write and read, what a refusal looks like on the wire for MQTT 5 and for 3.1.1, and why the client id
// is bound to the username.
//
// Negative checks need a barrier to mean anything: each test publishes the forbidden message first and an
// allowed one after it, from the same client or after the first was acknowledged. mosquitto routes a
// PUBLISH to every subscriber's queue before it acknowledges it and delivers a queue in order, so once the
// allowed message has arrived, a forbidden one that had been let through would have arrived before it.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { IClientOptions } from 'mqtt';
import { authVars, startMosquitto, writePasswordFile, type Mosquitto } from '../support/mosquitto.ts';
import { killAll } from '../support/processes.ts';
import { tempDir } from '../support/ports.ts';
import { connectClient, type TestClient } from './clients.ts';

const PASSWORDS: Record<string, string> = { 'gw-a': 'secret-a', 'gw-b': 'secret-b', 'gw-c': 'secret-c', historian: 'secret-h' };
const LINE1 = 'lastgasp/v1/line1';
const LINE2 = 'lastgasp/v1/line2';
const NOT_AUTHORIZED = 0x87;
const SESSION = { clean: false, properties: { sessionExpiryInterval: 3600 } } as const;

let dir: { path: string; remove: () => Promise<void> };
let passwordFile: string;
let broker: Mosquitto;

before(async () => {
  dir = await tempDir('mq-acl');
  passwordFile = await writePasswordFile(join(dir.path, 'passwd'), PASSWORDS);
  broker = await startMosquitto(dir.path, { config: 'auth.conf', vars: authVars(passwordFile) });
});

after(async () => {
  await broker?.stop();
  await dir?.remove();
  await killAll();
});

function as(user: string, protocolVersion: 4 | 5 = 5, extra: IClientOptions = {}): Promise<TestClient> {
  return connectClient(broker.url, { username: user, password: PASSWORDS[user], clientId: `${user}-${protocolVersion}`, protocolVersion, ...extra });
}

async function refusal(promise: Promise<unknown>): Promise<number | undefined> {
  return promise.then(
    () => assert.fail('expected a refusal'),
    (error: { code?: number }) => error.code,
  );
}

test('no password, a wrong password, or an unknown user: CONNECT refused', async () => {
  const url = broker.url;
  assert.equal(await refusal(connectClient(url, { clientId: 'anon', protocolVersion: 5 })), NOT_AUTHORIZED);
  assert.equal(await refusal(connectClient(url, { clientId: 'anon', protocolVersion: 4 })), 5, 'MQTT 3.1.1 CONNACK 5: not authorized');
  assert.equal(await refusal(connectClient(url, { clientId: 'x', username: 'gw-a', password: 'wrong', protocolVersion: 5 })), NOT_AUTHORIZED);
  assert.equal(await refusal(connectClient(url, { clientId: 'x', username: 'gw-z', password: 'any', protocolVersion: 4 })), 5);
});

test('MQTT 5: publishing to another gateway\'s log gets PUBACK 0x87 and reaches nobody', async () => {
  const sibling = await as('gw-b');
  await sibling.client.subscribeAsync(`${LINE1}/#`, { qos: 1 });
  const gateway = await as('gw-a');
  for (const topic of [`${LINE1}/log/gw-b`, `${LINE1}/ack/gw-b`, `${LINE1}/state/gw-b`, `${LINE2}/log/gw-c`, `${LINE2}/leader`]) {
    const code = await refusal(gateway.client.publishAsync(topic, 'forged', { qos: 1 }));
    assert.equal(code, NOT_AUTHORIZED, topic);
  }
  for (const topic of [`${LINE1}/log/gw-a`, `${LINE1}/ack/gw-a`, `${LINE1}/state/gw-a`, `${LINE1}/leader`]) await gateway.client.publishAsync(topic, 'own', { qos: 1 });
  await sibling.waitForCount(4);
  assert.deepEqual(sibling.texts(), ['own', 'own', 'own', 'own']);
  assert.deepEqual(sibling.received.map((m) => m.topic), [`${LINE1}/log/gw-a`, `${LINE1}/ack/gw-a`, `${LINE1}/state/gw-a`, `${LINE1}/leader`]);
  await Promise.all([sibling.end(), gateway.end()]);
});

test('MQTT 3.1.1: the same forged publish is acknowledged like any other and silently dropped', async () => {
  const sibling = await as('gw-b', 4);
  await sibling.client.subscribeAsync(`${LINE1}/log/+`, { qos: 1 });
  const gateway = await as('gw-a', 4);
  const ack = await gateway.client.publishAsync(`${LINE1}/log/gw-b`, 'forged', { qos: 1 });
  assert.equal(ack?.cmd, 'publish', 'the publish resolved: 3.1.1 has no way to say no');
  await gateway.client.publishAsync(`${LINE1}/log/gw-a`, 'barrier', { qos: 1 });
  await sibling.waitForCount(1);
  assert.deepEqual(sibling.texts(), ['barrier']);
  await Promise.all([sibling.end(), gateway.end()]);
});

test('a gateway reads only its own group: the SUBACK grants another group\'s filter, but nothing is delivered', async () => {
  const reader = await as('gw-a');
  const granted = await reader.client.subscribeAsync([`${LINE2}/#`, 'lastgasp/v1/#'], { qos: 1 });
  assert.deepEqual(granted.map((g) => g.qos), [1, 1], 'mosquitto 2.0.11 grants the subscription and filters on delivery');
  const historian = await as('historian');
  await historian.client.subscribeAsync('lastgasp/v1/#', { qos: 1 });
  const other = await as('gw-c');
  await other.client.publishAsync(`${LINE2}/log/gw-c`, 'line2-batch', { qos: 1 });
  const peer = await as('gw-b');
  await peer.client.publishAsync(`${LINE1}/log/gw-b`, 'line1-batch', { qos: 1 });
  await reader.waitForCount(1);
  // Two matching filters may deliver a message twice (MQTT allows it); what matters is which messages.
  assert.deepEqual([...new Set(reader.texts())], ['line1-batch']);
  await historian.waitForCount(2);
  assert.deepEqual(historian.texts(), ['line2-batch', 'line1-batch'], 'the historian, reading everything, saw both');
  await Promise.all([reader.end(), historian.end(), other.end(), peer.end()]);
});

test('the historian reads every group and may write nothing', async () => {
  const historian = await as('historian');
  assert.equal(await refusal(historian.client.publishAsync(`${LINE1}/leader`, 'x', { qos: 1 })), NOT_AUTHORIZED);
  assert.equal(await refusal(historian.client.publishAsync('lastgasp/v1/historian/power', 'x', { qos: 1 })), NOT_AUTHORIZED);
  await historian.end();
});

test('the %u pattern: a gateway writes its own power topic and no other', async () => {
  const historian = await as('historian');
  await historian.client.subscribeAsync('lastgasp/v1/+/power', { qos: 1 });
  const gateway = await as('gw-c');
  assert.equal(await refusal(gateway.client.publishAsync('lastgasp/v1/gw-a/power', 'forged', { qos: 1 })), NOT_AUTHORIZED);
  await gateway.client.publishAsync('lastgasp/v1/gw-c/power', 'own', { qos: 1 });
  await historian.waitForCount(1);
  assert.deepEqual(historian.received.map((m) => `${m.topic}=${m.text}`), ['lastgasp/v1/gw-c/power=own']);
  await Promise.all([historian.end(), gateway.end()]);
});

test('a Will aimed at another gateway\'s state topic is accepted at CONNECT but never published', async () => {
  const historian = await as('historian');
  await historian.client.subscribeAsync(`${LINE1}/state/+`, { qos: 1 });
  for (const [topic, text] of [[`${LINE1}/state/gw-b`, 'forged-offline'], [`${LINE1}/state/gw-a`, 'own-offline']] as const) {
    const gateway = await as('gw-a', 5, { clientId: 'gw-a-will', will: { topic, payload: Buffer.from(text), qos: 1, retain: false } });
    // A crash, not a DISCONNECT: the broker publishes the Will.
    gateway.client.stream.destroy();
    await gateway.end();
  }
  await historian.waitForCount(1);
  assert.deepEqual(historian.texts(), ['own-offline']);
  await historian.end();
});

test('use_username_as_clientid: another gateway cannot take over a sibling\'s session by its client id', async () => {
  // First without the binding, on a broker of its own, to show what it prevents.
  const looseDir = join(dir.path, 'loose');
  await mkdir(looseDir);
  const loose = await startMosquitto(looseDir, { config: 'auth.conf', vars: { ...authVars(passwordFile), USE_USERNAME_AS_CLIENTID: 'false' } });
  try {
    const owner = await connectClient(loose.url, { username: 'gw-b', password: PASSWORDS['gw-b'], clientId: 'lastgasp-line1-gw-b', protocolVersion: 5, ...SESSION });
    await owner.client.subscribeAsync(`${LINE1}/log/+`, { qos: 1 });
    await owner.end();
    const writer = await connectClient(loose.url, { username: 'gw-a', password: PASSWORDS['gw-a'], clientId: 'gw-a', protocolVersion: 5 });
    await writer.client.publishAsync(`${LINE1}/log/gw-a`, 'queued-for-gw-b', { qos: 1 });
    const thief = await connectClient(loose.url, { username: 'gw-a', password: PASSWORDS['gw-a'], clientId: 'lastgasp-line1-gw-b', protocolVersion: 5, ...SESSION });
    assert.equal(thief.connack.sessionPresent, true, 'without the binding gw-a resumed gw-b\'s session');
    await thief.waitForCount(1);
    assert.deepEqual(thief.texts(), ['queued-for-gw-b'], 'and received the batch queued for gw-b');
    await Promise.all([thief.end(), writer.end()]);
  } finally {
    await loose.stop();
  }
  // Then the shipped config: the same attempt lands in gw-a's own session, gw-b's stays whole.
  const owner = await connectClient(broker.url, { username: 'gw-b', password: PASSWORDS['gw-b'], clientId: 'lastgasp-line1-gw-b', protocolVersion: 5, ...SESSION });
  await owner.client.subscribeAsync(`${LINE1}/log/+`, { qos: 1 });
  await owner.end();
  const writer = await as('gw-a');
  await writer.client.publishAsync(`${LINE1}/log/gw-a`, 'queued-for-gw-b', { qos: 1 });
  const thief = await connectClient(broker.url, { username: 'gw-a', password: PASSWORDS['gw-a'], clientId: 'lastgasp-line1-gw-b', protocolVersion: 5, ...SESSION });
  assert.equal(thief.connack.sessionPresent, false, 'gw-a got a session of its own');
  await thief.end();
  const back = await connectClient(broker.url, { username: 'gw-b', password: PASSWORDS['gw-b'], clientId: 'whatever-it-sends', protocolVersion: 5, ...SESSION });
  assert.equal(back.connack.sessionPresent, true);
  await back.waitForCount(1);
  assert.deepEqual(back.texts(), ['queued-for-gw-b']);
  await Promise.all([back.end(), writer.end()]);
});
