// The prepared tail's timings, on a clock the test moves: while the publisher keeps up nothing is prepared;
// with the window held full, the full batches waiting are prepared at once and the rest only after 100 ms
// without a commit; and what was prepared goes out as it was, in order. The log is a real one in a temp
// dir; the broker link is an in-process fake behind PublishLink, because the test must hold each PUBACK
// and place the quiet time at an exact instant (real brokers: test/replication/prepared-tail.test.ts).
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createFlashLog, type FlashLog } from '../../agent/log/index.ts';
import { Publisher, WireCodec, topics, type LinkUp, type PublishLink } from '../../agent/replication/index.ts';
import { silentLogger } from '../../agent/util/index.ts';
import { FakeClock, settle } from '../support/fake-clock.ts';
import { tempDir, waitFor } from '../support/ports.ts';

/** A broker link whose PUBACKs the test gives; it remembers each batch's seqs. */
class HeldLink implements PublishLink {
  connected = true;
  info: LinkUp | undefined = undefined;
  readonly sent: Array<{ first: number; last: number; puback: () => void }> = [];

  constructor(private readonly codec: WireCodec) {}

  payloadBytesMax(): number | undefined {
    return undefined;
  }

  publish(_topic: string, payload: Uint8Array): Promise<void> {
    const decoded = this.codec.decode(payload);
    assert.ok(decoded.ok && decoded.kind === 'batch');
    const entries = decoded.message.entries;
    return new Promise((resolve) => this.sent.push({ first: entries[0]!.seq, last: entries[entries.length - 1]!.seq, puback: resolve }));
  }
}

async function setUp(t: TestContext) {
  const dir = await tempDir('prepared-timing');
  const log = createFlashLog({ dir: dir.path, segmentBytes: 4 * 1024 * 1024 });
  await log.open();
  const clock = new FakeClock();
  const codec = new WireCodec();
  const link = new HeldLink(codec);
  // Batches of 10 entries, one in flight: a second commit already waits for the window.
  const publisher = new Publisher({ log, links: [link], codec, topics: topics('lastgasp', 'g'), group: 'g', node: 'gw-a', durability: 'broker', quorum: 1, siblings: ['gw-b'], replicaAcks: 1, batchEntriesMax: 10, batchBytesMax: 1024 * 1024, windowMax: 1, compress: false, logger: silentLogger, clock });
  t.after(async () => {
    publisher.stop();
    await log.close();
    await dir.remove();
  });
  const stats = () => publisher.stats() as unknown as { preparedBatches: number; preparedSent: number; preparedHeldBatches: number };
  const published = (count: number) => waitFor(`batch ${count} published (${link.sent.length})`, () => (link.sent.length >= count ? link.sent[count - 1]! : undefined), 5000, 1);
  const prepared = (count: number) => waitFor(`${count} batches prepared (${stats().preparedBatches})`, () => (stats().preparedBatches >= count ? true : undefined), 5000, 1);
  return { log, clock, link, publisher, stats, published, prepared };
}

async function append(log: FlashLog, count: number): Promise<void> {
  await log.appendMany(Array.from({ length: count }, () => new Uint8Array(16)));
}

test('a publisher that keeps up prepares nothing', async (t) => {
  const { log, clock, publisher, stats, published } = await setUp(t);
  publisher.start();
  for (let seq = 1; seq <= 30; seq++) {
    await append(log, 1);
    const sent = await published(seq);
    assert.deepEqual([sent.first, sent.last], [seq, seq]);
    sent.puback();
    await settle();
    // Past the quiet time after each commit: there is never anything left to prepare.
    await clock.advanceSettling(150);
  }
  assert.equal(stats().preparedBatches, 0);
});

test('with the window full, the full batches are prepared at once, the rest after 100 ms without a commit, and all go out as prepared', async (t) => {
  const { log, clock, link, publisher, stats, published, prepared } = await setUp(t);
  publisher.start();
  await append(log, 1);
  const first = await published(1);
  // Seqs 2..36 wait behind the batch in flight: three full batches of 10, and 5 more.
  await append(log, 35);
  await prepared(3);
  await settle();
  await clock.advanceSettling(99);
  await settle();
  assert.equal(stats().preparedBatches, 3, 'the last 5 entries wait for 100 ms without a commit');
  await clock.advanceSettling(1);
  await prepared(4);
  assert.equal(stats().preparedHeldBatches, 4);
  first.puback();
  for (let count = 2; count <= 5; count++) {
    const sent = await published(count);
    sent.puback();
  }
  assert.deepEqual(
    link.sent.map((sent) => [sent.first, sent.last]),
    [[1, 1], [2, 11], [12, 21], [22, 31], [32, 36]],
  );
  assert.equal(stats().preparedSent, 4);
});
