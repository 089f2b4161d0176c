// A commit frame that SQLite never published: a writer SIGKILLed after writing its transaction's commit
// frame to the WAL and before updating the WAL index (-shm) leaves a valid-looking transaction that no
// connection sees and the next writer overwrites. The capture must not copy it (the SQLite campaign found a
// standby holding such a transaction). Made on demand: the same transaction is committed on a copy of the
// database and its WAL, and its frames are written into the application's WAL after the last published
// frame, with the application's index left as it was. The capture, the log and the replica are the real
// ones in this process; Debian's Python sqlite3 is the application.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { open, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createFlashLog } from '../../agent/log/index.ts';
import { decodeWalHeader, SqliteCapture, SqliteReplica, walFrameOffset, WAL_HEADER_BYTES } from '../../agent/sqlite/index.ts';
import { silentLogger, systemClock } from '../../agent/util/index.ts';
import { readFrom, WalFile } from '../../agent/sqlite/wal-file.ts';
import { tempDir } from '../support/ports.ts';
import { PYTHON, run, APP, dump } from './support/python.ts';

/**
 * Copies the application's database and WAL to a scratch file, commits a ghost transaction there, copies the
 * scratch WAL while still open, and exits without closing. The copy is made in this other process: a
 * descriptor of the database opened and closed by the test's own process would drop the capture's SQLite
 * locks (POSIX locks are per process), and the application's next close would then delete the WAL.
 */
const GHOST = `
import os, shutil, sqlite3, sys
src, scratch, out = sys.argv[1:4]
shutil.copyfile(src, scratch)
shutil.copyfile(src + '-wal', scratch + '-wal')
db = sqlite3.connect(scratch, isolation_level=None)
db.execute('pragma wal_autocheckpoint=0')
db.execute('begin immediate')
db.execute("insert into tx_log values (999, 'ghost')")
db.execute('commit')
shutil.copyfile(scratch + '-wal', out)
os._exit(0)
`;

test('a commit frame past the WAL index (its writer died before publishing it) is not copied, and the next writer\'s transaction is', async () => {
  const dir = await tempDir('sqlite-unpublished');
  const log = createFlashLog({ dir: join(dir.path, 'log') });
  await log.open();
  const db = join(dir.path, 'app.db');
  const replicaDb = join(dir.path, 'replica.db');
  const capture = new SqliteCapture({ path: db, name: 'app', field: 'app.sqlite[0]', node: 'gw-test', pollMs: 5, checkpointFrames: 1000, entryBytesMax: 64 * 1024, append: async (payloads) => (await log.appendMany(payloads)).seq, logger: silentLogger, clock: systemClock });
  const replica = new SqliteReplica({ path: replicaDb, name: 'app', dataDir: dir.path, log, logger: silentLogger, clock: systemClock });
  const env = { ...process.env, DB: db, APP_JOURNAL: join(dir.path, 'journal.ndjson') };
  const settle = async () => {
    await capture.captureNow();
    await replica.resume();
    await replica.pause();
  };
  try {
    await replica.load();
    await run(PYTHON, [APP], { env: { ...env, APP_TX: '5', APP_SEED: '51' } });
    capture.start();
    // Attached (its read transaction held) before the application writes on: the WAL stays.
    await capture.captureNow();
    await run(PYTHON, [APP], { env: { ...env, APP_TX: '5', APP_SEED: '52' } });
    await settle();
    const walBefore = new Uint8Array(await readFile(db + '-wal'));
    assert.equal((await readFrom(db + '-wal', undefined, 1 << 22))!.unpublished, false, 'nothing past the index yet');

    // The ghost, committed on a copy (its own index), then its frames put after the application's last one.
    await run(PYTHON, ['-c', GHOST, db, join(dir.path, 'scratch.db'), join(dir.path, 'ghost.wal')]);
    const ghost = new Uint8Array(await readFile(join(dir.path, 'ghost.wal')));
    assert.deepEqual(ghost.subarray(0, WAL_HEADER_BYTES), walBefore.subarray(0, WAL_HEADER_BYTES), 'the ghost continues the same WAL (same salts)');
    assert.ok(ghost.length > walBefore.length);
    const wal = await open(db + '-wal', 'r+');
    await wal.write(ghost.subarray(walBefore.length), 0, ghost.length - walBefore.length, walBefore.length);
    await wal.close();
    // A read sees the frames past the index as this WAL's (the capture reads again shortly, then the poll does).
    assert.equal((await readFrom(db + '-wal', undefined, 1 << 22))!.unpublished, true, 'frames of this WAL past the index');

    await settle();
    const copy = await dump(replicaDb);
    assert.equal(copy.integrity, 'ok');
    assert.ok(!copy.txids.includes(999), 'the unpublished transaction is not on the replica');
    assert.deepEqual(copy, await dump(db), 'the replica is the database every SQLite connection sees');

    // The next writer overwrites the ghost's frames with its own transactions: those are copied.
    await run(PYTHON, [APP], { env: { ...env, APP_TX: '3', APP_SEED: '53' } });
    await settle();
    assert.equal(capture.status().generations, 1, 'the same WAL all along: the next writer wrote over the ghost');
    const after = await dump(replicaDb);
    assert.deepEqual(after.txids, Array.from({ length: 13 }, (_, index) => index + 1));
    assert.deepEqual(after, await dump(db));
  } finally {
    await capture.stop();
    await replica.pause();
    await log.close();
    await dir.remove();
  }
});

test('a read into the kept buffer takes no byte past what it asked for, nor past the index, however large the buffer grew', async () => {
  const dir = await tempDir('sqlite-wal-scratch');
  try {
    const db = join(dir.path, 'app.db');
    // Thirty transactions left in the WAL and its index (the process exits without closing: no checkpoint).
    await run(PYTHON, ['-c', `
import os, sqlite3, sys
c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.execute('pragma journal_mode=wal'); c.execute('pragma wal_autocheckpoint=0')
c.execute('create table t(v blob)')
for i in range(30):
    c.execute('begin'); c.execute('insert into t values (?)', (os.urandom(3000),)); c.execute('commit')
os._exit(0)
`, db]);
    const walPath = db + '-wal';
    const wal = new Uint8Array(await readFile(walPath));
    const decoded = decodeWalHeader(wal.subarray(0, WAL_HEADER_BYTES));
    assert.ok(decoded.ok);
    const header = decoded.header;
    const frameBytes = walFrameOffset(header.pageBytes, 1) - WAL_HEADER_BYTES;
    const published = (wal.length - WAL_HEADER_BYTES) / frameBytes;
    // Three frames past the index's last commit, as a writer killed before publishing leaves them.
    const handle = await open(walPath, 'a');
    await handle.write(wal.subarray(WAL_HEADER_BYTES, WAL_HEADER_BYTES + 3 * frameBytes));
    await handle.close();
    const reader = new WalFile(walPath);
    try {
      const at = (frameIndex: number) => ({ header, cursor: { frameIndex, checksum: header.checksum } });
      const all = await reader.read(at(0), 1 << 20, true);
      assert.equal(all!.frames.length, published * frameBytes, 'the first read: every published frame, none after');
      const two = await reader.read(at(0), 2 * frameBytes, true);
      assert.equal(two!.frames.length, 2 * frameBytes, 'two frames asked for, two read');
      assert.equal(two!.more, true);
      const last = await reader.read(at(published - 1), 1 << 20, true);
      assert.equal(last!.frames.length, frameBytes, 'from the last published frame: that one only');
      assert.equal(last!.more, false);
    } finally {
      reader.close();
    }
  } finally {
    await dir.remove();
  }
});
