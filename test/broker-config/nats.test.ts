// broker-config/nats/node.conf, three real nats-server processes forming one JetStream cluster with the
// MQTT gateway: what MQTT.js must send to talk to it, QoS 1 across nodes, a persistent session that
// outlives a SIGKILL, and the NATS behaviours the agent has to live with (see broker-config/README.md).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { IPublishPacket } from 'mqtt';
import { NATS_MQTT_STREAMS, startNatsCluster, type NatsCluster, type NatsNode } from '../support/nats.ts';
import { killAll } from '../support/processes.ts';
import { readFile } from 'node:fs/promises';
import { tempDir, waitFor } from '../support/ports.ts';
import { closedWith, connectClient, connectWithRetry } from './clients.ts';

const TOPIC = 'lastgasp/v1/line1/log/gw-a';
/** What NATS needs from MQTT.js for a persistent session: 3.1.1, a stable client id, clean session off. */
const SESSION = { protocolVersion: 4, clean: false } as const;

let dir: { path: string; remove: () => Promise<void> };
let cluster: NatsCluster;

before(async () => {
  dir = await tempDir('nats');
  cluster = await startNatsCluster(dir.path);
});

after(async () => {
  await cluster?.stop();
  await dir?.remove();
  await killAll();
});

function otherThan(...names: string[]): NatsNode {
  const node = cluster.nodes.find((n) => !names.includes(n.name) && n.running);
  assert.ok(node, `no running node other than ${names.join(', ')}`);
  return node;
}

const numbered = (prefix: string, count: number) => Array.from({ length: count }, (_, i) => `${prefix}-${i}`);

test('three nodes, one JetStream meta leader, and the MQTT streams replicated three times', async () => {
  assert.equal(cluster.nodes.length, 3);
  assert.match(cluster.version, /^\d+\.\d+\.\d+$/);
  const report = await cluster.jsz();
  assert.equal(report.meta_cluster?.cluster_size, 3);
  const streams = report.account_details?.flatMap((a) => a.stream_detail ?? []) ?? [];
  for (const name of NATS_MQTT_STREAMS) {
    const stream = streams.find((s) => s.name === name);
    assert.equal(stream?.config?.num_replicas, 3, `${name} has three replicas`);
  }
});

test('MQTT 5 is refused with CONNACK 1 (unacceptable protocol version); MQTT 3.1.1 is accepted', async () => {
  const node = cluster.nodes[0] as NatsNode;
  const refused = await connectClient(node.mqttUrl, { clientId: 'v5-probe', protocolVersion: 5 }).then(
    () => assert.fail('NATS 2.9 accepted MQTT 5'),
    (error: { code?: number; message: string }) => error,
  );
  assert.equal(refused.code, 1, refused.message);
  assert.match(refused.message, /Unacceptable protocol version/);
  const accepted = await connectClient(node.mqttUrl, { clientId: 'v4-probe', protocolVersion: 4 });
  await accepted.end();
});

test('QoS 1 published through one node reaches a persistent subscriber on another, in order', async () => {
  const [a, b] = cluster.nodes as [NatsNode, NatsNode];
  const sibling = await connectClient(b.mqttUrl, { clientId: 'sibling-live', ...SESSION });
  const granted = await sibling.client.subscribeAsync(TOPIC, { qos: 1 });
  assert.deepEqual(granted.map((g) => g.qos), [1]);
  const gateway = await connectClient(a.mqttUrl, { clientId: 'gw-a-live', ...SESSION });
  const sent = numbered('live', 20);
  for (const text of sent) await gateway.client.publishAsync(TOPIC, text, { qos: 1 });
  await sibling.waitForCount(sent.length);
  assert.deepEqual(sibling.texts(TOPIC), sent);
  await Promise.all([sibling.end(), gateway.end()]);
});

test('queued QoS 1 messages of a persistent session survive a SIGKILL of the node holding the stream leader', async () => {
  // The subscriber's session starts on the node that leads the message stream; that node is killed.
  const victim = cluster.node(await cluster.streamLeader('$MQTT_msgs'));
  const publishVia = otherThan(victim.name);
  const resumeVia = otherThan(victim.name, publishVia.name);
  const sibling = await connectClient(victim.mqttUrl, { clientId: 'sibling-failover', ...SESSION });
  await sibling.client.subscribeAsync(TOPIC, { qos: 1 });
  await sibling.end();
  const gateway = await connectClient(publishVia.mqttUrl, { clientId: 'gw-a-failover', ...SESSION });
  const sent = numbered('queued', 50);
  for (const text of sent) await gateway.client.publishAsync(TOPIC, text, { qos: 1 });
  await gateway.end();

  await victim.kill('SIGKILL');
  // Until the survivors have elected new leaders a CONNECT is closed without CONNACK; the agent's
  // reconnect loop does what connectWithRetry does here.
  const resumed = await connectWithRetry(resumeVia.mqttUrl, { clientId: 'sibling-failover', ...SESSION });
  assert.equal(resumed.connack.sessionPresent, true, 'the session came back from the replicated $MQTT_sess stream');
  await resumed.waitForCount(sent.length, TOPIC, 60_000);
  assert.deepEqual(resumed.texts(TOPIC), sent, 'every acknowledged message, in order, none twice');
  await resumed.end();

  await victim.restart();
  const rejoined = await connectClient(victim.mqttUrl, { clientId: 'probe-rejoined', protocolVersion: 4 });
  await rejoined.end();
});

test('an unacknowledged message is re-sent only after ack_wait, behind newer ones, with DUP set', async () => {
  const [a, b, c] = cluster.nodes as [NatsNode, NatsNode, NatsNode];
  const sibling = await connectClient(b.mqttUrl, { clientId: 'sibling-redelivery', ...SESSION });
  await sibling.client.subscribeAsync(TOPIC, { qos: 1 });
  // The sibling takes the first message and never acknowledges it (MQTT.js acks when handleMessage calls back).
  const taken: string[] = [];
  sibling.client.handleMessage = (packet: IPublishPacket) => void taken.push(String(packet.payload));
  const gateway = await connectClient(a.mqttUrl, { clientId: 'gw-a-redelivery', ...SESSION });
  await gateway.client.publishAsync(TOPIC, 'first', { qos: 1 });
  await waitFor('the first message at the sibling', () => (taken.length > 0 ? true : undefined));
  assert.deepEqual(taken, ['first']);
  // Its connection dies; it resumes its session on another node at once, and new messages follow.
  sibling.client.stream.destroy();
  await sibling.end();
  const resumed = await connectWithRetry(c.mqttUrl, { clientId: 'sibling-redelivery', ...SESSION });
  await gateway.client.publishAsync(TOPIC, 'second', { qos: 1 });
  await gateway.client.publishAsync(TOPIC, 'third', { qos: 1 });
  await resumed.waitForCount(3, TOPIC, 60_000);
  assert.deepEqual(resumed.received.map((m) => `${m.text}${m.dup ? ' (dup)' : ''}`), ['second', 'third', 'first (dup)']);
  await Promise.all([resumed.end(), gateway.end()]);
});

test('a "." or a space in a topic: the connection is closed instead of a PUBACK', async () => {
  const node = cluster.nodes[0] as NatsNode;
  for (const topic of ['lastgasp/v1/line1/log/gw-1.site', 'lastgasp/v1/line 1/log/gw-a']) {
    const gateway = await connectClient(node.mqttUrl, { clientId: 'gw-dotted', protocolVersion: 4 });
    const closed = closedWith(gateway.client);
    let acked = false;
    gateway.client.publish(topic, 'x', { qos: 1 }, (error) => (acked = error === undefined));
    await closed;
    assert.equal(acked, false, `no PUBACK for ${topic}`);
    await gateway.end();
  }
});

test('QoS 2: a subscription is granted QoS 1, a QoS 2 publish closes the connection', async () => {
  const node = cluster.nodes[0] as NatsNode;
  const client = await connectClient(node.mqttUrl, { clientId: 'qos2', protocolVersion: 4 });
  const granted = await client.client.subscribeAsync('lastgasp/v1/qos2', { qos: 2 });
  assert.deepEqual(granted.map((g) => g.qos), [1]);
  const closed = closedWith(client.client);
  client.client.publish('lastgasp/v1/qos2', 'x', { qos: 2 });
  await closed;
  await client.end();
});

test('suspend (SIGSTOP) stops a node; after resume it answers MQTT again', async () => {
  const node = cluster.nodes[2] as NatsNode;
  node.suspend();
  const pid = node.process.child.pid as number;
  await waitFor(`${node.name} stopped`, async () => {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) === 'T' ? true : undefined;
  });
  node.resume();
  const client = await connectWithRetry(node.mqttUrl, { clientId: 'after-resume', protocolVersion: 4 });
  await client.end();
});
