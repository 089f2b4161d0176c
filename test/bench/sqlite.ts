/**
 * `npm run bench:sqlite`: what following an application's SQLite database costs the application, and how far
 * behind the log the capture runs (issue 14). Debian's Python sqlite3 (test/fixtures/sqlite-app.py) writes
 * TX_COUNT small random transactions, one after the other, with the settings the README asks for:
 *
 *   - alone: the application by itself, no agent;
 *   - with the agent: the same application started by a primary agent (`app:` and `app.sqlite`), with a
 *     standby sibling and a local mosquitto, as in production.
 *
 * appTxPerS / appTxPerSAlone is the cost (the goal: at least 0.8). lagP50Ms / lagP99Ms are the
 * capture's lag as the primary measures it: from the WAL's last modification to the transaction's entry
 * being fdatasynced in the log (replication to the sibling comes after, as for every entry). rssMB is the
 * primary agent's resident memory with one database. walMaxMB is the largest the primary's `-wal` grew
 * (sampled every 100 ms): what the agent's checkpoints leave the application's disk to hold. Each mode runs
 * ROUNDS times, interleaved; medians are printed, and the last line is one JSON object. Not part of `npm test`.
 */
import { execFile } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { startPair } from '../support/agents.ts';
import { startMosquitto } from '../support/mosquitto.ts';
import { killAll } from '../support/processes.ts';
import { tempDir, waitFor } from '../support/ports.ts';

const run = promisify(execFile);
const PYTHON = '/usr/bin/python3';
const APP = fileURLToPath(new URL('../fixtures/sqlite-app.py', import.meta.url));
const TX_COUNT = Number(process.env.LASTGASP_BENCH_TX ?? 2000);
const ROUNDS = Number(process.env.LASTGASP_BENCH_ROUNDS ?? 3);

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
  try {
    return readFileSync(file, 'utf8').split('\n').filter((line) => line.trim() !== '').map((line) => JSON.parse(line) as Line);
  } catch {
    return [];
  }
}

/** Transactions per second of the application's first run in the journal (from its start line to its done line). */
function txPerS(file: string): number | undefined {
  const all = lines(file);
  const start = all.find((line) => line.event === 'start');
  const done = start && all.find((line) => line.event === 'done' && line.pid === start.pid);
  return start && done ? TX_COUNT / ((done.atMs - start.atMs) / 1000) : undefined;
}

async function alone(): Promise<number> {
  const dir = await tempDir('bench-sqlite-alone');
  try {
    const journal = join(dir.path, 'journal.ndjson');
    await run(PYTHON, [APP], { env: { ...process.env, DB: join(dir.path, 'app.db'), APP_JOURNAL: journal, APP_TX: String(TX_COUNT) } });
    return txPerS(journal)!;
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

async function withAgent(): Promise<{ txPerS: number; lagP50Ms: number; lagP99Ms: number; rssMB: number; walMaxMB: number }> {
  const dir = await tempDir('bench-sqlite-agent');
  const broker = await startMosquitto(dir.path);
  const journal = join(dir.path, 'journal.ndjson');
  const app = (node: string) => ({ app: { command: [PYTHON, APP], env: { DB: join(dir.path, `${node}-db`, 'app.db'), APP_JOURNAL: journal, APP_TX: String(TX_COUNT) }, restartDelayMs: 60_000, sqlite: [{ path: join(dir.path, `${node}-db`, 'app.db'), name: 'app' }] } });
  await mkdir(join(dir.path, 'gw-a-db'));
  await mkdir(join(dir.path, 'gw-b-db'));
  const { a, b } = await startPair(dir.path, 'benchsql', broker.url, { extraA: app('gw-a'), extraB: app('gw-b') });
  const wal = sizeWatch(join(dir.path, 'gw-a-db', 'app.db-wal'));
  try {
    const rate = await waitFor('the application to finish', () => txPerS(journal), 300_000);
    // The end is the application's last transaction in the standby's copy (a capture that stopped short
    // would otherwise look settled: its last commit stops moving too).
    const lastTxid = lines(journal).find((line) => line.event === 'done')!.txid!;
    await waitFor('the standby to have the last transaction', async () => (await replicaTxid(join(dir.path, 'gw-b-db', 'app.db'))) === lastTxid || undefined, 120_000, 300);
    const sqlite = ((await a.client.status()).sqlite as Array<Record<string, number>>)[0]!;
    const rssKb = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${a.process.child.pid}/status`, 'utf8'))?.[1]);
    return { txPerS: rate, lagP50Ms: sqlite.lagMsP50!, lagP99Ms: sqlite.lagMsP99!, rssMB: rssKb / 1024, walMaxMB: wal.stop() / 1024 / 1024 };
  } finally {
    wal.stop();
    await a.stop();
    await b.stop();
    await broker.stop();
    await dir.remove();
  }
}

function median(values: number[]): number {
  const sorted = [...values].sort((x, y) => x - y);
  return sorted[Math.floor(sorted.length / 2)]!;
}

async function main(): Promise<void> {
  const alones: number[] = [];
  const withs: Array<Awaited<ReturnType<typeof withAgent>>> = [];
  for (let round = 0; round < ROUNDS; round++) {
    alones.push(await alone());
    withs.push(await withAgent());
    console.log(`round ${round + 1}: alone ${alones.at(-1)!.toFixed(0)} tx/s, with the agent ${withs.at(-1)!.txPerS.toFixed(0)} tx/s, capture lag p50 ${withs.at(-1)!.lagP50Ms.toFixed(1)} ms p99 ${withs.at(-1)!.lagP99Ms.toFixed(1)} ms, agent RSS ${withs.at(-1)!.rssMB.toFixed(0)} MB, WAL at most ${withs.at(-1)!.walMaxMB.toFixed(1)} MB`);
  }
  const result = {
    appTxPerS: Math.round(median(withs.map((w) => w.txPerS))),
    appTxPerSAlone: Math.round(median(alones)),
    lagP50Ms: Number(median(withs.map((w) => w.lagP50Ms)).toFixed(1)),
    lagP99Ms: Number(median(withs.map((w) => w.lagP99Ms)).toFixed(1)),
    rssMB: Math.round(median(withs.map((w) => w.rssMB))),
    walMaxMB: Number(median(withs.map((w) => w.walMaxMB)).toFixed(1)),
  };
  console.log(`${TX_COUNT} transactions, ${ROUNDS} rounds: ${result.appTxPerS} tx/s with the agent, ${result.appTxPerSAlone} alone (ratio ${(result.appTxPerS / result.appTxPerSAlone).toFixed(2)})`);
  console.log(JSON.stringify(result));
}

main()
  .catch((error: unknown) => {
    console.error(error);
    process.exitCode = 1;
  })
  .finally(killAll);
