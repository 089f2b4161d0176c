// The prepared tail (agent/replication/prepared-tail.ts) under attack, on a real mosquitto with signed nodes:
// batches made ahead while the publisher is paused must never go out once they stopped being the batches it
// would make itself. A resend request (go-back-N) after batches were prepared, a new epoch, a demotion that
// cuts the log and writes other entries at the same seqs (with the publisher stopped, or still running),
// and a brownout flush with commits still arriving
// after the prepared batches: in each, a watcher on the log topic checks every batch on the wire (a valid
// signature, no gap, the primary's own entries, the current epoch) and the sibling ends up with exactly the
// primary's log, each entry applied once. A cut followed by new appends in the same epoch, while the
// publisher still runs, is caught by the log's count of records set aside.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import mqtt, { type MqttClient } from 'mqtt';
import { WireCodec, topics, type BatchMessage } from '../../agent/replication/index.ts';
import { systemClock, type Clock } from '../../agent/util/index.ts';
import { groupKeys, type GroupKeys } from '../support/keys.ts';
import { startMosquitto, type Mosquitto } from '../support/mosquitto.ts';
import { killAll } from '../support/processes.ts';
import { tempDir, waitFor } from '../support/ports.ts';
import { GROUP, assertSameLog, startNode, waitCommitted, waitReplicated, type TestNode } from './support/nodes.ts';

after(killAll);

const MEMBERS = ['gw-a', 'gw-b'];
/**
 * Small batches, so that a few thousand short entries make many full ones to prepare: about 6 KB each,
 * within twice the smallest batch the flush plans (4 KiB, on a link measured slow), so that the flush takes
 * them as prepared.
 */
const BATCH_ENTRIES = 200;

interface Seen {
  readonly batches: BatchMessage[];
  /** Messages on the log topic that did not decode (bad signature, CRC, ...): must stay empty. */
  readonly refused: string[];
}

/** A subscriber holding gw-b's keyring that decodes (and so verifies) every batch gw-a publishes. */
async function watch(url: string, keys: GroupKeys): Promise<{ client: MqttClient; seen: Seen }> {
  const codec = new WireCodec(keys.auth('gw-b', MEMBERS));
  const client = await mqtt.connectAsync(url, { clientId: 'prepared-watcher', protocolVersion: 5 });
  const seen: Seen = { batches: [], refused: [] };
  client.on('message', (_topic, payload) => {
    const decoded = codec.decode(new Uint8Array(payload.buffer, payload.byteOffset, payload.byteLength));
    if (!decoded.ok) seen.refused.push(decoded.reason);
    else if (decoded.kind === 'batch') seen.batches.push(decoded.message);
  });
  await client.subscribeAsync(topics('lastgasp', GROUP).log('gw-a'), { qos: 1 });
  return { client, seen };
}

/**
 * Every batch on the wire since the watcher came (after seq `from`): signed by gw-a, no gap after what came
 * before it (a resend may go back), and each entry the primary's own, byte for byte, at its seq.
 */
async function assertWire(seen: Seen, primary: TestNode, from = 200): Promise<void> {
  assert.deepEqual(seen.refused, [], 'every batch on the wire decodes and carries a valid signature');
  const ours = new Map((await primary.entries()).map((entry) => [entry.seq, entry]));
  let highest = from;
  for (const batch of seen.batches) {
    const first = batch.entries[0]!.seq;
    assert.ok(first <= highest + 1, `batch from ${first} leaves a gap after ${highest}`);
    for (const [index, entry] of batch.entries.entries()) {
      assert.equal(entry.seq, first + index, 'seqs run on within a batch');
      const own = ours.get(entry.seq);
      if (!own) continue;
      assert.deepEqual(entry.payload, own.payload, `seq ${entry.seq} on the wire is the primary's entry`);
      assert.equal(entry.epoch, own.epoch);
    }
    highest = Math.max(highest, batch.entries[batch.entries.length - 1]!.seq);
  }
}

const prepared = (node: TestNode) => node.publisher() as unknown as { preparedBatches: number; preparedSent: number; preparedDropped: number; preparedHeldBatches: number; preparedThroughSeq: number; rewinds: number };

interface Pair {
  a: TestNode;
  b: TestNode;
  broker: Mosquitto;
  keys: GroupKeys;
  watcher: { client: MqttClient; seen: Seen };
  skew(ms: number): void;
  close(): Promise<void>;
}

/** gw-a (primary, its clock skewable) and gw-b (standby), signed, 200 entries replicated, then a watcher. */
async function pair(name: string): Promise<Pair> {
  const dir = await tempDir(name);
  const broker = await startMosquitto(dir.path);
  const keys = groupKeys(dir.path);
  let skewMs = 0;
  const clock: Clock = { ...systemClock, monotonicMs: () => systemClock.monotonicMs() + skewMs };
  // Durability broker: the test's own resend request shadows gw-b's acks (its counter runs ahead of them).
  const a = await startNode({ dir: dir.path, name: 'gw-a', role: 'primary', brokers: [broker.url], siblings: ['gw-b'], durability: 'broker', batchEntriesMax: BATCH_ENTRIES, compression: 'off', auth: keys.auth('gw-a', MEMBERS), clock });
  const b = await startNode({ dir: dir.path, name: 'gw-b', role: 'standby', brokers: [broker.url], siblings: ['gw-a'], auth: keys.auth('gw-b', MEMBERS) });
  await a.append(200, 'early');
  await waitCommitted(b, 200);
  const watcher = await watch(broker.url, keys);
  return {
    a,
    b,
    broker,
    keys,
    watcher,
    skew: (ms) => void (skewMs += ms),
    async close() {
      watcher.client.end(true);
      await a.stop();
      await b.stop();
      await broker.stop();
      await dir.remove();
    },
  };
}

/** Pause gw-a, append `count` entries, and wait until at least `batches` batches of them are prepared. */
async function prepareTail(a: TestNode, count: number, tag: string, batches: number): Promise<void> {
  a.replication.publisher.setPaused(true);
  await a.append(count, tag, 16);
  await waitFor(`${batches} batches prepared (${prepared(a).preparedHeldBatches})`, () => (prepared(a).preparedHeldBatches >= batches ? true : undefined));
}

test('a paused tail is prepared whole, and goes out as it was prepared', async () => {
  const p = await pair('prepared-whole');
  try {
    const { a, b } = p;
    // Full batches while the writers write, the rest once they are quiet.
    await prepareTail(a, 2600, 'tail', 1);
    await waitFor('the whole tail to be prepared', () => (prepared(a).preparedThroughSeq === 2800 ? true : undefined));
    const before = p.watcher.seen.batches.length;
    a.replication.publisher.setPaused(false);
    await waitReplicated(a, 2800);
    await waitCommitted(b, 2800);
    const sizes = p.watcher.seen.batches.slice(before).map((batch) => batch.entries.length);
    assert.equal(sizes.reduce((sum, size) => sum + size, 0), 2600);
    assert.ok(sizes.every((size) => size <= BATCH_ENTRIES));
    assert.equal(prepared(a).preparedSent, sizes.length, 'every batch of the tail went out as it was prepared');
    await assertSameLog(a, b, 2800);
    await assertWire(p.watcher.seen, a);
  } finally {
    await p.close();
  }
});

test('a resend request after batches were prepared drops them, and the resend and the tail reach the sibling once, in order, signed', async () => {
  const p = await pair('prepared-rewind');
  try {
    const { a, b } = p;
    await prepareTail(a, 3000, 'tail', 5);
    const held = prepared(a).preparedHeldBatches;
    // gw-b asks for seq 150 again, with its own key (counters above its own from here on); the batch that
    // carried 150 left over a second ago on gw-a's clock, so this is no request crossing its batch.
    p.skew(1500);
    const asB = new WireCodec(p.keys.auth('gw-b', MEMBERS));
    const client = p.watcher.client;
    await client.publishAsync(topics('lastgasp', GROUP).ack('gw-b'), Buffer.from(asB.encodeAck({ group: GROUP, node: 'gw-b', epoch: a.log.epoch, counter: 2 ** 52, seq: 200, want: 150, atMs: Date.now() })), { qos: 1 });
    await waitFor('the resend request to be answered', () => (prepared(a).rewinds === 1 ? true : undefined));
    assert.ok(prepared(a).preparedDropped >= held, `${prepared(a).preparedDropped} prepared batches dropped, ${held} were held`);
    const before = p.watcher.seen.batches.length;
    a.replication.publisher.setPaused(false);
    await waitReplicated(a, 3200);
    await waitCommitted(b, 3200);
    await assertSameLog(a, b, 3200);
    await assertWire(p.watcher.seen, a);
    const resent = p.watcher.seen.batches.slice(before);
    assert.equal(resent[0]!.entries[0]!.seq, 150, 'the first batch after the pause starts where the sibling asked');
    assert.equal(b.receiver().gaps, 0);
    // gw-b drops its own later acks echoed by the broker as replays of the test's request: nothing else.
    assert.deepEqual(Object.keys(b.rejected()).filter((reason) => reason !== 'replayed'), []);
  } finally {
    await p.close();
  }
});

test('a new epoch after batches were prepared: none of them goes out, every batch carries the new epoch', async () => {
  const p = await pair('prepared-epoch');
  try {
    const { a, b } = p;
    await prepareTail(a, 3000, 'tail', 5);
    const held = prepared(a).preparedHeldBatches;
    const epoch = a.log.epoch + 1;
    await a.log.beginEpoch(epoch);
    // As the leader record of the new epoch would tell it.
    b.replication.followEpoch(epoch, 3201);
    await a.append(300, 'new-epoch', 4);
    const before = p.watcher.seen.batches.length;
    a.replication.publisher.setPaused(false);
    await waitReplicated(a, 3500);
    await waitCommitted(b, 3500);
    const after = p.watcher.seen.batches.slice(before);
    assert.ok(after.length > 0);
    assert.deepEqual([...new Set(after.map((batch) => batch.epoch))], [epoch], 'every batch sent after the epoch changed carries it');
    assert.ok(prepared(a).preparedDropped >= held, `${prepared(a).preparedDropped} prepared batches dropped, ${held} were held`);
    await assertSameLog(a, b, 3500);
    await assertWire(p.watcher.seen, a);
  } finally {
    await p.close();
  }
});

test('a demotion that cuts the prepared entries and writes others at their seqs: the sibling gets the new ones', async () => {
  const p = await pair('prepared-demotion');
  try {
    const { a, b } = p;
    await prepareTail(a, 3000, 'cut', 5);
    // Demoted: the publisher stops with its prepared batches, the unreplicated suffix is set aside.
    await a.replication.setRole('standby');
    await a.log.quarantineAfter(200);
    // Back as primary of a new epoch, with other entries at the same seqs.
    await a.log.beginEpoch(a.log.epoch + 1);
    b.replication.followEpoch(a.log.epoch, 201);
    await a.append(2000, 'kept', 8);
    a.replication.publisher.setPaused(false);
    await a.replication.setRole('primary');
    await waitReplicated(a, 2200);
    await waitCommitted(b, 2200);
    await assertSameLog(a, b, 2200);
    const theirs = await b.entries();
    assert.equal(new TextDecoder().decode(theirs[200]!.payload).split('-')[0], 'kept', 'seq 201 is an entry written after the cut');
    assert.ok(!p.watcher.seen.batches.some((batch) => batch.entries.some((entry) => new TextDecoder().decode(entry.payload).startsWith('cut-'))), 'no entry that was cut went out');
    await assertWire(p.watcher.seen, a);
  } finally {
    await p.close();
  }
});

test('a cut while the publisher runs, then new appends at the cut seqs in the same epoch: the sibling gets the new ones', async () => {
  const p = await pair('prepared-cut');
  try {
    const { a, b } = p;
    await prepareTail(a, 3000, 'cut', 5);
    // As a demotion does before the publisher stops (takeover/roles.ts demote): fence, cut, unfence; here
    // appends then come back in the same epoch, more of them than were cut.
    await a.log.fence('NOT_PRIMARY', 'test: demoting');
    await a.log.quarantineAfter(200);
    a.log.unfence();
    await a.append(3500, 'refill', 16);
    a.replication.publisher.setPaused(false);
    await waitReplicated(a, 3700);
    await waitCommitted(b, 3700);
    await assertSameLog(a, b, 3700);
    assert.ok(!p.watcher.seen.batches.some((batch) => batch.entries.some((entry) => new TextDecoder().decode(entry.payload).startsWith('cut-'))), 'no entry that was cut went out');
    assert.ok(prepared(a).preparedDropped >= 5, `${prepared(a).preparedDropped} prepared batches dropped`);
    await assertWire(p.watcher.seen, a);
  } finally {
    await p.close();
  }
});

test('a brownout flush after prepared batches, with commits still arriving after them: every entry once, in order, signed', async () => {
  const p = await pair('prepared-flush');
  try {
    const { a, b } = p;
    await prepareTail(a, 4000, 'tail', 8);
    // Commits after the prepared ones, and more while the flush runs.
    await a.append(777, 'late', 4);
    a.replication.publisher.setFlushing(true);
    await a.append(1500, 'during', 4);
    const committed = a.log.watermarks().committed;
    assert.equal(committed, 200 + 4000 + 777 + 1500);
    await waitReplicated(a, committed);
    await waitCommitted(b, committed);
    assert.ok(prepared(a).preparedSent >= 8, `${prepared(a).preparedSent} prepared batches sent`);
    await assertSameLog(a, b, committed);
    await assertWire(p.watcher.seen, a);
    assert.equal(b.receiver().gaps, 0);
    assert.deepEqual(b.rejected(), {});
  } finally {
    await p.close();
  }
});
