/**
 * `npm run bench:log`: the flash log against the raw bound and SQLite, side by side in one run.
 *
 *   - lastgasp appends/s and p50/p99 acknowledgement latency with 1, 16 and 256 concurrent writers of 256 B;
 *   - a batching writer: one caller of appendMany with 256 entries per call (the raw bound's batch), next to
 *     the 256 concurrent one-entry writers, in the same alternating slices;
 *   - the raw bound: writeSync + fdatasyncSync of pre-built batches of the same sizes into a preallocated file,
 *     measured in short slices that alternate with lastgasp's (ROUNDS of each), so that both see the same
 *     load on a shared machine; the spread of the per-round ratios is printed;
 *   - the linger: 1 and 16 writers with the agent's default lingerMs, next to lingerMs 0;
 *   - raw per-entry write + fdatasync (batch of one);
 *   - SQLite (better-sqlite3 12.x, WAL, synchronous=FULL): one transaction per entry, and batches of 256;
 *   - recovery: opening a 1 GiB log left without a clean close (MB/s), peak RSS opening 100 MiB vs 1 GiB;
 *   - device bytes per payload byte from /proc/self/io write_bytes, checkpoints included.
 * Prints a table, then one JSON object as the last line. Not part of `npm test`; run it with `nice`.
 *
 * better-sqlite3 is not a dependency of lastgasp (the agent does not use SQLite). The bench loads it when it
 * can be resolved from the project, or from LASTGASP_BENCH_SQLITE (a path to a built better-sqlite3 package);
 * `npm install --no-save better-sqlite3@12` builds it from source with the local Node headers.
 */
import { spawnSync } from 'node:child_process';
import { closeSync, fdatasyncSync, mkdtempSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createFlashLog, verifyLog } from '../../agent/log/index.ts';

const ENTRY_BYTES = 256;
const WRITER_COUNTS = [1, 16, 256] as const;
const LINGER_WRITER_COUNTS = [1, 16] as const;
/** Each measurement runs this long: long enough for thousands of syncs, short enough to keep the run near a minute. */
const RUN_MS = Number(process.env.LASTGASP_BENCH_RUN_MS ?? 3000);
/**
 * Each measurement is split into this many slices, alternating raw and lastgasp (and lastgasp with the
 * default linger): the load of a shared machine changes within seconds, and short alternating slices expose
 * every variant to the same load.
 */
const ROUNDS = 12;
/** The agent's default linger (agent/config/schema.ts, log.lingerMs). */
const AGENT_LINGER_MS = 2;
/** Entries per appendMany call of the batching writer: the raw bound's batch at 256 writers. */
const MANY_ENTRIES = 256;
const RECOVERY_SMALL_BYTES = 100 * 1024 * 1024;
const RECOVERY_LARGE_BYTES = 1024 * 1024 * 1024;
const MIB = 1024 * 1024;
const PAGE_BYTES = 4096;

function writeBytes(): number {
  const text = readFileSync('/proc/self/io', 'utf8');
  const match = /write_bytes:\s+(\d+)/.exec(text);
  return match ? Number(match[1]) : 0;
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;
}

interface AppendRun {
  perS: number;
  p50Ms: number;
  p99Ms: number;
  deviceBytesPerPayloadByte: number;
  batches: number;
  /** Rate of each slice, for the spread. */
  slicePerS: number[];
}

interface RawRun {
  perS: number;
  deviceBytesPerPayloadByte: number;
  slicePerS: number[];
}

/**
 * A log with `writers` closed-loop writers that can be run in slices. `perCall` > 1: each writer appends that
 * many entries per call of FlashLog.appendMany (a batching writer; latencies are per call).
 */
async function openAppender(base: string, name: string, writers: number, lingerMs: number, perCall = 1) {
  const dir = join(base, name);
  const log = createFlashLog({ dir, lingerMs });
  await log.open();
  // Replication keeps up, as in normal operation: retention recycles segments instead of zero-filling new ones.
  log.onCommit((committed) => log.markReplicated(committed));
  const payload = new Uint8Array(ENTRY_BYTES).fill(0x5a);
  const payloads = Array.from({ length: perCall }, () => payload);
  const appendOnce = perCall === 1 ? () => log.append(payload) : () => log.appendMany(payloads);
  // Warm up: let the first segment and its spare exist before measuring (the first spare is a one-off
  // zero-fill; in steady state retention recycles segments into spares).
  await Promise.all(Array.from({ length: writers }, () => log.append(payload)));
  while (log.status().counters.spares! < 1) await new Promise((resolve) => setTimeout(resolve, 10));
  const latencies = new Float64Array(4_000_000);
  let recorded = 0;
  let entries = 0;
  let elapsedMs = 0;
  let bytes = 0;
  const slicePerS: number[] = [];
  const batchesBefore = log.status().counters.batches!;
  return {
    async slice(ms: number): Promise<void> {
      let count = 0;
      const bytesBefore = writeBytes();
      const started = performance.now();
      // One clock read per append: the end of one append is the start of the next, and the slice ends by a
      // timer rather than a clock read per iteration (three reads per append were about a tenth of the
      // main thread's time at 256 writers, charged to the log).
      let stop = false;
      const timer = setTimeout(() => (stop = true), ms);
      const writer = async () => {
        let t0 = performance.now();
        while (!stop) {
          await appendOnce();
          const t1 = performance.now();
          if (recorded < latencies.length) latencies[recorded++] = t1 - t0;
          t0 = t1;
          count += perCall;
        }
      };
      await Promise.all(Array.from({ length: writers }, writer));
      clearTimeout(timer);
      const sliceMs = performance.now() - started;
      bytes += writeBytes() - bytesBefore;
      entries += count;
      elapsedMs += sliceMs;
      slicePerS.push(count / (sliceMs / 1000));
    },
    async finish(): Promise<AppendRun> {
      const counters = log.status().counters;
      process.stderr.write(`  ${name}: rolls ${counters.rolls}, spares zero-filled ${counters.sparesCreated}, segments recycled ${counters.segmentsRecycled}, lingers ${counters.lingers}\n`);
      const batches = counters.batches! - batchesBefore;
      await log.close();
      rmSync(dir, { recursive: true, force: true });
      const sorted = latencies.slice(0, recorded).sort();
      return {
        perS: entries / (elapsedMs / 1000),
        p50Ms: percentile(sorted, 0.5),
        p99Ms: percentile(sorted, 0.99),
        deviceBytesPerPayloadByte: bytes / (entries * ENTRY_BYTES),
        batches,
        slicePerS,
      };
    },
  };
}

/** The raw bound: pre-built batches, one positional write and one fdatasync each, into a preallocated file. */
function openRaw(base: string, batchEntries: number) {
  const path = join(base, `raw-${batchEntries}`);
  const fileBytes = 64 * MIB;
  const fd = openSync(path, 'w+');
  // Preallocated the way the log preallocates its segments: page-sized zero writes (see segments.ts on folios).
  const zeros = new Uint8Array(PAGE_BYTES);
  for (let at = 0; at < fileBytes; at += PAGE_BYTES) writeSync(fd, zeros, 0, PAGE_BYTES, at);
  fdatasyncSync(fd);
  const batch = new Uint8Array(batchEntries * ENTRY_BYTES).fill(0x5a);
  let position = 0;
  let entries = 0;
  let elapsedMs = 0;
  let bytes = 0;
  const slicePerS: number[] = [];
  return {
    slice(ms: number): void {
      let count = 0;
      const bytesBefore = writeBytes();
      const started = performance.now();
      while (performance.now() - started < ms) {
        if (position + batch.length > fileBytes) position = 0;
        writeSync(fd, batch, 0, batch.length, position);
        fdatasyncSync(fd);
        position += batch.length;
        count += batchEntries;
      }
      const sliceMs = performance.now() - started;
      bytes += writeBytes() - bytesBefore;
      entries += count;
      elapsedMs += sliceMs;
      slicePerS.push(count / (sliceMs / 1000));
    },
    finish(): RawRun {
      closeSync(fd);
      rmSync(path, { force: true });
      return { perS: entries / (elapsedMs / 1000), deviceBytesPerPayloadByte: bytes / (entries * ENTRY_BYTES), slicePerS };
    },
  };
}

/**
 * lastgasp and the raw bound for one writer count in alternating slices; with `linger`, also lastgasp with
 * the agent's default lingerMs, so that linger on and off are compared under the same load.
 */
async function benchWriters(base: string, writers: number, linger: boolean): Promise<{ appends: AppendRun; raw: RawRun; lingered?: AppendRun; many?: AppendRun }> {
  const raw = openRaw(base, writers);
  const appender = await openAppender(base, `append-${writers}`, writers, 0);
  const lingering = linger ? await openAppender(base, `linger-${writers}`, writers, AGENT_LINGER_MS) : undefined;
  // The raw bound writes `writers` entries at once: a writer that batches does the same through appendMany.
  const batching = writers === MANY_ENTRIES ? await openAppender(base, `many-${writers}`, 1, 0, MANY_ENTRIES) : undefined;
  for (let round = 0; round < ROUNDS; round++) {
    raw.slice(RUN_MS / ROUNDS);
    await appender.slice(RUN_MS / ROUNDS);
    if (lingering) await lingering.slice(RUN_MS / ROUNDS);
    if (batching) await batching.slice(RUN_MS / ROUNDS);
  }
  return {
    appends: await appender.finish(),
    raw: raw.finish(),
    ...(lingering ? { lingered: await lingering.finish() } : {}),
    ...(batching ? { many: await batching.finish() } : {}),
  };
}

type SqliteDatabase = {
  pragma(text: string): unknown;
  exec(sql: string): void;
  prepare(sql: string): { run(...args: unknown[]): unknown };
  transaction<T extends (...args: never[]) => unknown>(fn: T): T;
  close(): void;
};

function loadSqlite(): { open: (path: string) => SqliteDatabase; why?: undefined } | { open?: undefined; why: string } {
  const require = createRequire(import.meta.url);
  const candidates = [process.env.LASTGASP_BENCH_SQLITE, 'better-sqlite3'].filter((c): c is string => Boolean(c));
  const reasons: string[] = [];
  for (const candidate of candidates) {
    try {
      const Database = require(candidate) as new (path: string) => SqliteDatabase;
      new Database(':memory:').close();
      return { open: (path: string) => new Database(path) };
    } catch (error) {
      reasons.push(`${candidate}: ${(error as Error).message.split('\n')[0]}`);
    }
  }
  return { why: `better-sqlite3 12.x could not be loaded (${reasons.join('; ')}); install it with \`npm install --no-save better-sqlite3@12\` or set LASTGASP_BENCH_SQLITE` };
}

function benchSqlite(base: string, open: (path: string) => SqliteDatabase, perTransaction: number): number {
  const path = join(base, `sqlite-${perTransaction}.db`);
  const db = open(path);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.exec('CREATE TABLE log (seq INTEGER PRIMARY KEY, payload BLOB NOT NULL)');
  const insert = db.prepare('INSERT INTO log (payload) VALUES (?)');
  const payload = new Uint8Array(ENTRY_BYTES).fill(0x5a);
  const many = db.transaction((n: number) => {
    for (let i = 0; i < n; i++) insert.run(payload);
  });
  let entries = 0;
  const started = performance.now();
  while (performance.now() - started < RUN_MS) {
    many(perTransaction as never);
    entries += perTransaction;
  }
  const perS = entries / ((performance.now() - started) / 1000);
  db.close();
  rmSync(path, { force: true });
  rmSync(`${path}-wal`, { force: true });
  rmSync(`${path}-shm`, { force: true });
  return perS;
}

/**
 * Fill a log to `bytes` with 256 B entries in a child process that then exits without closing it, as a crash
 * would leave it (no clean-close checkpoint; the directory lock is left to a dead pid).
 */
function buildLogInChild(dir: string, bytes: number): void {
  const self = fileURLToPath(import.meta.url);
  const result = spawnSync(process.execPath, ['--import', 'tsx', self, '--build', dir, String(bytes)], { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`build child failed: ${result.stderr}`);
}

async function childBuild(dir: string, bytes: number): Promise<void> {
  const log = createFlashLog({ dir });
  await log.open();
  const payload = new Uint8Array(ENTRY_BYTES).fill(0x33);
  const entries = Math.ceil(bytes / (ENTRY_BYTES + 24));
  let next = 0;
  const writer = async () => {
    while (next < entries) {
      next++;
      await log.append(payload);
    }
  };
  await Promise.all(Array.from({ length: 512 }, writer));
  // No close(): the log ends without a clean-close checkpoint, like after a power cut. Let a spare being
  // preallocated in the background finish, so that the measured open sees a quiet directory.
  await log.whenSettled();
  process.exit(0);
}

/** Open a log in a fresh process and report the open time and that process's peak RSS. */
function openInChild(dir: string): { openMs: number; maxRssMB: number; committed: number } {
  const self = fileURLToPath(import.meta.url);
  const result = spawnSync(process.execPath, ['--import', 'tsx', self, '--open', dir], { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`open child failed: ${result.stderr}`);
  return JSON.parse(result.stdout.trim().split('\n').at(-1)!);
}

async function childOpen(dir: string): Promise<void> {
  const log = createFlashLog({ dir });
  const started = performance.now();
  const report = await log.open();
  const openMs = performance.now() - started;
  const maxRssMB = process.resourceUsage().maxRSS / 1024;
  process.stdout.write(JSON.stringify({ openMs, maxRssMB, committed: report.committed }) + '\n');
  await log.close();
}

function fmt(value: number, digits = 0): string {
  return value.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

async function main(): Promise<void> {
  const base = mkdtempSync(join(process.env.LASTGASP_BENCH_DIR ?? tmpdir(), 'lastgasp-bench-log-'));
  try {
    const appends: Record<string, AppendRun> = {};
    const raw: Record<string, RawRun> = {};
    const lingered: Record<string, AppendRun> = {};
    let many: AppendRun | undefined;
    for (const writers of WRITER_COUNTS) {
      const run = await benchWriters(base, writers, (LINGER_WRITER_COUNTS as readonly number[]).includes(writers));
      appends[writers] = run.appends;
      raw[writers] = run.raw;
      if (run.lingered) lingered[writers] = run.lingered;
      if (run.many) many = run.many;
    }
    const manyRun = many!;
    const sqlite = loadSqlite();
    let sqlitePerEntryPerS: number | null = null;
    let sqliteBatchedPerS: number | null = null;
    if (sqlite.open) {
      sqlitePerEntryPerS = benchSqlite(base, sqlite.open, 1);
      sqliteBatchedPerS = benchSqlite(base, sqlite.open, 256);
    }

    const smallDir = join(base, 'recover-100MiB');
    const largeDir = join(base, 'recover-1GiB');
    buildLogInChild(smallDir, RECOVERY_SMALL_BYTES);
    buildLogInChild(largeDir, RECOVERY_LARGE_BYTES);
    const small = openInChild(smallDir);
    const large = openInChild(largeDir);
    const scan = await verifyLog(largeDir);
    const recoveryMBps = RECOVERY_LARGE_BYTES / MIB / (large.openMs / 1000);
    const fullScanMBps = scan.bytesChecked / MIB / (scan.durationMs / 1000);

    const spread = (values: number[]) => `${fmt(Math.min(...values))}-${fmt(Math.max(...values))}`;
    const rows: string[][] = [['measurement', 'writers/batch', 'entries/s', 'slices min-max', 'p50 ms', 'p99 ms', 'device B per payload B']];
    for (const writers of WRITER_COUNTS) {
      const a = appends[writers]!;
      const r = raw[writers]!;
      rows.push(['lastgasp append (group commit, lingerMs 0)', String(writers), fmt(a.perS), spread(a.slicePerS), fmt(a.p50Ms, 3), fmt(a.p99Ms, 3), fmt(a.deviceBytesPerPayloadByte, 3)]);
      rows.push(['raw write+fdatasync, pre-built batch', String(writers), fmt(r.perS), spread(r.slicePerS), '', '', fmt(r.deviceBytesPerPayloadByte, 3)]);
      if (writers === MANY_ENTRIES) {
        rows.push([`lastgasp appendMany, 1 writer x ${MANY_ENTRIES} entries/call`, String(MANY_ENTRIES), fmt(manyRun.perS), spread(manyRun.slicePerS), fmt(manyRun.p50Ms, 3), fmt(manyRun.p99Ms, 3), fmt(manyRun.deviceBytesPerPayloadByte, 3)]);
      }
    }
    for (const writers of LINGER_WRITER_COUNTS) {
      const l = lingered[writers]!;
      rows.push([`lastgasp append, lingerMs ${AGENT_LINGER_MS} (agent default)`, String(writers), fmt(l.perS), spread(l.slicePerS), fmt(l.p50Ms, 3), fmt(l.p99Ms, 3), fmt(l.deviceBytesPerPayloadByte, 3)]);
    }
    rows.push(['raw per-entry write+fdatasync', '1', fmt(raw[1]!.perS), '', '', '']);
    if (sqlite.open) {
      rows.push(['SQLite WAL synchronous=FULL, 1 entry/txn', '1', fmt(sqlitePerEntryPerS!), '', '', '']);
      rows.push(['SQLite WAL synchronous=FULL, 256 entries/txn', '256', fmt(sqliteBatchedPerS!), '', '', '']);
    } else rows.push([`SQLite: unavailable (${sqlite.why})`, '', '', '', '', '']);
    const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length)));
    for (const row of rows) console.log(row.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  '));
    console.log('');
    console.log(`recovery after a crash: 1 GiB log opened in ${fmt(large.openMs, 1)} ms (${fmt(recoveryMBps)} MB/s of log; recovery scans from the last checkpoint, i.e. the active segment)`);
    console.log(`full scan of every record (verify, CRC + seq): ${fmt(fullScanMBps)} MB/s over ${fmt(scan.bytesChecked / MIB)} MiB`);
    console.log(`peak RSS opening: 100 MiB log ${fmt(small.maxRssMB, 1)} MB, 1 GiB log ${fmt(large.maxRssMB, 1)} MB (growth ${fmt(large.maxRssMB - small.maxRssMB, 1)} MB)`);
    const ratio = appends[256]!.perS / raw[256]!.perS;
    const roundRatios = appends[256]!.slicePerS.map((perS, i) => perS / raw[256]!.slicePerS[i]!);
    console.log(`lastgasp vs raw batched bound at 256 writers: ${fmt(ratio, 3)} (target >= 0.8); per round ${roundRatios.map((r) => fmt(r, 2)).join(' ')}`);
    const manyRatio = manyRun.perS / raw[MANY_ENTRIES]!.perS;
    const manyRoundRatios = manyRun.slicePerS.map((perS, i) => perS / raw[MANY_ENTRIES]!.slicePerS[i]!);
    console.log(`lastgasp appendMany (${MANY_ENTRIES} entries/call) vs the same raw bound: ${fmt(manyRatio, 3)} (target >= 0.8); per round ${manyRoundRatios.map((r) => fmt(r, 2)).join(' ')}`);
    const byWriters = <T>(f: (w: number) => T) => Object.fromEntries(WRITER_COUNTS.map((w) => [String(w), f(w)]));
    console.log(
      JSON.stringify({
        entryBytes: ENTRY_BYTES,
        runMs: RUN_MS,
        appendsPerS: byWriters((w) => Math.round(appends[w]!.perS)),
        latencyP50Ms: byWriters((w) => Number(appends[w]!.p50Ms.toFixed(3))),
        latencyP99Ms: byWriters((w) => Number(appends[w]!.p99Ms.toFixed(3))),
        batches: byWriters((w) => appends[w]!.batches),
        rawBatchedPerS: byWriters((w) => Math.round(raw[w]!.perS)),
        rawPerEntryPerS: Math.round(raw[1]!.perS),
        ratioVsRawBatched256: Number(ratio.toFixed(3)),
        ratioVsRawBatched256Rounds: roundRatios.map((r) => Number(r.toFixed(3))),
        appendManyPerS256: Math.round(manyRun.perS),
        appendManyLatencyP50Ms256: Number(manyRun.p50Ms.toFixed(3)),
        appendManyLatencyP99Ms256: Number(manyRun.p99Ms.toFixed(3)),
        appendManyRatioVsRawBatched256: Number(manyRatio.toFixed(3)),
        appendManyRatioVsRawBatched256Rounds: manyRoundRatios.map((r) => Number(r.toFixed(3))),
        lingerMs: AGENT_LINGER_MS,
        lingerAppendsPerS: Object.fromEntries(LINGER_WRITER_COUNTS.map((w) => [String(w), Math.round(lingered[w]!.perS)])),
        lingerLatencyP50Ms: Object.fromEntries(LINGER_WRITER_COUNTS.map((w) => [String(w), Number(lingered[w]!.p50Ms.toFixed(3))])),
        lingerLatencyP99Ms: Object.fromEntries(LINGER_WRITER_COUNTS.map((w) => [String(w), Number(lingered[w]!.p99Ms.toFixed(3))])),
        sqlitePerEntryPerS: sqlitePerEntryPerS === null ? null : Math.round(sqlitePerEntryPerS),
        sqliteBatchedPerS: sqliteBatchedPerS === null ? null : Math.round(sqliteBatchedPerS),
        sqliteUnavailable: sqlite.why ?? null,
        recoveryMBps: Math.round(recoveryMBps),
        recoveryOpenMs: Number(large.openMs.toFixed(1)),
        fullScanMBps: Math.round(fullScanMBps),
        rss100MiBMB: Number(small.maxRssMB.toFixed(1)),
        rss1GiBMB: Number(large.maxRssMB.toFixed(1)),
        rssGrowthMB: Number((large.maxRssMB - small.maxRssMB).toFixed(1)),
        deviceBytesPerPayloadByte: byWriters((w) => Number(appends[w]!.deviceBytesPerPayloadByte.toFixed(3))),
        rawDeviceBytesPerPayloadByte: byWriters((w) => Number(raw[w]!.deviceBytesPerPayloadByte.toFixed(3))),
      }),
    );
  } finally {
    rmSync(base, { recursive: true, force: true });
  }
}

if (process.argv[2] === '--open') await childOpen(process.argv[3]!);
else if (process.argv[2] === '--build') await childBuild(process.argv[3]!, Number(process.argv[4]));
else await main();
