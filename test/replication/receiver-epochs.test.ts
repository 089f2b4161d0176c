// A node that stood down holds entries of its own, written in its old epoch, after the new leader's first seq.
// The new leader's batches must not be stored right after them: if its resend (from this node's committed
// + 1) came before its leader record, the log's history would differ from the leader's at those seqs while
// the receiver acknowledged them as the leader's, and a node that then took over would serve the other
// history. The receiver holds such batches back until the record has come and the roles have cut the suffix;
// the batch that begins the epoch where its record says is stored. Real log, batches handed in process.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createFlashLog, type LogEntry } from '../../agent/log/index.ts';
import { Receiver, type BatchMessage } from '../../agent/replication/index.ts';
import { silentLogger } from '../../agent/util/index.ts';
import { FakeClock, settle } from '../support/fake-clock.ts';
import { tempDir } from '../support/ports.ts';

async function setUp(t: TestContext) {
  const dir = await tempDir('receiver-epochs');
  const log = createFlashLog({ dir: dir.path, segmentBytes: 1024 * 1024 });
  await log.open();
  const receiver = new Receiver({ log, group: 'g', node: 'gw-a', sources: 1, keepaliveS: 30, sendAck: async () => undefined, receiving: () => true, logger: silentLogger, clock: new FakeClock() });
  t.after(async () => {
    receiver.stop();
    await log.close();
    await dir.remove();
  });
  await receiver.start();
  await settle();
  return { log, receiver };
}

function batch(node: string, epoch: number, first: number, last: number, mark: number): BatchMessage {
  const entries: LogEntry[] = [];
  for (let seq = first; seq <= last; seq++) entries.push({ seq, epoch, timestampMs: 1_700_000_000_000 + seq, payload: Uint8Array.of(mark, seq) });
  return { group: 'g', node, epoch, entries };
}

test('the new leader\'s entries wait for its record, and are stored only where its epoch begins', async (t) => {
  const { log, receiver } = await setUp(t);
  // Entries 1..15 of epoch 1; say 11..15 are the ones this node acknowledged in a lease it then lost.
  await receiver.onBatch(batch('gw-x', 1, 1, 15, 1));
  assert.equal(log.watermarks().committed, 15);
  receiver.setLeaderEpoch(1);

  // gw-b took over in epoch 2 from seq 11; its resend from 16 comes before its leader record.
  await receiver.onBatch(batch('gw-b', 2, 16, 20, 2));
  assert.equal(log.watermarks().committed, 15, 'an epoch whose record has not come is not stored after older entries');
  assert.equal(receiver.stats().epochBoundaries, 1);

  // The record came (since 11); the roles have not cut yet: still not stored after this node's own 11..15.
  receiver.setLeaderEpoch(2, 11);
  await receiver.onBatch(batch('gw-b', 2, 16, 20, 2));
  assert.equal(log.watermarks().committed, 15, 'epoch 2 begins at 11, not at 16');
  assert.equal(receiver.stats().epochBoundaries, 2);

  // The roles cut after 10; the leader's resend from 11 begins its epoch where the record says.
  await log.quarantineAfter(10);
  await receiver.onBatch(batch('gw-b', 2, 11, 20, 2));
  assert.equal(log.watermarks().committed, 20);
  const stored = await log.read(11, { entriesMax: 10, bytesMax: 1 << 20 });
  assert.deepEqual(stored.map((entry) => [entry.seq, entry.epoch, entry.payload[0]]), Array.from({ length: 10 }, (_, i) => [11 + i, 2, 2]));
  // Later batches of the same epoch go on as usual.
  await receiver.onBatch(batch('gw-b', 2, 21, 22, 2));
  assert.equal(log.watermarks().committed, 22);
  assert.equal(receiver.stats().epochBoundaries, 2);
});

test('an empty log takes the leader\'s history from its first entry, whatever epochs it spans', async (t) => {
  const { log, receiver } = await setUp(t);
  receiver.setLeaderEpoch(3, 6);
  const entries = [...batch('gw-b', 1, 1, 3, 1).entries, ...batch('gw-b', 2, 4, 5, 2).entries, ...batch('gw-b', 3, 6, 8, 3).entries];
  await receiver.onBatch({ group: 'g', node: 'gw-b', epoch: 3, entries });
  assert.equal(log.watermarks().committed, 8);
  assert.equal(receiver.stats().epochBoundaries, 0);
});
