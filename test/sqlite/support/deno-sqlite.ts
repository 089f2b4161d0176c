/**
 * Runs under Deno 2 (`deno run -A`), where the agent's SQLite is the built-in node:sqlite: a capture of the
 * database at Deno.args[0] (written by Debian's Python, run from here) into a real flash log, and a replica
 * at Deno.args[1] applied from that log, handed over to the application at the end. Prints one JSON line.
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { createFlashLog } from '../../../agent/log/index.ts';
import { SqliteCapture, SqliteReplica } from '../../../agent/sqlite/index.ts';
import { silentLogger, systemClock } from '../../../agent/util/index.ts';

const [db, replicaDb, dir, app] = (globalThis as unknown as { Deno: { args: string[] } }).Deno.args as [string, string, string, string];
const log = createFlashLog({ dir: join(dir, 'log') });
await log.open();
const capture = new SqliteCapture({ path: db, name: 'app', field: 'app.sqlite[0]', node: 'gw-deno', pollMs: 5, checkpointFrames: 10, entryBytesMax: 64 * 1024, append: async (payloads) => (await log.appendMany(payloads)).seq, logger: silentLogger, clock: systemClock, resume: { dataDir: dir, log } });
const replica = new SqliteReplica({ path: replicaDb, name: 'app', dataDir: dir, log, logger: silentLogger, clock: systemClock });
await replica.load();
capture.start();
await capture.captureNow();
await promisify(execFile)('/usr/bin/python3', [app], { env: { DB: db, APP_JOURNAL: join(dir, 'journal.ndjson'), APP_TX: '80', APP_SEED: '31' } });
const last = await capture.captureNow();
await capture.stop();
await replica.resume();
await replica.handOverAt(last);
console.log(JSON.stringify({ capture: capture.status(), replica: replica.status(), last }));
await log.close();
