// Application-transparent SQLite with real parts: a real mosquitto, two agent processes, and Debian's Python
// sqlite3 as the unmodified application (test/fixtures/sqlite-app.py) started by the agent that leads
// (config `app:`), writing random transactions (schema changes and VACUUM among them) to its own database
// file on each node, and journaling every commit it saw succeed.
// - brownout: the application stops on gw-a, its last transactions are captured before the flush seals, and
//   it starts on gw-b with a database that passes integrity_check, equals gw-a's (sorted iterdump), and
//   holds every transaction gw-a's application committed; then gw-a's agent is SIGKILLed and gw-b goes on;
// - SIGKILL of the primary agent (and its application) with silence takeover: gw-b's database is a prefix of
//   gw-a's commits; gw-a comes back as a standby, sets its own file aside, and follows gw-b's database;
// - the broker hung (SIGSTOP) with a small log.unreplicatedHardBytes: the log fills, the application goes on
//   committing into its WAL, the capture takes it once the broker is back, in one generation, and the
//   brownout's last capture, which finds the log still full, waits for room and hands over every transaction;
// - the same past walBytesMax: the capture gives up what the log could not take, the WAL stops growing, a new
//   generation follows once the broker is back, and the brownout still hands over every transaction.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, existsSync, openSync, readSync, statSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { startMosquitto } from '../support/mosquitto.ts';
import { createPtyPair } from '../support/pty.ts';
import { startBmsSim } from '../support/bms-sim.ts';
import { startAgent, startPair } from '../support/agents.ts';
import { killAll } from '../support/processes.ts';
import { tempDir, waitFor } from '../support/ports.ts';
import { PYTHON, APP, dump, journalLines } from '../sqlite/support/python.ts';

after(killAll);

/** Debian's Python and the SQLite it links (3.40.1): the unmodified application. */

type Line = { node: string; pid: number; event: string; txid?: number; integrity?: string; dumpSha?: string; txids?: number[] };
function journal(file: string): Line[] {
  return journalLines<Line>(file);
}

function committed(lines: readonly Line[], node: string): number[] {
  return lines.filter((line) => line.node === node && line.event === 'commit').map((line) => line.txid!);
}

function range(first: number, last: number): number[] {
  return Array.from({ length: Math.max(0, last - first + 1) }, (_, index) => first + index);
}

/**
 * SIGKILL every application the journal names (its start lines carry the pid). An application whose agent
 * was SIGKILLed goes on writing, with wal_autocheckpoint=0 nothing bounds its WAL any more, and it holds the
 * agent's output pipes, so the harness's stop of that agent waits for it: a test that failed before its
 * brownout once hung there, the application filling the disk.
 */
function killApps(journalFile: string): void {
  for (const line of journal(journalFile).filter((entry) => entry.event === 'start')) {
    try {
      process.kill(line.pid, 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
}

/** A WAL past this means the checkpointing broke (an early version filled /tmp): the test fails and stops it. */
const WAL_BYTES_MAX = 256 * 1024 * 1024;

/** Watches the databases' WALs; past the bound it kills every application the journal names and remembers it. */
function walGuard(dbs: readonly string[], journalFile: string) {
  let exceeded: string | undefined;
  const largest = new Map<string, number>();
  const timer = setInterval(() => {
    for (const db of dbs) {
      const bytes = existsSync(db + '-wal') ? statSync(db + '-wal').size : 0;
      largest.set(db, Math.max(largest.get(db) ?? 0, bytes));
      if (bytes <= WAL_BYTES_MAX) continue;
      exceeded ??= `${db}-wal grew to ${bytes} bytes`;
      killApps(journalFile);
    }
  }, 500);
  return {
    check: () => assert.equal(exceeded, undefined, 'the WAL stays bounded'),
    /** For the test's diagnostics: how large the WALs grew. */
    largest: () => [...largest.values()].join(' and '),
    stop: () => clearInterval(timer),
  };
}

/** Each node's application and database: its own file, the same name in the log. `env`: more of sqlite-app.py's settings; `sqlite`: of the database's config. */
async function nodeApp(dir: string, node: string, journalFile: string, env: Record<string, string> = {}, sqlite: Record<string, unknown> = {}) {
  const dbDir = join(dir, `${node}-db`);
  await mkdir(dbDir, { recursive: true });
  const db = join(dbDir, 'app.db');
  return { db, config: { app: { command: [PYTHON, APP], env: { DB: db, APP_JOURNAL: journalFile, APP_TX_DELAY_MS: '3', ...env }, stopTimeoutMs: 5000, sqlite: [{ path: db, name: 'app', ...sqlite }] } } };
}

/**
 * A broker, and gw-a and gw-b each with its application (nodeApp, `appEnv`); gw-a's power source is the BMS
 * simulator on a pty, which browns it out on demand (a flush budget of `flushBudgetMs`). `extra` goes into
 * both agents' configs, `sqlite` into both databases' entries.
 */
async function brownoutPair(dir: string, group: string, journalFile: string, options: { extra?: Record<string, unknown>; appEnv?: Record<string, string>; sqlite?: Record<string, unknown>; flushBudgetMs?: number } = {}) {
  const extra = options.extra ?? {};
  const broker = await startMosquitto(dir);
  const pty = await createPtyPair(dir);
  const sim = await startBmsSim(['--protocol', 'bridge', '--serial', pty.devicePath]);
  const appA = await nodeApp(dir, 'gw-a', journalFile, options.appEnv, options.sqlite);
  const appB = await nodeApp(dir, 'gw-b', journalFile, options.appEnv, options.sqlite);
  const { a, b } = await startPair(dir, group, broker.url, {
    extraA: { ...appA.config, ...extra, power: { source: { kind: 'bridge', transport: { type: 'serial', path: pty.hostPath } }, onBatteryDebounceMs: 0, flushBudgetMs: options.flushBudgetMs ?? 30_000, handoffAckTimeoutMs: 5000, cutDelayMs: 200 } },
    extraB: { ...appB.config, ...extra },
  });
  return {
    broker,
    sim,
    a,
    b,
    appA,
    appB,
    async stop() {
      broker.resume();
      // The applications first: one alive holds its agent's output pipes, and the agent's stop waits for them.
      killApps(journalFile);
      await a.stop('SIGKILL');
      await b.stop();
      await sim.stop();
      await pty.close();
      await broker.stop();
    },
  };
}

/**
 * The BMS browns gw-a out: the flush (its last capture may wait for room up to half the budget), the handoff,
 * gw-b's takeover and its application's start, which must hold every transaction gw-a's application committed
 * and equal gw-a's database. Returns the flush-start event.
 */
async function brownoutHandsOverAll(pair: Awaited<ReturnType<typeof brownoutPair>>, journalFile: string): Promise<Record<string, unknown>> {
  const { sim, a, b, appA } = pair;
  sim.send('ac off');
  sim.send('brownout');
  const flush = await a.waitForEvent('flush-start', () => true, 45_000);
  await a.waitForEvent('handoff', () => true, 60_000);
  await b.waitForEvent('takeover', () => true, 30_000);
  const start = await waitFor('the application to start on gw-b', () => journal(journalFile).find((line) => line.node === 'gw-b' && line.event === 'start'), 30_000);
  const onA = committed(journal(journalFile), 'gw-a');
  assert.ok((flush.sqliteCommits as Record<string, number> | undefined)?.app, `the flush names the database's last commit: ${JSON.stringify(flush)}`);
  assert.equal(start.integrity, 'ok');
  assert.deepEqual(start.txids, range(1, onA.at(-1)!), 'every transaction gw-a\'s application committed is in gw-b\'s database, and nothing else');
  assert.equal(start.dumpSha, (await dump(appA.db)).dumpSha, 'gw-b\'s database equals gw-a\'s (sorted iterdump)');
  return flush;
}

test('brownout: the application stops on gw-a, and starts on gw-b with the same database holding every transaction it committed', async (t) => {
  const dir = await tempDir('e2e-sqlite-brownout');
  const journalFile = join(dir.path, 'journal.ndjson');
  const pair = await brownoutPair(dir.path, 'sqlmove', journalFile);
  const { sim, a, b, appA, appB } = pair;
  const guard = walGuard([appA.db, appB.db], journalFile);
  try {
    await a.waitForEvent('power-link', (line) => line.state === 'up');
    await waitFor('gw-a\'s application to commit 150 transactions', () => (committed(journal(journalFile), 'gw-a').length >= 150 ? true : undefined), 60_000);
    const standby = await waitFor('gw-b to apply some of them', async () => {
      const sqlite = ((await b.client.status()).sqlite as Array<Record<string, unknown>>)[0]!;
      return (sqlite.commitsApplied as number) > 0 ? sqlite : undefined;
    }, 30_000);
    assert.equal(standby.role, 'replica');

    sim.send('ac off');
    sim.send('brownout');
    const flush = await a.waitForEvent('flush-start', () => true, 30_000);
    const handoff = await a.waitForEvent('handoff', () => true, 30_000);
    const takeover = await b.waitForEvent('takeover', () => true, 30_000);
    const start = await waitFor('the application to start on gw-b', () => journal(journalFile).find((line) => line.node === 'gw-b' && line.event === 'start'), 30_000);
    const lines = journal(journalFile);
    const onA = committed(lines, 'gw-a');
    assert.ok(lines.some((line) => line.node === 'gw-a' && line.event === 'term'), 'gw-a\'s application was stopped (SIGTERM) before the handoff');
    assert.ok((flush.sqliteCommits as Record<string, number>).app! > 0, 'the flush names the log seq of the database\'s last commit');
    // The signed handoff record names that commit, and the successor read it: its database is as of it.
    assert.deepEqual(handoff.sqlite, flush.sqliteCommits, 'the handoff record names each database\'s last commit');
    assert.deepEqual(takeover.handoffSqlite, flush.sqliteCommits, 'gw-b took over knowing which commit its database is at');
    assert.ok((handoff.lastSeq as number) >= (flush.sqliteCommits as Record<string, number>).app!, 'the handoff covers the last commit');
    assert.equal(start.integrity, 'ok');
    assert.deepEqual(start.txids, range(1, onA.at(-1)!), 'every transaction gw-a\'s application committed is in gw-b\'s database, and nothing else');
    assert.equal(start.dumpSha, (await dump(appA.db)).dumpSha, 'gw-b\'s database equals gw-a\'s (sorted iterdump)');

    await a.stop('SIGKILL');
    await waitFor('the application to go on committing on gw-b', () => (committed(journal(journalFile), 'gw-b').length >= 20 ? true : undefined), 30_000);
    // The capture on gw-b started with the takeover; its first copy may come after those commits on a loaded machine.
    const statusB = await waitFor('gw-b to capture its application\'s transactions in turn', async () => {
      const sqlite = ((await b.client.status()).sqlite as Array<Record<string, unknown>>)[0]!;
      return (sqlite.commitsCaptured as number) > 0 ? sqlite : undefined;
    }, 30_000);
    assert.equal(statusB.role, 'capture');
    t.diagnostic(`the WALs grew to ${guard.largest()} bytes at most`);
    guard.check();
  } finally {
    guard.stop();
    await pair.stop();
    await dir.remove();
  }
});

test('SIGKILL of the primary agent and its application: gw-b starts on a prefix of gw-a\'s commits, and gw-a, back as a standby, sets its own file aside and follows gw-b', async (t) => {
  const dir = await tempDir('e2e-sqlite-kill');
  const journalFile = join(dir.path, 'journal.ndjson');
  const broker = await startMosquitto(dir.path);
  const appA = await nodeApp(dir.path, 'gw-a', journalFile);
  const appB = await nodeApp(dir.path, 'gw-b', journalFile);
  const fast = { replication: { heartbeatMs: 250 }, takeover: { silenceMs: 3000 } };
  const { a, b } = await startPair(dir.path, 'sqlkill', broker.url, { extra: fast, extraA: appA.config, extraB: appB.config });
  let again: Awaited<ReturnType<typeof startAgent>> | undefined;
  const guard = walGuard([appA.db, appB.db], journalFile);
  try {
    await waitFor('gw-a\'s application to commit 100 transactions', () => (committed(journal(journalFile), 'gw-a').length >= 100 ? true : undefined), 60_000);
    // All 100 applied before the kill (the capture and replication may lag on a loaded machine), so that the
    // prefix gw-b starts from is at least that long.
    await waitFor('gw-b to apply 100 of them', async () => ((((await b.client.status()).sqlite as Array<Record<string, unknown>>)[0]!.commitsApplied as number) >= 100 ? true : undefined), 30_000);
    const appPid = journal(journalFile).find((line) => line.node === 'gw-a' && line.event === 'start')!.pid;
    // The agent dies first (its process only: the application shares its output pipes, so the harness's stop
    // would wait for both), and the gateway a moment later: what the application commits meanwhile never leaves.
    process.kill(a.process.child.pid!, 'SIGKILL');
    await new Promise((resolve) => setTimeout(resolve, 300));
    process.kill(-appPid, 'SIGKILL');
    await a.stop('SIGKILL');
    const lastOnA = committed(journal(journalFile), 'gw-a').at(-1)!;

    await b.waitForEvent('takeover', () => true, 30_000);
    const start = await waitFor('the application to start on gw-b', () => journal(journalFile).find((line) => line.node === 'gw-b' && line.event === 'start'), 30_000);
    assert.equal(start.integrity, 'ok');
    const took = start.txids!.length;
    assert.deepEqual(start.txids, range(1, took), 'a prefix of gw-a\'s commits, cut at a commit');
    assert.ok(took >= 100 && took < lastOnA, `gw-b started from transaction ${took} of the ${lastOnA} gw-a's application committed`);

    again = await startAgent('gw-a', a.configFile, a.api);
    await again.waitForEvent('role', (line) => line.role === 'standby', 30_000);
    const aside = await again.waitForEvent('sqlite-set-aside', () => true, 30_000);
    const setAside = await dump(aside.file as string);
    assert.equal(setAside.integrity, 'ok');
    // The application may have been killed between a COMMIT and its journal line: one more is fine.
    assert.deepEqual(setAside.txids, range(1, Math.max(lastOnA, setAside.txids.length)), 'the set-aside file keeps every transaction gw-a\'s application committed, those that never left included');
    assert.ok(setAside.txids.length - lastOnA <= 1);
    await waitFor('gw-a to follow gw-b\'s database', async () => {
      const sqlite = ((await again!.client.status()).sqlite as Array<Record<string, unknown>>)[0]!;
      return (sqlite.snapshotsApplied as number) >= 1 && (sqlite.commitsApplied as number) > 0 ? true : undefined;
    }, 30_000);
    const followed = await dump(appA.db);
    assert.equal(followed.integrity, 'ok');
    assert.deepEqual(followed.txids, range(1, followed.txids.length));
    assert.deepEqual(followed.writers.slice(0, took), start.txids!.map(() => 'gw-a'), 'gw-a\'s transactions up to the takeover');
    assert.ok(followed.writers.slice(took).every((writer) => writer === 'gw-b'), 'and gw-b\'s after it: none of those that never left');
    t.diagnostic(`the WALs grew to ${guard.largest()} bytes at most; gw-b's capture: ${JSON.stringify(((await b.client.status()).sqlite as unknown[])[0])}`);
    guard.check();
  } finally {
    guard.stop();
    killApps(journalFile);
    await again?.stop();
    await a.stop('SIGKILL');
    await b.stop();
    await broker.stop();
    await dir.remove();
  }
});

test('brokers away and the log full: the capture waits in the WAL, one generation throughout, and the brownout still hands over every transaction', async (t) => {
  const dir = await tempDir('e2e-sqlite-log-full');
  const journalFile = join(dir.path, 'journal.ndjson');
  // A hard limit some hundred transactions of this application fill (its batches of 1 MiB still fit); no
  // VACUUM, so that the tail behind the limit stays a few MB, which the last capture takes within half the
  // flush budget (a minute: on a loaded machine the limit lets only 3 MiB replicate per round trip).
  const pair = await brownoutPair(dir.path, 'sqlfull', journalFile, { extra: { log: { unreplicatedHardBytes: 3 * 1024 * 1024 } }, appEnv: { APP_VACUUM_EVERY: '0' }, flushBudgetMs: 60_000 });
  const { broker, a, appA, appB } = pair;
  const guard = walGuard([appA.db, appB.db], journalFile);
  const capture = async () => ((await a.client.status()).sqlite as Array<Record<string, unknown>>)[0]!;
  try {
    await a.waitForEvent('power-link', (line) => line.state === 'up');
    await waitFor('gw-a\'s application to commit 50 transactions', () => (committed(journal(journalFile), 'gw-a').length >= 50 ? true : undefined), 60_000);
    // The broker hangs: nothing is replicated, and the log fills up to its hard limit.
    broker.suspend();
    const refused = await a.waitForEvent('sqlite-append-refused', () => true, 60_000);
    assert.equal(refused.code, 'LOG_FULL');
    const during = committed(journal(journalFile), 'gw-a').length;
    await waitFor('the application to go on committing meanwhile', () => (committed(journal(journalFile), 'gw-a').length >= during + 30 ? true : undefined), 60_000);
    assert.ok(((await capture()).appendFailures as number) > 0);
    broker.resume();
    await a.waitForEvent('sqlite-append-resumed', () => true, 60_000);

    // The last capture finds the log still full (the tail behind it not replicated yet) and waits for room.
    await brownoutHandsOverAll(pair, journalFile);
    const last = await capture();
    assert.equal(last.generations, 1, `no new generation: the WAL kept what the log could not take (${JSON.stringify(last)})`);
    t.diagnostic(`the WALs grew to ${guard.largest()} bytes at most; gw-a's capture: ${JSON.stringify(last)}`);
    guard.check();
  } finally {
    guard.stop();
    await pair.stop();
    await dir.remove();
  }
});

test('brokers away past walBytesMax: the capture gives up what the log could not take, the WAL stops growing, and a new generation brings the standby level', async (t) => {
  const dir = await tempDir('e2e-sqlite-wal-give-up');
  const journalFile = join(dir.path, 'journal.ndjson');
  const walBytesMax = 1024 * 1024;
  // A VACUUM every 20 transactions writes the whole database into the WAL: past 1 MiB within a few. The
  // database is kept to its last 150 items (about 1 MB), under the log's hard limit: a snapshot fits in the
  // room the broker's return makes (capture.ts retries a larger one with a backoff while the application
  // outwrites the link). Checkpoints every 100 frames keep the WAL under the bound while the log has room.
  const pair = await brownoutPair(dir.path, 'sqlgiveup', journalFile, { extra: { log: { unreplicatedHardBytes: 3 * 1024 * 1024 } }, appEnv: { APP_VACUUM_EVERY: '20', APP_ROWS_MAX: '150' }, sqlite: { walBytesMax, checkpointFrames: 100 }, flushBudgetMs: 60_000 });
  const { broker, a, appA, appB } = pair;
  const guard = walGuard([appA.db, appB.db], journalFile);
  const capture = async () => ((await a.client.status()).sqlite as Array<Record<string, unknown>>)[0]!;
  const walSize = () => (existsSync(appA.db + '-wal') ? statSync(appA.db + '-wal').size : 0);
  /** The WAL's header (32 bytes), when there is one. */
  const walHead = () => {
    let fd: number | undefined;
    try {
      fd = openSync(appA.db + '-wal', 'r');
      const head = Buffer.alloc(32);
      return readSync(fd, head, 0, 32, 0) === 32 ? head : undefined;
    } catch {
      return undefined;
    } finally {
      if (fd !== undefined) closeSync(fd);
    }
  };
  let sampler: ReturnType<typeof setInterval> | undefined;
  try {
    await a.waitForEvent('power-link', (line) => line.state === 'up');
    await waitFor('gw-a\'s application to commit 30 transactions', () => (committed(journal(journalFile), 'gw-a').length >= 30 ? true : undefined), 60_000);
    broker.suspend();
    const givenUp = await a.waitForEvent('sqlite-wal-given-up', () => true, 90_000);
    assert.ok((givenUp.walBytes as number) > walBytesMax, `it gave up past the bound: ${JSON.stringify(givenUp)}`);
    // From here the WAL starts over again and again (its salt-1 changes at each reset), and its file grows no
    // further than it was at the give-up (or the bound) and what the application writes between two steps:
    // over these 150 transactions (7 VACUUMs) a WAL kept whole would grow by several MB.
    let walMax = 0;
    const salts = new Set<number>();
    sampler = setInterval(() => {
      walMax = Math.max(walMax, walSize());
      const head = walHead();
      if (head) salts.add(head.readUInt32BE(16));
    }, 50);
    const during = committed(journal(journalFile), 'gw-a').length;
    await waitFor('the application to go on committing meanwhile', () => (committed(journal(journalFile), 'gw-a').length >= during + 150 ? true : undefined), 120_000);
    clearInterval(sampler);
    const waiting = await capture();
    assert.equal(waiting.walGivenUp, true, 'it waits for room for a new snapshot');
    const databaseBytes = statSync(appA.db).size;
    const atGiveUp = givenUp.walBytes as number;
    assert.ok(salts.size >= 2, `the WAL started over after the give-up (salt-1 values seen: ${[...salts].join(', ')})`);
    assert.ok(walMax <= Math.max(atGiveUp, walBytesMax) + 6 * databaseBytes, `the WAL at most ${walMax} bytes after the give-up (${atGiveUp} then, walBytesMax ${walBytesMax}, the database ${databaseBytes})`);

    broker.resume();
    await a.waitForEvent('sqlite-generation', (line) => /walBytesMax/.test(String(line.reason)), 60_000);
    await brownoutHandsOverAll(pair, journalFile);
    const last = await capture();
    assert.ok((last.walGiveUps as number) >= 1 && (last.generations as number) >= 2, `a give-up and the generation after it: ${JSON.stringify(last)}`);
    t.diagnostic(`the WAL ${atGiveUp} bytes committed at the give-up and its file at most ${walMax} bytes after it; gw-a's capture: ${JSON.stringify(last)}`);
    guard.check();
  } finally {
    if (sampler) clearInterval(sampler);
    guard.stop();
    await pair.stop();
    await dir.remove();
  }
});
