// The two unmodified applications the SQLite campaign runs (test/fixtures/sqlite-app.py and sqlite-app.mjs)
// journal the same digest for the same database: the sha256 of Python's sorted iterdump, which is also what
// the campaign reads every copy by (sqlite-dump.py). The Node application builds that dump itself; were it to
// drift from Python's (a Python whose iterdump writes other lines), every copy it is compared with would look
// different in the campaign, so this names the cause first. Each application writes on after the other,
// through a schema change (40th transaction), an index (55th) and a VACUUM (70th).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tempDir } from '../support/ports.ts';
import { PYTHON, run, APP, dump, journalLines } from './support/python.ts';

const NODE_APP = fileURLToPath(new URL('../fixtures/sqlite-app.mjs', import.meta.url));

type Line = { pid: number; event: string; txid?: number; integrity?: string; dumpSha?: string; txids?: number[] };

test('the Node and the Python application journal the digest sqlite-dump.py reads, before and after each other', async () => {
  const dir = await tempDir('sqlite-app-digests');
  const db = join(dir.path, 'app.db');
  const journal = join(dir.path, 'journal.ndjson');
  const env = { ...process.env, DB: db, APP_JOURNAL: journal, APP_DUMP_EACH: '1', APP_ROWS_MAX: '40', APP_CHECKPOINT_EVERY: '17' };
  const lines = () => journalLines<Line>(journal);
  try {
    for (const [program, app, count] of [[process.execPath, NODE_APP, 45], [PYTHON, APP, 15], [process.execPath, NODE_APP, 15], [PYTHON, APP, 1]] as const) {
      const known = lines().length;
      await run(program, [app], { env: { ...env, APP_TX: String(count) } });
      const [start, ...rest] = lines().slice(known);
      const commits = rest.filter((line) => line.event === 'commit');
      assert.equal(start?.event, 'start');
      assert.equal(start.integrity, 'ok', `${app}: integrity_check at its start`);
      assert.equal(commits.length, count, `${app}: ${count} commits journaled`);
      assert.equal(commits.at(-1)!.dumpSha, (await dump(db)).dumpSha, `${app}: the last commit's digest is sqlite-dump.py's`);
    }
    // Each start's digest is the one the other application journaled at its last commit.
    const all = lines();
    const starts = all.filter((line) => line.event === 'start');
    for (const start of starts.slice(1)) {
      const lastCommit = all.slice(0, all.indexOf(start)).filter((line) => line.event === 'commit').at(-1)!;
      assert.equal(start.dumpSha, lastCommit.dumpSha, `the start of ${start.pid} after transaction ${lastCommit.txid}`);
    }
    assert.ok(all.some((line) => line.event === 'vacuum'), 'a VACUUM happened');
  } finally {
    await dir.remove();
  }
});
