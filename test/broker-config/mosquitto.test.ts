// broker-config/mosquitto/single.conf, started for real: one broker and three independent ones take QoS 1
// and deliver to a persistent session after a reconnect and a restart, and the limits in the config do
// what its comments say, including the ones that lose acknowledged messages (which is why lastgasp never
// counts a mosquitto PUBACK as durable).
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { startMosquitto, startMosquittoSet, type Mosquitto } from '../support/mosquitto.ts';
import { killAll } from '../support/processes.ts';
import { tempDir, waitFor } from '../support/ports.ts';
import { closedWith, connectClient } from './clients.ts';

after(killAll);

const TOPIC = 'lastgasp/v1/line1/log/gw-a';
/** MQTT 5 sessions end at disconnect unless the client asks for an expiry; one hour outlives any test. */
const SESSION_EXPIRY_S = 3600;

async function withBroker(name: string, vars: Record<string, string>, body: (broker: Mosquitto, dir: string) => Promise<void>): Promise<void> {
  const dir = await tempDir(name);
  const broker = await startMosquitto(dir.path, { vars });
  try {
    await body(broker, dir.path);
  } finally {
    await broker.stop();
    await dir.remove();
  }
}

/** Subscribe `clientId` with a persistent session, then go away so that messages queue for it. */
async function leaveSubscribed(url: string, clientId: string, protocolVersion: 4 | 5): Promise<void> {
  const sibling = await connectClient(url, { clientId, protocolVersion, clean: false, ...sessionProps(protocolVersion) });
  await sibling.client.subscribeAsync(TOPIC, { qos: 1 });
  await sibling.end();
}

function sessionProps(protocolVersion: 4 | 5) {
  return protocolVersion === 5 ? { properties: { sessionExpiryInterval: SESSION_EXPIRY_S } } : {};
}

async function publishAll(url: string, texts: readonly string[], protocolVersion: 4 | 5 = 5): Promise<void> {
  const gateway = await connectClient(url, { clientId: 'gw-a', protocolVersion });
  for (const text of texts) await gateway.client.publishAsync(TOPIC, text, { qos: 1 });
  await gateway.end();
}

const numbered = (prefix: string, count: number) => Array.from({ length: count }, (_, i) => `${prefix}-${i}`);

for (const protocolVersion of [5, 4] as const) {
  test(`single: QoS 1 messages queue for a persistent session and arrive in order after a reconnect (MQTT ${protocolVersion === 5 ? '5' : '3.1.1'})`, async () => {
    await withBroker('mq-single', {}, async (broker) => {
      await leaveSubscribed(broker.url, 'sibling', protocolVersion);
      const sent = numbered('entry', 50);
      await publishAll(broker.url, sent, protocolVersion);
      const sibling = await connectClient(broker.url, { clientId: 'sibling', protocolVersion, clean: false, ...sessionProps(protocolVersion) });
      assert.equal(sibling.connack.sessionPresent, true);
      await sibling.waitForCount(sent.length);
      assert.deepEqual(sibling.texts(TOPIC), sent);
      await sibling.end();
    });
  });
}

test('single: MQTT 5 clients are told the in-flight window and the packet limit in CONNACK', async () => {
  await withBroker('mq-connack', {}, async (broker) => {
    const client = await connectClient(broker.url, { clientId: 'gw-a', protocolVersion: 5 });
    assert.equal(client.connack.properties?.receiveMaximum, 100, 'max_inflight_messages is advertised as Receive Maximum');
    assert.equal(client.connack.properties?.maximumPacketSize, 4194304, 'max_packet_size is advertised as Maximum Packet Size');
    await client.end();
  });
});

test('single: the session and its queue survive a clean restart (SIGTERM writes the persistence file)', async () => {
  await withBroker('mq-restart', {}, async (broker) => {
    await leaveSubscribed(broker.url, 'sibling', 5);
    const sent = numbered('before-restart', 10);
    await publishAll(broker.url, sent);
    await broker.stop('SIGTERM');
    const again = await broker.restart();
    try {
      const sibling = await connectClient(again.url, { clientId: 'sibling', protocolVersion: 5, clean: false, ...sessionProps(5) });
      assert.equal(sibling.connack.sessionPresent, true);
      await sibling.waitForCount(sent.length);
      assert.deepEqual(sibling.texts(TOPIC), sent);
      await sibling.end();
    } finally {
      await again.stop();
    }
  });
});

test('single: after a SIGKILL what the last autosave wrote is back (autosave_interval 1 s)', async () => {
  await withBroker('mq-autosave', {}, async (broker, dir) => {
    await leaveSubscribed(broker.url, 'sibling', 5);
    const marker = `autosaved-${process.pid}-${Date.now()}`;
    await publishAll(broker.url, [marker]);
    // mosquitto stores payloads verbatim in mosquitto.db: once the marker is in the file, it was saved.
    await waitFor('the queued message in mosquitto.db', async () => ((await readFile(join(dir, 'mosquitto.db')).catch(() => Buffer.alloc(0))).includes(marker) ? true : undefined));
    await broker.stop('SIGKILL');
    const again = await broker.restart();
    try {
      const sibling = await connectClient(again.url, { clientId: 'sibling', protocolVersion: 5, clean: false, ...sessionProps(5) });
      await sibling.waitForCount(1);
      assert.deepEqual(sibling.texts(TOPIC), [marker]);
      await sibling.end();
    } finally {
      await again.stop();
    }
  });
});

test('single: a PUBACK is not durability: SIGKILL before the next autosave loses an acknowledged message', async () => {
  // An autosave interval of an hour stands for "the crash came before the next save".
  await withBroker('mq-puback', { AUTOSAVE_INTERVAL_S: '3600' }, async (broker) => {
    await leaveSubscribed(broker.url, 'sibling', 5);
    await broker.stop('SIGTERM');
    const saved = await broker.restart();
    let lost: Mosquitto | undefined;
    try {
      await publishAll(saved.url, ['acknowledged-then-lost']);
      await saved.stop('SIGKILL');
      lost = await saved.restart();
      const sibling = await connectClient(lost.url, { clientId: 'sibling', protocolVersion: 5, clean: false, ...sessionProps(5) });
      assert.equal(sibling.connack.sessionPresent, true, 'the session saved at the clean stop is back');
      // A message published after reconnecting arrives; the acknowledged one from before the kill never does.
      await publishAll(lost.url, ['after-restart']);
      await sibling.waitForCount(1);
      assert.deepEqual(sibling.texts(TOPIC), ['after-restart']);
      await sibling.end();
    } finally {
      await saved.stop();
      await lost?.stop();
    }
  });
});

test('single: past max_queued_messages an offline session loses messages while the publisher still gets PUBACK', async () => {
  await withBroker('mq-queue', { MAX_QUEUED_MESSAGES: '5', MAX_INFLIGHT_MESSAGES: '2' }, async (broker) => {
    await leaveSubscribed(broker.url, 'sibling', 5);
    const sent = numbered('entry', 20);
    await publishAll(broker.url, sent);
    await broker.process.waitForOutput(/Outgoing messages are being dropped for client sibling/);
    const sibling = await connectClient(broker.url, { clientId: 'sibling', protocolVersion: 5, clean: false, ...sessionProps(5) });
    // A message published now queues behind whatever the broker kept: when it arrives, the rest has.
    await publishAll(broker.url, ['end']);
    await waitFor('the end marker', () => (sibling.texts(TOPIC).includes('end') ? true : undefined));
    const got = sibling.texts(TOPIC).slice(0, -1);
    assert.equal(sibling.texts(TOPIC).at(-1), 'end');
    // For a client that is offline mosquitto 2.0.11 queues everything (no in-flight slots are used): it
    // kept exactly max_queued_messages (5) of the twenty and dropped the rest.
    assert.equal(got.length, 5, `kept ${got.length}`);
    assert.deepEqual(got, sent.slice(0, got.length), 'what survives is the oldest part, in order');
    await sibling.end();
  });
});

for (const protocolVersion of [5, 4] as const) {
  test(`single: a packet over max_packet_size disconnects the publisher (MQTT ${protocolVersion === 5 ? '5' : '3.1.1'})`, async () => {
    await withBroker('mq-packet', { MAX_PACKET_SIZE: '65536' }, async (broker) => {
      const gateway = await connectClient(broker.url, { clientId: 'gw-a', protocolVersion });
      const closed = closedWith(gateway.client);
      gateway.client.publish(TOPIC, Buffer.alloc(70_000), { qos: 1 });
      const { disconnectReason } = await closed;
      if (protocolVersion === 5) assert.equal(disconnectReason, 0x95, 'MQTT 5: DISCONNECT with Packet too large');
      else assert.equal(disconnectReason, undefined, 'MQTT 3.1.1: the connection is just closed');
      await gateway.end();
    });
  });
}

test('three independent brokers: each takes the fan-out and keeps its own persistent session, through a SIGKILL of one', async () => {
  const dir = await tempDir('mq-triple');
  const set = await startMosquittoSet(dir.path, 3);
  try {
    assert.equal(new Set(set.urls).size, 3);
    for (const url of set.urls) await leaveSubscribed(url, 'sibling', 5);
    const first = numbered('fanout', 5);
    for (const url of set.urls) await publishAll(url, first);
    // One broker dies after its autosave; the other two keep serving while it is down.
    const victim = set.brokers[1] as Mosquitto;
    await waitFor('fan-out saved by broker 1', async () => ((await readFile(join(victim.dataDir, 'mosquitto.db')).catch(() => Buffer.alloc(0))).includes('fanout-4') ? true : undefined));
    await victim.stop('SIGKILL');
    const survivors = [set.urls[0], set.urls[2]] as string[];
    for (const url of survivors) await publishAll(url, ['while-one-is-down']);
    const restarted = await victim.restart();
    try {
      for (const url of [...survivors, restarted.url]) {
        const sibling = await connectClient(url, { clientId: 'sibling', protocolVersion: 5, clean: false, ...sessionProps(5) });
        const expected = url === restarted.url ? first : [...first, 'while-one-is-down'];
        await sibling.waitForCount(expected.length);
        assert.deepEqual(sibling.texts(TOPIC), expected, `broker ${url}`);
        await sibling.end();
      }
    } finally {
      await restarted.stop();
    }
  } finally {
    await set.stop();
    await dir.remove();
  }
});

/** The state letter of a process in /proc (R running, S sleeping, T stopped). */
async function processState(pid: number): Promise<string> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
}

test('suspend (SIGSTOP) stops the broker with its connections open; after resume a publish sent meanwhile is delivered', async () => {
  await withBroker('mq-stop', {}, async (broker) => {
    const sibling = await connectClient(broker.url, { clientId: 'sibling', protocolVersion: 5 });
    await sibling.client.subscribeAsync(TOPIC, { qos: 1 });
    const gateway = await connectClient(broker.url, { clientId: 'gw-a', protocolVersion: 5 });
    broker.suspend();
    const pid = broker.process.child.pid as number;
    await waitFor('mosquitto stopped', async () => ((await processState(pid)) === 'T' ? true : undefined));
    const acked = gateway.client.publishAsync(TOPIC, 'while-frozen', { qos: 1 });
    assert.equal(gateway.client.connected, true, 'nothing closes while the broker is frozen');
    broker.resume();
    await acked;
    await sibling.waitForCount(1);
    assert.deepEqual(sibling.texts(TOPIC), ['while-frozen']);
    await Promise.all([sibling.end(), gateway.end()]);
  });
});

test('single: MQTT 5 PUBACK says 0x10 when no subscription matched; MQTT.js shows it only to a packetreceive listener', async () => {
  await withBroker('mq-nomatch', {}, async (broker) => {
    const gateway = await connectClient(broker.url, { clientId: 'gw-a', protocolVersion: 5 });
    const pubacks = new Map<number, number>();
    gateway.client.on('packetreceive', (packet) => {
      if (packet.cmd === 'puback') pubacks.set(packet.messageId as number, packet.reasonCode ?? 0);
    });
    // publishAsync resolves with the PUBLISH it sent, not with the PUBACK: the reason code is not in it.
    const alone = await gateway.client.publishAsync(TOPIC, 'nobody-listens', { qos: 1 });
    assert.equal((alone as { reasonCode?: number } | undefined)?.reasonCode, undefined);
    assert.equal(pubacks.get(alone?.messageId as number), 0x10, 'No matching subscribers: accepted, delivered to no one');
    await leaveSubscribed(broker.url, 'sibling', 5);
    const queued = await gateway.client.publishAsync(TOPIC, 'queued', { qos: 1 });
    assert.equal(pubacks.get(queued?.messageId as number), 0, 'a persistent session matched, even with its client away');
    await gateway.end();
  });
});
