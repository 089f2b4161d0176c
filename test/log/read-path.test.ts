// The log's read path as the publisher uses it: payloads copied into the caller's buffer, and reads that
// size their file reads by what they expect while entries of every size cross chunk boundaries.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createFlashLog, type FlashLog } from '../../agent/log/index.ts';
import { tempDir } from '../support/ports.ts';

/** Larger than the reader's 128 KiB chunk, so that entries of up to this size straddle refills. */
const ENTRY_BYTES_MAX = 200 * 1024;
/** Small enough that the reads below also cross segment boundaries. */
const SEGMENT_BYTES = 1024 * 1024;

async function withLog<T>(run: (log: FlashLog) => Promise<T>): Promise<T> {
  const dir = await tempDir('log-read');
  const log = createFlashLog({ dir: dir.path, segmentBytes: SEGMENT_BYTES, entryBytesMax: ENTRY_BYTES_MAX });
  await log.open();
  try {
    return await run(log);
  } finally {
    await log.close();
    await dir.remove();
  }
}

/** Entry `seq` is `seq`'s size pattern filled with its own low byte, so that any mix-up shows. */
function payloadOf(seq: number): Uint8Array {
  const sizes = [1, 7, 256, 4096, 70_000, ENTRY_BYTES_MAX, 131_000, 33];
  return new Uint8Array(sizes[seq % sizes.length]!).fill(seq & 0xff);
}

async function appendAll(log: FlashLog, count: number): Promise<void> {
  for (let seq = 1; seq <= count; seq++) await log.append(payloadOf(seq));
}

function assertEntries(entries: ReadonlyArray<{ seq: number; payload: Uint8Array }>, from: number): void {
  entries.forEach((entry, index) => {
    assert.equal(entry.seq, from + index);
    assert.deepEqual(entry.payload, payloadOf(entry.seq), `payload of seq ${entry.seq}`);
  });
}

test('reads from every seq, with every limit, return the entries appended, across chunks and segments', async () => {
  await withLog(async (log) => {
    await appendAll(log, 80);
    assert.ok(log.status().segments.length > 3, 'the entries span several segments');
    for (let from = 1; from <= 80; from += 3) {
      for (const limits of [{ entriesMax: 1, bytesMax: 1 }, { entriesMax: 5, bytesMax: 300_000 }, { entriesMax: 100, bytesMax: Number.MAX_SAFE_INTEGER }]) {
        const entries = await log.read(from, limits);
        assert.ok(entries.length >= 1 && entries.length <= limits.entriesMax);
        assertEntries(entries, from);
      }
    }
  });
});

test('payloads go into the caller\'s buffer while it has room, then into fresh buffers', async () => {
  await withLog(async (log) => {
    await appendAll(log, 24);
    const payloadBuffer = new Uint8Array(100_000);
    const entries = await log.read(1, { entriesMax: 4, bytesMax: Number.MAX_SAFE_INTEGER, payloadBuffer });
    // Sizes 7, 256, 4096 and 70,000 (seqs 1..4) fit one after the other.
    assertEntries(entries, 1);
    let offset = 0;
    for (const entry of entries) {
      assert.ok(entry.payload.buffer === payloadBuffer.buffer, `seq ${entry.seq} is in the buffer`);
      assert.equal(entry.payload.byteOffset, offset);
      offset += entry.payload.length;
    }
    const next = await log.read(3, { entriesMax: 3, bytesMax: Number.MAX_SAFE_INTEGER, payloadBuffer });
    // The buffer is written from its start again: 4096 and 70,000 fit; 200 KiB does not and gets its own.
    assertEntries(next, 3);
    assert.deepEqual(
      next.map((entry) => entry.payload.buffer === payloadBuffer.buffer),
      [true, true, false],
    );
    assert.equal(next[0]!.payload.byteOffset, 0);
    // Without a buffer, every payload owns its memory.
    const own = await log.read(1, { entriesMax: 3, bytesMax: Number.MAX_SAFE_INTEGER });
    assert.equal(new Set(own.map((entry) => entry.payload.buffer)).size, 3);
    assert.ok(own.every((entry) => entry.payload.buffer !== payloadBuffer.buffer));
  });
});
