// An agent that restarts as primary (no silence takeover: the leader record still names it) finds its
// application's database ahead of the log: what the application committed while the agent was down, and
// what the capture had not copied yet, is only in the file. Making the file "as of the log" there would
// write the capture's own snapshot over it and lose those transactions (the SQLite campaign found this:
// 459 of 500 committed transactions left after a restart). The databases, the log and the replica are the
// real ones in this process; Debian's Python sqlite3 is the application.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { createFlashLog } from '../../agent/log/index.ts';
import { SqliteDatabases } from '../../agent/sqlite/index.ts';
import { silentLogger, systemClock } from '../../agent/util/index.ts';
import { tempDir } from '../support/ports.ts';
import { PYTHON, run, APP, dump } from './support/python.ts';

function range(first: number, last: number): number[] {
  return Array.from({ length: last - first + 1 }, (_, index) => first + index);
}

test('a restart as primary keeps what the application committed while the agent was down, and captures it', async () => {
  const dir = await tempDir('sqlite-restart-primary');
  const log = createFlashLog({ dir: join(dir.path, 'log') });
  await log.open();
  const db = join(dir.path, 'app.db');
  const env = { ...process.env, DB: db, APP_JOURNAL: join(dir.path, 'journal.ndjson') };
  const databases = () => new SqliteDatabases({ databases: [{ path: db, name: 'app', pollMs: 5, checkpointFrames: 1000 }], node: 'gw-test', dataDir: dir.path, entryBytesMax: 64 * 1024, log, logger: silentLogger, clock: systemClock });
  let agent = databases();
  try {
    await agent.load();
    await agent.becomePrimary(log.watermarks().committed);
    await run(PYTHON, [APP], { env: { ...env, APP_TX: '20', APP_SEED: '31' } });
    await agent.captureFinal();
    // The agent stops (a SIGKILL would leave the same files); the application writes on, and checkpoints
    // with TRUNCATE once nothing pins the WAL.
    await agent.stop();
    await run(PYTHON, [APP], { env: { ...env, APP_TX: '15', APP_SEED: '32', APP_CHECKPOINT_EVERY: '10', APP_CHECKPOINT_MODE: 'TRUNCATE' } });
    const before = await dump(db);
    assert.deepEqual(before.txids, range(1, 35));

    agent = databases();
    await agent.load();
    await agent.becomePrimary(log.watermarks().committed);
    assert.deepEqual(await dump(db), before, 'the file is as the application left it');
    await agent.captureFinal();
    const status = agent.status()[0]!;
    assert.equal(status.role, 'capture');
    assert.equal(status.generations, 1, `what the log lacks goes in a new generation (${String(status.generationReason)})`);
    await run(PYTHON, [APP], { env: { ...env, APP_TX: '5', APP_SEED: '33' } });
    assert.deepEqual((await dump(db)).txids, range(1, 40));
  } finally {
    await agent.stop();
    await log.close();
    await dir.remove();
  }
});
