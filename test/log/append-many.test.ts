// appendMany: many entries as one call of the log. Consecutive seqs and one acknowledgement for all of them;
// refused whole (nothing staged) by a too-large entry, by the fence, the quota and the hard limit; the
// records of one batch in one write, never across a segment boundary; a batch in flight when the fence goes
// up is settled whole.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createFlashLog, SimStorage, type FlashLog } from '../../agent/log/index.ts';
import { isLastgaspError, type LastgaspError } from '../../agent/util/index.ts';
import { tempDir } from '../support/ports.ts';

const SEGMENT = 64 * 1024;

function entries(count: number, size: number, tag: number): Uint8Array[] {
  return Array.from({ length: count }, (_, i) => new Uint8Array(size).fill((tag * 31 + i) & 0xff));
}

async function withLog(run: (log: FlashLog, storage: SimStorage) => Promise<void>, extra: Record<string, unknown> = {}): Promise<void> {
  const storage = new SimStorage();
  const log = createFlashLog({ dir: 'sim/append-many', segmentBytes: SEGMENT, storage, ...extra });
  await log.open();
  try {
    await run(log, storage);
  } finally {
    await log.close();
  }
}

async function payloads(log: FlashLog, from: number): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  for await (const entry of log.entries(from)) out.push(entry.payload);
  return out;
}

test('a batch takes consecutive seqs, resolves once with the last, and costs one write and one fdatasync', async () => {
  await withLog(async (log, storage) => {
    assert.equal((await log.append(Uint8Array.of(1))).seq, 1);
    const batch = entries(50, 40, 1);
    const writes = storage.stats.writes;
    const syncs = storage.stats.syncs;
    const result = await log.appendMany(batch);
    assert.deepEqual(result, { seq: 51, epoch: 1 });
    assert.equal(storage.stats.writes - writes, 1, 'one write');
    assert.equal(storage.stats.syncs - syncs, 1, 'one fdatasync');
    assert.deepEqual(await payloads(log, 2), batch);
    const counters = log.status().counters;
    assert.equal(counters.appends, 51);
    assert.equal(counters.batchAppends, 1);
    assert.equal((await log.append(Uint8Array.of(2))).seq, 52, 'single appends continue after the batch');
  });
});

test('concurrent batches and single appends interleave whole: each batch holds a run of seqs with its own entries', async () => {
  await withLog(async (log) => {
    const batches = Array.from({ length: 12 }, (_, tag) => entries(1 + ((tag * 7) % 20), 24, tag));
    const singles = Array.from({ length: 12 }, (_, i) => Uint8Array.of(200, i));
    const results = await Promise.all([...batches.map((batch) => log.appendMany(batch)), ...singles.map((single) => log.append(single))]);
    const stored = await payloads(log, 1);
    const total = batches.reduce((sum, batch) => sum + batch.length, 0) + singles.length;
    assert.equal(stored.length, total);
    batches.forEach((batch, i) => {
      const first = results[i]!.seq - batch.length + 1;
      assert.deepEqual(stored.slice(first - 1, results[i]!.seq), batch, `batch ${i} is stored whole at ${first}..${results[i]!.seq}`);
    });
    singles.forEach((single, i) => assert.deepEqual(stored[results[batches.length + i]!.seq - 1], single));
  });
});

test('a batch with one entry too large, an empty batch and a batch over one write are refused whole', async () => {
  await withLog(async (log) => {
    await log.append(Uint8Array.of(1));
    const tooLarge = [...entries(3, 10, 1), new Uint8Array(70_000), ...entries(3, 10, 2)];
    const refused = await log.appendMany(tooLarge).catch((error: unknown) => error);
    assert.ok(isLastgaspError(refused, 'ENTRY_TOO_LARGE'), String(refused));
    assert.equal((refused.detail as { index: number }).index, 3, 'the error names the entry');
    const empty = await log.appendMany([]).catch((error: unknown) => error);
    assert.ok(isLastgaspError(empty, 'BAD_REQUEST'), String(empty));
    // 64 KiB segments: 20 entries of 4 KiB cannot go out in one write into one segment.
    const overOneWrite = await log.appendMany(entries(20, 4096, 3)).catch((error: unknown) => error);
    assert.ok(isLastgaspError(overOneWrite, 'ENTRY_TOO_LARGE'), String(overOneWrite));
    assert.equal(log.watermarks().committed, 1, 'nothing of the refused batches was stored');
    assert.equal((await log.append(Uint8Array.of(2))).seq, 2, 'no seq was used up');
  }, { entryBytesMax: 8192 });
});

test('the hard unreplicated limit refuses a batch whole, and a batch that fits is admitted', async () => {
  await withLog(async (log) => {
    // Records of 100-byte payloads take 128 bytes: a batch of 10 is 1280 bytes, over the 1024 limit. It could
    // not go even into a log with nothing unreplicated: too large (split it), not full (try again later).
    const refused = await log.appendMany(entries(10, 100, 1)).catch((error: unknown) => error);
    assert.ok(isLastgaspError(refused, 'ENTRY_TOO_LARGE'), String(refused));
    assert.deepEqual((refused as LastgaspError).detail, { bytes: 1280, max: 1024, field: 'log.unreplicatedHardBytes' }, 'the limit named, for a writer that splits');
    const single = await log.append(new Uint8Array(1200)).catch((error: unknown) => error);
    assert.ok(isLastgaspError(single, 'ENTRY_TOO_LARGE'), `one entry over the limit too: ${String(single)}`);
    assert.equal(log.watermarks().committed, 0);
    assert.equal(log.appendRoom(), 1024, 'the room says so beforehand: all of the limit, and not the 1280 bytes');
    assert.equal((await log.appendMany(entries(8, 100, 2))).seq, 8);
    assert.equal(log.appendRoom(), 0, 'eight records of 128 bytes take the limit');
    const second = await log.appendMany(entries(1, 100, 3)).catch((error: unknown) => error);
    assert.ok(isLastgaspError(second, 'LOG_FULL'), 'the limit counts what is committed and not replicated');
    log.markReplicated(8);
    assert.equal(log.appendRoom(), 1024);
    assert.equal((await log.appendMany(entries(1, 100, 3))).seq, 9, 'admitted again once replicated');
  }, { unreplicatedHardBytes: 1024, fullPolicy: 'reject' });
});

test('a standby stores a copy whatever its own unreplicated limits: a primary\'s batch larger than them is not refused', async () => {
  await withLog(async (log) => {
    // The primary's batches (about 5 KiB of records each) against this node's hard limit of 1024 bytes,
    // which bounds this node's own tail: refused, they would be refused at every resend, for ever.
    for (let round = 0; round < 3; round++) {
      const first = log.watermarks().committed + 1;
      await log.appendReplicated(entries(40, 100, round).map((payload, i) => ({ seq: first + i, epoch: 1, timestampMs: 1, payload })));
    }
    assert.equal(log.watermarks().committed, 120);
    const own = await log.append(Uint8Array.of(1)).catch((error: unknown) => error);
    assert.ok(isLastgaspError(own, 'LOG_FULL'), `its own writes still meet the limit: ${String(own)}`);
  }, { unreplicatedHardBytes: 1024, fullPolicy: 'reject' });
});

test('batches never straddle a segment: a batch that does not fit in what is left goes whole to the next', async () => {
  await withLog(async (log) => {
    const ends = new Set<number>([0]);
    for (let tag = 0; tag < 40; tag++) {
      const batch = entries(3 + (tag % 5), 1000 + tag * 37, tag);
      ends.add((await log.appendMany(batch)).seq);
    }
    const segments = log.status().segments;
    assert.ok(segments.length >= 4, `the batches rolled several segments (${segments.length})`);
    for (const segment of segments) assert.ok(ends.has(segment.firstSeq - 1), `segment ${segment.id} starts at seq ${segment.firstSeq}, the first of a batch`);
  });
});

test('a fence refuses new batches with its code; a batch staged before it is acknowledged whole', async () => {
  await withLog(async (log) => {
    const staged = log.appendMany(entries(5, 10, 1));
    const fenceSeq = await log.fence('HANDING_OFF', 'power is failing: write to the sibling');
    assert.deepEqual(await staged, { seq: 5, epoch: 1 });
    assert.equal(fenceSeq, 5);
    const refused = await log.appendMany(entries(2, 10, 2)).catch((error: unknown) => error);
    assert.ok(isLastgaspError(refused, 'HANDING_OFF'), String(refused));
    log.unfence();
    assert.equal((await log.appendMany(entries(2, 10, 3))).seq, 7);
  });
});

test('on the real file system a batch survives a reopen whole', async () => {
  const dir = await tempDir('append-many');
  const batch = entries(100, 64, 9);
  try {
    const log = createFlashLog({ dir: dir.path, segmentBytes: SEGMENT });
    await log.open();
    await log.appendMany(batch);
    await log.close();
    const again = createFlashLog({ dir: dir.path, segmentBytes: SEGMENT });
    const report = await again.open();
    assert.equal(report.committed, 100);
    assert.deepEqual(await payloads(again, 1), batch);
    await again.close();
  } finally {
    await dir.remove();
  }
});
