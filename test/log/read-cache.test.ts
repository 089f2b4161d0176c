// The replication read's shortcuts (agent/log/read-cache.ts): the last commits' records served from memory,
// and segment files kept open between reads. Neither may serve what the disk no longer holds: a cut, or a
// segment that retention recycles while a read is mid-way.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, openSync, readFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { createFlashLog, createNodeStorage, type FlashLog, type Storage } from '../../agent/log/index.ts';
import { encodeRecordHeader, RECORD_HEADER_BYTES, RECORD_TYPE_ENTRY, recordBytes } from '../../agent/log/format.ts';
import { TailCache } from '../../agent/log/read-cache.ts';
import { isLastgaspError } from '../../agent/util/index.ts';
import { tempDir } from '../support/ports.ts';

const SEGMENT = 16 * 1024;
const ALL = { entriesMax: 100_000, bytesMax: Number.MAX_SAFE_INTEGER };
/** A read as the publisher makes it: lending a buffer, which from then on has the log keep its last commits. */
const LENT = { ...ALL, payloadBuffer: new Uint8Array(64) };

/** Entry `seq` of generation `generation`: its own bytes, so that a mix-up shows. */
function payloadOf(seq: number, generation = 0, bytes = 300): Uint8Array {
  const payload = new Uint8Array(bytes);
  for (let i = 0; i < bytes; i++) payload[i] = (seq * 7 + Math.floor(seq / 256) * 31 + generation * 101 + i) & 0xff;
  return payload;
}

function assertEntries(entries: ReadonlyArray<{ seq: number; payload: Uint8Array }>, from: number, count: number, generation = 0, bytes = 300): void {
  assert.equal(entries.length, count);
  entries.forEach((entry, index) => {
    assert.equal(entry.seq, from + index);
    assert.deepEqual(entry.payload, payloadOf(entry.seq, generation, bytes), `payload of seq ${entry.seq}`);
  });
}

/** Flip one byte of `needle` where it sits in the log directory's segment files (it must sit in exactly one). */
function flipOnDisk(log: FlashLog, needle: Uint8Array): void {
  const hits = log.status().segments.flatMap((segment) => {
    const at = Buffer.from(readFileSync(segment.file)).indexOf(Buffer.from(needle));
    return at < 0 ? [] : [{ file: segment.file, at }];
  });
  assert.equal(hits.length, 1, 'the payload is on disk once');
  const fd = openSync(hits[0]!.file, 'r+');
  try {
    writeSync(fd, new Uint8Array([needle[10]! ^ 0xff]), 0, 1, hits[0]!.at + 10);
  } finally {
    closeSync(fd);
  }
}

async function withLog(name: string, run: (log: FlashLog) => Promise<void>, storage?: Storage): Promise<void> {
  const dir = await tempDir(name);
  const log = createFlashLog({ dir: dir.path, segmentBytes: SEGMENT, storage });
  await log.open();
  try {
    await run(log);
  } finally {
    await log.close();
    await dir.remove();
  }
}

test("a reader that holds the tail (a standby's SQLite replica) is served from memory past the replicated mark, from the lowest hold", async () => {
  await withLog('read-cache-hold', async (log) => {
    // Nobody reads as the log grows: no copy is kept, and the disk serves (a flip there is found).
    for (let seq = 1; seq <= 3; seq++) await log.append(payloadOf(seq));
    flipOnDisk(log, payloadOf(2));
    await assert.rejects(log.read(2, ALL), (error) => isLastgaspError(error, 'LOG_CORRUPT'));
    // Two readers hold from 5 and 7; everything is replicated at once, as on a standby.
    log.holdTail('a', 5);
    log.holdTail('b', 7);
    for (let seq = 4; seq <= 10; seq++) {
      log.markReplicated(seq - 1);
      await log.append(payloadOf(seq));
    }
    flipOnDisk(log, payloadOf(6));
    assertEntries(await log.read(5, ALL), 5, 6);
    // The lower reader moves past 6: seq 6 leaves the memory copy at the next commit and comes from the disk.
    log.holdTail('a', 8);
    log.markReplicated(10);
    await log.append(payloadOf(11));
    await assert.rejects(log.read(6, ALL), (error) => isLastgaspError(error, 'LOG_CORRUPT'));
    assertEntries(await log.read(7, ALL), 7, 5);
    // Both let go: what is replicated is dropped.
    log.holdTail('a', undefined);
    log.holdTail('b', undefined);
    flipOnDisk(log, payloadOf(9));
    log.markReplicated(11);
    await log.append(payloadOf(12));
    await assert.rejects(log.read(9, ALL), (error) => isLastgaspError(error, 'LOG_CORRUPT'));
  });
});

test('what the last commits wrote is read from memory; once it is out of memory the disk copy is CRC-checked', async () => {
  await withLog('read-cache-flip', async (log) => {
    await log.append(payloadOf(1));
    assertEntries(await log.read(1, LENT), 1, 1);
    for (let seq = 2; seq <= 10; seq++) await log.append(payloadOf(seq));
    // A bit flipped on the disk under seq 5: the entry this process just wrote and holds is not read back.
    flipOnDisk(log, payloadOf(5));
    const read = await log.read(2, ALL);
    assertEntries(read, 2, 9);
    // A reader that lends no buffer gets payloads of its own: changing one changes nothing held for others.
    read[1]!.payload.fill(0);
    assertEntries(await log.read(2, ALL), 2, 9);
    assertEntries(await log.read(2, LENT), 2, 9);
    // Replicated entries leave the memory copy with the next commit; then the read goes to the file and
    // its CRC check finds the flip.
    log.markReplicated(7);
    await log.append(payloadOf(11));
    await assert.rejects(log.read(5, ALL), (error) => isLastgaspError(error, 'LOG_CORRUPT'));
    assertEntries(await log.read(8, ALL), 8, 4);
  });
});

test('reads that lend no buffer (a standby, the API) have the log keep no copy: every entry comes from the disk', async () => {
  await withLog('read-cache-unarmed', async (log) => {
    await log.append(payloadOf(1));
    assertEntries(await log.read(1, ALL), 1, 1);
    for (let seq = 2; seq <= 10; seq++) await log.append(payloadOf(seq));
    flipOnDisk(log, payloadOf(5));
    await assert.rejects(log.read(2, ALL), (error) => isLastgaspError(error, 'LOG_CORRUPT'));
  });
});

test('the memory copy is bounded: a reader far behind reads the older entries from the disk', async () => {
  const entryBytes = 12_000;
  await withLog('read-cache-bound', async (log) => {
    await log.append(payloadOf(1, 0, entryBytes));
    await log.read(1, LENT);
    for (let seq = 2; seq <= 4; seq++) await log.append(payloadOf(seq, 0, entryBytes));
    // A publisher's read, from memory into its lent buffer.
    const lent = await log.read(2, { entriesMax: 3, bytesMax: 3 * entryBytes, payloadBuffer: new Uint8Array(3 * entryBytes) });
    // About 4.6 MB unreplicated, more than the memory copy holds (4 MiB): its ring goes round past seq 2..4.
    for (let seq = 5; seq <= 380; seq++) await log.append(payloadOf(seq, 0, entryBytes));
    assertEntries(lent, 2, 3, 0, entryBytes);
    flipOnDisk(log, payloadOf(3, 0, entryBytes));
    await assert.rejects(log.read(3, { entriesMax: 1, bytesMax: entryBytes }), (error) => isLastgaspError(error, 'LOG_CORRUPT'));
    // The newest entries are still read right (from memory or from the disk).
    assertEntries(await log.read(350, ALL), 350, 31, 0, entryBytes);
  });
});

/** Sealed-less records of `count` entries from `firstSeq` (the cache checks no CRC), `offset` bytes into a buffer. */
function encodedRecords(firstSeq: number, sizes: readonly number[], offset: number): { records: Uint8Array; start: number; end: number } {
  const records = new Uint8Array(offset + sizes.reduce((sum, size) => sum + recordBytes(size), 0) + 16);
  const view = new DataView(records.buffer);
  let at = offset;
  sizes.forEach((size, index) => {
    encodeRecordHeader(view, at, RECORD_TYPE_ENTRY, size, firstSeq + index, 1, 1_000 + firstSeq + index);
    records.set(payloadOf(firstSeq + index, 0, size), at + RECORD_HEADER_BYTES);
    at += recordBytes(size);
  });
  return { records, start: offset, end: at };
}

test("the tail cache's ring: commits of every size go round it in order, each in the oldest ones' place, none torn; it grows only for a reader behind", () => {
  const ringBytes = 4096;
  const cache = new TailCache(ringBytes, 1024);
  cache.arm();
  let next = 1;
  const sizes = new Map<number, number>();
  let wrapped = 0;
  let overBound = 0;
  for (let commit = 0; commit < 500; commit++) {
    // For the first 100 commits the reader keeps up (all before this commit replicated): the ring stays small.
    const keepingUp = commit < 100;
    // 1 to 4 entries of 1 to 150 (then 300) bytes, commits that fit the ring's end and that skip it; one of 12 × 400 B, over the bound.
    const count = commit === 300 ? 12 : 1 + (commit % 4);
    const batch = Array.from({ length: count }, (_, index) => (commit === 300 ? 400 : 1 + ((commit * 97 + index * 331) % (keepingUp ? 150 : 300))));
    const { records, start, end } = encodedRecords(next, batch, commit % 24);
    batch.forEach((size, index) => sizes.set(next + index, size));
    const held = cache.bytesHeld;
    cache.remember(records, start, end, next, next + count - 1, keepingUp ? next - 1 : 0);
    next += count;
    if (keepingUp) assert.equal(cache.ringBytes, 1024, 'a reader that keeps up needs no larger ring');
    if (end - start > ringBytes) {
      assert.equal(cache.firstSeq(), undefined, 'a commit larger than the bound is not kept');
      overBound++;
      continue;
    }
    if (!keepingUp && cache.bytesHeld < held + end - start) wrapped++;
    assert.ok(cache.bytesHeld <= ringBytes, `${cache.bytesHeld} bytes held`);
    const first = cache.firstSeq()!;
    assert.ok(first <= next - count, 'the newest commit is held whole');
    // Every entry held reads back as written, in order, to the newest.
    let expected = first;
    assert.equal(
      cache.visitFrom(first, (record) => {
        assert.equal(record.seq, expected);
        assert.equal(record.timestampMs, 1_000 + expected);
        assert.deepEqual(record.bytes.subarray(record.at, record.at + record.payloadBytes), payloadOf(expected, 0, sizes.get(expected)!), `seq ${expected}`);
        expected++;
        return true;
      }),
      true,
    );
    assert.equal(expected, next);
    if (first > 1) assert.equal(cache.visitFrom(first - 1, () => true), false, 'a seq dropped is not served');
  }
  assert.equal(overBound, 1, 'the commit over the bound came');
  assert.equal(cache.ringBytes, ringBytes, 'a reader behind had the ring grow to the bound');
  assert.ok(wrapped > 100, `the ring went round (${wrapped} commits took older ones' room)`);
});

test('after a cut, the seqs written again are read with their new contents, never the old ones', async () => {
  await withLog('read-cache-cut', async (log) => {
    await log.append(payloadOf(1));
    await log.read(1, LENT);
    for (let seq = 2; seq <= 40; seq++) await log.append(payloadOf(seq));
    assertEntries(await log.read(1, ALL), 1, 40);
    const cut = await log.quarantineAfter(25);
    assert.equal(cut.records, 15);
    // Before anything is written again, the reads end at the cut.
    assertEntries(await log.read(20, ALL), 20, 6);
    for (let seq = 26; seq <= 40; seq++) await log.append(payloadOf(seq, 1));
    assertEntries(await log.read(26, ALL), 26, 15, 1);
    assertEntries(await log.read(1, { entriesMax: 25, bytesMax: Number.MAX_SAFE_INTEGER }), 1, 25);
  });
});

/**
 * The real storage, counting the segment files open for reading, and able to hold the first read of one
 * path at a gate (the interleaving a real disk gives only by chance).
 */
function countingStorage(...gatePaths: string[]) {
  const real = createNodeStorage();
  const openForRead = new Map<string, number>();
  let opensForRead = 0;
  let hits = 0;
  let gateHit!: () => void;
  const hit = new Promise<void>((resolve) => (gateHit = resolve));
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  const gated = new Set<string>();
  const storage: Storage = {
    ...real,
    mkdirp: (path) => real.mkdirp(path),
    list: (path) => real.list(path),
    rename: (from, to) => real.rename(from, to),
    link: (from, to) => real.link(from, to),
    unlink: (path) => real.unlink(path),
    syncDir: (path) => real.syncDir(path),
    async open(path, mode) {
      const file = await real.open(path, mode);
      if (mode !== 'read') return file;
      opensForRead++;
      openForRead.set(path, (openForRead.get(path) ?? 0) + 1);
      const holds = !gated.has(path) && gatePaths.includes(path);
      if (holds) gated.add(path);
      let first = true;
      return {
        path: file.path,
        read: async (buffer, offset, length, position) => {
          if (holds && first) {
            first = false;
            if (++hits === gatePaths.length) gateHit();
            await gate;
          }
          return file.read(buffer, offset, length, position);
        },
        write: (...args) => file.write(...args),
        writeSync: (...args) => file.writeSync(...args),
        datasync: () => file.datasync(),
        sync: () => file.sync(),
        size: () => file.size(),
        truncate: (bytes) => file.truncate(bytes),
        close: async () => {
          openForRead.set(path, openForRead.get(path)! - 1);
          await file.close();
        },
      };
    },
  };
  const stillOpen = () => [...openForRead].filter(([, count]) => count > 0).map(([path]) => path);
  return { storage, hit, release, opens: () => opensForRead, stillOpen };
}

test('reads keep their segment file open; retention releasing a segment mid-read closes it and never serves the recycled file', async () => {
  const dir = await tempDir('read-cache-handles');
  const counting = countingStorage(join(dir.path, 'seg-0000000001.log'));
  const log = createFlashLog({ dir: dir.path, segmentBytes: SEGMENT, storage: counting.storage });
  await log.open();
  try {
    // Written before any read, so that the reads below go to the files.
    for (let seq = 1; seq <= 200; seq++) await log.append(payloadOf(seq));
    const segments = log.status().segments;
    assert.ok(segments.length >= 4, `${segments.length} segments`);
    const second = segments[1]!;
    const opensBefore = counting.opens();
    for (let round = 0; round < 10; round++) assertEntries(await log.read(second.firstSeq, { entriesMax: 5, bytesMax: Number.MAX_SAFE_INTEGER }), second.firstSeq, 5);
    assert.equal(counting.opens() - opensBefore, 1, 'ten reads of one segment open its file once');
    const reading = log.read(1, ALL).then(
      (entries) => entries,
      (error: unknown) => error,
    );
    await counting.hit;
    // While the read waits inside segment 1: replicate everything, let retention release and recycle the
    // old segments, and write enough to fill the recycled files with new records.
    log.markReplicated(200);
    await log.syncWatermarks();
    await log.append(payloadOf(201));
    await log.whenSettled();
    assert.ok(log.firstSeq > 1, 'retention released the first segments');
    for (let seq = 202; seq <= 400; seq++) await log.append(payloadOf(seq, 1));
    counting.release();
    const outcome = await reading;
    // The old entries as they were, or LOG_SEQ: never the new records the recycled file now holds.
    if (Array.isArray(outcome)) assertEntries(outcome.slice(0, 200), 1, 200);
    else assert.ok(isLastgaspError(outcome, 'LOG_SEQ'), `expected LOG_SEQ, got ${String(outcome)}`);
    await assert.rejects(log.read(1, ALL), (error) => isLastgaspError(error, 'LOG_SEQ'));
    assertEntries(await log.read(202, { entriesMax: 199, bytesMax: Number.MAX_SAFE_INTEGER }), 202, 199, 1);
    // Files stay open only for segments still in the log, at most two of them.
    const live = new Set(log.status().segments.map((segment) => segment.file));
    const open = counting.stillOpen();
    assert.ok(open.length <= 2, `${open.length} files open for reading`);
    for (const path of open) assert.ok(live.has(path), `${path} is open for reading but no longer a segment of the log`);
    assert.equal(log.status().counters.readCorruptions, 0);
  } finally {
    counting.release();
    await log.close();
    await dir.remove();
  }
  assert.deepEqual(counting.stillOpen(), [], 'closing the log closes the files kept for reads');
});

test('reads of three segments at once each get a working file, and only two stay open', async () => {
  const dir = await tempDir('read-cache-three');
  const counting = countingStorage(join(dir.path, 'seg-0000000001.log'), join(dir.path, 'seg-0000000002.log'));
  const log = createFlashLog({ dir: dir.path, segmentBytes: SEGMENT, storage: counting.storage });
  await log.open();
  try {
    for (let seq = 1; seq <= 200; seq++) await log.append(payloadOf(seq));
    const [first, second, third] = log.status().segments;
    const one = { entriesMax: 3, bytesMax: Number.MAX_SAFE_INTEGER };
    // Two reads held inside the first two segments: both handles are busy when the third segment is opened.
    const held = [log.read(first!.firstSeq, one), log.read(second!.firstSeq, one)];
    await counting.hit;
    assertEntries(await log.read(third!.firstSeq, one), third!.firstSeq, 3);
    counting.release();
    assertEntries(await held[0]!, first!.firstSeq, 3);
    assertEntries(await held[1]!, second!.firstSeq, 3);
    assert.ok(counting.stillOpen().length <= 2, `${counting.stillOpen().length} files open for reading`);
  } finally {
    counting.release();
    await log.close();
    await dir.remove();
  }
});

test('a read across two segments stays right while retention releases older segments under it', async () => {
  const dir = await tempDir('read-cache-shift');
  const counting = countingStorage(join(dir.path, 'seg-0000000003.log'));
  const log = createFlashLog({ dir: dir.path, segmentBytes: SEGMENT, storage: counting.storage });
  await log.open();
  try {
    for (let seq = 1; seq <= 250; seq++) await log.append(payloadOf(seq));
    const segments = log.status().segments;
    assert.ok(segments.length >= 5, `${segments.length} segments`);
    assert.equal(segments[2]!.file, join(dir.path, 'seg-0000000003.log'));
    const third = segments[2]!;
    const span = segments[3]!.lastSeq - third.firstSeq + 1;
    // Held inside the third segment, a read that goes on into the fourth.
    const reading = log.read(third.firstSeq, { entriesMax: span, bytesMax: Number.MAX_SAFE_INTEGER });
    await counting.hit;
    // Meanwhile the first two segments are replicated and released: the log's list of segments shifts.
    log.markReplicated(segments[1]!.lastSeq);
    await log.syncWatermarks();
    await log.append(payloadOf(251));
    await log.whenSettled();
    assert.equal(log.status().segments[0]!.file, third.file, 'retention released the first two segments');
    counting.release();
    assertEntries(await reading, third.firstSeq, span);
    assert.equal(log.status().counters.readCorruptions, 0);
  } finally {
    counting.release();
    await log.close();
    await dir.remove();
  }
});
