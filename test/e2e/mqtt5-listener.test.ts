// The local MQTT listener as a broker, with real parts: a mosquitto for replication, two agent processes,
// MQTT.js (3.1.1 and 5), Debian's mosquitto_pub and mosquitto_sub, and raw sockets for what no well-behaved
// client sends (a QoS 2 PUBLISH sent again, garbage, a packet before CONNECT, an oversize packet). What the
// log holds is read back through the agent's API.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import mqtt from 'mqtt';
import mqttPacket, { type Packet } from 'mqtt-packet';
import { startMosquitto, type Mosquitto } from '../support/mosquitto.ts';
import { startPair, type AgentProcess } from '../support/agents.ts';
import { killAll } from '../support/processes.ts';
import { freePort, tempDir, waitFor } from '../support/ports.ts';

type Entry = { seq: number; topic: string; text: string; props?: Record<string, unknown> };

let dir: { path: string; remove: () => Promise<void> };
let broker: Mosquitto;
let a: AgentProcess;
let b: AgentProcess;
let port: number;
let portB: number;
let password: string;
const url = () => `mqtt://127.0.0.1:${port}`;

before(async () => {
  dir = await tempDir('e2e-mqtt5');
  broker = await startMosquitto(dir.path);
  port = await freePort();
  portB = await freePort();
  ({ a, b } = await startPair(dir.path, 'mqtt5', broker.url, {
    extraA: { mqttIngest: { listen: `127.0.0.1:${port}`, journal: ['plant/#'] }, log: { entryBytesMax: 64 * 1024 } },
    extraB: { mqttIngest: { listen: `127.0.0.1:${portB}`, journal: ['plant/#'] } },
  }));
  await a.waitForEvent('mqtt-ingest');
  await b.waitForEvent('mqtt-ingest');
  const dataDir = (JSON.parse(readFileSync(a.configFile, 'utf8')) as { dataDir: string }).dataDir;
  password = readFileSync(join(dataDir, 'api.token'), 'utf8').trim();
});

after(async () => {
  await a?.stop();
  await b?.stop();
  await broker?.stop();
  await dir?.remove();
  await killAll();
});

async function journaled(agent: AgentProcess): Promise<Entry[]> {
  const out: Entry[] = [];
  const committed = (await agent.client.status()).watermarks.committed as number;
  for (let from = 1; from <= committed; ) {
    const page = await agent.client.entries(from, 5000);
    for (const entry of page.entries) {
      if (entry.op !== 'mqtt') continue;
      out.push({ seq: entry.seq, topic: String(entry.topic), text: Buffer.from(String(entry.data), 'base64').toString('utf8'), ...(entry.props ? { props: entry.props as Record<string, unknown> } : {}) });
    }
    if (page.entries.length === 0) break;
    from = page.next;
  }
  return out;
}

async function counters(): Promise<Record<string, number>> {
  return (await a.client.status()).mqttIngest as Record<string, number>;
}

/** A client on a bare socket: it sends what it is told, byte for byte, and records what comes back. */
async function rawClient(version: 4 | 5 = 4, to = port): Promise<{ socket: Socket; packets: Packet[]; send(packet: Packet): void; next(cmd: string): Promise<Packet>; closed: Promise<void> }> {
  const socket = connect(to, '127.0.0.1');
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  const parser = mqttPacket.parser({ protocolVersion: version });
  const packets: Packet[] = [];
  parser.on('packet', (packet: Packet) => packets.push(packet));
  socket.on('data', (chunk) => parser.parse(chunk));
  socket.on('error', () => undefined);
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  return {
    socket,
    packets,
    closed,
    send: (packet) => socket.write(mqttPacket.generate(packet, { protocolVersion: version })),
    next: (cmd) => waitFor(`a ${cmd}`, () => packets.find((packet, index) => packet.cmd === cmd && packets.splice(index, 1))),
  };
}

test('MQTT 5 properties from MQTT.js are kept in the entry; a 3.1.1 client on the same listener still works', async () => {
  const v5 = await mqtt.connectAsync(url(), { protocolVersion: 5, username: 'app', password, reconnectPeriod: 0 });
  const v4 = await mqtt.connectAsync(url(), { protocolVersion: 4, username: 'app', password, reconnectPeriod: 0 });
  try {
    await v5.publishAsync('plant/v5/rich', '{"t":21.5}', {
      qos: 1,
      properties: { payloadFormatIndicator: true, messageExpiryInterval: 600, contentType: 'application/json', responseTopic: 'plant/v5/replies', correlationData: Buffer.from([7, 8, 9]), userProperties: { site: 'north', tag: ['a', 'b'] } },
    });
    await v5.publishAsync('plant/v5/bare', 'bare', { qos: 1 });
    await v4.publishAsync('plant/v4/old', 'from 3.1.1', { qos: 1, retain: true });
    const entries = await journaled(a);
    const rich = entries.find((entry) => entry.topic === 'plant/v5/rich')!;
    assert.equal(rich.text, '{"t":21.5}');
    assert.deepEqual(rich.props, {
      payloadFormatIndicator: true,
      messageExpiryInterval: 600,
      contentType: 'application/json',
      responseTopic: 'plant/v5/replies',
      correlationData: Buffer.from([7, 8, 9]).toString('base64'),
      userProperties: { site: 'north', tag: ['a', 'b'] },
    });
    assert.equal(entries.find((entry) => entry.topic === 'plant/v5/bare')!.props, undefined, 'no props element when there is nothing to keep');
    assert.deepEqual(entries.find((entry) => entry.topic === 'plant/v4/old')!.props, { retain: true });
  } finally {
    v5.end(true);
    v4.end(true);
  }
});

test("Debian's mosquitto_pub -V mqttv5 with -D properties: the entry carries them", () => {
  const result = spawnSync('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(port), '-V', 'mqttv5', '-q', '1', '-u', 'app', '-P', password, '-t', 'plant/cli/v5', '-m', 'hello v5', '-D', 'publish', 'user-property', 'line', '7', '-D', 'publish', 'content-type', 'text/plain'], { encoding: 'utf8', timeout: 20_000 });
  assert.equal(result.status, 0, result.stderr);
  return journaled(a).then((entries) => {
    const entry = entries.find((item) => item.topic === 'plant/cli/v5')!;
    assert.equal(entry.text, 'hello v5');
    assert.deepEqual(entry.props, { contentType: 'text/plain', userProperties: { line: '7' } });
  });
});

test('a QoS 2 PUBLISH sent again with its id before PUBREL is journaled once', async () => {
  const client = await rawClient(4);
  try {
    client.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: 'qos2-raw', clean: true, keepalive: 30, username: 'app', password: Buffer.from(password) });
    assert.equal((await client.next('connack') as { returnCode: number }).returnCode, 0);
    const before = (await counters()).mqttJournaled!;
    client.send({ cmd: 'publish', topic: 'plant/qos2', payload: Buffer.from('exactly once'), qos: 2, messageId: 7, retain: false, dup: false });
    client.send({ cmd: 'publish', topic: 'plant/qos2', payload: Buffer.from('exactly once'), qos: 2, messageId: 7, retain: false, dup: true });
    assert.equal((await client.next('pubrec')).messageId, 7);
    assert.equal((await client.next('pubrec')).messageId, 7, 'the resend is answered too');
    client.send({ cmd: 'pubrel', messageId: 7 });
    assert.equal((await client.next('pubcomp')).messageId, 7);
    const entries = (await journaled(a)).filter((entry) => entry.topic === 'plant/qos2');
    assert.equal(entries.length, 1);
    const after = await counters();
    assert.equal(after.mqttJournaled! - before, 1);
    assert.equal(after.mqttQos2Duplicates, 1);
  } finally {
    client.socket.destroy();
  }
});

test('local subscribers get journaled and relayed messages, a late one the retained message, with its MQTT 5 properties', async () => {
  const subscriber = await mqtt.connectAsync(url(), { protocolVersion: 5, username: 'sub', password, reconnectPeriod: 0 });
  const publisher = await mqtt.connectAsync(url(), { protocolVersion: 5, username: 'app', password, reconnectPeriod: 0 });
  try {
    const received: Array<{ topic: string; text: string; retain: boolean }> = [];
    subscriber.on('message', (topic, payload, packet) => received.push({ topic, text: payload.toString('utf8'), retain: packet.retain }));
    await subscriber.subscribeAsync(['plant/sub/#', 'relay/#'], { qos: 1 });
    await publisher.publishAsync('plant/sub/a', 'journaled', { qos: 1 });
    await publisher.publishAsync('relay/b', 'relayed only', { qos: 1 });
    await publisher.publishAsync('plant/sub/c', 'qos 0, relayed only', { qos: 0 });
    await publisher.publishAsync('plant/sub/state', 'retained', { qos: 1, retain: true, properties: { contentType: 'text/plain' } });
    await waitFor('four messages at the subscriber', () => (received.length >= 4 ? true : undefined));
    assert.deepEqual(received.map((message) => message.text).sort(), ['journaled', 'qos 0, relayed only', 'relayed only', 'retained']);
    assert.ok(received.every((message) => !message.retain), 'live deliveries carry retain 0');
    const texts = (await journaled(a)).map((entry) => entry.text);
    assert.ok(texts.includes('journaled') && texts.includes('retained'));
    assert.ok(!texts.includes('relayed only') && !texts.includes('qos 0, relayed only'));

    const late = await mqtt.connectAsync(url(), { protocolVersion: 5, username: 'late', password, reconnectPeriod: 0 });
    const retained = new Promise<{ text: string; retain: boolean; contentType: unknown }>((resolve) => late.on('message', (_topic, payload, packet) => resolve({ text: payload.toString('utf8'), retain: packet.retain, contentType: packet.properties?.contentType })));
    await late.subscribeAsync('plant/sub/state', { qos: 1 });
    assert.deepEqual(await retained, { text: 'retained', retain: true, contentType: 'text/plain' });
    late.end(true);
  } finally {
    subscriber.end(true);
    publisher.end(true);
  }
});

test('the Will of a client that goes away without DISCONNECT, or falls silent past its keepalive, is published and journaled', async () => {
  const watcher = await mqtt.connectAsync(url(), { username: 'watch', password, reconnectPeriod: 0 });
  const dying = await rawClient(5);
  try {
    const wills: string[] = [];
    watcher.on('message', (_topic, payload) => wills.push(payload.toString('utf8')));
    await watcher.subscribeAsync('plant/will/#', { qos: 1 });
    dying.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clientId: 'dying', clean: true, keepalive: 30, username: 'app', password: Buffer.from(password), will: { topic: 'plant/will/dying', payload: Buffer.from('gone'), qos: 1, retain: false, properties: { contentType: 'text/plain' } } });
    assert.equal((await dying.next('connack') as { reasonCode: number }).reasonCode, 0);
    dying.socket.destroy();
    await waitFor('the Will at the subscriber', () => (wills.includes('gone') ? true : undefined));
    const entry = await waitFor('the Will in the log', async () => (await journaled(a)).find((item) => item.topic === 'plant/will/dying'));
    assert.deepEqual(entry.props, { contentType: 'text/plain' });

    // A client silent for 1.5 keepalive periods is closed by the listener, and its Will goes out.
    const silent = await rawClient(4);
    const timeoutsBefore = (await counters()).mqttKeepaliveTimeouts!;
    silent.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: 'silent', clean: true, keepalive: 1, username: 'app', password: Buffer.from(password), will: { topic: 'plant/will/silent', payload: Buffer.from('timed out'), qos: 1, retain: false } });
    await silent.next('connack');
    await silent.closed;
    await waitFor('the silent client\'s Will', () => (wills.includes('timed out') ? true : undefined));
    assert.equal((await counters()).mqttKeepaliveTimeouts! - timeoutsBefore, 1);

    // A client that says DISCONNECT leaves no Will.
    const polite = await mqtt.connectAsync(url(), { username: 'app', password, reconnectPeriod: 0, will: { topic: 'plant/will/polite', payload: Buffer.from('never'), qos: 1, retain: false } });
    await polite.endAsync();
    await watcher.publishAsync('plant/will/marker', 'after', { qos: 1 });
    await waitFor('the marker', () => (wills.includes('after') ? true : undefined));
    assert.ok(!wills.includes('never'));
  } finally {
    watcher.end(true);
    dying.socket.destroy();
  }
});

test('garbage, a packet before CONNECT, an oversize packet and MQTT 3.1 are counted and close their connection; the next client is served', async () => {
  const start = await counters();
  const garbage = await rawClient();
  garbage.socket.write(Buffer.from([0x10, 0xff, 0xff, 0xff, 0xff, 0x7f, 0x00]));
  await garbage.closed;
  const early = await rawClient();
  early.send({ cmd: 'publish', topic: 'plant/early', payload: Buffer.from('x'), qos: 1, messageId: 1, retain: false, dup: false });
  await early.closed;
  const big = await rawClient(5);
  big.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clientId: 'big', clean: true, keepalive: 30, username: 'app', password: Buffer.from(password) });
  await big.next('connack');
  // Over log.entryBytesMax (64 KiB here) plus the room for a topic: refused from its header on.
  big.send({ cmd: 'publish', topic: 'plant/big', payload: Buffer.alloc(512 * 1024, 1), qos: 1, messageId: 1, retain: false, dup: false });
  await big.closed;
  assert.equal((big.packets.find((packet) => packet.cmd === 'disconnect') as { reasonCode: number } | undefined)?.reasonCode, 0x95, 'MQTT 5: DISCONNECT Packet too large');
  // MQTT 3.1 (protocol level 3, "MQIsdp"): CONNACK return code 1, unacceptable protocol version.
  const old = await rawClient(4);
  old.socket.write(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQIsdp', protocolVersion: 3, clientId: 'mqtt31', clean: true, keepalive: 30, username: 'app', password: Buffer.from(password) }));
  assert.equal(((await old.next('connack')) as { returnCode: number }).returnCode, 1);
  await old.closed;
  const end = await counters();
  assert.equal(end.mqttBadProtocol! - start.mqttBadProtocol!, 1);
  assert.equal(end.mqttBadMalformed! - start.mqttBadMalformed!, 1);
  assert.equal(end.mqttBadBeforeConnect! - start.mqttBadBeforeConnect!, 1);
  assert.equal(end.mqttBadOversize! - start.mqttBadOversize!, 1);
  assert.ok(!(await journaled(a)).some((entry) => entry.topic === 'plant/early' || entry.topic === 'plant/big'));

  const next = await mqtt.connectAsync(url(), { username: 'app', password, reconnectPeriod: 0 });
  await next.publishAsync('plant/after-bad', 'still served', { qos: 1 });
  await next.endAsync();
  assert.ok((await journaled(a)).some((entry) => entry.text === 'still served'));
});

test('a wrong token is refused with the right code: 3.1.1 return code 4, MQTT 5 reason 0x86', async () => {
  const before = (await counters()).mqttAuthFailures!;
  for (const version of [4, 5] as const) {
    const client = await rawClient(version);
    client.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: version, clientId: `wrong-${version}`, clean: true, keepalive: 30, username: 'app', password: Buffer.from('not the token') });
    const connack = (await client.next('connack')) as { returnCode?: number; reasonCode?: number };
    await client.closed;
    if (version === 4) assert.equal(connack.returnCode, 4);
    else assert.equal(connack.reasonCode, 0x86);
  }
  const cli = spawnSync('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(port), '-V', 'mqttv5', '-q', '1', '-u', 'app', '-P', 'wrong', '-t', 'plant/x', '-m', 'x'], { encoding: 'utf8', timeout: 20_000 });
  assert.notEqual(cli.status, 0);
  assert.match(cli.stderr, /Bad user name or password|not authorised/i);
  assert.equal((await counters()).mqttAuthFailures! - before, 3);
});

test('a second connection with the same client id takes over: the first is closed', async () => {
  const first = await rawClient(5);
  first.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clientId: 'same-id', clean: true, keepalive: 30, username: 'app', password: Buffer.from(password) });
  await first.next('connack');
  const sub = spawn('mosquitto_sub', ['-h', '127.0.0.1', '-p', String(port), '-V', 'mqttv5', '-i', 'same-id', '-u', 'app', '-P', password, '-t', 'plant/takeover', '-C', '1']);
  const output = new Promise<string>((resolve) => {
    let text = '';
    sub.stdout.on('data', (chunk: Buffer) => (text += chunk.toString('utf8')));
    sub.once('exit', () => resolve(text));
  });
  await first.closed;
  assert.equal((first.packets.find((packet) => packet.cmd === 'disconnect') as { reasonCode: number } | undefined)?.reasonCode, 0x8e, 'Session taken over');
  await waitFor('the second connection subscribed', async () => ((await counters()).mqttTakeovers! >= 1 ? true : undefined));
  const publisher = await mqtt.connectAsync(url(), { username: 'app', password, reconnectPeriod: 0 });
  // mosquitto_sub subscribes right after its CONNACK; publish until it has one and exits.
  const timer = setInterval(() => void publisher.publishAsync('plant/takeover', 'to the new one', { qos: 1 }).catch(() => undefined), 100);
  try {
    assert.equal((await output).trim(), 'to the new one');
  } finally {
    clearInterval(timer);
    publisher.end(true);
  }
});

test('a publish the standby cannot take is never acknowledged: MQTT 5 gets DISCONNECT 0x9C, 3.1.1 a closed connection', async () => {
  const tokenB = readFileSync(join((JSON.parse(readFileSync(b.configFile, 'utf8')) as { dataDir: string }).dataDir, 'api.token'), 'utf8').trim();
  for (const version of [5, 4] as const) {
    const client = await rawClient(version, portB);
    client.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: version, clientId: `to-standby-${version}`, clean: true, keepalive: 30, username: 'app', password: Buffer.from(tokenB) });
    await client.next('connack');
    client.send({ cmd: 'publish', topic: 'plant/standby', payload: Buffer.from('not here'), qos: 1, messageId: 3, retain: false, dup: false });
    await client.closed;
    assert.ok(!client.packets.some((packet) => packet.cmd === 'puback'), `MQTT ${version}: no PUBACK`);
    const disconnect = client.packets.find((packet) => packet.cmd === 'disconnect') as { reasonCode: number } | undefined;
    if (version === 5) assert.equal(disconnect?.reasonCode, 0x9c, 'use another server');
    else assert.equal(disconnect, undefined);
  }
  assert.equal(((await b.client.status()).mqttIngest as Record<string, number>).mqttRefused, 2);
});
