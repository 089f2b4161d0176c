// The SQLite campaign (test/e2e/support/sqlite-campaign.ts) with Debian's Python sqlite3 as the unmodified
// application (test/fixtures/sqlite-app.py): seeded SIGKILLs of the primary's agent and of the application,
// and brownouts; after each, the application's database is intact and whole, and the standby's copy is intact,
// a prefix, and equal to the application's database at its commit. sqlite-campaign-node.test.ts runs the same
// campaign with a Node application.
// LASTGASP_SQLITE_STEPS (default 6: each fault once in a seeded order, then any) and LASTGASP_SQLITE_SEED
// (default: random, printed) extend or replay a run.
import { PYTHON, APP } from '../sqlite/support/python.ts';
import { sqliteCampaign } from './support/sqlite-campaign.ts';

/** A second connection of Python's sqlite3, as the application might open one, resets the WAL if nothing pins it. */
const TRUNCATE = 'import sqlite3, sys; c = sqlite3.connect(sys.argv[1], timeout=10); print(c.execute("pragma wal_checkpoint(TRUNCATE)").fetchone())';

sqliteCampaign(
  { name: 'Python sqlite3', command: [PYTHON, APP], truncate: (db) => [PYTHON, ['-c', TRUNCATE, db]] },
  {
    // Steps in CI: each fault at least once; about 25 s of steps on a quiet 2-core VM, under 90 s loaded.
    steps: Number(process.env.LASTGASP_SQLITE_STEPS ?? 6),
    stepsVariable: 'LASTGASP_SQLITE_STEPS',
    seed: Number(process.env.LASTGASP_SQLITE_SEED ?? Math.floor(Math.random() * 2 ** 31)),
  },
);
