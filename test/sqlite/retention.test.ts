// A standby that fell behind the log's retention is not stuck: when retention removes the generation's
// snapshot from the log, the capture starts a new generation, and a replica that finds a gap in the log (the
// entries it needed are gone) waits for that snapshot and is then the application's database again. The
// capture, the log (small segments, real retention) and the replicas are the real ones; Debian's Python
// sqlite3 is the application.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { createFlashLog } from '../../agent/log/index.ts';
import { SqliteCapture, SqliteReplica } from '../../agent/sqlite/index.ts';
import { silentLogger, systemClock } from '../../agent/util/index.ts';
import { tempDir, waitFor } from '../support/ports.ts';
import { PYTHON, run, APP, dump } from './support/python.ts';


test('retention removes the generation\'s snapshot: the capture takes a new one, and a replica behind the gap follows it', async () => {
  const dir = await tempDir('sqlite-retention');
  const log = createFlashLog({ dir: join(dir.path, 'log'), segmentBytes: 2 * 1024 * 1024 });
  await log.open();
  const db = join(dir.path, 'app.db');
  const behindDir = join(dir.path, 'behind');
  await mkdir(behindDir);
  const env = { ...process.env, DB: db, APP_JOURNAL: join(dir.path, 'journal.ndjson') };
  const capture = new SqliteCapture({ path: db, name: 'app', field: 'app.sqlite[0]', node: 'gw-test', pollMs: 5, checkpointFrames: 200, entryBytesMax: 64 * 1024, append: async (payloads) => (await log.appendMany(payloads)).seq, logger: silentLogger, clock: systemClock, resume: { dataDir: dir.path, log } });
  // This one has applied nothing yet when the log's first segments go.
  const behind = new SqliteReplica({ path: join(behindDir, 'app.db'), name: 'app', dataDir: behindDir, log, logger: silentLogger, clock: systemClock });
  try {
    await run(PYTHON, [APP], { env: { ...env, APP_TX: '1' } });
    capture.start();
    await capture.captureNow();
    assert.equal(capture.status().generations, 1);
    // The application writes until the log has gone round its first segments (replicated, so retention may drop them).
    for (let round = 0; log.firstSeq <= 1 && round < 20; round++) {
      await run(PYTHON, [APP], { env: { ...env, APP_TX: '40', APP_SEED: String(40 + round) } });
      await capture.captureNow();
      log.markReplicated(log.watermarks().committed);
      await log.syncWatermarks();
      await log.whenSettled();
    }
    assert.ok(log.firstSeq > 1, `retention removed the first segments (the log starts at ${log.firstSeq})`);
    await capture.captureNow();
    assert.equal(capture.status().generations, 2, `a new generation (${capture.status().generationReason})`);
    assert.match(String(capture.status().generationReason), /retention removed/);

    await behind.load();
    await behind.resume();
    const last = await capture.captureNow();
    await waitFor('the replica behind the gap to apply the new snapshot', () => ((behind.status().appliedSeq as number) >= last) || undefined, 20_000);
    await behind.pause();
    assert.equal(behind.status().snapshotsApplied, 1);
    const copy = await dump(join(behindDir, 'app.db'));
    assert.equal(copy.integrity, 'ok');
    assert.deepEqual(copy, await dump(db));
  } finally {
    await capture.stop();
    await behind.pause();
    await log.close();
    await dir.remove();
  }
});
