// The SQLite capture and replica run unchanged on Deno 2 (the `deno` npm package), whose SQLite is the
// built-in node:sqlite: Debian's Python writes transactions (schema changes and VACUUM among them), the
// capture under Deno copies them into a real flash log, and the replica under Deno applies them (rollback
// mode and SQLite's lock, then back to WAL at the handover); the copy passes integrity_check and equals
// the application's database.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startProcess, killAll } from '../support/processes.ts';
import { tempDir } from '../support/ports.ts';
import { PYTHON, run, APP, DUMP } from './support/python.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const DENO = `${ROOT}node_modules/.bin/deno`;
const SCRIPT = fileURLToPath(new URL('./support/deno-sqlite.ts', import.meta.url));

test('under Deno 2 (node:sqlite) the capture copies an application database into the log and the replica applies it', async () => {
  const dir = await tempDir('sqlite-deno');
  try {
    const db = join(dir.path, 'app.db');
    const replicaDb = join(dir.path, 'replica.db');
    await run(PYTHON, [APP], { env: { ...process.env, DB: db, APP_JOURNAL: join(dir.path, 'journal.ndjson'), APP_TX: '1' } });
    const deno = startProcess('deno', DENO, ['run', '-A', '--no-prompt', SCRIPT, db, replicaDb, dir.path, APP], { cwd: ROOT, env: { ...process.env, DENO_NO_UPDATE_CHECK: '1' } });
    assert.equal(await deno.exited, 0, deno.output());
    const seen = JSON.parse(deno.output().trim().split('\n').at(-1)!) as { capture: { generations: number; commitsCaptured: number; checkpoints: number }; replica: { snapshotsApplied: number; commitsApplied: number; appliedSeq: number }; last: number };
    // Deno's SQLite drops this process's lock on the database file when the agent checkpoints (seen in
    // /proc/locks): the application's last close may then checkpoint and remove the WAL, which the capture
    // answers with a new generation. More snapshots than on Node, never a wrong copy: the copy is compared.
    assert.ok(seen.capture.generations >= 1, JSON.stringify(seen.capture));
    assert.equal(seen.replica.snapshotsApplied, seen.capture.generations);
    assert.ok(seen.capture.commitsCaptured > 0, `commits captured: ${seen.capture.commitsCaptured}`);
    assert.ok(seen.capture.checkpoints >= 1, `the agent checkpointed under Deno: ${JSON.stringify(seen.capture)}`);
    assert.ok(seen.replica.commitsApplied > 0);
    assert.equal(seen.replica.appliedSeq, seen.last);
    const copy = JSON.parse((await run(PYTHON, [DUMP, replicaDb])).stdout) as { integrity: string; txids: number[] };
    const source = JSON.parse((await run(PYTHON, [DUMP, db])).stdout) as unknown;
    assert.equal(copy.integrity, 'ok');
    // The setup's transaction, then the application's until the capture had checkpointed (at least 80).
    assert.ok(copy.txids.length >= 81, `${copy.txids.length} transactions`);
    assert.deepEqual(copy.txids, copy.txids.map((_, index) => index + 1), 'transactions 1..n, none missing');
    assert.deepEqual(copy, source);
    assert.equal(readFileSync(replicaDb)[18], 2, 'handed over in WAL mode');
  } finally {
    await killAll();
    await dir.remove();
  }
});
