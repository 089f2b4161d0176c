// The flash log's contract on the real file system: seq numbering, group commit, reads, watermarks, epochs,
// the replica path, reopening, a torn tail and segment rolls.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { openSync, writeSync, closeSync, readdirSync, statSync } from 'node:fs';
import { createFlashLog, inspectLog, type FlashLog } from '../../agent/log/index.ts';
import { crc32c, crc32cUpdate, CRC32C_CHECK_VALUE } from '../../agent/util/index.ts';
import { isLastgaspError } from '../../agent/util/index.ts';
import { tempDir } from '../support/ports.ts';
import { killAll, startProcess } from '../support/processes.ts';

const SMALL_SEGMENT = 64 * 1024;
const WRITER = new URL('./support/writer.ts', import.meta.url).pathname;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

async function withLog<T>(run: (log: FlashLog, dir: string) => Promise<T>, options: { segmentBytes?: number } = {}): Promise<T> {
  const dir = await tempDir('log');
  const log = createFlashLog({ dir: dir.path, segmentBytes: options.segmentBytes ?? SMALL_SEGMENT });
  await log.open();
  try {
    return await run(log, dir.path);
  } finally {
    await log.close();
    await dir.remove();
  }
}

async function readAll(log: FlashLog, from = log.firstSeq): Promise<string[]> {
  const out: string[] = [];
  for await (const entry of log.entries(from)) out.push(decoder.decode(entry.payload));
  return out;
}

test('CRC-32C gives the catalogue check value and chains', () => {
  const bytes = encoder.encode('123456789');
  assert.equal(crc32c(bytes), CRC32C_CHECK_VALUE);
  assert.equal(crc32c(bytes), 0xe3069283);
  assert.equal(crc32c(encoder.encode('The quick brown fox jumps over the lazy dog')), 0x22620404);
  assert.equal(crc32c(new Uint8Array(0)), 0);
});

/** Bit-at-a-time CRC-32C straight from the definition (RFC 3720 B.4), the reference for the table-driven one. */
function crc32cBitwise(crc: number, bytes: Uint8Array, start: number, end: number): number {
  let c = ~crc >>> 0;
  for (let i = start; i < end; i++) {
    c ^= bytes[i]!;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
  }
  return ~c >>> 0;
}

test('CRC-32C matches the bitwise definition at every alignment, length and seed', () => {
  const memory = new Uint8Array(4200);
  for (let i = 0; i < memory.length; i++) memory[i] = (i * 7919 + 13) & 0xff;
  let checked = 0;
  // Views that start off a 4-byte boundary and ranges of every length class: below one 16-byte step, around
  // it, a record, and many steps with a tail.
  for (let viewOffset = 0; viewOffset < 8; viewOffset++) {
    const view = memory.subarray(viewOffset);
    for (let start = 0; start < 20; start++) {
      for (const length of [0, 1, 3, 4, 15, 16, 17, 31, 33, 64, 100, 276, 1000, 4000]) {
        if (start + length > view.length) continue;
        assert.equal(crc32cUpdate(0x1234_5678, view, start, start + length), crc32cBitwise(0x1234_5678, view, start, start + length), `view +${viewOffset}, [${start}, ${start + length})`);
        checked++;
      }
    }
  }
  // Switching between buffers (the word view is cached per buffer) changes nothing.
  const other = Uint8Array.from(memory.subarray(0, 300)).reverse();
  assert.equal(crc32cUpdate(7, other, 4, 280), crc32cBitwise(7, other, 4, 280));
  assert.equal(crc32cUpdate(7, memory, 4, 280), crc32cBitwise(7, memory, 4, 280));
  assert.ok(checked > 1000);
});

test('seqs start at 1 and are gap-free; append resolves after the commit it belongs to', async () => {
  await withLog(async (log) => {
    const commits: number[] = [];
    const stop = log.onCommit((committed) => commits.push(committed));
    const first = await log.append(encoder.encode('a'));
    assert.deepEqual(first, { seq: 1, epoch: 1 });
    assert.equal(log.watermarks().committed, 1);
    const results = await Promise.all(Array.from({ length: 300 }, (_, i) => log.append(encoder.encode(`e${i}`))));
    assert.deepEqual(results.map((r) => r.seq), Array.from({ length: 300 }, (_, i) => i + 2));
    for (const result of results) assert.ok(commits.some((c) => c >= result.seq), `seq ${result.seq} resolved before a commit covered it`);
    stop();
    const status = log.status();
    assert.ok(status.counters.syncs! < 301, `300 concurrent appends were group-committed (${status.counters.syncs} syncs)`);
    assert.equal(status.watermarks.committed, 301);
  });
});

test('read and entries return exactly what was appended, from any seq, within the limits', async () => {
  await withLog(async (log) => {
    for (let i = 1; i <= 2000; i++) await Promise.resolve(i % 100 === 0 ? log.append(encoder.encode(`x${i}`.padEnd(60))) : void log.append(encoder.encode(`x${i}`.padEnd(60))));
    await log.syncWatermarks();
    assert.equal(log.watermarks().committed, 2000);
    const page = await log.read(1500, { entriesMax: 10, bytesMax: 1 << 20 });
    assert.deepEqual(page.map((e) => e.seq), Array.from({ length: 10 }, (_, i) => 1500 + i));
    assert.equal(decoder.decode(page[0]!.payload).trim(), 'x1500');
    const tiny = await log.read(7, { entriesMax: 100, bytesMax: 1 });
    assert.equal(tiny.length, 1, 'at least one entry even when it exceeds bytesMax');
    assert.deepEqual(await log.read(2001, { entriesMax: 5, bytesMax: 100 }), []);
    const all = await readAll(log);
    assert.equal(all.length, 2000);
    assert.equal(all[1999]!.trim(), 'x2000');
    assert.ok(log.status().segments.length > 1, 'the small segments rolled');
  });
});

test('reopening keeps every entry, the epoch and the durable watermarks', async () => {
  const dir = await tempDir('reopen');
  try {
    const log = createFlashLog({ dir: dir.path, segmentBytes: SMALL_SEGMENT });
    await log.open();
    await Promise.all(Array.from({ length: 500 }, (_, i) => log.append(encoder.encode(`r${i}`))));
    log.markReplicated(400);
    log.markReplicaAcked(300);
    log.markReplicated(350);
    assert.equal(log.watermarks().replicated, 400, 'watermarks never go backwards');
    log.markReplicated(10_000);
    assert.equal(log.watermarks().replicated, 500, 'clamped to committed');
    await log.syncWatermarks();
    await log.beginEpoch(7);
    await assert.rejects(log.beginEpoch(7), (error) => isLastgaspError(error, 'LOG_SEQ'));
    const after = await log.append(encoder.encode('after'));
    assert.deepEqual(after, { seq: 501, epoch: 7 });
    await log.close();
    await assert.rejects(log.append(encoder.encode('late')), (error) => isLastgaspError(error, 'LOG_CLOSED'));

    const again = createFlashLog({ dir: dir.path, segmentBytes: SMALL_SEGMENT });
    const report = await again.open();
    assert.equal(report.committed, 501);
    assert.equal(report.epoch, 7);
    assert.equal(report.tornBytes, 0);
    assert.deepEqual(again.watermarks(), { committed: 501, replicated: 500, replicaAcked: 300 });
    const entries = await again.read(499, { entriesMax: 10, bytesMax: 1 << 20 });
    assert.deepEqual(entries.map((e) => [e.seq, e.epoch]), [[499, 1], [500, 1], [501, 7]]);
    await again.close();
  } finally {
    await dir.remove();
  }
});

test('watermark marks ride the next batch without a sync of their own', async () => {
  await withLog(async (log) => {
    await log.append(encoder.encode('one'));
    const syncsBefore = log.status().counters.syncs!;
    for (let i = 0; i < 100; i++) log.markReplicated(1);
    await log.append(encoder.encode('two'));
    assert.equal(log.status().counters.syncs! - syncsBefore, 1, 'one batch carried the entry and the checkpoint');
  });
});

test('appendReplicated keeps the primary seq, epoch and timestamp and refuses a gap', async () => {
  await withLog(async (log) => {
    await log.appendReplicated([
      { seq: 1, epoch: 3, timestampMs: 1_700_000_000_000, payload: encoder.encode('p1') },
      { seq: 2, epoch: 3, timestampMs: 1_700_000_000_001, payload: encoder.encode('p2') },
    ]);
    await assert.rejects(log.appendReplicated([{ seq: 4, epoch: 3, timestampMs: 0, payload: new Uint8Array(1) }]), (error) => isLastgaspError(error, 'LOG_SEQ'));
    const entries = await log.read(1, { entriesMax: 10, bytesMax: 1000 });
    assert.deepEqual(entries.map((e) => [e.seq, e.epoch, e.timestampMs]), [[1, 3, 1_700_000_000_000], [2, 3, 1_700_000_000_001]]);
    assert.equal(log.epoch, 3, 'the replica follows the epoch it stores');
    await log.beginEpoch(4);
    assert.deepEqual(await log.append(encoder.encode('own')), { seq: 3, epoch: 4 });
  });
});

test('an oversized entry is refused with ENTRY_TOO_LARGE and the log goes on', async () => {
  const dir = await tempDir('big');
  const log = createFlashLog({ dir: dir.path, segmentBytes: SMALL_SEGMENT, entryBytesMax: 1000 });
  await log.open();
  try {
    await assert.rejects(log.append(new Uint8Array(1001)), (error) => isLastgaspError(error, 'ENTRY_TOO_LARGE'));
    assert.equal((await log.append(new Uint8Array(1000))).seq, 1);
  } finally {
    await log.close();
    await dir.remove();
  }
});

test('a torn tail is cut and zeroed on reopen, every acknowledged entry stays', async () => {
  const dir = await tempDir('torn');
  try {
    // A real crash: a writer process acknowledges entries, then dies by SIGKILL (no clean-close checkpoint).
    const child = startProcess('torn-writer', process.execPath, ['--import', 'tsx', WRITER, dir.path, '4', String(SMALL_SEGMENT)]);
    // Fifty acknowledgements, with the watermark lines (W) between them wherever they fall: on a slow disk
    // a watermark comes every few acknowledgements, so fifty in a row may never be printed.
    await child.waitForOutput(/(?:^A \d+ .*\n(?:(?!A ).*\n)*){50}/m, 30_000);
    await child.kill('SIGKILL');
    const acked = child.output().split('\n').slice(0, -1).filter((line) => line.startsWith('A ')).map((line) => Number(line.split(' ')[1]));
    // Then half a record lands after the end, as a write cut by the power would leave it.
    const inspected = await inspectLog(dir.path);
    const active = inspected.segments.find((segment) => segment.state === 'active')!;
    const fd = openSync(active.file, 'r+');
    const torn = new Uint8Array(20).fill(0xab);
    writeSync(fd, torn, 0, torn.length, active.bytesUsed);
    closeSync(fd);
    const again = createFlashLog({ dir: dir.path, segmentBytes: SMALL_SEGMENT });
    const report = await again.open();
    assert.ok(report.committed >= Math.max(...acked), `committed ${report.committed} keeps every acknowledged seq (max ${Math.max(...acked)})`);
    assert.ok(report.tornBytes >= 20, `torn bytes reported (${report.tornBytes})`);
    assert.equal((await readAll(again)).length, report.committed - again.firstSeq + 1);
    assert.equal((await again.append(encoder.encode('next'))).seq, report.committed + 1);
    await again.close();
    const third = createFlashLog({ dir: dir.path, segmentBytes: SMALL_SEGMENT });
    assert.equal((await third.open()).committed, report.committed + 1);
    await third.close();
  } finally {
    await killAll();
    await dir.remove();
  }
});

test('segments are preallocated to their full size before use', async () => {
  await withLog(async (log, dir) => {
    await log.append(encoder.encode('x'));
    // Finished segments only: a spare still being zero-filled carries a .tmp suffix until it is complete.
    const files = readdirSync(dir).filter((name) => name.startsWith('seg-') && name.endsWith('.log'));
    assert.ok(files.length >= 1);
    for (const name of files) assert.equal(statSync(`${dir}/${name}`).size, SMALL_SEGMENT);
  });
});
