// A standby's database is readable at any time: while the replica applies the log's transactions, a reader
// in another process (Debian's Python sqlite3, as a report or a backup would open the file) runs read
// transactions in a loop, on a long-lived connection and on new ones. Every read must pass integrity_check
// and equal the application's database as of one of its commits (the sorted iterdump's sha256, which the
// application journals after each commit); no read may fail. The capture, the log and the replica are the
// real ones in this process; the application is Debian's Python in a child process.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createFlashLog } from '../../agent/log/index.ts';
import { SqliteCapture, SqliteReplica } from '../../agent/sqlite/index.ts';
import { silentLogger, systemClock } from '../../agent/util/index.ts';
import { tempDir, waitFor } from '../support/ports.ts';
import { PYTHON, run, APP, DUMP, journalLines } from './support/python.ts';

const READER = fileURLToPath(new URL('../fixtures/sqlite-reader.py', import.meta.url));

type Line = { event: string; txid?: number; dumpSha?: string; integrity?: string; contiguous?: boolean; fresh?: boolean; error?: string };

function lines(file: string): Line[] {
  return journalLines<Line>(file);
}

test('a reader hammering the replica while it applies never sees an error, a torn page or a state the application never committed', async () => {
  const dir = await tempDir('sqlite-readers');
  const log = createFlashLog({ dir: join(dir.path, 'log') });
  await log.open();
  const db = join(dir.path, 'app.db');
  const replicaDb = join(dir.path, 'replica.db');
  const appJournal = join(dir.path, 'journal.ndjson');
  const readerOut = join(dir.path, 'reader.ndjson');
  const capture = new SqliteCapture({ path: db, name: 'app', field: 'app.sqlite[0]', node: 'gw-test', pollMs: 5, checkpointFrames: 200, entryBytesMax: 64 * 1024, append: async (payloads) => (await log.appendMany(payloads)).seq, logger: silentLogger, clock: systemClock });
  const replica = new SqliteReplica({ path: replicaDb, name: 'app', dataDir: dir.path, log, logger: silentLogger, clock: systemClock });
  const appEnv = { ...process.env, DB: db, APP_JOURNAL: appJournal, APP_DUMP_EACH: '1' };
  let reader: ReturnType<typeof spawn> | undefined;
  try {
    await replica.load();
    await run(PYTHON, [APP], { env: { ...appEnv, APP_TX: '1' } });
    capture.start();
    await capture.captureNow();
    await replica.resume();
    await waitFor('the snapshot applied', () => (replica.status().snapshotsApplied === 1 && lines(appJournal).length > 0) || undefined, 10_000);

    reader = spawn(PYTHON, [READER], { env: { ...process.env, DB: replicaDb, READER_OUT: readerOut }, stdio: 'ignore' });
    await waitFor('the reader reads', () => (lines(readerOut).length >= 3) || undefined, 10_000);
    // The capture follows the WAL on its own; the replica follows the log on its own.
    await run(PYTHON, [APP], { env: { ...appEnv, APP_TX: '150', APP_SEED: '11', APP_TX_DELAY_MS: '4' } });
    const last = await capture.captureNow();
    await waitFor('the replica applies everything', () => ((replica.status().appliedSeq as number) >= last) || undefined, 20_000);
    const seen = lines(readerOut).length;
    await waitFor('the reader reads the final state', () => (lines(readerOut).length >= seen + 3) || undefined, 10_000);
    reader.kill('SIGTERM');
    await new Promise((resolve) => reader!.once('exit', resolve));
    reader = undefined;

    const committed = new Map(lines(appJournal).filter((line) => line.event === 'commit').map((line) => [line.txid!, line.dumpSha!]));
    assert.equal(committed.size, 151);
    const reads = lines(readerOut).filter((line) => line.event !== 'stopped');
    const errors = reads.filter((line) => line.event === 'error');
    assert.deepEqual(errors, [], 'no read failed');
    for (const read of reads) {
      assert.equal(read.integrity, 'ok', `integrity_check of a read at txid ${read.txid}`);
      assert.ok(read.contiguous, `the tx_log ids read at txid ${read.txid} have no hole`);
      assert.equal(read.dumpSha, committed.get(read.txid!), `the read at txid ${read.txid} is the application's database as of that commit`);
    }
    const states = new Set(reads.map((read) => read.txid));
    assert.ok(states.size >= 5, `the reads overlapped the applies (states seen: ${[...states].join(', ')})`);
    assert.ok(reads.some((read) => read.fresh) && reads.some((read) => !read.fresh));
    assert.equal(reads.at(-1)!.txid, 151, 'the last reads see the last commit');
    assert.ok(!existsSync(replicaDb + '-wal'), 'no reader put the replica into WAL mode');

    // The application starts on the file when this node takes over: back in WAL mode, equal to its source.
    await replica.handOverAt(last);
    const copy = JSON.parse((await run(PYTHON, [DUMP, replicaDb])).stdout) as { integrity: string; txids: number[] };
    assert.equal(copy.integrity, 'ok');
    assert.equal(copy.txids.length, 151);
    assert.equal(readFileSync(replicaDb)[18], 2, 'WAL mode again for the application');
  } finally {
    reader?.kill('SIGKILL');
    await capture.stop();
    await replica.pause();
    await log.close();
    await dir.remove();
  }
});
