// The WAL stays bounded while an unmodified application writes without a pause (issue 14: the agent is the
// database's checkpointer, with a write barrier). Debian's Python sqlite3 commits one transaction after the
// other for several seconds while a second process reads in short transactions; the capture (and its
// checkpointer) and the replica are the real ones, around a real flash log. Without the barrier the
// application commits between the capture's copy and its checkpoint, the checkpoint is never complete, the
// WAL never starts over, and it grows by everything written (hundreds of MiB in these seconds).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createFlashLog } from '../../agent/log/index.ts';
import { SqliteCapture, SqliteReplica } from '../../agent/sqlite/index.ts';
import { silentLogger, systemClock } from '../../agent/util/index.ts';
import { tempDir } from '../support/ports.ts';
import { PYTHON, run, dump } from './support/python.ts';

const BUSY_APP = fileURLToPath(new URL('./support/busy-app.py', import.meta.url));
/** The agent checkpoints once this many copied frames are in the WAL. */
const CHECKPOINT_FRAMES = 200;
/**
 * The bound asserted: 60 times the checkpoint threshold (4 KiB pages), under half of what the application
 * writes (the previous code's WAL took all of it: 88 MB for 10,000 transactions). Past the threshold the WAL takes what the application commits until the barrier comes free, and
 * whatever it commits while the capture waits for the log (a segment's preparation can hold an append for
 * a few hundred ms on a loaded machine); 4 times the threshold makes the capture catch up under the barrier.
 */
const WAL_BYTES_MAX = 60 * CHECKPOINT_FRAMES * (4096 + 24);
/** Transactions written without a pause (about 2 frames each: some 105 MB of WAL if it never started over). */
const TRANSACTIONS = 12_000;

function walWatch(path: string): { max(): number; stop(): void } {
  let max = 0;
  const sample = () => {
    try {
      max = Math.max(max, statSync(path).size);
    } catch {
      // Not there (yet).
    }
  };
  const timer = setInterval(sample, 25);
  return { max: () => (sample(), max), stop: () => clearInterval(timer) };
}

test('an application writing without a pause, with a reader beside it: the WAL stays bounded and the replica is its database', async (t) => {
  const dir = await tempDir('sqlite-wal-bound');
  const log = createFlashLog({ dir: join(dir.path, 'log') });
  await log.open();
  const db = join(dir.path, 'app.db');
  const replicaDb = join(dir.path, 'replica.db');
  const capture = new SqliteCapture({ path: db, name: 'app', field: 'app.sqlite[0]', node: 'gw-test', pollMs: 5, checkpointFrames: CHECKPOINT_FRAMES, entryBytesMax: 64 * 1024, append: async (payloads) => (await log.appendMany(payloads)).seq, logger: silentLogger, clock: systemClock });
  const replica = new SqliteReplica({ path: replicaDb, name: 'app', dataDir: dir.path, log, logger: silentLogger, clock: systemClock });
  await replica.load();
  const wal = walWatch(db + '-wal');
  try {
    await run(PYTHON, [BUSY_APP, db, 'write', '50']);
    capture.start();
    await capture.captureNow();
    const [writer, reader] = await Promise.all([run(PYTHON, [BUSY_APP, db, 'write', String(TRANSACTIONS)]), run(PYTHON, [BUSY_APP, db, 'read', String(50 + TRANSACTIONS)])]);
    const lastTxid = Number(writer.stdout.trim());
    await capture.captureNow();
    const walMax = wal.max();
    const status = capture.status();
    const context = `WAL at most ${walMax} bytes; ${lastTxid} transactions, ${reader.stdout.trim()} reads; ${JSON.stringify(status)}`;
    t.diagnostic(context);
    assert.ok(walMax <= WAL_BYTES_MAX, `the WAL stays under ${WAL_BYTES_MAX} bytes: ${context}`);
    assert.ok((status.fullCheckpoints as number) >= 2 && (status.walResetsSeen as number) >= 2, `the agent's checkpoints were complete and the application started the WAL over after them: ${context}`);
    assert.equal(status.generations, 1, `every reset was one the capture expected: ${context}`);

    await replica.resume();
    await replica.pause();
    const source = await dump(db);
    const copy = await dump(replicaDb);
    assert.equal(source.integrity, 'ok');
    assert.equal(copy.integrity, 'ok');
    assert.deepEqual(source.txids, Array.from({ length: lastTxid }, (_, index) => index + 1), 'every transaction the application committed');
    assert.deepEqual(copy, source, 'the replica is the application database (sorted iterdump)');
  } finally {
    wal.stop();
    await capture.stop();
    await replica.pause();
    await log.close();
    await dir.remove();
  }
});
