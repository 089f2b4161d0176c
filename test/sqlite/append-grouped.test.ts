// A capture's copy goes into the log in batches of 1 MiB (each waits for its fsync): 3 MB of entries in
// three appendMany calls on a log with the usual segments; on a log whose segments are too small for that,
// the log refuses the batch whole, names its limit, and the rest goes in batches of that size, in order,
// nothing lost or doubled. A real flash log in a temporary directory.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { createFlashLog } from '../../agent/log/index.ts';
import { appendGrouped } from '../../agent/sqlite/index.ts';
import { tempDir } from '../support/ports.ts';

function payloads(count: number, bytes: number): Uint8Array[] {
  return Array.from({ length: count }, (_, index) => new Uint8Array(bytes).fill(index % 251));
}

async function appendAll(options: { segmentBytes?: number; quotaBytes?: number }, entries: Uint8Array[]) {
  const dir = await tempDir('sqlite-append-grouped');
  const log = createFlashLog({ dir: join(dir.path, 'log'), entryBytesMax: 64 * 1024, ...options });
  await log.open();
  try {
    const calls: number[] = [];
    let last = 0;
    await appendGrouped(entries, async (group) => {
      calls.push(group.length);
      return (await log.appendMany(group)).seq;
    }, (seq) => void (last = seq));
    const read = [];
    for (let seq = 1; seq <= last; ) {
      const batch = await log.read(seq, { entriesMax: 1024, bytesMax: 4 * 1024 * 1024 });
      read.push(...batch.map((entry) => entry.payload));
      seq = batch.at(-1)!.seq + 1;
    }
    return { calls, last, read };
  } finally {
    await log.close();
    await dir.remove();
  }
}

test('3 MB of entries go in batches of 1 MiB', async () => {
  const entries = payloads(48, 64 * 1024 - 64);
  const { calls, last, read } = await appendAll({}, entries);
  assert.deepEqual(calls, [16, 16, 16]);
  assert.equal(last, 48);
  assert.deepEqual(read, entries);
});

test('a log whose one write is smaller refuses the batch whole; the rest goes in batches of its size, in order', async () => {
  const entries = payloads(48, 16 * 1024);
  const { calls, last, read } = await appendAll({ segmentBytes: 256 * 1024, quotaBytes: 64 * 1024 * 1024 }, entries);
  assert.ok(calls[0]! > 40, `the first try is a batch of 1 MiB (${calls[0]} entries)`);
  assert.ok(calls.length > 4 && calls.slice(1).every((count) => count < calls[0]!), `then smaller batches: ${calls.join(', ')}`);
  assert.equal(calls.slice(1).reduce((sum, count) => sum + count, 0), 48);
  assert.equal(last, 48);
  assert.deepEqual(read, entries, 'every entry once, in order');
});
