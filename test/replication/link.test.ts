// The broker link against a real mosquitto 2.0 speaking MQTT 5: flow control under the broker's Receive
// Maximum (which MQTT.js itself does not enforce: the first test shows it on the wire), the broker's
// Maximum Packet Size, and PUBACK failure reason codes turned into typed errors with a clear log line.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import mqtt, { type Packet } from 'mqtt';
import { BrokerLink, brokerRefusal } from '../../agent/replication/index.ts';
import { isLastgaspError, systemClock } from '../../agent/util/index.ts';
import { authVars, startMosquitto, writePasswordFile } from '../support/mosquitto.ts';
import { killAll } from '../support/processes.ts';
import { tempDir, waitFor } from '../support/ports.ts';
import { startTcpProxy } from '../support/tcp-proxy.ts';
import { captureLogger, type LogLine } from './support/nodes.ts';

after(killAll);

/** The Receive Maximum the test broker announces (its max_inflight_messages). */
const RECEIVE_MAXIMUM = 4;
const PUBLISHES = 200;

function linkTo(url: string, lines: LogLine[], extra: { username?: string; password?: string; clientId?: string } = {}): BrokerLink {
  return new BrokerLink({
    urls: [url],
    clientId: extra.clientId ?? 'lastgasp-link-test',
    protocol: 'auto',
    keepaliveS: 5,
    username: extra.username,
    password: extra.password,
    onMessage: async () => undefined,
    logger: captureLogger(lines, 'link'),
    clock: systemClock,
  });
}

async function up(link: BrokerLink): Promise<void> {
  link.start();
  await waitFor('the link to come up', () => link.info);
}

test('MQTT.js writes every QoS 1 publish at once past the Receive Maximum; the broker link keeps to it', async () => {
  const dir = await tempDir('link-rm');
  const broker = await startMosquitto(dir.path, { vars: { MAX_INFLIGHT_MESSAGES: String(RECEIVE_MAXIMUM) } });
  const raw = mqtt.connect(broker.url, { protocolVersion: 5, clientId: 'raw-mqttjs', reconnectPeriod: 0 });
  const lines: LogLine[] = [];
  const link = linkTo(broker.url, lines);
  try {
    const connack = await new Promise<{ properties?: { receiveMaximum?: number } }>((resolve) => raw.once('connect', resolve));
    assert.equal(connack.properties?.receiveMaximum, RECEIVE_MAXIMUM, 'mosquitto announces max_inflight_messages as its Receive Maximum');
    const onWire = new Set<number>();
    let rawPeak = 0;
    raw.on('packetsend', (packet: Packet) => {
      if (packet.cmd === 'publish' && packet.qos === 1) onWire.add(packet.messageId!);
      rawPeak = Math.max(rawPeak, onWire.size);
    });
    raw.on('packetreceive', (packet: Packet) => {
      if (packet.cmd === 'puback') onWire.delete(packet.messageId!);
    });
    await Promise.all(Array.from({ length: PUBLISHES }, (_, index) => raw.publishAsync('lastgasp/v1/line1/log/raw', `m${index}`, { qos: 1 })));
    assert.ok(rawPeak > RECEIVE_MAXIMUM * 10, `MQTT.js had ${rawPeak} unacknowledged publishes on the wire at once`);

    await up(link);
    assert.equal(link.info?.receiveMaximum, RECEIVE_MAXIMUM);
    await Promise.all(Array.from({ length: PUBLISHES }, (_, index) => link.publish('lastgasp/v1/line1/log/gw-a', new TextEncoder().encode(`m${index}`), { qos: 1, retain: false })));
    const stats = link.stats();
    assert.equal(stats.publishes, PUBLISHES);
    assert.equal(stats.inflightPeak, RECEIVE_MAXIMUM, 'the link fills the window and never goes past it');
    assert.ok((stats.waitedForQuota as number) >= PUBLISHES - RECEIVE_MAXIMUM);
    assert.equal(stats.inflight, 0);
  } finally {
    raw.end(true);
    await link.stop();
    await broker.stop();
    await dir.remove();
  }
});

test('a publish larger than the broker\'s Maximum Packet Size is refused before it is sent, with a typed error', async () => {
  const dir = await tempDir('link-mps');
  const limit = 8192;
  const broker = await startMosquitto(dir.path, { vars: { MAX_PACKET_SIZE: String(limit) } });
  const lines: LogLine[] = [];
  const link = linkTo(broker.url, lines);
  try {
    await up(link);
    assert.equal(link.info?.maximumPacketSize, limit);
    const topic = 'lastgasp/v1/line1/log/gw-a';
    const fits = link.payloadBytesMax(topic)!;
    await link.publish(topic, new Uint8Array(fits), { qos: 1, retain: false });
    const error = await link.publish(topic, new Uint8Array(fits + 8), { qos: 1, retain: false }).then(() => undefined, (caught: unknown) => caught);
    assert.ok(isLastgaspError(error, 'BROKER_REFUSED'), `expected BROKER_REFUSED, got ${String(error)}`);
    assert.equal(error.detail?.reason, 'packet too large');
    assert.equal(error.detail?.limitBytes, limit);
    assert.match(error.message, /max_packet_size/);
    // Sent anyway, mosquitto would have disconnected us (0x95): the link is still on its first connection.
    assert.equal(link.stats().connects, 1);
    assert.equal(link.stats().serverDisconnects, 0);
    assert.equal(link.stats().tooLarge, 1);
  } finally {
    await link.stop();
    await broker.stop();
    await dir.remove();
  }
});

test('mosquitto\'s ACL refuses a publish with PUBACK 0x87 on MQTT 5: a typed error and an error line, never a success', async () => {
  const dir = await tempDir('link-acl');
  const passwords = await writePasswordFile(join(dir.path, 'passwords'), { 'gw-a': 'secret-a' });
  const broker = await startMosquitto(dir.path, { config: 'auth.conf', vars: authVars(passwords) });
  const lines: LogLine[] = [];
  const link = linkTo(broker.url, lines, { username: 'gw-a', password: 'secret-a', clientId: 'gw-a' });
  try {
    await up(link);
    assert.equal(link.info?.protocolVersion, 5);
    await link.publish('lastgasp/v1/line1/log/gw-a', Uint8Array.of(1), { qos: 1, retain: false });
    const error = await link.publish('lastgasp/v1/line1/log/gw-b', Uint8Array.of(2), { qos: 1, retain: false }).then(() => undefined, (caught: unknown) => caught);
    assert.ok(isLastgaspError(error, 'BROKER_REFUSED'), `expected BROKER_REFUSED, got ${String(error)}`);
    assert.equal(error.detail?.reasonCode, 0x87);
    assert.equal(error.detail?.reason, 'not authorized');
    const logged = lines.filter((line) => line.level === 'error' && /not authorized \(0x87\)/.test(line.msg));
    assert.equal(logged.length, 1, 'one clear error line names the refusal');
    assert.match(logged[0]!.msg, /lastgasp\/v1\/line1\/log\/gw-b/);
    assert.equal(link.stats().pubackFailures, 1);
  } finally {
    await link.stop();
    await broker.stop();
    await dir.remove();
  }
});

test('every failure reason code a broker may put in a PUBACK maps to BROKER_REFUSED with its name and a hint where one helps', () => {
  const quota = brokerRefusal('mqtt://b:1883', 't', 0x97);
  assert.equal(quota.code, 'BROKER_REFUSED');
  assert.equal(quota.detail?.reason, 'quota exceeded');
  assert.match(quota.message, /quota exceeded \(0x97\); .*limits/);
  assert.equal(brokerRefusal('b', 't', 0x87).detail?.reason, 'not authorized');
  assert.equal(brokerRefusal('b', 't', 0x95).detail?.reason, 'packet too large');
  for (const code of [0x80, 0x83, 0x90, 0x91, 0x99]) assert.notEqual(brokerRefusal('b', 't', code).detail?.reason, 'unknown reason');
  assert.equal(brokerRefusal('b', 't', 0xa5).detail?.reason, 'unknown reason');
});

test('a SUBSCRIBE cut short by a dropped connection is not an error: the next connection subscribes again', async () => {
  const dir = await tempDir('link-subscribe-cut');
  const broker = await startMosquitto(dir.path);
  const proxy = await startTcpProxy({ port: broker.port });
  const lines: LogLine[] = [];
  const received: string[] = [];
  const link = new BrokerLink({
    urls: [proxy.url('mqtt')],
    clientId: 'lastgasp-link-subscribe-cut',
    protocol: 'auto',
    keepaliveS: 5,
    onMessage: async (topic) => void received.push(topic),
    logger: captureLogger(lines, 'link'),
    clock: systemClock,
  });
  const publisher = mqtt.connect(broker.url, { protocolVersion: 5, clientId: 'subscribe-cut-publisher' });
  try {
    await up(link);
    // The SUBSCRIBE goes out into a connection that forwards nothing, and the connection then drops.
    proxy.pause();
    const subscribing = link.subscribe(['lastgasp/v1/cut/#'], 1);
    await new Promise((resolve) => setTimeout(resolve, 100));
    await proxy.cut();
    await subscribing;
    assert.ok(lines.some((line) => line.msg.includes('subscribe cut short')), 'the cut short SUBSCRIBE is logged');
    await proxy.restore();
    await waitFor('the link to resubscribe and receive', async () => {
      await publisher.publishAsync('lastgasp/v1/cut/probe', 'x', { qos: 1 });
      return received.includes('lastgasp/v1/cut/probe') ? true : undefined;
    }, 20_000, 200);
  } finally {
    publisher.end(true);
    await link.stop();
    await proxy.close();
    await broker.stop();
    await dir.remove();
  }
});
