// The MQTT listener's journal (agent/app/mqtt-listener/journal.ts) against a real flash log whose hard limit
// on unreplicated bytes is smaller than one turn's messages: the turn's batch, refused whole as larger than
// the limit could ever admit, goes in halves, and every message is acknowledged once replication makes room
// (each in the order it came, each once); a message whose own entry is over the limit is refused as too
// large, permanently, instead of as a full log that a client would send it to again and again.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Journal } from '../../agent/app/mqtt-listener/index.ts';
import { decodeOp, OP_MQTT } from '../../agent/app/ops.ts';
import { createFlashLog, SimStorage } from '../../agent/log/index.ts';
import { LastgaspError } from '../../agent/util/index.ts';

const HARD_BYTES = 4096;

test('a turn of messages over the hard limit goes in halves as replication makes room; one message over it is refused as too large', async () => {
  const log = createFlashLog({ dir: 'sim/mqtt-journal', segmentBytes: 256 * 1024, storage: new SimStorage(), unreplicatedHardBytes: HARD_BYTES, fullPolicy: 'wait', fullWaitMs: 10_000 });
  await log.open();
  // Replication keeps up: what is committed is replicated a moment later (the wait for room is then short).
  log.onCommit((committed) => setTimeout(() => log.markReplicated(committed), 1));
  const journal = new Journal({ journal: ['plant/#'], ackAfter: {}, entryBytesMax: 64 * 1024, appendMany: (payloads) => log.appendMany(payloads) });
  try {
    const outcomes: Array<LastgaspError | undefined> = [];
    const done = Array.from({ length: 41 }, (_, i) => new Promise<void>((resolve) => journal.submit({ topic: `plant/${i}`, payload: new Uint8Array(i === 40 ? 5000 : 200).fill(i), qos: 1, retain: false, props: undefined }, (error) => {
      outcomes[i] = error;
      resolve();
    })));
    // 40 messages of about 230 bytes of records each, in one turn: over twice the limit.
    await Promise.all(done);
    for (let i = 0; i < 40; i++) assert.equal(outcomes[i], undefined, `message ${i} acknowledged: ${String(outcomes[i])}`);
    const refused = outcomes[40];
    assert.ok(refused instanceof LastgaspError && refused.code === 'ENTRY_TOO_LARGE', `the message over the limit is too large, not full: ${String(refused)}`);
    assert.ok(journal.counters.mqttJournalBatches > 1, 'the turn went in more than one batch');

    // Each message once, in order.
    const topics: string[] = [];
    for await (const entry of log.entries(1)) {
      const decoded = decodeOp(entry.payload);
      assert.ok(decoded.ok && decoded.op.op === OP_MQTT, `entry ${entry.seq} is an MQTT message`);
      topics.push(decoded.op.topic);
      if (entry.seq === log.watermarks().committed) break;
    }
    assert.deepEqual(topics, Array.from({ length: 40 }, (_, i) => `plant/${i}`));
  } finally {
    await log.close();
  }
});

test('a half held back by a full log holds back the messages after it: none of them overtakes it in the log', async () => {
  const log = createFlashLog({ dir: 'sim/mqtt-journal-order', segmentBytes: 256 * 1024, storage: new SimStorage(), unreplicatedHardBytes: HARD_BYTES, fullPolicy: 'reject' });
  await log.open();
  const journal = new Journal({ journal: ['plant/#'], ackAfter: {}, entryBytesMax: 64 * 1024, appendMany: (payloads) => log.appendMany(payloads) });
  try {
    const outcomes: Array<LastgaspError | undefined> = [];
    // Twenty messages of 200 bytes, then twenty of 20: the first quarter fits, the second does not, and the
    // small messages of the second half would fit in what is left.
    const done = Array.from({ length: 40 }, (_, i) => new Promise<void>((resolve) => journal.submit({ topic: `plant/${i}`, payload: new Uint8Array(i < 20 ? 200 : 20).fill(i), qos: 1, retain: false, props: undefined }, (error) => {
      outcomes[i] = error;
      resolve();
    })));
    await Promise.all(done);
    const acknowledged = outcomes.flatMap((error, i) => (error === undefined ? [i] : []));
    assert.ok(acknowledged.length > 0 && acknowledged.length < 20, `some of the first messages in: ${acknowledged.join(',')}`);
    assert.deepEqual(acknowledged, Array.from({ length: acknowledged.length }, (_, i) => i), 'a prefix is acknowledged, nothing after a gap');
    for (let i = acknowledged.length; i < 40; i++) assert.ok(outcomes[i] instanceof LastgaspError && outcomes[i]!.code === 'LOG_FULL', `message ${i}: ${String(outcomes[i])}`);
    assert.equal(log.watermarks().committed, acknowledged.length, 'the log holds the prefix only');
  } finally {
    await log.close();
  }
});
