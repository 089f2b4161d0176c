// The capture starts beside an application that is already committing without a pause. Its first snapshot
// needs SQLite's write lock for an instant (the barrier, checkpointer.ts), and an application committing one
// transaction after the other frees that lock for microseconds between them: single tries at the poll
// interval missed those gaps for seconds (in bench:sqlite, 1,400 of 2,000 transactions went by before the
// capture began). Debian's Python sqlite3 is the application; the capture and the log are the real ones.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createFlashLog } from '../../agent/log/index.ts';
import { SqliteCapture } from '../../agent/sqlite/index.ts';
import { silentLogger, systemClock } from '../../agent/util/index.ts';
import { tempDir, waitFor } from '../support/ports.ts';
import { PYTHON, run } from './support/python.ts';

const BUSY_APP = fileURLToPath(new URL('./support/busy-app.py', import.meta.url));
const TRANSACTIONS = 8000;

test('a capture started beside an application committing without a pause begins at once, and copies most transactions as they commit', async (t) => {
  const dir = await tempDir('sqlite-busy-start');
  const log = createFlashLog({ dir: join(dir.path, 'log') });
  await log.open();
  const db = join(dir.path, 'app.db');
  const capture = new SqliteCapture({ path: db, name: 'app', field: 'app.sqlite[0]', node: 'gw-test', pollMs: 5, checkpointFrames: 1000, entryBytesMax: 64 * 1024, append: async (payloads) => (await log.appendMany(payloads)).seq, logger: silentLogger, clock: systemClock });
  try {
    await run(PYTHON, [BUSY_APP, db, 'write', '10']);
    let writing = true;
    const writer = run(PYTHON, [BUSY_APP, db, 'write', String(TRANSACTIONS)]).finally(() => (writing = false));
    await new Promise((resolve) => setTimeout(resolve, 200));
    capture.start();
    await waitFor('the first snapshot', () => capture.status().generations === 1 || undefined, 60_000, 5);
    const begunWhileWriting = writing;
    await writer;
    await capture.captureNow();
    const status = capture.status();
    t.diagnostic(JSON.stringify(status));
    assert.ok(begunWhileWriting, 'the first snapshot came while the application was writing');
    assert.ok((status.commitsCaptured as number) >= TRANSACTIONS / 2, `most transactions copied as commits, not folded into a late snapshot: ${status.commitsCaptured as number} of ${TRANSACTIONS}`);
  } finally {
    await capture.stop();
    await log.close();
    await dir.remove();
  }
});
