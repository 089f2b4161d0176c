/**
 * Runs under Deno 2 (`deno run -A`), where the agent's SQLite is the built-in node:sqlite: a capture of the
 * database at Deno.args[0] (written by Debian's Python, run from here) into a real flash log, and a replica
 * at Deno.args[1] applied from that log, handed over to the application at the end. Prints one JSON line.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
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
// The application writes until the capture has copied at least 80 transactions and checkpointed at least
// once (the checkpointer under Deno is what this run is for), then stops on SIGTERM. A fixed count raced the
// application's last close on a loaded machine: it could checkpoint and remove the WAL first.
const writer = spawn('/usr/bin/python3', [app], { env: { DB: db, APP_JOURNAL: join(dir, 'journal.ndjson'), APP_TX: '0', APP_SEED: '31', APP_TX_DELAY_MS: '1' }, stdio: 'ignore' });
const writerExited = new Promise((resolve) => writer.on('exit', resolve));
const deadline = Date.now() + 60_000;
while ((capture.counters.checkpoints < 1 || capture.counters.commitsCaptured < 80) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
writer.kill('SIGTERM');
await writerExited;
const last = await capture.captureNow();
await capture.stop();
await replica.resume();
await replica.handOverAt(last);
console.log(JSON.stringify({ capture: capture.status(), replica: replica.status(), last }));
await log.close();
