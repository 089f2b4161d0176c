// The capture against a full log (LOG_FULL: a standby or the brokers behind, the unreplicated bytes at the
// hard limit). The application goes on writing into its WAL, which holds what the log cannot take yet; the
// capture stops checkpointing, so no frame it has not copied leaves the WAL, and goes on from the last
// transaction the log took whole once replication makes room: no transaction twice in the log (a replica
// applying one again over later ones would hold a state the application never had), no new generation (a
// whole snapshot into a full log), and the replica equal to the application's database at the end. And a
// replica given the first entries of a snapshot and then another generation's transactions drops the cut
// snapshot instead of finishing it with a transaction's end (which left a corrupt file). And past
// walBytesMax the capture gives up what the log could not take: the WAL starts over instead of growing on,
// the replica stays a consistent older copy, and a new generation brings it level once the log has room.
// Debian's Python sqlite3 is the application; the capture is stepped by hand.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { createFlashLog } from '../../agent/log/index.ts';
import { decodeSqliteEntry, splitTransaction, SqliteCapture, SqliteReplica, SQLITE_FLAG_SNAPSHOT } from '../../agent/sqlite/index.ts';
import { createLogger, LastgaspError, silentLogger, systemClock, type Clock } from '../../agent/util/index.ts';
import { startProcess, killAll } from '../support/processes.ts';
import { tempDir } from '../support/ports.ts';
import { PYTHON, APP, dump } from './support/python.ts';

const HARD_BYTES = 1536 * 1024;

/** A log (unreplicatedHardBytes `hardBytes`, 0: none), a capture of `dir`/app.db wired to it as the agent wires it, and a replica of it. */
async function rig(dir: string, hardBytes: number, checkpointFrames: number, walBytesMax?: number, clock: Clock = systemClock) {
  const log = createFlashLog({ dir: join(dir, 'log'), unreplicatedHardBytes: hardBytes });
  await log.open();
  const db = join(dir, 'app.db');
  const replicaDb = join(dir, 'replica.db');
  // The capture's error lines, kept: a refusal repeated at every step is logged once (capture.failed).
  const errorLines: string[] = [];
  const warnLines: string[] = [];
  const logger = createLogger({ level: 'warn', json: true, write: (line) => (JSON.parse(line).level === 'error' ? errorLines : warnLines).push(line) });
  const capture = new SqliteCapture({ path: db, name: 'app', field: 'app.sqlite[0]', node: 'gw-test', pollMs: 5, checkpointFrames, entryBytesMax: 16 * 1024, append: async (payloads) => (await log.appendMany(payloads)).seq, appendRoom: () => log.appendRoom(), logCaughtUp: () => log.watermarks().replicated >= log.watermarks().committed, walBytesMax, logger, clock });
  const replica = new SqliteReplica({ path: replicaDb, name: 'app', dataDir: dir, log, logger: silentLogger, clock: systemClock });
  await replica.load();
  return {
    log,
    db,
    replicaDb,
    capture,
    replica,
    errorLines,
    warnLines,
    async close() {
      await capture.stop();
      await replica.pause();
      await killAll();
      await log.close();
    },
  };
}

test('a full log holds the capture back without a transaction twice or a new generation, and it goes on as room comes', async () => {
  const dir = await tempDir('sqlite-log-full');
  const r = await rig(dir.path, HARD_BYTES, 40);
  const { log, db, capture, replica } = r;
  const status = () => capture.status() as Record<string, number | string | undefined>;
  const replicated = () => log.markReplicated(log.watermarks().committed);
  const env = { ...process.env, DB: db, APP_JOURNAL: join(dir.path, 'journal.ndjson'), APP_VACUUM_EVERY: '45' };
  let fulls = 0;
  /** One step; a LOG_FULL is counted (as the capture's status counts and names it), any other error fails the test. */
  const step = async (): Promise<boolean> => {
    try {
      await capture.captureNow();
      return true;
    } catch (error) {
      if (!(error instanceof LastgaspError && error.code === 'LOG_FULL')) throw error;
      assert.match(String(status().error), /is full/, 'status says why');
      fulls++;
      return false;
    }
  };
  try {
    const first = startProcess('sqlite-app', PYTHON, [APP], { env: { ...env, APP_TX: '5', APP_SEED: '71' } });
    await first.exited;
    await capture.captureNow();
    replicated();
    // The application writes while the log is full, and its WAL grows past the checkpoint's bound meanwhile.
    const app = startProcess('sqlite-app', PYTHON, [APP], { env: { ...env, APP_TX: '120', APP_SEED: '72', APP_TX_DELAY_MS: '2' } });
    let running = true;
    void app.exited.then(() => (running = false));
    while (running) {
      await step();
      await new Promise((resolve) => setTimeout(resolve, 3));
    }
    assert.ok(fulls > 0, 'the log was full at least once');
    assert.ok((status().appendFailures as number) >= fulls, 'the capture counts the refusals');
    const loggedBefore = r.errorLines.length;
    // Room comes a little at a time, as replication catches up: each step takes what fits.
    let refusedAgain = 0;
    for (let rounds = 0; !(await step()); rounds++) {
      assert.ok(rounds < 10_000, 'the capture reaches the WAL\'s end');
      replicated();
      refusedAgain++;
    }
    // Refused at each of those steps with the log's byte count moving: the same failure, not logged again.
    assert.ok(refusedAgain > 1, `refused more than once while room came (${refusedAgain})`);
    assert.equal(r.errorLines.length, loggedBefore, `no new error line for the same refusal: ${r.errorLines.slice(loggedBefore).join(' | ')}`);
    assert.ok(loggedBefore >= 1 && loggedBefore <= 2, `the refusal logged once (or once per wording): ${r.errorLines.join(' | ')}`);
    assert.equal(status().generations, 1, 'no new generation: every frame waited in the WAL');

    // Every transaction is in the log once: no two transactions alike (each writes its own tx_log row), and
    // as many as the commits the capture counted. A transaction is the pages since the last commit, each
    // page's last image kept (as the replica keeps them): a refused transaction's first entries come again
    // with the rest. Its commit entry alone is not enough, since a transaction split over entries may end
    // with pages another one wrote alike (seen: two ending in the same one page). A snapshot's entries run from
    // the flagged one to its own commitPages (the snapshot's size), not counted.
    const transactions = new Set<string>();
    let commits = 0;
    let inSnapshot = false;
    let pages = new Map<number, Uint8Array>();
    for await (const entry of log.entries(1)) {
      const decoded = decodeSqliteEntry(entry.payload);
      if (decoded?.ok) {
        inSnapshot ||= (decoded.entry.flags & SQLITE_FLAG_SNAPSHOT) !== 0;
        for (const { pgno, page } of decoded.entry.pages) pages.set(pgno, page);
        if (decoded.entry.commitPages !== 0 && !inSnapshot) {
          commits++;
          const digest = createHash('sha256');
          for (const pgno of [...pages.keys()].sort((x, y) => x - y)) digest.update(String(pgno)).update(pages.get(pgno)!);
          transactions.add(digest.digest('hex'));
        }
        if (decoded.entry.commitPages !== 0) {
          inSnapshot = false;
          pages = new Map();
        }
      }
      if (entry.seq === log.watermarks().committed) break;
    }
    assert.equal(transactions.size, commits, 'no transaction twice in the log');
    assert.equal(commits, status().commitsCaptured, 'each transaction appended once');
    await replica.resume();
    await replica.pause();
    const [source, copy] = [await dump(db), await dump(r.replicaDb)];
    assert.equal(source.txids.length, 125);
    assert.equal(copy.integrity, 'ok');
    assert.deepEqual(copy, source, 'the replica is the application database');
  } finally {
    await r.close();
    await dir.remove();
  }
});

test('a snapshot cut short in the log is dropped by the replica, which goes on in its generation', async () => {
  const dir = await tempDir('sqlite-snapshot-cut');
  const r = await rig(dir.path, 0, 1000);
  const { log, db, replicaDb, capture, replica } = r;
  const env = { ...process.env, DB: db, APP_JOURNAL: join(dir.path, 'journal.ndjson') };
  try {
    await startProcess('sqlite-app', PYTHON, [APP], { env: { ...env, APP_TX: '5', APP_SEED: '81' } }).exited;
    await capture.captureNow();
    // The first entries of another generation's snapshot, page 1 zeroed among them, and nothing after.
    const page = new Uint8Array(4096);
    const cut = splitTransaction({ db: 'app', generation: 'gw-other-1', pageBytes: 4096 }, [1, 2, 3, 4].map((pgno) => ({ pgno, page })), 4, true, 2);
    await log.appendMany(cut.slice(0, 1));
    await startProcess('sqlite-app', PYTHON, [APP], { env: { ...env, APP_TX: '20', APP_SEED: '82' } }).exited;
    await capture.captureNow();
    await replica.resume();
    await replica.pause();
    const [source, copy] = [await dump(db), await dump(replicaDb)];
    assert.equal(copy.integrity, 'ok');
    assert.deepEqual(copy, source, 'the replica is the application database');
    assert.deepEqual([replica.status().snapshotsAbandoned, replica.status().snapshotsApplied], [1, 1]);
    assert.equal(existsSync(replicaDb + '.lastgasp-new'), false, 'the cut snapshot\'s file is gone');
  } finally {
    await r.close();
    await dir.remove();
  }
});

test('past walBytesMax with the log full, the frames it could not take are given up: the WAL starts over, and a new generation follows once there is room', async () => {
  const dir = await tempDir('sqlite-wal-give-up');
  const walBytesMax = 1024 * 1024;
  const r = await rig(dir.path, HARD_BYTES, 40, walBytesMax);
  const { log, db, replicaDb, capture, replica } = r;
  const status = () => capture.status() as Record<string, number | string | boolean | undefined>;
  const replicated = () => log.markReplicated(log.watermarks().committed);
  const env = { ...process.env, DB: db, APP_JOURNAL: join(dir.path, 'journal.ndjson'), APP_VACUUM_EVERY: '30' };
  const walSize = () => (existsSync(db + '-wal') ? statSync(db + '-wal').size : 0);
  let waitedForRoom = false;
  const step = async (): Promise<boolean> => {
    // The step that gives up fails with the log's refusal, and so does a snapshot the log took part of; a
    // step that gave up before and still waits for room, with what it waits for.
    const givenUp = status().walGivenUp;
    try {
      await capture.captureNow();
      return true;
    } catch (error) {
      if (!(error instanceof LastgaspError && error.code === 'LOG_FULL')) throw error;
      if (givenUp && status().walGivenUp) {
        assert.match(String(status().error), /waiting for room in the log for a new snapshot .* walBytesMax/, 'status says what it waits for');
        waitedForRoom = true;
      }
      return false;
    }
  };
  try {
    await startProcess('sqlite-app', PYTHON, [APP], { env: { ...env, APP_TX: '5', APP_SEED: '91' } }).exited;
    await capture.captureNow();
    replicated();
    // The application writes (a VACUUM every 30 transactions: the whole database through the WAL) while the
    // log stays full; the WAL would grow by all of it.
    const app = startProcess('sqlite-app', PYTHON, [APP], { env: { ...env, APP_TX: '240', APP_SEED: '92', APP_TX_DELAY_MS: '1' } });
    let running = true;
    void app.exited.then(() => (running = false));
    let walMax = 0;
    while (running) {
      await step();
      walMax = Math.max(walMax, walSize());
      await new Promise((resolve) => setTimeout(resolve, 3));
    }
    await step();
    const { txids } = await dump(db);
    // Past the bound by at most what was written between two steps: a VACUUM is the whole database (without
    // the bound this WAL grew to 9-15 MB).
    const databaseBytes = statSync(db).size;
    assert.ok(walMax <= walBytesMax + 2 * databaseBytes, `the WAL at most ${walMax} bytes (walBytesMax ${walBytesMax}, the database ${databaseBytes})`);
    assert.ok(Number(status().walGiveUps) >= 1, 'the capture gave up at least once');
    assert.equal(status().walGivenUp, true);
    assert.ok(waitedForRoom, 'it waited for room, saying so');
    assert.equal(status().generations, 1, 'no snapshot into a full log');

    // Meanwhile the replica is an older state of the application's database, whole.
    await replica.resume();
    await replica.pause();
    const older = await dump(replicaDb);
    assert.equal(older.integrity, 'ok');
    assert.ok(older.txids.length >= 5 && older.txids.length < txids.length, `an older copy (${older.txids.length} of ${txids.length} transactions)`);
    assert.deepEqual(older.txids, txids.slice(0, older.txids.length), 'a prefix of what the application committed');

    // Room comes as replication catches up: a new generation, and the replica level with the application.
    for (let rounds = 0; !(await step()); rounds++) {
      assert.ok(rounds < 10_000, 'the capture starts a new generation');
      replicated();
    }
    assert.equal(status().walGivenUp, false);
    assert.equal(status().generations, 2, 'one new generation');
    assert.match(String(status().generationReason), /walBytesMax/);
    await replica.resume();
    await replica.pause();
    const [source, copy] = [await dump(db), await dump(replicaDb)];
    assert.equal(source.txids.length, 245);
    assert.equal(copy.integrity, 'ok');
    assert.deepEqual(copy, source, 'the replica is the application database');
  } finally {
    await r.close();
    await dir.remove();
  }
});

/**
 * Python writing `rows` rows of `bytes` random bytes to `db` in WAL mode, one transaction each (autocheckpoint
 * off, as the README asks). Run while no other connection is open it leaves the rows in the database file
 * (the last close checkpoints); beside the capture's pinned read they stay in the WAL.
 */
async function writeBlobs(db: string, rows: number, bytes: number): Promise<void> {
  const script = [
    'import sqlite3, sys',
    "db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=5)",
    "db.execute('pragma journal_mode=wal')",
    "db.execute('pragma wal_autocheckpoint=0')",
    "db.execute('create table if not exists big(id integer primary key, v blob)')",
    'for _ in range(int(sys.argv[2])): db.execute("insert into big(v) values (randomblob(?))", (int(sys.argv[3]),))',
    'db.close()',
  ].join('\n');
  const app = startProcess('sqlite-blobs', PYTHON, ['-c', script, db, String(rows), String(bytes)]);
  const code = await app.exited;
  assert.equal(code, 0, `python: ${app.output()}`);
}

test('a snapshot dropped for walBytesMax is tried again after a backoff that doubles, at once when the application is idle', async () => {
  const dir = await tempDir('sqlite-snapshot-backoff');
  // The capture's wall clock stands still but for `aheadMs`: the backoff's seconds pass when the test says so,
  // however long the steps take on a loaded machine (its timers and the barrier's spin run on real time).
  let aheadMs = 0;
  const startMs = Date.now();
  const clock: Clock = { ...systemClock, nowMs: () => startMs + aheadMs };
  const hardBytes = 512 * 1024;
  const walBytesMax = 256 * 1024;
  const r = await rig(dir.path, hardBytes, 40, walBytesMax, clock);
  const { log, db, capture } = r;
  const status = () => capture.status() as Record<string, number | string | boolean | undefined>;
  const replicated = () => log.markReplicated(log.watermarks().committed);
  /** One step: 'ok', or the LOG_FULL's message (any other error fails the test). */
  const step = async (): Promise<string> => {
    try {
      await capture.captureNow();
      return 'ok';
    } catch (error) {
      if (!(error instanceof LastgaspError && error.code === 'LOG_FULL')) throw error;
      return error.message;
    }
  };
  const givenUpEvents = () => r.warnLines.map((line) => JSON.parse(line) as Record<string, unknown>).filter((line) => line.event === 'sqlite-wal-given-up');
  /** The application writes past walBytesMax while the snapshot waits in a full log: the snapshot is dropped. */
  const outgrowWal = async () => {
    await writeBlobs(db, 5, 64 * 1024);
    assert.notEqual(await step(), 'ok', 'the log is still full');
  };
  try {
    // A database three times the log's room: its snapshot cannot get in whole while anything is unreplicated.
    await writeBlobs(db, 24, 64 * 1024);
    assert.match(await step(), /full/, 'the first snapshot goes in part');
    assert.equal(status().generations, 0, 'a generation is the snapshot\'s once it is all in the log');
    /** Entries the capture appended so far: a snapshot begun shows as more of them. */
    const appended = () => Number(status().entriesAppended);

    await outgrowWal();
    assert.equal(status().walGivenUp, true);
    assert.equal(givenUpEvents().length, 1);
    assert.equal(givenUpEvents()[0]!.snapshotsDropped, 1);
    assert.match(String(givenUpEvents()[0]!.msg), /tried again in 1 s at the earliest/);

    // The log caught up, with room for less than the database: the retry waits for its second...
    replicated();
    let before = appended();
    assert.match(await step(), /waiting for room in the log for a new snapshot .*or for the retry after 1 snapshots dropped in a row/);
    assert.equal(appended(), before, 'no snapshot before the backoff is over');
    // ...unless the application wrote nothing since the last step: it does not outrun a snapshot now.
    assert.doesNotMatch(await step(), /waiting for room/, 'an idle application skips the backoff');
    assert.ok(appended() > before, 'a new snapshot began');

    // Dropped a second time in a row: the backoff doubles, and counts on the capture's clock.
    await outgrowWal();
    assert.equal(givenUpEvents().length, 2);
    assert.equal(givenUpEvents()[1]!.snapshotsDropped, 2);
    assert.match(String(givenUpEvents()[1]!.msg), /tried again in 2 s at the earliest/);
    replicated();
    const busyStep = async () => {
      // A transaction between steps: the application is not idle, so only the clock lets the retry go.
      await writeBlobs(db, 1, 1024);
      return step();
    };
    before = appended();
    assert.match(await busyStep(), /retry after 2 snapshots dropped in a row/);
    aheadMs += 1_200;
    assert.match(await busyStep(), /retry after 2 snapshots dropped in a row/, 'still waiting 1.2 s into a 2 s backoff');
    assert.equal(appended(), before);
    aheadMs += 1_000;
    assert.doesNotMatch(await busyStep(), /waiting for room/, 'the backoff is over: the snapshot goes');
    assert.ok(appended() > before, 'a new snapshot began');

    // Room comes as replication catches up: the snapshot ends, and the capture is level again.
    for (let rounds = 0; (await step()) !== 'ok'; rounds++) {
      assert.ok(rounds < 10_000, 'the snapshot gets in');
      replicated();
    }
    assert.equal(status().walGivenUp, false);
    assert.equal(status().generations, 1, 'the third snapshot is the first whole one');
    assert.match(String(status().generationReason), /walBytesMax.*with generation .*'s snapshot/);
  } finally {
    await r.close();
    await dir.remove();
  }
});
