// The agent's checkpoint when the application has paused: the first passive checkpoint, without the write
// barrier, backfills every frame copied, and that is enough. The application's next write starts the WAL over,
// and the capture expects that reset (a reset it did not expect would start a new generation: a whole snapshot
// through the log). Debian's Python sqlite3 is the application; the capture is stepped by hand.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { createFlashLog } from '../../agent/log/index.ts';
import { SqliteCapture } from '../../agent/sqlite/index.ts';
import { silentLogger, systemClock } from '../../agent/util/index.ts';
import { tempDir } from '../support/ports.ts';
import { PYTHON, run, APP } from './support/python.ts';

test('an idle application\'s WAL is checkpointed without the barrier, and its next write\'s reset is expected', async () => {
  const dir = await tempDir('sqlite-checkpoint-idle');
  const log = createFlashLog({ dir: join(dir.path, 'log') });
  await log.open();
  const db = join(dir.path, 'app.db');
  const env = { ...process.env, DB: db, APP_JOURNAL: join(dir.path, 'journal.ndjson'), APP_SCHEMA_EVERY: '0', APP_INDEX_EVERY: '0', APP_VACUUM_EVERY: '0' };
  const capture = new SqliteCapture({ path: db, name: 'app', field: 'app.sqlite[0]', node: 'gw-test', pollMs: 5, checkpointFrames: 20, entryBytesMax: 64 * 1024, append: async (payloads) => (await log.appendMany(payloads)).seq, logger: silentLogger, clock: systemClock });
  const status = () => capture.status() as Record<string, number>;
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
