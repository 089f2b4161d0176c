/**
 * `npm run bench:sqlite`: what following an application's SQLite database costs the application, and how far
 * behind the log the capture runs (issue 14). Debian's Python sqlite3 (test/fixtures/sqlite-app.py) writes
 * TX_COUNT small random transactions, one after the other, in two mixes:
 *
 *   - rows (the figures of the JSON line's top level): each transaction inserts 1-4 rows of 8 B to 9 KB,
 *     updates or deletes a few now and then; what a data collector or a state store does all day;
 *   - maintenance (`maintenance` in the JSON line): the same, plus the test application's stress of the
 *     capture: a schema change every 40 transactions, a new index every 55, a VACUUM every 70 (each rewrites
 *     the whole database into the WAL, ten to thirty times the rows' bytes in all). No application does that
 *     all day; it shows what the agent costs while one does it.
 *
 * Each mix runs in two modes:
 *
 *   - alone: the application by itself, no agent, with SQLite's own checkpoints (as it runs without lastgasp);
 *   - with the agent: the same application started by a primary agent (`app:` and `app.sqlite`), with the
 *     settings the README asks for (wal_autocheckpoint=0: the agent checkpoints), a standby sibling and a
 *     local mosquitto, as in production.
 *
 * appTxPerS / appTxPerSAlone is the cost (the goal: at least 0.8). On this benchmark's one machine the
 * standby shares the application's CPUs and disk, which a sibling gateway would not: cpuMsPerTx says what each
 * agent spent per transaction (process CPU time while the application ran). lagP50Ms / lagP99Ms are the
 * capture's lag as the primary measures it: from the WAL's last modification to the transaction's entry
 * being fdatasynced in the log (replication to the sibling comes after, as for every entry). rssMB is the
 * primary agent's resident memory with one database. walMaxMB is the largest the primary's `-wal` grew
 * (sampled every 100 ms): what the agent's checkpoints leave the application's disk to hold. laterRatio
 * compares the last two thirds of the same runs (laterTxPerS): the agents' start, which a gateway pays once
 * per boot, left out; appTxPerS / appTxPerSAlone, the goal's figure, includes it. Each mode runs
 * LASTGASP_BENCH_ROUNDS times (3) with the rows mix and LASTGASP_BENCH_MAINTENANCE_ROUNDS times (1) with the
 * maintenance mix, interleaved; medians are printed, and the last line is one JSON object. Not part of
 * `npm test`.
 *
 * Then the brownout flush of a database tail (`brownout` in the JSON line; LASTGASP_BENCH_BROWNOUT_ROUNDS
 * times, 1): the rows mix runs on gw-a until the broker hangs (SIGSTOP) for BROWNOUT_STALL_MS, so that a
 * tail of the application's transactions piles up unreplicated, as behind an uplink that stalled; then the
 * broker comes back and the BMS reports a brownout at once. It prints the tail (entries and bytes not yet
 * replicated), the flush's time (the application stopped, its last commits captured, the tail replicated:
 * flushMs), the handoff's and the application's start on gw-b after the brownout, and whether gw-b's
 * database holds every transaction gw-a's application saw committed.
 */
import { execFile } from 'node:child_process';
import { closeSync, fstatSync, openSync, readFileSync, readSync, statSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { startPair } from '../support/agents.ts';
import { startBmsSim } from '../support/bms-sim.ts';
import { startMosquitto } from '../support/mosquitto.ts';
import { createPtyPair } from '../support/pty.ts';
import { killAll } from '../support/processes.ts';
import { tempDir, waitFor } from '../support/ports.ts';
import { processCpuMs } from './proc-cpu.ts';
import { journalLines } from '../sqlite/support/python.ts';

const run = promisify(execFile);
const PYTHON = '/usr/bin/python3';
const APP = fileURLToPath(new URL('../fixtures/sqlite-app.py', import.meta.url));
const TX_COUNT = Number(process.env.LASTGASP_BENCH_TX ?? 2000);
const ROUNDS = Number(process.env.LASTGASP_BENCH_ROUNDS ?? 3);
const MAINTENANCE_ROUNDS = Number(process.env.LASTGASP_BENCH_MAINTENANCE_ROUNDS ?? 1);
const BROWNOUT_ROUNDS = Number(process.env.LASTGASP_BENCH_BROWNOUT_ROUNDS ?? 1);
/** How long the broker hangs before the brownout: the tail the flush has to carry. */
const BROWNOUT_STALL_MS = 2000;
/** The application's environment for each mix (sqlite-app.py's defaults are the maintenance mix). */
const MIXES = { rows: { APP_SCHEMA_EVERY: '0', APP_INDEX_EVERY: '0', APP_VACUUM_EVERY: '0' }, maintenance: {} } as const;
type Mix = keyof typeof MIXES;
/**
 * The application alone runs as it would without lastgasp: with SQLite's own checkpoints (wal_autocheckpoint
 * 1000, the default), not with the wal_autocheckpoint=0 the README asks for beside the agent. Alone, that
 * setting would let the WAL grow without end, and every read then searches a larger WAL index: the rows mix
 * ran at 497–521 tx/s that way against 657–694 with the default (same machine, alternating).
 */
const SQLITE_DEFAULT_AUTOCHECKPOINT = 1000;

type Line = { node: string; pid: number; event: string; atMs: number; txid?: number };

/** The last transaction in a copy of the application's database, read as any reader would (none yet: -1). */
async function replicaTxid(path: string): Promise<number> {
  try {
    const { stdout } = await run(PYTHON, ['-c', "import sqlite3, sys; print(sqlite3.connect('file:%s?mode=ro' % sys.argv[1], uri=True).execute('select coalesce(max(txid), 0) from tx_log').fetchone()[0])", path]);
    return Number(stdout.trim());
  } catch {
    return -1;
  }
}

function lines(file: string): Line[] {
  return journalLines<Line>(file);
}

/** The last bytes of a file ('' before it exists). */
function journalTail(file: string): string {
  try {
    const fd = openSync(file, 'r');
    try {
      const size = fstatSync(fd).size;
      const tail = Buffer.alloc(Math.min(size, 512));
      readSync(fd, tail, 0, tail.length, size - tail.length);
      return tail.toString('utf8');
    } finally {
      closeSync(fd);
    }
  } catch {
    return '';
  }
}

/** Transactions per second of the application's first run in the journal (from its start line to its done line). */
function txPerS(file: string): number | undefined {
  const all = lines(file);
  const start = all.find((line) => line.event === 'start');
  const done = start && all.find((line) => line.event === 'done' && line.pid === start.pid);
  return start && done ? TX_COUNT / ((done.atMs - start.atMs) / 1000) : undefined;
}

/**
 * The same run's rate over its last two thirds (from the commit a third of the way in to the last): the
 * agents' start (their JIT, a fresh log's first spare zero-filled, the first snapshot) falls in the first
 * third, which a gateway pays once per boot, not per transaction. The same span of transactions in both
 * modes: the rows mix's transactions grow slower as its table grows.
 */
function laterTxPerS(file: string): number {
  const all = lines(file);
  const start = all.find((line) => line.event === 'start')!;
  const commits = all.filter((line) => line.event === 'commit' && line.pid === start.pid);
  const from = commits[Math.floor(commits.length / 3)]!;
  const last = commits[commits.length - 1]!;
  return (commits.length - 1 - Math.floor(commits.length / 3)) / ((last.atMs - from.atMs) / 1000);
}

async function alone(mix: Mix): Promise<{ txPerS: number; laterTxPerS: number }> {
  const dir = await tempDir('bench-sqlite-alone');
  try {
    const journal = join(dir.path, 'journal.ndjson');
    await run(PYTHON, [APP], { env: { ...process.env, ...MIXES[mix], DB: join(dir.path, 'app.db'), APP_JOURNAL: journal, APP_TX: String(TX_COUNT), APP_AUTOCHECKPOINT: String(SQLITE_DEFAULT_AUTOCHECKPOINT) } });
    return { txPerS: txPerS(journal)!, laterTxPerS: laterTxPerS(journal) };
  } finally {
    await dir.remove();
  }
}

/** The largest size a file reached while sampled (a WAL is never shrunk by SQLite, but one may be replaced). */
function sizeWatch(path: string): { stop(): number } {
  let max = 0;
  const sample = () => {
    try {
      max = Math.max(max, statSync(path).size);
    } catch {
      // Not there yet.
    }
  };
  const timer = setInterval(sample, 100);
  return {
    stop: () => {
      clearInterval(timer);
      sample();
      return max;
    },
  };
}

interface WithAgent {
  txPerS: number;
  laterTxPerS: number;
  lagP50Ms: number;
  lagP99Ms: number;
  rssMB: number;
  walMaxMB: number;
  primaryCpuMsPerTx: number;
  standbyCpuMsPerTx: number;
  /** The primary's capture counters at the end: what its checkpoints did (status `sqlite[0]`). */
  checkpoints: string;
}

async function withAgent(mix: Mix): Promise<WithAgent> {
  const dir = await tempDir('bench-sqlite-agent');
  const broker = await startMosquitto(dir.path);
  const journal = join(dir.path, 'journal.ndjson');
  const app = (node: string) => ({ app: { command: [PYTHON, APP], env: { ...MIXES[mix], DB: join(dir.path, `${node}-db`, 'app.db'), APP_JOURNAL: journal, APP_TX: String(TX_COUNT) }, restartDelayMs: 60_000, sqlite: [{ path: join(dir.path, `${node}-db`, 'app.db'), name: 'app' }] } });
  await mkdir(join(dir.path, 'gw-a-db'));
  await mkdir(join(dir.path, 'gw-b-db'));
  const { a, b } = await startPair(dir.path, 'benchsql', broker.url, { extraA: app('gw-a'), extraB: app('gw-b') });
  const wal = sizeWatch(join(dir.path, 'gw-a-db', 'app.db-wal'));
  const pids = [a.process.child.pid, b.process.child.pid];
  const cpuBefore = pids.map((pid) => processCpuMs([pid]));
  try {
    // Polled rarely and from the file's end: the journal grows to thousands of lines, and parsing all of
    // them every 20 ms took this process 14 % of a CPU that the application competes for (0.3 % now; the rate
    // comes from the journal's own timestamps, not from when the poll saw the end).
    await waitFor('the application to finish', () => (journalTail(journal).includes('"done"') ? true : undefined), 300_000, 250);
    const rate = txPerS(journal)!;
    const [primaryCpuMsPerTx, standbyCpuMsPerTx] = pids.map((pid, index) => (processCpuMs([pid]) - cpuBefore[index]!) / TX_COUNT);
    // The end is the application's last transaction in the standby's copy (a capture that stopped short
    // would otherwise look settled: its last commit stops moving too).
    const lastTxid = lines(journal).find((line) => line.event === 'done')!.txid!;
    // The maintenance mix's capture runs far behind (its WAL hundreds of MB): on a slow day the standby took
    // over 2 min to catch up once the application had ended.
    const endedMs = Date.now();
    await waitFor('the standby to have the last transaction', async () => (await replicaTxid(join(dir.path, 'gw-b-db', 'app.db'))) === lastTxid || undefined, 600_000, 300);
    const catchUpS = (Date.now() - endedMs) / 1000;
    const sqlite = ((await a.client.status()).sqlite as Array<Record<string, number>>)[0]!;
    const rssKb = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${a.process.child.pid}/status`, 'utf8'))?.[1]);
    return { txPerS: rate, laterTxPerS: laterTxPerS(journal), lagP50Ms: sqlite.lagMsP50!, lagP99Ms: sqlite.lagMsP99!, rssMB: rssKb / 1024, walMaxMB: wal.stop() / 1024 / 1024, primaryCpuMsPerTx: primaryCpuMsPerTx!, standbyCpuMsPerTx: standbyCpuMsPerTx!, checkpoints: `${sqlite.checkpoints} checkpoints (${sqlite.fullCheckpoints} complete), ${sqlite.walResetsSeen} WAL resets, ${sqlite.generations} generations (the last: ${String((sqlite as Record<string, unknown>).generationReason)}), barrier busy ${sqlite.barrierBusy} times, held at most ${sqlite.barrierMsMax} ms, ${sqlite.walGiveUps} WAL give-ups (walBytesMax); the standby caught up ${catchUpS.toFixed(1)} s after the application ended` };
  } finally {
    wal.stop();
    await a.stop();
    await b.stop();
    await broker.stop();
    await dir.remove();
  }
}

interface BrownoutRound {
  tailEntries: number;
  tailMB: number;
  /** Transactions gw-a's application committed that gw-b's copy did not have at the brownout. */
  tailTx: number;
  flushMs: number;
  handoffMs: number;
  appOnSiblingMs: number;
  complete: boolean;
}

/** One brownout with a database tail (see the header); times from the BMS's brownout report. */
async function brownoutRound(): Promise<BrownoutRound> {
  const dir = await tempDir('bench-sqlite-brownout');
  const broker = await startMosquitto(dir.path);
  const pty = await createPtyPair(dir.path);
  const sim = await startBmsSim(['--protocol', 'bridge', '--serial', pty.devicePath]);
  const journal = join(dir.path, 'journal.ndjson');
  const app = (node: string) => ({ app: { command: [PYTHON, APP], env: { ...MIXES.rows, DB: join(dir.path, `${node}-db`, 'app.db'), APP_JOURNAL: journal, LASTGASP_NODE: node }, stopTimeoutMs: 5000, sqlite: [{ path: join(dir.path, `${node}-db`, 'app.db'), name: 'app' }] } });
  await mkdir(join(dir.path, 'gw-a-db'));
  await mkdir(join(dir.path, 'gw-b-db'));
  const power = { source: { kind: 'bridge', transport: { type: 'serial', path: pty.hostPath } }, onBatteryDebounceMs: 0, flushBudgetMs: 30_000, handoffAckTimeoutMs: 5000, cutDelayMs: 200 };
  const { a, b } = await startPair(dir.path, 'benchsqlbo', broker.url, { extraA: { ...app('gw-a'), power }, extraB: app('gw-b') });
  const committed = (node: string) => lines(journal).filter((line) => line.node === node && line.event === 'commit').map((line) => line.txid!);
  try {
    await a.waitForEvent('power-link', (line) => line.state === 'up', 30_000);
    await waitFor('the application to commit 300 transactions', () => (committed('gw-a').length >= 300 ? true : undefined), 120_000, 250);
    broker.suspend();
    await new Promise((resolve) => setTimeout(resolve, BROWNOUT_STALL_MS));
    const status = await a.client.status();
    const tailBytes = (status.log as { unreplicatedBytes: number }).unreplicatedBytes;
    const onSibling = await replicaTxid(join(dir.path, 'gw-b-db', 'app.db'));
    broker.resume();
    const brownoutAt = Date.now();
    sim.send('ac off');
    sim.send('brownout');
    const flushStart = await a.waitForEvent('flush-start', () => true, 60_000);
    const flushed = await a.waitForEvent('flush-done', () => true, 60_000);
    const handoff = await a.waitForEvent('handoff', () => true, 60_000);
    const start = await waitFor('the application to start on gw-b', () => lines(journal).find((line) => line.node === 'gw-b' && line.event === 'start'), 60_000, 50);
    const onA = committed('gw-a');
    const seen = start as Line & { txids?: number[]; integrity?: string };
    const complete = seen.integrity === 'ok' && JSON.stringify(seen.txids) === JSON.stringify(onA.map((_, index) => index + 1)) && onA.at(-1) === onA.length;
    return {
      tailEntries: flushStart.tail as number,
      tailMB: tailBytes / 1024 / 1024,
      tailTx: onA.length - Math.max(0, onSibling),
      flushMs: flushed.flushMs as number,
      handoffMs: Date.parse(handoff.time as string) - brownoutAt,
      appOnSiblingMs: start.atMs - brownoutAt,
      complete,
    };
  } finally {
    broker.resume();
    await a.stop('SIGKILL');
    await b.stop();
    await sim.stop();
    await pty.close();
    await broker.stop();
    await dir.remove();
  }
}

function median(values: number[]): number {
  const sorted = [...values].sort((x, y) => x - y);
  return sorted[Math.floor(sorted.length / 2)]!;
}

/** The medians of a mix's rounds. */
function summary(alones: Array<{ txPerS: number; laterTxPerS: number }>, withs: WithAgent[]) {
  return {
    appTxPerS: Math.round(median(withs.map((w) => w.txPerS))),
    appTxPerSAlone: Math.round(median(alones.map((a) => a.txPerS))),
    // The last two thirds of each run (laterTxPerS): the ratio with the agents' start left out.
    laterRatio: Number(median(withs.map((w, index) => w.laterTxPerS / alones[index]!.laterTxPerS)).toFixed(2)),
    lagP50Ms: Number(median(withs.map((w) => w.lagP50Ms)).toFixed(1)),
    lagP99Ms: Number(median(withs.map((w) => w.lagP99Ms)).toFixed(1)),
    rssMB: Math.round(median(withs.map((w) => w.rssMB))),
    walMaxMB: Number(median(withs.map((w) => w.walMaxMB)).toFixed(1)),
    cpuMsPerTx: { primary: Number(median(withs.map((w) => w.primaryCpuMsPerTx)).toFixed(2)), standby: Number(median(withs.map((w) => w.standbyCpuMsPerTx)).toFixed(2)) },
  };
}

async function main(): Promise<void> {
  const runs: Record<Mix, { alones: Array<{ txPerS: number; laterTxPerS: number }>; withs: WithAgent[] }> = { rows: { alones: [], withs: [] }, maintenance: { alones: [], withs: [] } };
  const plan: Mix[] = [];
  for (let round = 0; round < Math.max(ROUNDS, MAINTENANCE_ROUNDS); round++) {
    if (round < ROUNDS) plan.push('rows');
    if (round < MAINTENANCE_ROUNDS) plan.push('maintenance');
  }
  for (const mix of plan) {
    const { alones, withs } = runs[mix];
    alones.push(await alone(mix));
    withs.push(await withAgent(mix));
    const w = withs.at(-1)!;
    const a = alones.at(-1)!;
    console.log(`${mix} round ${withs.length}: alone ${a.txPerS.toFixed(0)} tx/s, with the agent ${w.txPerS.toFixed(0)} tx/s (${(w.txPerS / a.txPerS).toFixed(2)}; last two thirds ${a.laterTxPerS.toFixed(0)} and ${w.laterTxPerS.toFixed(0)} tx/s, ${(w.laterTxPerS / a.laterTxPerS).toFixed(2)}), capture lag p50 ${w.lagP50Ms.toFixed(1)} ms p99 ${w.lagP99Ms.toFixed(1)} ms, CPU per transaction primary ${w.primaryCpuMsPerTx.toFixed(2)} ms standby ${w.standbyCpuMsPerTx.toFixed(2)} ms, agent RSS ${w.rssMB.toFixed(0)} MB, WAL at most ${w.walMaxMB.toFixed(1)} MB; ${w.checkpoints}`);
  }
  const rows = summary(runs.rows.alones, runs.rows.withs);
  const maintenance = MAINTENANCE_ROUNDS > 0 ? summary(runs.maintenance.alones, runs.maintenance.withs) : undefined;
  console.log('');
  console.log('| mix | rounds | alone tx/s | with the agent tx/s | ratio | ratio, last 2/3 | lag p50 / p99 ms | CPU ms/tx primary / standby | RSS MB | WAL max MB |');
  console.log('|---|---|---|---|---|---|---|---|---|---|');
  for (const [mix, s] of [['rows', rows], ['maintenance', maintenance]] as const) {
    if (!s) continue;
    console.log(`| ${mix} | ${runs[mix].withs.length} | ${s.appTxPerSAlone} | ${s.appTxPerS} | ${(s.appTxPerS / s.appTxPerSAlone).toFixed(2)} | ${s.laterRatio} | ${s.lagP50Ms} / ${s.lagP99Ms} | ${s.cpuMsPerTx.primary} / ${s.cpuMsPerTx.standby} | ${s.rssMB} | ${s.walMaxMB} |`);
  }
  console.log(`${TX_COUNT} transactions per run (medians)`);
  const brownouts: BrownoutRound[] = [];
  for (let round = 0; round < BROWNOUT_ROUNDS; round++) {
    const r = await brownoutRound();
    brownouts.push(r);
    console.log(`brownout round ${round + 1}: a tail of ${r.tailEntries} entries (${r.tailMB.toFixed(1)} MB not replicated after the broker hung ${BROWNOUT_STALL_MS} ms; ${r.tailTx} of the application's transactions not yet in gw-b's copy) flushed in ${r.flushMs} ms (the application stopped and its last commits captured first), handoff at ${r.handoffMs} ms, the application running on gw-b at ${r.appOnSiblingMs.toFixed(0)} ms after the brownout; every committed transaction there: ${r.complete ? 'yes' : 'NO'}`);
  }
  const brownout = brownouts.length
    ? { tailEntries: median(brownouts.map((r) => r.tailEntries)), tailMB: Number(median(brownouts.map((r) => r.tailMB)).toFixed(1)), tailTx: median(brownouts.map((r) => r.tailTx)), flushMs: median(brownouts.map((r) => r.flushMs)), handoffMs: median(brownouts.map((r) => r.handoffMs)), appOnSiblingMs: Math.round(median(brownouts.map((r) => r.appOnSiblingMs))), complete: brownouts.every((r) => r.complete) }
    : undefined;
  console.log(JSON.stringify({ ...rows, maintenance, brownout }));
}

main()
  .catch((error: unknown) => {
    console.error(error);
    process.exitCode = 1;
  })
  .finally(killAll);
