// The replica's position lives in its redo journals, not in a state file synced at every apply: two
// journals used in turn, each carrying its apply's seq. The latest whole one is the position after a crash,
// a torn one leaves the other; and a replica started again on the same files stands where the first one
// stopped, with the same database. Real files; Debian's Python sqlite3 writes the application's database,
// the capture and a real flash log feed the replica.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, truncate } from 'node:fs/promises';
import { join } from 'node:path';
import { createFlashLog } from '../../agent/log/index.ts';
import { RedoJournals, SqliteCapture, SqliteReplica } from '../../agent/sqlite/index.ts';
import { silentLogger, systemClock } from '../../agent/util/index.ts';
import { tempDir } from '../support/ports.ts';
import { PYTHON, run, APP, dump } from './support/python.ts';

const PAGE = 4096;

function frames(fill: number, count: number) {
  return Array.from({ length: count }, (_, index) => ({ pgno: index + 1, commitPages: index === count - 1 ? count : 0, page: new Uint8Array(PAGE).fill(fill) }));
}

test('two journals in turn: the latest whole one is the position, a torn one leaves the other, clear empties both', async () => {
  const dir = await tempDir('sqlite-redo');
  try {
    const db = join(dir.path, 'replica.db');
    const journals = new RedoJournals(db);
    assert.equal(await journals.latest(), undefined);
    await journals.write(PAGE, 5, frames(1, 3));
    await journals.write(PAGE, 2 ** 33 + 9, frames(2, 2));
    const latest = await journals.latest();
    assert.equal(latest?.seq, 2 ** 33 + 9, 'a seq past 32 bits survives');
    assert.equal(latest?.frames.length, 2);
    assert.equal(latest?.frames[1]!.page[0], 2);
    // A crash in the middle of the next journal's write: the one before it stands.
    await journals.write(PAGE, 2 ** 33 + 12, frames(3, 4));
    await truncate(db + '.lastgasp-redo', 32 + 3 * (PAGE + 24) + 100);
    assert.equal((await new RedoJournals(db).latest())?.seq, 2 ** 33 + 9);
    await journals.clear();
    assert.equal(await new RedoJournals(db).latest(), undefined);
    assert.equal((await readFile(db + '.lastgasp-redo-1')).length, 0);
  } finally {
    await dir.remove();
  }
});

test('a replica started again stands where the last one stopped (its state file written at the snapshot only), with the same database', async () => {
  const dir = await tempDir('sqlite-redo-replica');
  const log = createFlashLog({ dir: join(dir.path, 'log') });
  await log.open();
  const db = join(dir.path, 'app.db');
  const replicaDb = join(dir.path, 'replica.db');
  const capture = new SqliteCapture({ path: db, name: 'app', field: 'app.sqlite[0]', node: 'gw-test', pollMs: 5, checkpointFrames: 1000, entryBytesMax: 64 * 1024, append: async (payloads) => (await log.appendMany(payloads)).seq, logger: silentLogger, clock: systemClock });
  const newReplica = () => new SqliteReplica({ path: replicaDb, name: 'app', dataDir: dir.path, log, logger: silentLogger, clock: systemClock });
  const replica = newReplica();
  try {
    await replica.load();
    const env = { ...process.env, DB: db, APP_JOURNAL: join(dir.path, 'journal.ndjson') };
    await run(PYTHON, [APP], { env: { ...env, APP_TX: '3' } });
    capture.start();
    await capture.captureNow();
    await replica.resume();
    for (let round = 0; round < 3; round++) {
      await run(PYTHON, [APP], { env: { ...env, APP_TX: '20', APP_SEED: String(40 + round) } });
      await capture.captureNow();
      await replica.resume();
    }
    await replica.pause();
    const applied = replica.status().appliedSeq as number;
    assert.equal(applied, log.watermarks().committed);
    const stateFile = JSON.parse(await readFile(join(dir.path, 'sqlite-app.json'), 'utf8')) as { seq: number };
    assert.ok(stateFile.seq < applied, `the state file (seq ${stateFile.seq}) is not written at every apply (${applied})`);
    const copy = await dump(replicaDb);
    assert.deepEqual(copy, await dump(db));

    const again = newReplica();
    await again.load();
    assert.equal(again.position, applied, 'the journal carries the position');
    assert.deepEqual(await dump(replicaDb), copy, 'the last apply written again changes nothing');
    await run(PYTHON, [APP], { env: { ...env, APP_TX: '10', APP_SEED: '49' } });
    await capture.captureNow();
    await again.resume();
    await again.pause();
    assert.deepEqual(await dump(replicaDb), await dump(db));
  } finally {
    await capture.stop();
    await replica.pause();
    await log.close();
    await dir.remove();
  }
});
