// Fault tests on one real mosquitto: the broker SIGKILLed and restarted, frozen with SIGSTOP, the TCP path
// cut or silenced through a proxy, batches injected by a client with broker access (a duplicate, one out of
// order, a forged one, replays of old ones), and a broker queue filled past max_queued_messages while the
// sibling is away. After each: every acknowledged entry is on the sibling's flash, in order, with no gap,
// each applied once, and the gateways were never restarted to get there.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import mqtt from 'mqtt';
import { WireCodec } from '../../agent/replication/index.ts';
import { startMosquitto } from '../support/mosquitto.ts';
import { killAll } from '../support/processes.ts';
import { tempDir, waitFor } from '../support/ports.ts';
import { startTcpProxy } from '../support/tcp-proxy.ts';
import { assertSameLog, GROUP, startNode, startWriter, waitCommitted, waitWritten, type TestNode } from './support/nodes.ts';

after(killAll);

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Stop the writer, then wait for the sibling to hold everything the primary acknowledged. */
async function drain(writer: ReturnType<typeof startWriter>, a: TestNode, b: TestNode): Promise<number> {
  const acked = await writer.stop();
  const committed = a.log.watermarks().committed;
  assert.equal(acked.at(-1), committed);
  await waitCommitted(b, committed, 60_000);
  return committed;
}

function connects(node: TestNode): number {
  return node.links().reduce((sum, link) => sum + (link.connects as number), 0);
}

test('the broker SIGKILLed mid-stream and restarted: every acknowledged entry arrives, in order, once', async () => {
  const dir = await tempDir('fault-kill');
  let broker = await startMosquitto(dir.path);
  const a = await startNode({ dir: dir.path, name: 'gw-a', role: 'primary', brokers: [broker.url], siblings: ['gw-b'], keepaliveS: 1 });
  const b = await startNode({ dir: dir.path, name: 'gw-b', role: 'standby', brokers: [broker.url], siblings: ['gw-a'], keepaliveS: 1 });
  try {
    const writer = startWriter(a, 'kill', 8);
    await waitWritten(writer, 3000);
    await broker.stop('SIGKILL');
    const atKill = writer.acked.length;
    await waitWritten(writer, atKill + 1000);
    broker = await broker.restart();
    await waitFor('both gateways back on the restarted broker', () => (a.replication.connected && b.replication.connected ? true : undefined), 30_000);
    await waitWritten(writer, writer.acked.length + 2000);
    const committed = await drain(writer, a, b);
    await assertSameLog(a, b, committed);
    assert.ok(connects(a) >= 2 && connects(b) >= 2, 'both reconnected by themselves');
  } finally {
    await a.stop();
    await b.stop();
    await broker.stop();
    await dir.remove();
  }
});

test('the broker frozen with SIGSTOP for seconds: both sides notice, reconnect after SIGCONT, nothing lost', async () => {
  const dir = await tempDir('fault-stop');
  const broker = await startMosquitto(dir.path);
  const a = await startNode({ dir: dir.path, name: 'gw-a', role: 'primary', brokers: [broker.url], siblings: ['gw-b'], keepaliveS: 1 });
  const b = await startNode({ dir: dir.path, name: 'gw-b', role: 'standby', brokers: [broker.url], siblings: ['gw-a'], keepaliveS: 1 });
  try {
    const writer = startWriter(a, 'stop', 8);
    await waitWritten(writer, 2000);
    broker.suspend();
    await sleep(4000);
    broker.resume();
    await waitFor('both gateways reconnected', () => (connects(a) >= 2 && connects(b) >= 2 && a.replication.connected && b.replication.connected ? true : undefined), 30_000);
    await waitWritten(writer, writer.acked.length + 2000);
    const committed = await drain(writer, a, b);
    await assertSameLog(a, b, committed);
  } finally {
    await a.stop();
    await b.stop();
    await broker.stop();
    await dir.remove();
  }
});

test('the primary\'s TCP path cut and restored, then the sibling\'s path silent for seconds: no gap is ever seen', async () => {
  const dir = await tempDir('fault-proxy');
  const broker = await startMosquitto(dir.path);
  const pathA = await startTcpProxy({ port: broker.port });
  const pathB = await startTcpProxy({ port: broker.port });
  const a = await startNode({ dir: dir.path, name: 'gw-a', role: 'primary', brokers: [pathA.url('mqtt')], siblings: ['gw-b'], keepaliveS: 1 });
  const b = await startNode({ dir: dir.path, name: 'gw-b', role: 'standby', brokers: [pathB.url('mqtt')], siblings: ['gw-a'], keepaliveS: 1 });
  try {
    const writer = startWriter(a, 'proxy', 8);
    await waitWritten(writer, 2000);
    await pathA.cut();
    await waitWritten(writer, writer.acked.length + 1000);
    await pathA.restore();
    await waitFor('the primary reconnected', () => (connects(a) >= 2 && a.replication.connected ? true : undefined), 30_000);
    await waitWritten(writer, writer.acked.length + 1000);
    pathB.pause();
    await sleep(3000);
    await pathB.restore();
    await waitFor('the sibling reconnected', () => (connects(b) >= 2 && b.replication.connected ? true : undefined), 30_000);
    await waitWritten(writer, writer.acked.length + 1000);
    const committed = await drain(writer, a, b);
    await assertSameLog(a, b, committed);
    // MQTT.js resends its unacknowledged batches before anything new, and the broker's queue for the
    // sibling's session kept the rest: the sibling never saw a batch start past its log's end, and never had
    // to ask for a resend (a link recovering from a stall on its first connection used to say "fresh session"
    // and make it ask). On a failure, the lines printed are what to read.
    const story = (node: typeof a) => node.lines.filter((line) => /gap|resen|rewind|stall|acknowledging|broker|subscri/i.test(line.msg)).map((line) => `${node.name}: ${JSON.stringify(line)}`);
    assert.equal(b.receiver().gaps, 0, [...story(a), ...story(b)].join('\n'));
    assert.equal(a.publisher().rewinds, 0, [...story(a), ...story(b)].join('\n'));
  } finally {
    await a.stop();
    await b.stop();
    await pathA.close();
    await pathB.close();
    await broker.stop();
    await dir.remove();
  }
});

test('injected batches: a duplicate, one out of order, forged and unsigned ones, and replays from a fenced epoch change nothing', async () => {
  const dir = await tempDir('fault-inject');
  const broker = await startMosquitto(dir.path);
  const key = randomBytes(32);
  const codec = new WireCodec(key);
  const topic = `lastgasp/v1/${GROUP}/log/gw-a`;
  const captured: Uint8Array[] = [];
  const spy = mqtt.connect(broker.url, { clientId: 'spy', reconnectPeriod: 0 });
  spy.on('message', (_topic, payload) => captured.push(new Uint8Array(payload)));
  await new Promise((resolve) => spy.once('connect', resolve));
  await spy.subscribeAsync(topic, { qos: 1 });
  const intruder = mqtt.connect(broker.url, { clientId: 'intruder', reconnectPeriod: 0 });
  await new Promise((resolve) => intruder.once('connect', resolve));
  const inject = (payload: Uint8Array) => intruder.publishAsync(topic, Buffer.from(payload), { qos: 1 });
  const a = await startNode({ dir: dir.path, name: 'gw-a', role: 'primary', brokers: [broker.url], siblings: ['gw-b'], hmacKey: key });
  const b = await startNode({ dir: dir.path, name: 'gw-b', role: 'standby', brokers: [broker.url], siblings: ['gw-a'], hmacKey: key });
  const counter = (name: string) => b.receiver()[name] ?? 0;
  try {
    await a.append(10, 'genuine');
    await waitCommitted(b, 10);
    await waitFor('the spy to capture the batches', () => (captured.length > 0 ? true : undefined));

    // A duplicate: a captured batch published again.
    await inject(captured[0]!);
    await waitFor('the duplicate to be seen', () => (counter('duplicateBatches') >= 1 ? true : undefined));

    // Forged (another key) and unsigned batches that would extend the log: refused before decoding.
    const fake = (seq: number, count: number) => Array.from({ length: count }, (_, index) => ({ seq: seq + index, epoch: 1, timestampMs: Date.now(), payload: new TextEncoder().encode('forged') }));
    await inject(new WireCodec(randomBytes(32)).encodeBatch({ group: GROUP, node: 'gw-a', epoch: 1, entries: fake(11, 5) }));
    await inject(new WireCodec().encodeBatch({ group: GROUP, node: 'gw-a', epoch: 1, entries: fake(11, 5) }));
    await waitFor('the forged and the unsigned batch to be counted', () => (b.rejected()['bad-signature'] === 1 && b.rejected().unsigned === 1 ? true : undefined));
    assert.ok(b.lines.some((line) => line.msg === 'dropped a message' && line.reason === 'bad-signature' && line.sender === 'gw-a'), 'a log line names the reason and the claimed sender');
    assert.equal(b.log.watermarks().committed, 10);

    // Out of order: genuine entries 16..20 arrive before 11..15 (replication of gw-a held back meanwhile).
    a.replication.publisher.setPaused(true);
    await a.append(10, 'held');
    const held = await a.log.read(11, { entriesMax: 10, bytesMax: 1 << 20 });
    await inject(codec.encodeBatch({ group: GROUP, node: 'gw-a', epoch: a.log.epoch, entries: held.slice(5) }));
    await waitFor('the gap to be seen', () => (counter('gaps') >= 1 ? true : undefined));
    assert.equal(b.log.watermarks().committed, 10, 'nothing applied past a gap');
    await inject(codec.encodeBatch({ group: GROUP, node: 'gw-a', epoch: a.log.epoch, entries: held.slice(0, 5) }));
    await waitCommitted(b, 15);
    a.replication.publisher.setPaused(false);
    await waitCommitted(b, 20);

    // A new epoch: the leader record fences epoch 1. Replays of epoch-1 batches, old or extending the log
    // (the stranded suffix of a deposed primary), are ignored.
    await a.log.beginEpoch(2);
    await a.replication.publishLeader({ group: GROUP, kind: 'leader', epoch: 2, node: 'gw-a', since: 21, atMs: Date.now() });
    // The role manager (not running in these bare nodes) fences only a leader record it accepted.
    b.replication.followEpoch(2);
    await a.append(5, 'epoch2');
    await waitCommitted(b, 25);
    await inject(captured[0]!);
    await inject(codec.encodeBatch({ group: GROUP, node: 'gw-a', epoch: 1, entries: fake(26, 5).map((entry) => ({ ...entry, payload: Uint8Array.of(9) })) }));
    await waitFor('both replays to be fenced', () => (counter('fenced') >= 2 ? true : undefined));
    await a.append(1, 'last');
    await waitCommitted(b, 26);
    await assertSameLog(a, b, 26, 26);
    assert.equal(b.log.watermarks().committed, 26);
  } finally {
    spy.end(true);
    intruder.end(true);
    await a.stop();
    await b.stop();
    await broker.stop();
    await dir.remove();
  }
});

test('a broker queue filled past max_queued_messages while the sibling is away: the sibling still gets everything', async () => {
  const dir = await tempDir('fault-queue');
  const broker = await startMosquitto(dir.path, { vars: { MAX_QUEUED_MESSAGES: '10', MAX_INFLIGHT_MESSAGES: '5' } });
  const a = await startNode({ dir: dir.path, name: 'gw-a', role: 'primary', brokers: [broker.url], siblings: ['gw-b'], batchEntriesMax: 5, windowMax: 4 });
  let b = await startNode({ dir: dir.path, name: 'gw-b', role: 'standby', brokers: [broker.url], siblings: ['gw-a'] });
  try {
    await a.append(20, 'before');
    await waitCommitted(b, 20);
    await b.stop();
    await a.append(500, 'away', 4);
    await waitFor('every batch acknowledged by the broker', () => ((a.publisher().brokerAcked as number) >= 520 ? true : undefined));
    await broker.process.waitForOutput(/Outgoing messages are being dropped for client/);
    b = await startNode({ dir: dir.path, name: 'gw-b', role: 'standby', brokers: [broker.url], siblings: ['gw-a'] });
    await waitCommitted(b, 520);
    await assertSameLog(a, b, 520, 500);
  } finally {
    await a.stop();
    await b.stop();
    await broker.stop();
    await dir.remove();
  }
});
