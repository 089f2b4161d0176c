// app.sqlite[].copyIntervalMs: while the application writes, the capture copies at most once per interval,
// so that the transactions committed meanwhile reach the log in one append (one fsync) instead of one each.
// Debian's Python sqlite3 is the application; the capture runs on a clock the test moves, so "meanwhile" is
// exact: the file-change events come while the clock stands still. A file-change event can come before its
// writer has published the transaction in the WAL index (SQLite writes the frames, then the index): the step
// it set off reads again 1 ms later, so the test without an interval moves the clock 1 ms at a time, and
// keeps it far from a poll.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { createFlashLog } from '../../agent/log/index.ts';
import { SqliteCapture } from '../../agent/sqlite/index.ts';
import { silentLogger } from '../../agent/util/index.ts';
import { FakeClock } from '../support/fake-clock.ts';
import { tempDir, waitFor } from '../support/ports.ts';
import { PYTHON, run, APP } from './support/python.ts';

async function rig(dir: string, copyIntervalMs: number, pollMs = 5) {
  const log = createFlashLog({ dir: join(dir, 'log') });
  await log.open();
  const db = join(dir, 'app.db');
  const env = { ...process.env, DB: db, APP_JOURNAL: join(dir, 'journal.ndjson'), APP_SCHEMA_EVERY: '0', APP_INDEX_EVERY: '0', APP_VACUUM_EVERY: '0' };
  await run(PYTHON, [APP], { env: { ...env, APP_TX: '1' } });
  const clock = new FakeClock();
  let appends = 0;
  const capture = new SqliteCapture({
    path: db,
    name: 'app',
    field: 'app.sqlite[0]',
    node: 'gw-test',
    pollMs,
    copyIntervalMs,
    checkpointFrames: 1000,
    entryBytesMax: 64 * 1024,
    append: async (payloads) => {
      appends++;
      return (await log.appendMany(payloads)).seq;
    },
    logger: silentLogger,
    clock,
  });
  capture.start();
  await capture.captureNow();
  return { log, clock, capture, appends: () => appends, write: (count: number) => run(PYTHON, [APP], { env: { ...env, APP_TX: String(count), APP_SEED: '5' } }) };
}

test('with an interval, the transactions committed within it are copied by one step, in one append', async () => {
  const dir = await tempDir('sqlite-copy-interval');
  const { log, clock, capture, appends, write } = await rig(dir.path, 100);
  try {
    const before = { commits: capture.status().commitsCaptured as number, appends: appends() };
    await write(10);
    // The change events of all ten commits have come and gone; the clock has not moved.
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(capture.status().commitsCaptured, before.commits, 'nothing copied before the interval is over');
    await clock.advanceSettling(100);
    await waitFor('the ten commits to be copied', () => (capture.status().commitsCaptured as number) - before.commits >= 10 || undefined, 10_000);
    assert.equal((capture.status().commitsCaptured as number) - before.commits, 10);
    assert.equal(appends() - before.appends, 1, 'one append for the ten');
  } finally {
    await capture.stop();
    await log.close();
    await dir.remove();
  }
});

test('without one (0), each change is copied as it comes, the clock never reaching a poll', async () => {
  const dir = await tempDir('sqlite-copy-interval-0');
  const { log, clock, capture, write } = await rig(dir.path, 0, 1000);
  try {
    const before = capture.status().commitsCaptured as number;
    await write(10);
    // 1 ms per probe, one probe every 20 ms for at most 10 s: the clock moves 500 ms at most, never to the
    // poll. Only the re-read of a transaction seen before its index was published can fall due.
    await waitFor(
      'the ten commits to be copied',
      async () => {
        if ((capture.status().commitsCaptured as number) - before >= 10) return true;
        await clock.advanceSettling(1);
        return undefined;
      },
      10_000,
    );
    assert.equal((capture.status().commitsCaptured as number) - before, 10);
  } finally {
    await capture.stop();
    await log.close();
    await dir.remove();
  }
});
