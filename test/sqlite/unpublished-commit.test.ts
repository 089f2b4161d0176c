// A commit frame that SQLite never published: a writer SIGKILLed after writing its transaction's commit
// frame to the WAL and before updating the WAL index (-shm) leaves a valid-looking transaction that no
// connection sees and the next writer overwrites. The capture must not copy it (the SQLite campaign found a
// standby holding such a transaction). Made on demand: the same transaction is committed on a copy of the
// database and its WAL, and its frames are written into the application's WAL after the last published
// frame, with the application's index left as it was. The capture, the log and the replica are the real
// ones in this process; Debian's Python sqlite3 is the application.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile, open, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createFlashLog } from '../../agent/log/index.ts';
import { SqliteCapture, SqliteReplica, WAL_HEADER_BYTES } from '../../agent/sqlite/index.ts';
import { silentLogger, systemClock } from '../../agent/util/index.ts';
import { tempDir } from '../support/ports.ts';
import { PYTHON, run, APP, dump } from './support/python.ts';

/** Commits a ghost transaction on `db` (a copy), copies its WAL while still open, and exits without closing. */
const GHOST = `
import os, shutil, sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute('pragma wal_autocheckpoint=0')
db.execute('begin immediate')
db.execute("insert into tx_log values (999, 'ghost')")
db.execute('commit')
shutil.copyfile(sys.argv[1] + '-wal', sys.argv[2])
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

    // The ghost, committed on a copy (its own index), then its frames put after the application's last one.
    const scratch = join(dir.path, 'scratch.db');
    await copyFile(db, scratch);
    await copyFile(db + '-wal', scratch + '-wal');
    await run(PYTHON, ['-c', GHOST, scratch, join(dir.path, 'ghost.wal')]);
    const ghost = new Uint8Array(await readFile(join(dir.path, 'ghost.wal')));
    assert.deepEqual(ghost.subarray(0, WAL_HEADER_BYTES), walBefore.subarray(0, WAL_HEADER_BYTES), 'the ghost continues the same WAL (same salts)');
    assert.ok(ghost.length > walBefore.length);
    const wal = await open(db + '-wal', 'r+');
    await wal.write(ghost.subarray(walBefore.length), 0, ghost.length - walBefore.length, walBefore.length);
    await wal.close();

    await settle();
    const copy = await dump(replicaDb);
    assert.equal(copy.integrity, 'ok');
    assert.ok(!copy.txids.includes(999), 'the unpublished transaction is not on the replica');
    assert.deepEqual(copy, await dump(db), 'the replica is the database every SQLite connection sees');

    // The next writer overwrites the ghost's frames with its own transactions: those are copied.
    await run(PYTHON, [APP], { env: { ...env, APP_TX: '3', APP_SEED: '53' } });
    await settle();
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
