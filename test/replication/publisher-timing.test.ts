// The publisher's timings, each pinned at an exact instant of a clock the test moves: a resend request
// (`want`) crossing a batch sent less than the grace ago, the back-off between two answers to the same
// request, the pause after a refused batch, the window, coalescing small batches behind one in flight, the pooled batch buffers dropped once replication
// has been caught up for a second, the deadline of waitReplicated, the age of a stalled watermark, and the
// brownout flush's batches and bytes in flight sized in milliseconds at the rate the clock measured.
// The log is a real one in a temp dir; the broker link is an in-process fake behind the publisher's
// PublishLink, because the test must place each PUBACK and each refusal at an exact instant of the
// publisher's clock (the real links are in test/replication/acks.test.ts, faults.test.ts and the e2e tests).
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createFlashLog, type FlashLog } from '../../agent/log/index.ts';
import { fullEnoughToSend } from '../../agent/replication/batch-sizing.ts';
import { Publisher, WireCodec, topics, type LinkUp, type PublisherOptions, type PublishLink } from '../../agent/replication/index.ts';
import { LastgaspError, silentLogger } from '../../agent/util/index.ts';
import { FakeClock, settle } from '../support/fake-clock.ts';
import { tempDir } from '../support/ports.ts';

interface Sent {
  first: number;
  last: number;
  bytes: number;
  atMs: number;
  /** The bytes as handed to the link (the publisher's buffer itself, not a copy). */
  payload: Uint8Array;
  puback: () => void;
  refuse: (error: Error) => void;
}

/** A broker link whose PUBACKs and refusals the test gives by hand. */
class FakeLink implements PublishLink {
  connected = true;
  info: LinkUp | undefined = undefined;
  readonly sent: Sent[] = [];
  private waiters: Array<{ ready: () => boolean; resolve: () => void }> = [];

  constructor(
    private readonly codec: WireCodec,
    private readonly clock: FakeClock,
  ) {}

  payloadBytesMax(): number | undefined {
    return undefined;
  }

  publish(_topic: string, payload: Uint8Array): Promise<void> {
    // Decoded now: a pooled buffer is reused once the publish is settled.
    const decoded = this.codec.decode(payload);
    assert.ok(decoded.ok && decoded.kind === 'batch', 'the publisher sends batches on its log topic');
    const entries = decoded.message.entries;
    return new Promise((resolve, reject) => {
      this.sent.push({ first: entries[0]!.seq, last: entries[entries.length - 1]!.seq, bytes: payload.length, atMs: this.clock.monotonicMs(), payload, puback: resolve, refuse: reject });
      const ready = this.waiters.filter((candidate) => candidate.ready());
      this.waiters = this.waiters.filter((candidate) => !ready.includes(candidate));
      for (const waiter of ready) waiter.resolve();
    });
  }

  /**
   * Resolves once `count` batches were published in all. The publisher reads the log before it publishes
   * (real I/O), so this waits on the event loop; a batch that never comes fails the test after 5 s of real
   * time rather than hanging it.
   */
  async published(count: number): Promise<Sent> {
    await this.until(`batch ${count} published`, () => this.sent.length >= count);
    return this.sent[count - 1]!;
  }

  /** Resolves once a publish makes `ready` true (at once if it is); fails after 5 s of real time. */
  until(what: string, ready: () => boolean): Promise<void> {
    if (ready()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`never happened: ${what} (${this.sent.length} batches were published)`)), 5000);
      this.waiters.push({ ready, resolve: () => (clearTimeout(timer), resolve()) });
    });
  }

  /** PUBACK the batch and let the publisher's reaction run. */
  async ack(sent: Sent): Promise<void> {
    sent.puback();
    await settle();
  }
}

async function setUp(t: TestContext, options: Partial<PublisherOptions> = {}) {
  const dir = await tempDir('publisher-timing');
  const log = createFlashLog({ dir: dir.path, segmentBytes: 4 * 1024 * 1024 });
  await log.open();
  const clock = new FakeClock();
  const codec = new WireCodec();
  const link = new FakeLink(codec, clock);
  const publisher = new Publisher({
    log,
    links: [link],
    codec,
    topics: topics('lastgasp', 'g'),
    group: 'g',
    node: 'gw-a',
    durability: 'broker',
    quorum: 1,
    siblings: ['gw-b'],
    replicaAcks: 1,
    batchEntriesMax: 64,
    batchBytesMax: 1024 * 1024,
    windowMax: 8,
    compress: false,
    logger: silentLogger,
    clock,
    ...options,
  });
  t.after(async () => {
    publisher.stop();
    await log.close();
    await dir.remove();
  });
  return { log, clock, link, publisher };
}

async function appendEntries(log: FlashLog, count: number, bytes = 16): Promise<void> {
  await log.appendMany(Array.from({ length: count }, () => new Uint8Array(bytes)));
}

/** gw-b's ack: it holds `seq` and asks for everything from `want`. */
function want(log: FlashLog, seq: number, from: number) {
  return { group: 'g', node: 'gw-b', epoch: log.epoch, seq, want: from, atMs: 0 };
}

test('a want for a batch sent less than 1 s ago crossed it: not answered at 999 ms, answered at 1000 ms', async (t) => {
  const { log, clock, link, publisher } = await setUp(t);
  await appendEntries(log, 10);
  publisher.start();
  await link.ack(await link.published(1));
  assert.deepEqual([link.sent[0]!.first, link.sent[0]!.last], [1, 10]);

  clock.advance(999);
  publisher.onAck(want(log, 4, 5));
  assert.equal(publisher.stats().wantsInFlight, 1, 'the batch holding seq 5 left 999 ms ago: the request crossed it');
  assert.equal(publisher.stats().rewinds, 0);
  assert.equal(publisher.stats().nextSeq, 11);

  clock.advance(1);
  publisher.onAck(want(log, 4, 5));
  assert.equal(publisher.stats().rewinds, 1, 'at 1000 ms the request is answered');
  const resend = await link.published(2);
  assert.deepEqual([resend.first, resend.last, resend.atMs], [5, 10, link.sent[0]!.atMs + 1000]);
});

test('the same want is answered again only after a back-off of 2 s that doubles per answer up to 32 s', async (t) => {
  const { log, clock, link, publisher } = await setUp(t);
  await appendEntries(log, 10);
  publisher.start();
  await link.ack(await link.published(1));
  clock.advance(1000);

  // Each answer republishes 3..10; the back-off after the n-th answer is 2 s × 2^(n-1), at most 32 s.
  const backoffsMs = [2000, 4000, 8000, 16_000, 32_000, 32_000];
  publisher.onAck(want(log, 2, 3));
  assert.equal(publisher.stats().rewinds, 1, 'the first request is answered at once');
  for (const [index, backoffMs] of backoffsMs.entries()) {
    await link.ack(await link.published(index + 2));
    clock.advance(backoffMs - 1);
    publisher.onAck(want(log, 2, 3));
    assert.equal(publisher.stats().wantsRefused, index + 1, `refused 1 ms before the back-off of ${backoffMs} ms ends`);
    assert.equal(publisher.stats().rewinds, index + 1);
    clock.advance(1);
    publisher.onAck(want(log, 2, 3));
    assert.equal(publisher.stats().rewinds, index + 2, `answered when the back-off of ${backoffMs} ms ends`);
  }
  const last = await link.published(backoffsMs.length + 2);
  assert.deepEqual([last.first, last.last], [3, 10]);
});

test('a sibling that made progress is answered without waiting out the back-off', async (t) => {
  const { log, clock, link, publisher } = await setUp(t);
  await appendEntries(log, 10);
  publisher.start();
  await link.ack(await link.published(1));
  clock.advance(1000);
  publisher.onAck(want(log, 2, 3));
  await link.ack(await link.published(2));
  clock.advance(1000);
  publisher.onAck(want(log, 2, 3));
  assert.equal(publisher.stats().wantsRefused, 1, 'no progress, 1 s into the 2 s back-off: refused');
  publisher.onAck(want(log, 6, 7));
  assert.equal(publisher.stats().rewinds, 2, 'a request from a new position is answered at once');
  const resend = await link.published(3);
  assert.deepEqual([resend.first, resend.last], [7, 10]);
});

test('a refused batch is sent again 2 s later, not before, even when new commits kick the publisher', async (t) => {
  const { log, clock, link, publisher } = await setUp(t);
  await appendEntries(log, 3);
  publisher.start();
  const refusedAt = clock.monotonicMs();
  (await link.published(1)).refuse(new LastgaspError('BROKER_REFUSED', 'quota exceeded (test)'));
  await settle();
  assert.equal(publisher.stats().refused, 1);

  clock.advance(1999);
  await appendEntries(log, 1);
  await settle();
  assert.equal(link.sent.length, 1, 'a commit 1 ms before the pause ends publishes nothing');
  clock.advance(1);
  const again = await link.published(2);
  assert.deepEqual([again.first, again.last, again.atMs], [1, 4, refusedAt + 2000]);
});

test('a batch lost with its connection is sent again at once', async (t) => {
  const { log, clock, link, publisher } = await setUp(t);
  await appendEntries(log, 3);
  publisher.start();
  const lostAt = clock.monotonicMs();
  (await link.published(1)).refuse(new LastgaspError('BROKER_UNAVAILABLE', 'connection lost (test)'));
  const again = await link.published(2);
  assert.deepEqual([again.first, again.last, again.atMs], [1, 3, lostAt]);
  assert.equal(publisher.stats().resent, 1);
});

test('the window holds windowMax batches, or fewer when the broker announces a smaller Receive Maximum', async (t) => {
  const { log, link, publisher } = await setUp(t, { batchEntriesMax: 1, windowMax: 3 });
  await appendEntries(log, 6);
  publisher.start();
  await link.published(3);
  await settle();
  assert.equal(link.sent.length, 3, 'three batches of one entry in flight, no fourth');
  assert.equal(publisher.stats().inflightBatches, 3);
  await link.ack(link.sent[0]!);
  assert.equal((await link.published(4)).first, 4, 'a PUBACK frees one slot');

  link.info = { protocolVersion: 5, sessionPresent: false, receiveMaximum: 2, maximumPacketSize: undefined, server: 'fake' };
  await link.ack(link.sent[1]!);
  await settle();
  assert.equal(publisher.stats().windowMax, 2);
  assert.equal(link.sent.length, 4, 'two still in flight: the broker takes no more');
  await link.ack(link.sent[2]!);
  assert.equal((await link.published(5)).first, 5);
});

test('coalescing: while a batch is in flight, smaller commits wait for its PUBACK and go as one batch; half a batch, the flush, or coalesce false do not wait', async (t) => {
  const { log, link, publisher } = await setUp(t, { batchEntriesMax: 8 });
  await appendEntries(log, 2);
  publisher.start();
  const first = await link.published(1);
  assert.deepEqual([first.first, first.last], [1, 2], 'an idle link sends the first commit at once');
  for (let commit = 0; commit < 3; commit++) await appendEntries(log, 1);
  await settle();
  assert.equal(link.sent.length, 1, 'three commits of one entry wait behind the batch in flight');
  assert.ok((publisher.stats().coalesced as number) > 0);
  await link.ack(first);
  const second = await link.published(2);
  assert.deepEqual([second.first, second.last], [3, 5], 'the PUBACK lets them go, as one batch');
  await appendEntries(log, 4);
  const third = await link.published(3);
  assert.deepEqual([third.first, third.last], [6, 9], 'half of batchEntriesMax goes without waiting');
  publisher.setFlushing(true);
  await appendEntries(log, 1);
  assert.deepEqual([(await link.published(4)).first, link.sent.length], [10, 4], 'the brownout flush never holds a batch');
});

test('coalescing sends without waiting from 256 entries or 64 KiB, or half the batch limits when they are smaller', () => {
  const [batchBytes, entriesMax] = [512 * 1024, 2048];
  assert.equal(fullEnoughToSend(255, 64 * 1024 - 1, batchBytes, entriesMax), false);
  assert.equal(fullEnoughToSend(256, 100, batchBytes, entriesMax), true);
  assert.equal(fullEnoughToSend(10, 64 * 1024, batchBytes, entriesMax), true);
  assert.equal(fullEnoughToSend(50, 100, batchBytes, 100), true, 'half of batchEntriesMax');
  assert.equal(fullEnoughToSend(10, 20 * 1024, 40 * 1024, entriesMax), true, 'half of the batch bytes');
});

test('coalesce false: every commit goes as its own batch while others are in flight', async (t) => {
  const { log, link, publisher } = await setUp(t, { coalesce: false });
  await appendEntries(log, 1);
  publisher.start();
  await link.published(1);
  for (let commit = 0; commit < 3; commit++) {
    await appendEntries(log, 1);
    await link.published(2 + commit);
  }
  assert.deepEqual(link.sent.map((sent) => [sent.first, sent.last]), [[1, 1], [2, 2], [3, 3], [4, 4]]);
  assert.equal(publisher.stats().coalesced, 0);
});

/** Four entries of 20 KiB: one batch of about 80 KiB, above the 64 KiB from which encode buffers are pooled. */
const appendLargeBatch = (log: FlashLog) => appendEntries(log, 4, 20 * 1024);

test('pooled batch buffers are kept 999 ms after catching up and dropped at 1000 ms', async (t) => {
  const { log, clock, link, publisher } = await setUp(t, { batchEntriesMax: 4 });
  await appendLargeBatch(log);
  publisher.start();
  await link.ack(await link.published(1));
  clock.advance(999);
  await appendLargeBatch(log);
  await link.published(2);
  assert.equal(publisher.stats().batchBuffersReused, 1, 'caught up for 999 ms: the buffer was still pooled');
  await link.ack(link.sent[1]!);
  clock.advance(1);
  await appendLargeBatch(log);
  await link.published(3);
  assert.equal(publisher.stats().batchBuffersReused, 1, '1000 ms after the first catch-up the pool was dropped');
});

test('buffers stay pooled while busy when the idle timer fires; the next catch-up starts a new second', async (t) => {
  const { log, clock, link, publisher } = await setUp(t, { batchEntriesMax: 4 });
  // Two large batches at once: two buffers in the pool after their PUBACKs.
  await appendEntries(log, 8, 20 * 1024);
  publisher.start();
  await link.published(2);
  await link.ack(link.sent[0]!);
  await link.ack(link.sent[1]!);
  clock.advance(500);
  await appendLargeBatch(log);
  await link.published(3);
  assert.equal(publisher.stats().batchBuffersReused, 1, 'one pooled buffer taken, one left in the pool');
  clock.advance(500);
  await link.ack(link.sent[2]!);
  clock.advance(999);
  await appendEntries(log, 8, 20 * 1024);
  await link.published(5);
  assert.equal(publisher.stats().batchBuffersReused, 3, 'busy when the timer fired: both buffers kept, and 999 ms after this catch-up still pooled');
  await link.ack(link.sent[3]!);
  await link.ack(link.sent[4]!);
  clock.advance(1);
  await appendLargeBatch(log);
  await link.published(6);
  assert.equal(publisher.stats().batchBuffersReused, 3, '1000 ms after the second catch-up the pool was dropped');
});

test('a buffer whose publish failed is not reused: MQTT.js may still hold it to send again', async (t) => {
  const { log, link, publisher } = await setUp(t, { batchEntriesMax: 4 });
  await appendLargeBatch(log);
  publisher.start();
  await link.ack(await link.published(1));
  await appendLargeBatch(log);
  const lost = await link.published(2);
  assert.equal(publisher.stats().batchBuffersReused, 1, 'the acknowledged batch gave its buffer back');
  const asSent = lost.payload.slice();
  lost.refuse(new LastgaspError('BROKER_UNAVAILABLE', 'connection lost (test)'));
  const again = await link.published(3);
  assert.deepEqual([again.first, again.last], [5, 8]);
  assert.equal(publisher.stats().batchBuffersReused, 1, 'the batch sent again was encoded into a fresh buffer');
  assert.notEqual(again.payload.buffer, lost.payload.buffer);
  assert.deepEqual(lost.payload, asSent, 'what the failed publish carried is untouched');
  await link.ack(again);
  await appendLargeBatch(log);
  await link.published(4);
  assert.equal(publisher.stats().batchBuffersReused, 2, 'an acknowledged buffer is reused again');
});

test('waitReplicated resolves true on the ack before its deadline and false exactly at it', async (t) => {
  const { log, clock, link, publisher } = await setUp(t);
  await appendEntries(log, 1);
  publisher.start();
  const first = await link.published(1);
  const outcomes: boolean[] = [];
  void publisher.waitReplicated(1, 3000).then((ok) => outcomes.push(ok));
  clock.advance(2999);
  await settle();
  assert.deepEqual([...outcomes], [], 'still waiting 1 ms before the deadline');
  await link.ack(first);
  assert.deepEqual(outcomes, [true], 'the PUBACK (durability broker) replicates seq 1');

  await appendEntries(log, 1);
  await link.published(2);
  void publisher.waitReplicated(2, 3000).then((ok) => outcomes.push(ok));
  clock.advance(2999);
  await settle();
  assert.deepEqual(outcomes, [true]);
  clock.advance(1);
  await settle();
  assert.deepEqual(outcomes, [true, false], 'no ack: false at 3000 ms');
});

test('watermarkStalledMs counts the time a tail waits unreplicated, and is 0 once nothing waits', async (t) => {
  const { log, clock, link, publisher } = await setUp(t);
  publisher.start();
  await appendEntries(log, 1);
  const first = await link.published(1);
  clock.advance(4321);
  assert.equal(publisher.watermarkStalledMs(), 4321);
  assert.equal(publisher.stats().watermarkStalledMs, 4321);
  await link.ack(first);
  assert.equal(publisher.watermarkStalledMs(), 0, 'the PUBACK moved the watermark over the whole tail');
  clock.advance(10_000);
  assert.equal(publisher.watermarkStalledMs(), 0, 'no tail, no stall, however long it stays idle');
  // A tail after the idle time counts from its commit, not from the last move of the watermark.
  await appendEntries(log, 1);
  await link.published(2);
  clock.advance(25);
  assert.equal(publisher.watermarkStalledMs(), 25);
});

test('in the flush, batches carry 50 ms and the window 300 ms at the link rate the clock measured; handoffLeadMs drains them', async (t) => {
  const { log, clock, link, publisher } = await setUp(t);
  // Measure the link: one batch alone, PUBACKed 100 ms later (the rate); one more, 20 ms later (the round trip).
  await appendEntries(log, 40, 1000);
  publisher.start();
  const alone = await link.published(1);
  clock.advance(100);
  await link.ack(alone);
  const firstRate = (alone.bytes * 1000) / 100;
  assert.equal(publisher.drainBytesPerS(), firstRate);
  await appendEntries(log, 1, 1000);
  const small = await link.published(2);
  clock.advance(20);
  await link.ack(small);
  const rate = ((alone.bytes + small.bytes) * 1000) / 120;
  assert.equal(publisher.drainBytesPerS(), rate);
  const roundTripMs = 20 - (small.bytes * 1000) / firstRate;
  assert.equal(publisher.stats().roundTripMs, Math.round(roundTripMs));

  publisher.setFlushing(true);
  // The flush takes the higher of that rate and the batches' delivery rates (each batch's bytes over its
  // latency here, as each went out alone): the first batch's.
  const linkRate = Math.max(rate, firstRate, (small.bytes * 1000) / 20);
  assert.equal(linkRate, firstRate);
  assert.equal(publisher.stats().linkBytesPerS, Math.round(linkRate));
  const batchBytes = Math.round((linkRate * 50) / 1000);
  const inflightBytesMax = Math.max(2 * batchBytes, (linkRate * 300) / 1000);
  const flushBatches = () => link.sent.slice(2);
  const inflight = () => flushBatches().reduce((bytes, sent) => bytes + sent.bytes, 0);
  await appendEntries(log, 200, 1000);
  await link.until('the window full at 300 ms of the rate', () => inflight() + batchBytes > inflightBytesMax);
  await settle();
  assert.ok(flushBatches().length >= 3, `${flushBatches().length} batches in flight`);
  // Sized to 50 ms at the rate (less the room kept for a full batch's per-entry overhead), not to batchBytesMax.
  for (const sent of flushBatches()) assert.ok(sent.bytes <= batchBytes && sent.bytes > batchBytes / 2, `a batch of ${sent.bytes} bytes for 50 ms (${batchBytes} bytes)`);
  assert.ok(inflight() <= inflightBytesMax, `${inflight()} bytes in flight, at most ${inflightBytesMax}`);
  assert.equal(publisher.handoffLeadMs(), (inflight() * 1000) / linkRate + roundTripMs / 2);
  const count = link.sent.length;
  await link.ack(flushBatches()[0]!);
  await link.published(count + 1);
});
