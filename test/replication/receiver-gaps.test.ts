// The receiver's gap timings, each pinned at an exact instant of a clock the test moves: a gap behind one
// broker asks for a resend at once and repeats the same request no sooner than 1 s later; behind several
// brokers the batch is held (its PUBACK with it) for 2 s, or half the keepalive if that is shorter, for
// another broker to fill the gap; a silent gap behind the primary's heartbeat asks after 2 s of quiet, then
// backs off, doubling up to 64 s. The log is a real one in a temp dir; the batches are handed to the
// receiver in process and its acks go to a recording sink, because the test must place each batch at an
// exact instant of the receiver's clock (real brokers dropping and reordering batches are in
// test/replication/faults.test.ts and independent.test.ts).
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createFlashLog } from '../../agent/log/index.ts';
import { Receiver, type AckMessage, type BatchMessage } from '../../agent/replication/index.ts';
import { silentLogger } from '../../agent/util/index.ts';
import { FakeClock, settle } from '../support/fake-clock.ts';
import { tempDir } from '../support/ports.ts';

async function setUp(t: TestContext, sources: number, keepaliveS = 30) {
  const dir = await tempDir('receiver-gaps');
  const log = createFlashLog({ dir: dir.path, segmentBytes: 1024 * 1024 });
  await log.open();
  const clock = new FakeClock();
  const acks: Array<{ ack: AckMessage; atMs: number }> = [];
  const receiver = new Receiver({
    log,
    group: 'g',
    node: 'gw-b',
    sources,
    keepaliveS,
    sendAck: async (ack) => void acks.push({ ack, atMs: clock.monotonicMs() }),
    receiving: () => true,
    logger: silentLogger,
    clock,
  });
  t.after(async () => {
    receiver.stop();
    await log.close();
    await dir.remove();
  });
  await receiver.start();
  await settle();
  // The first ack of a (re)starting receiver asks for everything after its position; the tests look at
  // what follows it.
  acks.length = 0;
  /** The resend requests sent so far: [want, monotonic ms]. */
  const wants = () => acks.filter(({ ack }) => ack.want !== undefined).map(({ ack, atMs }) => [ack.want!, atMs]);
  return { log, clock, receiver, wants };
}

function batch(first: number, last: number): BatchMessage {
  const entries = [];
  for (let seq = first; seq <= last; seq++) entries.push({ seq, epoch: 1, timestampMs: 1_700_000_000_000 + seq, payload: new Uint8Array([seq]) });
  return { group: 'g', node: 'gw-a', epoch: 1, entries };
}

test('one broker: a gap asks at once, and the same request is repeated no sooner than 1 s later', async (t) => {
  const { log, clock, receiver, wants } = await setUp(t, 1);
  const start = clock.monotonicMs();
  await receiver.onBatch(batch(3, 4));
  assert.deepEqual(wants(), [[1, start]], 'seqs 1..2 missing: asked for 1 at the instant the batch came');
  assert.equal(receiver.stats().gaps, 1);

  clock.advance(999);
  await receiver.onBatch(batch(3, 4));
  assert.deepEqual(wants(), [[1, start]], 'the same request 999 ms later: its batches are on their way');
  assert.equal(receiver.stats().gaps, 2, 'the batch is still dropped as a gap');
  clock.advance(1);
  await receiver.onBatch(batch(3, 4));
  assert.deepEqual(wants(), [[1, start], [1, start + 1000]], 'repeated at 1000 ms');

  await receiver.onBatch(batch(1, 2));
  assert.equal(log.watermarks().committed, 2);
  await receiver.onBatch(batch(5, 6));
  assert.deepEqual(wants().at(-1), [3, start + 1000], 'a request for another position goes out at once');
});

test('two brokers: a batch ahead of the log is held 2 s for the other broker, then asks for a resend', async (t) => {
  const { log, clock, receiver, wants } = await setUp(t, 2);
  const start = clock.monotonicMs();
  let released = false;
  const held = receiver.onBatch(batch(3, 4)).then(() => void (released = true));
  clock.advance(1999);
  await settle();
  assert.equal(released, false, 'held (its PUBACK with it) 1 ms before the 2 s are up');
  assert.deepEqual(wants(), []);
  clock.advance(1);
  await held;
  assert.deepEqual(wants(), [[1, start + 2000]], 'released at 2000 ms, asking for seq 1');
  assert.deepEqual(receiver.stats(), { ...receiver.stats(), reorderWaits: 1, reorderFilled: 0, gaps: 1 });
  assert.equal(log.watermarks().committed, 0);
});

test('two brokers: the other broker fills the gap while the batch is held, and no resend is asked', async (t) => {
  const { log, clock, receiver, wants } = await setUp(t, 2);
  const held = receiver.onBatch(batch(3, 4));
  clock.advance(1500);
  await receiver.onBatch(batch(1, 2));
  await held;
  assert.equal(log.watermarks().committed, 4, 'the held batch was applied behind the one that filled the gap');
  assert.deepEqual(wants(), []);
  assert.deepEqual(receiver.stats(), { ...receiver.stats(), reorderWaits: 1, reorderFilled: 1, gaps: 0, batchesApplied: 2 });
});

test('two brokers with a keepalive of 2 s: the hold is half the keepalive, 1 s', async (t) => {
  const { clock, receiver, wants } = await setUp(t, 2, 2);
  const start = clock.monotonicMs();
  let released = false;
  const held = receiver.onBatch(batch(3, 4)).then(() => void (released = true));
  clock.advance(999);
  await settle();
  assert.equal(released, false);
  clock.advance(1);
  await held;
  assert.deepEqual(wants(), [[1, start + 1000]]);
});

test('a silent gap behind the heartbeat asks after 2 s of quiet, then at 4, 8, 16, 32 and at most 64 s', async (t) => {
  const { clock, receiver, wants } = await setUp(t, 1);
  const start = clock.monotonicMs();
  receiver.notePrimary(10, 1);
  clock.advance(190_000);
  const gapsS = [2, 4, 8, 16, 32, 64, 64];
  let atMs = start;
  const expected = gapsS.map((gapS) => [1, (atMs += gapS * 1000)]);
  assert.deepEqual(wants(), expected);
  assert.equal(receiver.stats().stalls, gapsS.length);
});

test('progress ends the back-off: the next silent gap asks after 2 s again', async (t) => {
  const { clock, receiver, wants } = await setUp(t, 1);
  const start = clock.monotonicMs();
  receiver.notePrimary(10, 1);
  clock.advance(14_000);
  assert.deepEqual(wants(), [[1, start + 2000], [1, start + 6000], [1, start + 14_000]]);
  await receiver.onBatch(batch(1, 2));
  clock.advance(1999);
  assert.equal(wants().length, 3, '1999 ms after the progress: quiet, not yet a stall');
  clock.advance(1);
  assert.deepEqual(wants().at(-1), [3, start + 16_000], 'asked at 2000 ms, for what follows the progress');
});
