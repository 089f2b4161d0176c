// app.sqlite[].applyIntervalMs: a standby applies what new commits bring at most once per interval (each
// apply costs two fsyncs), and a handover applies everything at once. The replica runs on a clock the test
// moves; the capture, the log and Debian's Python sqlite3 as the application are the real ones.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { createFlashLog } from '../../agent/log/index.ts';
import { SqliteCapture, SqliteReplica } from '../../agent/sqlite/index.ts';
import { silentLogger, systemClock } from '../../agent/util/index.ts';
import { FakeClock } from '../support/fake-clock.ts';
import { tempDir, waitFor } from '../support/ports.ts';
import { PYTHON, run, APP, dump } from './support/python.ts';

test('a standby applies new commits once per interval, and everything at once on a handover', async () => {
  const dir = await tempDir('sqlite-apply-interval');
  const log = createFlashLog({ dir: join(dir.path, 'log') });
  await log.open();
  const db = join(dir.path, 'app.db');
  const replicaDb = join(dir.path, 'replica.db');
  const env = { ...process.env, DB: db, APP_JOURNAL: join(dir.path, 'journal.ndjson'), APP_SCHEMA_EVERY: '0', APP_INDEX_EVERY: '0', APP_VACUUM_EVERY: '0' };
  const capture = new SqliteCapture({ path: db, name: 'app', field: 'app.sqlite[0]', node: 'gw-test', pollMs: 5, checkpointFrames: 1000, entryBytesMax: 64 * 1024, append: async (payloads) => (await log.appendMany(payloads)).seq, logger: silentLogger, clock: systemClock });
  const clock = new FakeClock();
  const replica = new SqliteReplica({ path: replicaDb, name: 'app', dataDir: dir.path, log, logger: silentLogger, clock, applyIntervalMs: 100 });
  const applied = () => replica.status().appliedSeq as number;
  try {
    await replica.load();
    await run(PYTHON, [APP], { env: { ...env, APP_TX: '3', APP_SEED: '1' } });
    const first = await capture.captureNow();
    // Following starts with an apply at once.
    await replica.resume();
    assert.equal(applied(), first);

    // Commits within the interval wait for it; the clock has not moved.
    await run(PYTHON, [APP], { env: { ...env, APP_TX: '5', APP_SEED: '2' } });
    const second = await capture.captureNow();
    assert.ok(second > first);
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(applied(), first, 'nothing applied before the interval is over');
    await clock.advanceSettling(100);
    await waitFor('the apply after the interval', () => applied() === second || undefined, 10_000);
    assert.deepEqual(await dump(replicaDb), await dump(db), 'the copy is the application database');

    // A handover does not wait for the interval.
    await run(PYTHON, [APP], { env: { ...env, APP_TX: '4', APP_SEED: '3' } });
    const third = await capture.captureNow();
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(applied(), second, 'the new commits wait for the interval');
    await replica.handOverAt(third);
    assert.equal(applied(), third, 'the handover applied everything at once');
    assert.deepEqual((await dump(replicaDb)).txids, (await dump(db)).txids);
  } finally {
    await capture.stop();
    await replica.pause();
    await log.close();
    await dir.remove();
  }
});
