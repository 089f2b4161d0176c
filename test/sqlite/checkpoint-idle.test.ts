// The agent's checkpoint when the application has paused: the first passive checkpoint, without the write
// barrier, backfills every frame copied, and that is enough. The application's next write starts the WAL over,
// and the capture expects that reset (a reset it did not expect would start a new generation: a whole snapshot
// through the log); so it does after a new generation taken on a WAL all checkpointed. Debian's Python
// sqlite3 is the application; the capture is stepped by hand.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createFlashLog } from '../../agent/log/index.ts';
import { SqliteCapture } from '../../agent/sqlite/index.ts';
import { silentLogger, systemClock } from '../../agent/util/index.ts';
import { startProcess, killAll } from '../support/processes.ts';
import { tempDir, waitFor } from '../support/ports.ts';
import { PYTHON, run, APP } from './support/python.ts';

/** A log and a capture of `dir`/app.db, stepped by hand (captureNow), checkpointing at `checkpointFrames`. */
async function rig(dir: string, checkpointFrames: number) {
  const log = createFlashLog({ dir: join(dir, 'log') });
  await log.open();
  const db = join(dir, 'app.db');
  const capture = new SqliteCapture({ path: db, name: 'app', field: 'app.sqlite[0]', node: 'gw-test', pollMs: 5, checkpointFrames, entryBytesMax: 64 * 1024, append: async (payloads) => (await log.appendMany(payloads)).seq, logger: silentLogger, clock: systemClock });
  return { log, db, capture, status: () => capture.status() as Record<string, number> };
}

test('an idle application\'s WAL is checkpointed without the barrier, and its next write\'s reset is expected', async () => {
  const dir = await tempDir('sqlite-checkpoint-idle');
  const { log, db, capture, status } = await rig(dir.path, 20);
  const env = { ...process.env, DB: db, APP_JOURNAL: join(dir.path, 'journal.ndjson'), APP_SCHEMA_EVERY: '0', APP_INDEX_EVERY: '0', APP_VACUUM_EVERY: '0' };
  try {
    await run(PYTHON, [APP], { env: { ...env, APP_TX: '1', APP_SEED: '61' } });
    await capture.captureNow();
    await run(PYTHON, [APP], { env: { ...env, APP_TX: '30', APP_SEED: '62' } });
    // Copies the 30 transactions (more than 20 frames), then checkpoints: the application has exited.
    await capture.captureNow();
    assert.equal(status().commitsCaptured, 30, 'the first transaction is in the snapshot');
    assert.deepEqual([status().checkpoints, status().fullCheckpoints, status().barrierTakes], [1, 1, 0], 'one complete checkpoint, the barrier not taken');

    await run(PYTHON, [APP], { env: { ...env, APP_TX: '5', APP_SEED: '63' } });
    await capture.captureNow();
    assert.equal(status().walResetsSeen, 1, 'the application started the WAL over');
    assert.equal(status().generations, 1, 'and the capture expected it: no new generation');
    assert.equal(status().commitsCaptured, 35);
  } finally {
    await capture.stop();
    await log.close();
    await dir.remove();
  }
});

/**
 * An application that keeps its connection: writes, checkpoints its WAL completely, says so (a file), waits
 * for the go (another file), writes again (which starts the WAL over) and exits.
 */
const PAUSING_APP = `
import os, sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute('pragma journal_mode=wal')
db.execute('pragma wal_autocheckpoint=0')
db.execute('create table if not exists t(x)')
for i in range(20):
    db.execute('insert into t values (?)', (os.urandom(3000),))
row = db.execute('pragma wal_checkpoint(PASSIVE)').fetchone()
assert row[0] == 0 and row[1] == row[2], row
open(sys.argv[2], 'w').close()
while not os.path.exists(sys.argv[3]):
    time.sleep(0.01)
for i in range(5):
    db.execute('insert into t values (?)', (os.urandom(3000),))
db.close()
`;

test('a new generation taken on a WAL all checkpointed expects the reset the application\'s next write makes', async () => {
  const dir = await tempDir('sqlite-generation-reset');
  const { log, db, capture, status } = await rig(dir.path, 1000);
  const [ready, go] = [join(dir.path, 'ready'), join(dir.path, 'go')];
  try {
    const app = startProcess('pausing-app', PYTHON, ['-c', PAUSING_APP, db, ready, go]);
    await waitFor('the application to checkpoint and pause', () => existsSync(ready) || undefined);
    // Attached now: the first generation's read transaction is taken on a WAL whose every frame is checkpointed.
    await capture.captureNow();
    assert.equal(status().generations, 1);
    writeFileSync(go, '');
    await app.exited;
    await capture.captureNow();
    assert.equal(status().walResetsSeen, 1, 'the application started the WAL over');
    assert.equal(status().generations, 1, 'no second generation: the snapshot held every frame of the WAL it reset');
    assert.equal(status().commitsCaptured, 5);
  } finally {
    await capture.stop();
    await killAll();
    await log.close();
    await dir.remove();
  }
});
