// Retention, quota and throttling, demotion (quarantineAfter), I/O faults, mid-log corruption, and the
// operator tools, on the real file system; the Storage contract on both implementations.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { openSync, writeSync, closeSync, readFileSync } from 'node:fs';
import { createFlashLog, createNodeStorage, inspectLog, logCommand, readQuarantineFile, verifyLog, SimStorage, type Storage } from '../../agent/log/index.ts';
import { isLastgaspError } from '../../agent/util/index.ts';
import { tempDir } from '../support/ports.ts';

const SEGMENT = 16 * 1024;
const payload = (n: number, fill = 7) => new Uint8Array(n).fill(fill);

test('retention deletes whole segments only once replicated and below the floor, and recycles one', async () => {
  const dir = await tempDir('retention');
  const log = createFlashLog({ dir: dir.path, segmentBytes: SEGMENT });
  await log.open();
  try {
    for (let i = 0; i < 200; i++) await log.append(payload(300));
    const before = log.status().segments.length;
    assert.ok(before >= 4, `${before} segments`);
    log.setRetentionFloor(150);
    await log.syncWatermarks();
    assert.equal(log.firstSeq, 1, 'nothing replicated: nothing deleted');
    log.markReplicated(120);
    await log.syncWatermarks();
    await log.append(payload(10));
    // Retention runs in the background once the checkpoint that allows it is durable.
    await log.whenSettled();
    const status = log.status();
    assert.ok(log.firstSeq > 1, 'replicated segments were removed');
    for (const segment of status.segments.slice(0, -1)) assert.ok(segment.lastSeq === 0 || segment.lastSeq >= 120 || segment.firstSeq > 1);
    assert.ok(log.firstSeq <= 121, `firstSeq ${log.firstSeq} keeps every unreplicated entry`);
    assert.ok(status.counters.segmentsRecycled! + status.counters.segmentsDeleted! > 0);
    await assert.rejects(log.read(1, { entriesMax: 1, bytesMax: 100 }), (error) => isLastgaspError(error, 'LOG_SEQ'));
    const entries = await log.read(log.firstSeq, { entriesMax: 1000, bytesMax: 1 << 20 });
    assert.equal(entries[0]!.seq, log.firstSeq);
  } finally {
    await log.close();
    await dir.remove();
  }
});

test('a read overtaken by retention recycling its segment reports the entries gone (LOG_SEQ), not corruption', async () => {
  const dir = await tempDir('retention-race');
  // A storage whose first read of the oldest segment waits at a gate: the interleaving a real disk gives
  // only by chance, on demand. Everything else is the real node:fs storage.
  const real = createNodeStorage();
  let gateHit!: () => void;
  const hit = new Promise<void>((resolve) => (gateHit = resolve));
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  let gated = false;
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
      if (mode !== 'read' || gated || !path.endsWith('seg-0000000001.log')) return file;
      gated = true;
      return {
        path: file.path,
        read: async (buffer, offset, length, position) => {
          gateHit();
          await gate;
          return file.read(buffer, offset, length, position);
        },
        write: (...args) => file.write(...args),
        writeSync: (...args) => file.writeSync(...args),
        datasync: () => file.datasync(),
        sync: () => file.sync(),
        size: () => file.size(),
        truncate: (bytes) => file.truncate(bytes),
        close: () => file.close(),
      };
    },
  };
  const log = createFlashLog({ dir: dir.path, segmentBytes: SEGMENT, storage });
  await log.open();
  try {
    for (let i = 0; i < 200; i++) await log.append(payload(300));
    const reading = log.read(1, { entriesMax: 1000, bytesMax: 1 << 20 }).then(
      () => 'read',
      (error: unknown) => error,
    );
    await hit;
    // While the reader waits inside segment 1: replicate everything, let retention release (and recycle) the
    // old segments, and write enough to fill the recycled files with new records.
    log.markReplicated(200);
    await log.syncWatermarks();
    await log.append(payload(10));
    await log.whenSettled();
    for (let i = 0; i < 200; i++) await log.append(payload(300, 9));
    release();
    const outcome = await reading;
    assert.ok(log.firstSeq > 1, 'retention released the first segment');
    assert.ok(isLastgaspError(outcome, 'LOG_SEQ'), `expected LOG_SEQ, got ${String(outcome)}`);
    assert.equal(log.status().counters.readCorruptions, 0, 'nothing was counted as corruption');
  } finally {
    release();
    await log.close();
    await dir.remove();
  }
});

test('a quota full of unreplicated entries rejects appends with LOG_FULL, never evicts, and resumes after replication', async () => {
  const dir = await tempDir('quota');
  const log = createFlashLog({ dir: dir.path, segmentBytes: SEGMENT, quotaBytes: 3 * SEGMENT });
  await log.open();
  try {
    let full = 0;
    let last = 0;
    for (let i = 0; i < 400; i++) {
      try {
        last = (await log.append(payload(200))).seq;
      } catch (error) {
        assert.ok(isLastgaspError(error, 'LOG_FULL'), String(error));
        full++;
      }
    }
    assert.ok(full > 0, 'the quota filled');
    assert.ok(log.status().counters.fullRejections! >= full);
    assert.equal(log.firstSeq, 1, 'nothing was evicted');
    assert.ok(log.status().bytesOnDisk <= 3 * SEGMENT);
    log.markReplicated(last);
    await log.syncWatermarks();
    // Retention frees a segment; appends then go through again.
    let resumed = false;
    for (let i = 0; i < 50 && !resumed; i++) {
      try {
        await log.append(payload(200));
        resumed = true;
      } catch (error) {
        assert.ok(isLastgaspError(error, 'LOG_FULL'));
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    }
    assert.ok(resumed, 'appends resumed after replication caught up');
  } finally {
    await log.close();
    await dir.remove();
  }
});

test('fullPolicy wait holds writers until replication frees space; soft limit throttles', async () => {
  const dir = await tempDir('wait');
  const log = createFlashLog({ dir: dir.path, segmentBytes: SEGMENT, unreplicatedSoftBytes: 2000, unreplicatedHardBytes: 6000, fullPolicy: 'wait' });
  await log.open();
  try {
    for (let i = 0; i < 15; i++) await log.append(payload(300));
    assert.ok(log.status().counters.throttledAppends! > 0, 'writers above the soft limit were throttled');
    let settled = false;
    const waiting = Promise.all(Array.from({ length: 10 }, () => log.append(payload(300)))).then(() => (settled = true));
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(settled, false, 'appends wait at the hard limit');
    assert.ok(log.status().counters.fullRejections! > 0);
    log.markReplicated(log.watermarks().committed);
    await log.syncWatermarks();
    // Waiters are woken when retention or space changes; a nudge by a later commit also re-admits them.
    const wake = setInterval(() => log.markReplicated(log.watermarks().committed), 5);
    await waiting;
    clearInterval(wake);
    assert.equal(settled, true);
  } finally {
    await log.close();
    await dir.remove();
  }
});

test('quarantineAfter sets the suffix aside in a file, continues at seq + 1, and survives a reopen', async () => {
  const dir = await tempDir('demote');
  const log = createFlashLog({ dir: dir.path, segmentBytes: SEGMENT });
  await log.open();
  try {
    for (let i = 1; i <= 150; i++) await log.append(payload(200, i & 0xff));
    log.markReplicated(140);
    await log.syncWatermarks();
    const result = await log.quarantineAfter(100);
    assert.equal(result.records, 50);
    assert.ok(result.file);
    assert.deepEqual(log.watermarks(), { committed: 100, replicated: 100, replicaAcked: 0 });
    assert.equal((await log.append(payload(5))).seq, 101);
    assert.ok(log.status().quarantine.length >= 1);
    await log.close();
    const again = createFlashLog({ dir: dir.path, segmentBytes: SEGMENT });
    const report = await again.open();
    assert.equal(report.committed, 101);
    assert.ok(again.watermarks().replicated <= 101);
    const entries = await again.read(99, { entriesMax: 10, bytesMax: 1 << 20 });
    assert.deepEqual(entries.map((e) => e.payload.length), [200, 200, 5]);
    await again.close();
    const inspect = await inspectLog(dir.path);
    assert.ok(inspect.quarantine.length >= 1);
    assert.equal(inspect.committed, 101);
  } finally {
    await dir.remove();
  }
});

test('retention releasing a segment in the middle of quarantineAfter does not keep the segments the cut moved aside', async () => {
  // The cut picks the segment to keep, then copies, syncs and applies; retention may drop the oldest
  // segment meanwhile. The cut must still end the log at the segment it chose: an append after it landing
  // in a segment moved aside would be lost at the next open.
  const storage = new SimStorage();
  const log = createFlashLog({ dir: 'sim/cut-retention', segmentBytes: SEGMENT, storage });
  await log.open();
  log.setRetentionFloor(1);
  for (let i = 1; i <= 150; i++) await log.append(payload(200, i & 0xff));
  assert.ok(log.status().segments.length >= 3, 'the entries span three segments');
  log.markReplicated(80);
  await log.syncWatermarks();
  const segmentsBefore = log.status().segments.length;
  let released = false;
  storage.beforeSync = async () => {
    if (released) return;
    released = true;
    // The first sync of the cut: its segment is chosen. Let retention drop the oldest one now.
    log.setRetentionFloor(Number.MAX_SAFE_INTEGER);
    await new Promise((resolve) => setImmediate(resolve));
  };
  const result = await log.quarantineAfter(100);
  storage.beforeSync = undefined;
  assert.equal(result.records, 50);
  await log.whenSettled();
  assert.equal(released, true);
  // Three segments: retention released the first, the cut moved the third aside; the second alone is left.
  assert.equal(log.status().segments.length, segmentsBefore - 2, 'only the segment the cut kept remains');
  assert.equal((await log.append(payload(5))).seq, 101);
  await log.close();
  const again = createFlashLog({ dir: 'sim/cut-retention', segmentBytes: SEGMENT, storage });
  const report = await again.open();
  assert.equal(report.committed, 101);
  const entries = await again.read(99, { entriesMax: 10, bytesMax: 1 << 20 });
  assert.deepEqual(entries.map((e) => e.payload.length), [200, 200, 5]);
  await again.close();
});

test('mid-log corruption is quarantined at open, reported, and verify points at the first bad offset', async () => {
  const dir = await tempDir('corrupt');
  const log = createFlashLog({ dir: dir.path, segmentBytes: 256 * 1024 });
  await log.open();
  for (let i = 0; i < 100; i++) await log.append(payload(100, 0x55));
  const segment = log.status().segments.at(-1)!;
  await log.close();
  const good = await verifyLog(dir.path);
  assert.equal(good.ok, true);
  assert.equal(good.entries, 100);
  // Flip one payload byte of a record in the middle (each record is 24 + 100 -> 128 bytes).
  const offset = 64 + 80 + 50 * 128 + 40;
  const bytes = readFileSync(segment.file);
  const fd = openSync(segment.file, 'r+');
  writeSync(fd, Uint8Array.of(bytes[offset]! ^ 0x10), 0, 1, offset);
  closeSync(fd);
  const bad = await verifyLog(dir.path);
  assert.equal(bad.ok, false);
  assert.ok(bad.firstBad && bad.firstBad.offset <= offset && bad.firstBad.offset > offset - 128, JSON.stringify(bad.firstBad));
  const lines: string[] = [];
  const code = await logCommand(['verify', dir.path], { stdout: (l) => lines.push(l), stderr: (l) => lines.push(l) });
  assert.equal(code, 1);
  assert.match(lines.join('\n'), /byte offset \d+/);
  const again = createFlashLog({ dir: dir.path, segmentBytes: 256 * 1024 });
  const report = await again.open();
  try {
    assert.ok(report.committed >= 50 && report.committed < 100, `log stops at the corruption (${report.committed})`);
    assert.ok(report.quarantinedRecords > 0 && report.quarantineFile, 'the rest was set aside');
    assert.ok(again.status().counters.quarantinedRecords! > 0);
    assert.equal((await again.append(payload(1))).seq, report.committed + 1, 'the agent still starts and appends');
  } finally {
    await again.close();
  }
  assert.equal((await verifyLog(dir.path)).ok, true);
  await dir.remove();
});

/** Zero `length` bytes of a file at `offset`: sectors of a write that never reached the disk. */
function zeroBytes(file: string, offset: number, length: number): void {
  const fd = openSync(file, 'r+');
  writeSync(fd, new Uint8Array(length), 0, length, offset);
  closeSync(fd);
}

test('a last write torn sector by sector (later records whole after never-written sectors) is a torn tail: verify passes with a note, recovery sets the later records aside readable', async () => {
  const dir = await tempDir('torn-write');
  const log = createFlashLog({ dir: dir.path, segmentBytes: 256 * 1024 });
  await log.open();
  // 700-byte payloads of distinct non-zero fills: a record is 24 + 700 -> 728 bytes, the first at 64 + 80.
  for (let i = 0; i < 100; i++) await log.append(payload(700, 1 + (i % 200)));
  const segment = log.status().segments.at(-1)!;
  await log.close();
  // The power cut took two sectors of the write that held entries 91..100: the end of entry 91 and the start of 92.
  zeroBytes(segment.file, 144 + 90 * 728 + 300, 1024);
  const report = await verifyLog(dir.path);
  assert.equal(report.ok, true, JSON.stringify(report.firstBad));
  assert.equal(report.entries, 90);
  assert.ok(report.notes.some((note) => /torn last write/.test(note) && /8 entries/.test(note)), report.notes.join('\n'));
  const again = createFlashLog({ dir: dir.path, segmentBytes: 256 * 1024 });
  const opened = await again.open();
  try {
    assert.equal(opened.committed, 90, 'the log ends before the torn write');
    assert.equal(opened.quarantinedRecords, 8, 'entries 93..100 were whole: set aside, not dropped');
    const aside = await readQuarantineFile(`${dir.path}/${opened.quarantineFile}`);
    assert.deepEqual(
      aside.map((entry) => [entry.seq, entry.payload[0]]),
      Array.from({ length: 8 }, (_, i) => [93 + i, 1 + ((92 + i) % 200)]),
      'the quarantine file reads back past the broken record it starts with',
    );
    assert.equal((await again.append(payload(1))).seq, 91);
  } finally {
    await again.close();
  }
  assert.equal((await verifyLog(dir.path)).ok, true);
  await dir.remove();
});

test('a hole followed by valid records further than one write can reach is damage, not a torn write', async () => {
  const dir = await tempDir('far-hole');
  const log = createFlashLog({ dir: dir.path, segmentBytes: 8 * 1024 * 1024 });
  await log.open();
  const batch = Array.from({ length: 500 }, (_, i) => payload(1000, 1 + (i % 200)));
  for (let i = 0; i < 12; i++) await log.appendMany(batch);
  const segment = log.status().segments.at(-1)!;
  await log.close();
  zeroBytes(segment.file, 144 + 10 * 1024 + 16, 1024);
  const report = await verifyLog(dir.path);
  assert.equal(report.ok, false, 'valid records 5 MB past the hole: no single write spans that');
  assert.match(report.firstBad!.reason, /valid records resume/);
  const again = createFlashLog({ dir: dir.path, segmentBytes: 8 * 1024 * 1024 });
  const opened = await again.open();
  try {
    assert.ok(opened.committed < 20 && opened.quarantinedRecords > 5000, `committed ${opened.committed}, set aside ${opened.quarantinedRecords}`);
  } finally {
    await again.close();
  }
  await dir.remove();
});

test('log inspect/verify CLI: help, usage errors, JSON output', async () => {
  const out: string[] = [];
  const io = { stdout: (l: string) => out.push(l), stderr: (l: string) => out.push(l) };
  assert.equal(await logCommand(['--help'], io), 0);
  assert.match(out.join('\n'), /Usage: lastgasp log <inspect\|verify> \[DIR \| --config FILE\]/);
  assert.equal(await logCommand(['frobnicate', '/x'], io), 64);
  assert.equal(await logCommand(['verify'], io), 64);
  assert.equal(await logCommand(['verify', '/x', '--jsn'], io), 64);
  assert.match(out.at(-1)!, /unknown option --jsn \(did you mean --json\?\)/);
  const dir = await tempDir('cli');
  const log = createFlashLog({ dir: dir.path, segmentBytes: SEGMENT });
  await log.open();
  await log.append(payload(10));
  out.length = 0;
  // Beside a live (open) log: read-only, succeeds.
  assert.equal(await logCommand(['inspect', dir.path, '--json'], io), 0);
  const report = JSON.parse(out[0]!);
  assert.equal(report.committed, 1);
  assert.equal(report.segments[0].state, 'active');
  assert.deepEqual([report.lock.pid, report.lock.alive, report.lock.released, report.demotionPending], [process.pid, true, false, false]);
  await log.close();
  await dir.remove();
});

test('an fdatasync EIO stops appends with a typed error, then the log recovers from disk by itself', async () => {
  const storage = new SimStorage();
  const log = createFlashLog({ dir: 'sim/fault', segmentBytes: SEGMENT, storage });
  await log.open();
  await log.append(payload(10));
  storage.faults.failSyncAt = storage.stats.syncs + 1;
  const failed = await Promise.allSettled([log.append(payload(10)), log.append(payload(10))]);
  for (const result of failed) assert.ok(result.status === 'rejected' && isLastgaspError(result.reason), String((result as PromiseRejectedResult).reason));
  assert.equal(log.status().counters.faults, 1);
  await log.whenRecovered();
  assert.equal(log.status().fault, undefined);
  assert.equal(log.watermarks().committed, 1, 'the unsynced batch is gone, not half-trusted');
  assert.equal((await log.append(payload(10))).seq, 2);
  await log.close();
});

test('ENOSPC, EIO and EROFS on write each give their own typed error', async () => {
  for (const [errno, code] of [['ENOSPC', 'LOG_NO_SPACE'], ['EIO', 'LOG_IO'], ['EROFS', 'LOG_READ_ONLY']] as const) {
    const storage = new SimStorage();
    const log = createFlashLog({ dir: 'sim/errno', segmentBytes: SEGMENT, storage });
    await log.open();
    storage.faults.failWrites = errno;
    await assert.rejects(log.append(payload(10)), (error) => isLastgaspError(error, code));
    await assert.rejects(log.append(payload(10)), (error) => isLastgaspError(error, 'LOG_FAULT'));
    storage.faults.failWrites = undefined;
    await log.whenRecovered();
    assert.equal((await log.append(payload(10))).seq, 1);
    await log.close();
  }
});

async function storageContract(storage: Storage, dir: string): Promise<void> {
  await storage.mkdirp(dir);
  const file = await storage.open(`${dir}/a`, 'create');
  await assert.rejects(storage.open(`${dir}/a`, 'create'), (error: NodeJS.ErrnoException) => error.code === 'EEXIST');
  await file.write(Uint8Array.of(1, 2, 3, 4), 1, 3, 10);
  assert.equal(await file.size(), 13);
  const into = new Uint8Array(16);
  assert.equal(await file.read(into, 0, 16, 0), 13);
  assert.deepEqual(into.subarray(10, 13), Uint8Array.of(2, 3, 4));
  assert.equal(await file.read(into, 0, 16, 100), 0);
  await file.datasync();
  await file.sync();
  await file.truncate(4);
  assert.equal(await file.size(), 4);
  await file.close();
  await storage.syncDir(dir);
  await storage.rename(`${dir}/a`, `${dir}/b`);
  assert.deepEqual((await storage.list(dir)).sort(), ['b']);
  await assert.rejects(storage.open(`${dir}/a`, 'read'), (error: NodeJS.ErrnoException) => error.code === 'ENOENT');
  const b = await storage.open(`${dir}/b`, 'read');
  await assert.rejects(b.write(Uint8Array.of(1), 0, 1, 0));
  await b.close();
  await storage.unlink(`${dir}/b`);
  assert.deepEqual(await storage.list(dir), []);
}

test('the Storage contract holds for the real and the simulated file system', async () => {
  const dir = await tempDir('contract');
  try {
    await storageContract(createNodeStorage(), `${dir.path}/real`);
    await storageContract(new SimStorage(), 'sim/contract');
  } finally {
    await dir.remove();
  }
});
