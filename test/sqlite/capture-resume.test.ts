// A restart of the agent goes on in the same generation: no snapshot through the log when the WAL still
// holds what the capture had copied, a snapshot when it does not. The capture, the log and the replica are
// the real ones in this process; Debian's Python sqlite3 is the application in a child process, writing on
// while the capture is stopped and started again.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createFlashLog } from '../../agent/log/index.ts';
import { SqliteCapture, SqliteReplica } from '../../agent/sqlite/index.ts';
import { silentLogger, systemClock } from '../../agent/util/index.ts';
import { tempDir, waitFor } from '../support/ports.ts';
import { PYTHON, run, APP, dump } from './support/python.ts';


test('a restart with the application writing resumes without a snapshot; a stale position, or a WAL reset while the agent was down, start a new generation', async () => {
  const dir = await tempDir('sqlite-resume');
  const log = createFlashLog({ dir: join(dir.path, 'log') });
  await log.open();
  const db = join(dir.path, 'app.db');
  const replicaDb = join(dir.path, 'replica.db');
  const stateFile = join(dir.path, 'sqlite-capture-app.json');
  const env = { ...process.env, DB: db, APP_JOURNAL: join(dir.path, 'journal.ndjson') };
  const newCapture = () => new SqliteCapture({ path: db, name: 'app', field: 'app.sqlite[0]', node: 'gw-test', pollMs: 5, checkpointFrames: 1000, entryBytesMax: 64 * 1024, append: async (payloads) => (await log.appendMany(payloads)).seq, logger: silentLogger, clock: systemClock, resume: { dataDir: dir.path, log } });
  const replica = new SqliteReplica({ path: replicaDb, name: 'app', dataDir: dir.path, log, logger: silentLogger, clock: systemClock });
  let capture = newCapture();
  let app: ReturnType<typeof spawn> | undefined;
  const settle = async () => {
    const last = await capture.captureNow();
    await replica.resume();
    await waitFor('the replica applies', () => ((replica.status().appliedSeq as number) >= last) || undefined, 20_000);
    await replica.pause();
  };
  try {
    await replica.load();
    await run(PYTHON, [APP], { env: { ...env, APP_TX: '1' } });
    capture.start();
    await capture.captureNow();
    assert.equal(capture.status().generations, 1);

    // The application writes on while the agent stops and starts again.
    app = spawn(PYTHON, [APP], { env: { ...env, APP_TX: '0', APP_SEED: '21', APP_TX_DELAY_MS: '3' }, stdio: 'ignore' });
    await new Promise((resolve) => setTimeout(resolve, 300));
    await capture.captureNow();
    await capture.stop();
    await new Promise((resolve) => setTimeout(resolve, 200));
    capture = newCapture();
    capture.start();
    await capture.captureNow();
    assert.equal(capture.status().generations, 0, `resumed, no snapshot (${capture.status().generationReason})`);
    await new Promise((resolve) => setTimeout(resolve, 300));
    app.kill('SIGTERM');
    await new Promise((resolve) => app!.once('exit', resolve));
    app = undefined;
    await settle();
    assert.equal(replica.status().snapshotsApplied, 1, 'one snapshot in all');
    const copy = await dump(replicaDb);
    assert.equal(copy.integrity, 'ok');
    assert.deepEqual(copy, await dump(db), 'the replica is the application database');

    // A position file older than the log (a power cut lost its last writes): the capture must not append
    // again what the log has; it starts a new generation.
    const old = await readFile(stateFile);
    await run(PYTHON, [APP], { env: { ...env, APP_TX: '10', APP_SEED: '22' } });
    await capture.captureNow();
    await capture.stop();
    await writeFile(stateFile, old);
    capture = newCapture();
    capture.start();
    await capture.captureNow();
    assert.equal(capture.status().generations, 1, 'a stale position: a new generation');
    assert.match(String(capture.status().generationReason), /entries of this database after/);
    await capture.stop();

    // The application checkpoints to the end and resets the WAL while no agent runs: a new generation.
    await run(PYTHON, [APP], { env: { ...env, APP_TX: '30', APP_SEED: '23', APP_CHECKPOINT_EVERY: '10', APP_CHECKPOINT_MODE: 'TRUNCATE' } });
    capture = newCapture();
    capture.start();
    await capture.captureNow();
    assert.equal(capture.status().generations, 1, 'a reset while the agent was down: a new generation');
    // Named by what the capture found: the reset, or the WAL gone (the last connection to close removed it),
    // or, when the WAL was gone already as the last generation began, a position older than the log.
    assert.match(String(capture.status().generationReason), /WAL reset|WAL is gone|entries of this database after/);
    await run(PYTHON, [APP], { env: { ...env, APP_TX: '10', APP_SEED: '24' } });
    await settle();
    assert.equal(replica.status().snapshotsApplied, 3);
    assert.deepEqual(await dump(replicaDb), await dump(db));
  } finally {
    app?.kill('SIGKILL');
    await capture.stop();
    await replica.pause();
    await log.close();
    await dir.remove();
  }
});
