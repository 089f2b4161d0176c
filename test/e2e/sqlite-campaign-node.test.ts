// The SQLite campaign (test/e2e/support/sqlite-campaign.ts) with a Node application on libsql as the
// unmodified application (test/fixtures/sqlite-app.mjs, the twin of the Python one that
// sqlite-campaign.test.ts runs): issue 14 asks for both.
// LASTGASP_SQLITE_NODE_STEPS (default 3: each fault once, in a seeded order; more: then any) and
// LASTGASP_SQLITE_SEED (default: random, printed) extend or replay a run.
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { sqliteCampaign } from './support/sqlite-campaign.ts';

const APP = fileURLToPath(new URL('../fixtures/sqlite-app.mjs', import.meta.url));
/** The libsql the application loads, for a second connection of the same library. */
const LIBSQL = createRequire(import.meta.url).resolve('libsql');
/** A second connection of libsql, as the application might open one, resets the WAL if nothing pins it. */
const TRUNCATE = 'const Database = require(process.argv[1]); const db = new Database(process.argv[2], { timeout: 10000 }); console.log(JSON.stringify(db.prepare("pragma wal_checkpoint(TRUNCATE)").raw().get())); db.close()';

sqliteCampaign(
  { name: 'Node libsql', command: [process.execPath, APP], truncate: (db) => [process.execPath, ['-e', TRUNCATE, LIBSQL, db]] },
  {
    // Fewer steps than the Python campaign's 6 to keep npm test within its time: each fault once.
    steps: Number(process.env.LASTGASP_SQLITE_NODE_STEPS ?? 3),
    stepsVariable: 'LASTGASP_SQLITE_NODE_STEPS',
    seed: Number(process.env.LASTGASP_SQLITE_SEED ?? Math.floor(Math.random() * 2 ** 31)),
  },
);
