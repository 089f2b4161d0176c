// The spare segment's zero-fill is kept away from a brownout (issue 12): while the log syncs every batch at
// once (on battery, flushing) no spare is prepared in the background and a fill under way stands still; a
// roll that needs one still gets it, and the background fill resumes when the sync mode is back to batched.
// The fill itself is page-sized synchronous writes in slices, synced every 4 MiB, so that appends go on
// beside it. A real log in a temporary directory.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { createFlashLog, createNodeStorage, type Storage } from '../../agent/log/index.ts';
import { segmentFileName } from '../../agent/log/format.ts';
import { tempDir } from '../support/ports.ts';

const SEGMENT = 64 * 1024;

test('no background spare fill in immediate sync mode; a roll still finds a segment; the fill resumes after', async () => {
  const dir = await tempDir('spare-fill');
  const log = createFlashLog({ dir: dir.path, segmentBytes: SEGMENT });
  await log.open();
  try {
    await log.whenSettled();
    const spares = () => log.status().counters.spares!;
    const created = () => log.status().counters.sparesCreated!;
    assert.equal(spares(), 1, 'a spare is ready after open');
    const createdAtOpen = created();
    log.setSyncMode('immediate');
    const segments = () => log.status().segments.length;
    const fill = async (count: number) => {
      const before = segments();
      while (segments() < before + count) await log.append(new Uint8Array(4000).fill(3));
    };
    // The first roll takes the ready spare and leaves none behind.
    await fill(1);
    await log.whenSettled();
    assert.equal(spares(), 0, 'no spare prepared in the background while flushing');
    assert.equal(created(), createdAtOpen);
    // The next roll prepares the segment it needs on demand.
    await fill(1);
    await log.whenSettled();
    assert.equal(created(), createdAtOpen + 1, 'the roll prepared its own segment');
    assert.equal(spares(), 0);
    log.setSyncMode('batched');
    await log.whenSettled();
    assert.equal(spares(), 1, 'the background fill resumes on mains');
  } finally {
    await log.close();
    await dir.remove();
  }
});

/** The real file system, with every operation on a segment being preallocated (`seg-*.log.tmp`) written down. */
function recordingStorage(ops: Array<{ op: 'write' | 'writeSync' | 'datasync'; length?: number }>): Storage {
  const real = createNodeStorage();
  return {
    ...real,
    async open(path, mode) {
      const file = await real.open(path, mode);
      if (!/seg-\d+\.log\.tmp$/.test(path)) return file;
      return {
        path: file.path,
        read: (...args) => file.read(...args),
        write: (buffer, offset, length, position) => (ops.push({ op: 'write', length }), file.write(buffer, offset, length, position)),
        writeSync: (buffer, offset, length, position) => (ops.push({ op: 'writeSync', length }), file.writeSync(buffer, offset, length, position)),
        datasync: () => (ops.push({ op: 'datasync' }), file.datasync()),
        sync: () => file.sync(),
        size: () => file.size(),
        truncate: (length) => file.truncate(length),
        close: () => file.close(),
      };
    },
  };
}

test('a spare is zero-filled in page-sized writes outside the thread pool, synced every 4 MiB, while appends go on', async () => {
  const dir = await tempDir('spare-fill-pages');
  const ops: Array<{ op: 'write' | 'writeSync' | 'datasync'; length?: number }> = [];
  const segmentBytes = 16 * 1024 * 1024;
  const log = createFlashLog({ dir: dir.path, segmentBytes, storage: recordingStorage(ops) });
  await log.open();
  try {
    // open() made the first segment from a spare of its own; the next spare's fill started in the background,
    // and appends made meanwhile are acknowledged before it ends.
    const createdAtOpen = log.status().counters.sparesCreated!;
    for (let index = 0; index < 5; index++) await log.append(new Uint8Array(100).fill(index));
    assert.equal(log.status().counters.sparesCreated, createdAtOpen, 'the appends did not wait for the fill');
    await log.whenSettled();
    assert.equal(log.status().counters.sparesCreated, createdAtOpen + 1);
    // Each fill: its zero pages, then the header written and synced; the background one is the last.
    const headers = ops.flatMap((op, index) => (op.op === 'write' ? [index] : []));
    assert.equal(headers.length, createdAtOpen + 1);
    const fill = ops.slice(headers.length > 1 ? headers[headers.length - 2]! + 2 : 0, headers[headers.length - 1]!);
    const writes = fill.filter((op) => op.op !== 'datasync');
    assert.ok(writes.every((op) => op.op === 'writeSync' && op.length === 4096), 'every zero-fill write is one synchronous page');
    assert.equal(writes.length * 4096, segmentBytes, 'the whole segment is written');
    let sinceSync = 0;
    for (const op of fill) {
      sinceSync = op.op === 'datasync' ? 0 : sinceSync + op.length!;
      assert.ok(sinceSync <= 4 * 1024 * 1024, 'at most 4 MiB of the fill is unsynced at any time');
    }
    assert.deepEqual(ops.slice(headers[headers.length - 1]!).map((op) => op.op), ['write', 'datasync'], 'the header, written and synced once');
  } finally {
    await log.close();
    await dir.remove();
  }
});

/** Bytes of spare `id` filled so far (its temporary file), undefined when it is not being filled. */
function fillingBytes(dir: string, id: number): number | undefined {
  const path = join(dir, `${segmentFileName(id)}.tmp`);
  return existsSync(path) ? statSync(path).size : undefined;
}

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

test('a background fill under way stands still while the log flushes, and goes on after', async () => {
  const dir = await tempDir('spare-fill-held');
  const segmentBytes = 32 * 1024 * 1024;
  const log = createFlashLog({ dir: dir.path, segmentBytes });
  await log.open();
  try {
    // open() made the first segment and started the next spare's fill in the background; the flush begins
    // before that fill can be done.
    log.setSyncMode('immediate');
    const created = () => log.status().counters.sparesCreated!;
    const createdAtOpen = created();
    const spareId = createdAtOpen + 1;
    for (let waited = 0; fillingBytes(dir.path, spareId) === undefined && waited < 5_000; waited += 10) await pause(10);
    await pause(50);
    const held = fillingBytes(dir.path, spareId);
    assert.ok(held !== undefined && held < segmentBytes, `the fill is under way (${held} bytes)`);
    await pause(300);
    assert.equal(fillingBytes(dir.path, spareId), held, 'no zero-fill while the log flushes');
    assert.equal(created(), createdAtOpen);
    // Appends still go on meanwhile.
    assert.equal((await log.append(new Uint8Array(100).fill(1))).seq, 1);
    log.setSyncMode('batched');
    await log.whenSettled();
    assert.equal(created(), createdAtOpen + 1, 'the fill went on once the flush was over');
    assert.equal(fillingBytes(dir.path, spareId), undefined);
  } finally {
    await log.close();
    await dir.remove();
  }
});

test('a close ends a background fill nobody waits for, and the next open fills a spare again', async () => {
  const dir = await tempDir('spare-fill-close');
  const segmentBytes = 64 * 1024 * 1024;
  const log = createFlashLog({ dir: dir.path, segmentBytes });
  await log.open();
  const spareId = log.status().counters.sparesCreated! + 1;
  for (let waited = 0; fillingBytes(dir.path, spareId) === undefined && waited < 5_000; waited += 10) await pause(10);
  assert.ok(fillingBytes(dir.path, spareId)! < segmentBytes, 'the fill is under way when the log closes');
  await log.close();
  // A stop no longer waits for up to 64 MiB of zeros: the spare is neither there nor half there.
  assert.equal(fillingBytes(dir.path, spareId), undefined, 'the unfinished fill is deleted');
  assert.equal(existsSync(join(dir.path, segmentFileName(spareId))), false, 'no spare was finished');
  const again = createFlashLog({ dir: dir.path, segmentBytes });
  await again.open();
  try {
    await again.whenSettled();
    assert.equal(again.status().counters.spares, 1, 'the next open prepares its spare');
    assert.equal((await again.append(new Uint8Array(10).fill(2))).seq, 1);
  } finally {
    await again.close();
    await dir.remove();
  }
});
