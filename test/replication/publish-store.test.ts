// MQTT.js stores each QoS 1 publish for a resend; the link makes it store the packet without copying the
// payload (broker-protocol.ts, storePublishesUncopied), except for a publish with a topic alias, whose stored
// copy MQTT.js rewrites. Checked against a real mosquitto: what is stored shares the caller's bytes, the
// subscriber gets them intact, and the store is empty once the PUBACK came.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import mqtt, { type MqttClient, type Packet } from 'mqtt';
import { storePublishesUncopied } from '../../agent/replication/broker-protocol.ts';
import { startMosquitto } from '../support/mosquitto.ts';
import { killAll } from '../support/processes.ts';
import { tempDir, waitFor } from '../support/ports.ts';

after(killAll);

/** Every packet the client puts in its outgoing store. */
function recordStored(client: MqttClient): Packet[] {
  const stored: Packet[] = [];
  const store = client.outgoingStore as unknown as { put(packet: Packet, callback: (error?: Error) => void): unknown };
  const put = store.put.bind(store);
  store.put = (packet, callback) => (stored.push(packet), put(packet, callback));
  return stored;
}

test('a stored QoS 1 publish shares the payload; one with a topic alias is still copied; both arrive intact', async () => {
  const dir = await tempDir('publish-store');
  const broker = await startMosquitto(dir.path);
  const subscriber = await mqtt.connectAsync(broker.url, { protocolVersion: 5, clientId: 'store-sub', reconnectPeriod: 0 });
  const publisher = await mqtt.connectAsync(broker.url, { protocolVersion: 5, clientId: 'store-pub', reconnectPeriod: 0 });
  try {
    storePublishesUncopied(publisher);
    const stored = recordStored(publisher);
    const received: Buffer[] = [];
    subscriber.on('message', (_topic, payload) => received.push(payload));
    await subscriber.subscribeAsync('store/#', { qos: 1 });

    const payload = Buffer.from(Uint8Array.from({ length: 300_000 }, (_, index) => index % 251));
    await publisher.publishAsync('store/a', payload, { qos: 1 });
    assert.equal(stored.length, 1);
    const kept = stored[0] as Packet & { payload: Buffer };
    assert.equal(kept.payload, payload, 'the stored packet holds the caller\'s buffer itself');

    const aliased = Buffer.from('with a topic alias');
    await publisher.publishAsync('store/b', aliased, { qos: 1, properties: { topicAlias: 1 } });
    assert.equal(stored.length, 2);
    const copied = stored[1] as Packet & { payload: Buffer; topic: string };
    assert.notEqual(copied.payload, aliased, 'a publish with a topic alias is stored as a copy');
    assert.equal(copied.topic, 'store/b', 'the stored copy names its topic (the alias removed)');

    const outgoing = publisher.outgoingStore as unknown as { _inflights: Map<number, Packet> };
    assert.equal(outgoing._inflights.size, 0, 'both PUBACKed: nothing left to resend');
    await waitFor('both messages at the subscriber', () => (received.length >= 2 ? true : undefined), 5000);
    assert.deepEqual(received[0], payload);
    assert.equal(received[1]!.toString(), 'with a topic alias');
  } finally {
    await Promise.all([subscriber.endAsync(), publisher.endAsync()]);
    await broker.stop();
    await dir.remove();
  }
});

