/**
 * Operator tools: `lastgasp log inspect DIR` and `lastgasp log verify DIR`. Both only read: files are opened
 * read-only, nothing is locked, synced, truncated or renamed, so they are safe beside a live agent (a segment
 * that retention removes mid-run is reported as gone, and the active segment's unsynced tail is reported as
 * such, not as damage).
 * (About 480 lines: the two commands share the read-only segment walk; inspect's report and verify's checks
 * are the split to make when either grows.)
 */
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { EXIT_USAGE, HelpRequested, LastgaspError, UsageError, parseCommand, systemErrorCode, type CommandSpec } from '../util/index.ts';
import {
  CHECKPOINT_HEAD,
  CHECKPOINT_RECORD_BYTES,
  LOG_FORMAT_VERSION,
  RECORD_HEADER_BYTES,
  RECORD_PAYLOAD_BYTES_MAX,
  RECORD_TYPE_CHECKPOINT,
  RECORD_TYPE_ENTRY,
  RETENTION_FLOOR_NONE,
  SEGMENT_HEADER_BYTES,
  decodeCheckpointPayload,
  decodeRecord,
  decodeSegmentHeader,
  isQuarantineFileName,
  parseSegmentFileName,
  saltSeed,
  type CheckpointState,
  type SegmentHeader,
} from './format.ts';
import { ChunkReader, findNextValid, scanRecords } from './scan.ts';
import { createNodeStorage, type Storage, type StorageFile } from './storage/index.ts';
import type { LogEntry } from './types.ts';
import { DEMOTION_INTENT_FILE } from './demotion.ts';
import { readDirLock } from './lock.ts';

export interface SegmentReport {
  readonly file: string;
  readonly id: number;
  /** active: the newest segment holding records; sealed: an older one; spare: preallocated, never used; damaged: unreadable header or head. */
  readonly state: 'active' | 'sealed' | 'spare' | 'damaged';
  readonly fileBytes: number;
  readonly firstSeq: number;
  /** 0 while the segment holds no entry. */
  readonly lastSeq: number;
  readonly bytesUsed: number;
  readonly epoch: number;
  readonly problem?: string;
}

export interface InspectReport {
  readonly dir: string;
  readonly formatVersion: number;
  readonly firstSeq: number;
  readonly committed: number;
  readonly epoch: number;
  readonly watermarks: { replicated: number; replicaAcked: number; retentionFloor: number | null };
  readonly cleanClose: boolean;
  readonly segments: SegmentReport[];
  readonly quarantine: Array<{ file: string; bytes: number }>;
  readonly space: { segmentBytes: number; spareBytes: number; quarantineBytes: number; totalBytes: number; usedBytes: number };
  /** The process that holds (or last held) the directory, and whether it still runs. */
  readonly lock: { pid: number; host: string; sinceMs: number; released: boolean; alive: boolean } | null;
  /** A demotion was interrupted; the next open finishes it. */
  readonly demotionPending: boolean;
}

export interface VerifyReport {
  readonly dir: string;
  readonly ok: boolean;
  readonly segmentsChecked: number;
  readonly entries: number;
  readonly checkpoints: number;
  readonly bytesChecked: number;
  readonly firstSeq: number;
  readonly lastSeq: number;
  readonly durationMs: number;
  /** The first problem found: file, byte offset, what was expected there. */
  readonly firstBad?: { file: string; offset: number; expectedSeq: number; reason: string };
  /** Bytes after the active segment's last valid record that are not zero (an in-flight write, or a torn tail recovery will cut). */
  readonly tailBytesPending: number;
  readonly notes: string[];
}

interface Probed {
  id: number;
  file: string;
  fileBytes: number;
  header?: SegmentHeader;
  headSeq?: number;
  head?: CheckpointState;
  headZero: boolean;
  problem?: string;
}

async function readFully(file: StorageFile, into: Uint8Array, position: number): Promise<number> {
  let got = 0;
  while (got < into.length) {
    const n = await file.read(into, got, into.length - got, position + got);
    if (n <= 0) break;
    got += n;
  }
  return got;
}

async function probe(storage: Storage, dir: string, name: string, id: number): Promise<Probed> {
  const path = `${dir}/${name}`;
  const file = await storage.open(path, 'read');
  try {
    const fileBytes = await file.size();
    const block = new Uint8Array(SEGMENT_HEADER_BYTES + CHECKPOINT_RECORD_BYTES);
    const got = await readFully(file, block, 0);
    const headZero = block.subarray(SEGMENT_HEADER_BYTES, got).every((b) => b === 0);
    const decoded = decodeSegmentHeader(block.subarray(0, got));
    if (!decoded.ok) return { id, file: path, fileBytes, headZero, problem: decoded.reason };
    if (decoded.header.segmentId !== id) return { id, file: path, fileBytes, header: decoded.header, headZero, problem: `header names segment ${decoded.header.segmentId}` };
    const view = new DataView(block.buffer);
    const record = decodeRecord(block, view, SEGMENT_HEADER_BYTES, got, saltSeed(decoded.header.salt), 0);
    if (record.ok && record.type === RECORD_TYPE_CHECKPOINT) {
      const head = decodeCheckpointPayload(view, SEGMENT_HEADER_BYTES + RECORD_HEADER_BYTES);
      if (head.kind === CHECKPOINT_HEAD) return { id, file: path, fileBytes, header: decoded.header, headSeq: record.seq, head, headZero };
    }
    return { id, file: path, fileBytes, header: decoded.header, headZero, problem: headZero ? undefined : 'head checkpoint does not decode' };
  } finally {
    await file.close();
  }
}

async function probeAll(storage: Storage, dir: string): Promise<{ probes: Probed[]; quarantine: Array<{ file: string; bytes: number }> }> {
  let names: string[];
  try {
    names = await storage.list(dir);
  } catch (error) {
    throw new LastgaspError('LOG_IO', `cannot read log directory ${dir}: ${(error as Error).message}`, { dir, errno: systemErrorCode(error) });
  }
  const probes: Probed[] = [];
  const quarantine: Array<{ file: string; bytes: number }> = [];
  for (const name of names.sort()) {
    const id = parseSegmentFileName(name);
    try {
      if (id !== undefined) probes.push(await probe(storage, dir, name, id));
      else if (isQuarantineFileName(name)) {
        const file = await storage.open(`${dir}/${name}`, 'read');
        quarantine.push({ file: `${dir}/${name}`, bytes: await file.size() });
        await file.close();
      }
    } catch (error) {
      // Retention or recovery of a live agent may remove a file between the listing and the open.
      if (systemErrorCode(error) !== 'ENOENT') throw error;
    }
  }
  return { probes, quarantine };
}

/** The active segment: the newest with a valid head. */
function activeIndexOf(probes: Probed[]): number {
  for (let i = probes.length - 1; i >= 0; i--) if (probes[i]!.head) return i;
  return -1;
}

export async function inspectLog(dir: string, storage: Storage = createNodeStorage()): Promise<InspectReport> {
  const { probes, quarantine } = await probeAll(storage, dir);
  const activeIndex = activeIndexOf(probes);
  const segments: SegmentReport[] = [];
  let committed = 0;
  let epoch = 1;
  let state: CheckpointState | undefined;
  let cleanClose = false;
  for (let i = 0; i < probes.length; i++) {
    const p = probes[i]!;
    const next = probes[i + 1];
    if (!p.head || !p.header) {
      const spare = i > activeIndex && p.header !== undefined && p.headZero && !p.problem;
      segments.push({ file: p.file, id: p.id, state: spare ? 'spare' : 'damaged', fileBytes: p.fileBytes, firstSeq: 0, lastSeq: 0, bytesUsed: 0, epoch: 0, ...(p.problem ? { problem: p.problem } : {}) });
      continue;
    }
    const firstSeq = p.headSeq! + 1;
    if (i < activeIndex && next?.head) {
      const lastSeq = next.headSeq!;
      segments.push({ file: p.file, id: p.id, state: 'sealed', fileBytes: p.fileBytes, firstSeq, lastSeq: lastSeq >= firstSeq ? lastSeq : 0, bytesUsed: next.head.prevBytesUsed, epoch: p.head.epoch });
      continue;
    }
    // The active segment: follow its records to the end, as recovery would, without writing anything.
    const file = await storage.open(p.file, 'read');
    try {
      const reader = new ChunkReader(RECORD_PAYLOAD_BYTES_MAX, 256 * 1024);
      let lastSeq = p.headSeq!;
      state = p.head;
      epoch = p.head.epoch;
      let lastKind = p.head.kind;
      const scan = await scanRecords(file, reader, saltSeed(p.header.salt), SEGMENT_HEADER_BYTES, p.fileBytes, RECORD_PAYLOAD_BYTES_MAX, (record, _b, view, at) => {
        if (record.type === RECORD_TYPE_ENTRY) {
          if (record.seq !== lastSeq + 1) return false;
          lastSeq = record.seq;
          epoch = Math.max(epoch, record.epoch);
          lastKind = 0;
        } else {
          if (record.seq !== lastSeq) return false;
          state = decodeCheckpointPayload(view, at + RECORD_HEADER_BYTES);
          epoch = Math.max(epoch, state.epoch);
          lastKind = state.kind;
        }
        return true;
      });
      committed = lastSeq;
      cleanClose = lastKind === 4;
      segments.push({ file: p.file, id: p.id, state: i === activeIndex ? 'active' : 'sealed', fileBytes: p.fileBytes, firstSeq, lastSeq: lastSeq >= firstSeq ? lastSeq : 0, bytesUsed: scan.end, epoch });
    } finally {
      await file.close();
    }
  }
  const live = segments.filter((s) => s.state === 'active' || s.state === 'sealed');
  const holder = await readDirLock(storage, dir);
  const demotionPending = (await storage.list(dir)).includes(DEMOTION_INTENT_FILE);
  const sum = (list: Array<{ fileBytes?: number; bytes?: number }>) => list.reduce((total, s) => total + (s.fileBytes ?? s.bytes ?? 0), 0);
  const segmentBytes = sum(live);
  const spareBytes = sum(segments.filter((s) => s.state === 'spare'));
  const quarantineBytes = sum(quarantine);
  return {
    dir,
    formatVersion: LOG_FORMAT_VERSION,
    firstSeq: live.length > 0 ? live[0]!.firstSeq : committed + 1,
    committed,
    epoch,
    watermarks: {
      replicated: Math.min(state?.replicated ?? 0, committed),
      replicaAcked: Math.min(state?.replicaAcked ?? 0, committed),
      retentionFloor: state && state.retentionFloor !== RETENTION_FLOOR_NONE ? state.retentionFloor : null,
    },
    cleanClose,
    segments,
    quarantine,
    space: {
      segmentBytes,
      spareBytes,
      quarantineBytes,
      totalBytes: segmentBytes + spareBytes + quarantineBytes + sum(segments.filter((s) => s.state === 'damaged')),
      usedBytes: live.reduce((total, s) => total + s.bytesUsed, 0),
    },
    lock: holder ? { pid: holder.pid, host: holder.host, sinceMs: holder.sinceMs, released: holder.released === true, alive: holder.alive } : null,
    demotionPending,
  };
}

export async function verifyLog(dir: string, storage: Storage = createNodeStorage()): Promise<VerifyReport> {
  const started = performance.now();
  const { probes } = await probeAll(storage, dir);
  const activeIndex = activeIndexOf(probes);
  const notes: string[] = [];
  let entries = 0;
  let checkpoints = 0;
  let bytesChecked = 0;
  let segmentsChecked = 0;
  let firstSeq = 0;
  let expected = -1;
  let tailBytesPending = 0;
  let firstBad: VerifyReport['firstBad'];
  const reader = new ChunkReader(RECORD_PAYLOAD_BYTES_MAX);
  for (let i = 0; i <= activeIndex && !firstBad; i++) {
    const p = probes[i]!;
    if (!p.head || !p.header) {
      firstBad = { file: p.file, offset: p.problem?.includes('header') ? 0 : SEGMENT_HEADER_BYTES, expectedSeq: Math.max(expected, 1), reason: p.problem ?? 'no head checkpoint' };
      break;
    }
    const baseSeq = p.headSeq! + 1;
    if (expected >= 0 && baseSeq !== expected) {
      firstBad = { file: p.file, offset: SEGMENT_HEADER_BYTES, expectedSeq: expected, reason: `segment starts at seq ${baseSeq}, the previous one ended at ${expected - 1}` };
      break;
    }
    if (expected < 0) firstSeq = baseSeq;
    const next = i < activeIndex ? probes[i + 1]! : undefined;
    const end = next?.head ? next.head.prevBytesUsed : p.fileBytes;
    let file: StorageFile;
    try {
      file = await storage.open(p.file, 'read');
    } catch (error) {
      if (systemErrorCode(error) !== 'ENOENT') throw error;
      notes.push(`${p.file} was removed (retention) while verifying`);
      expected = -1;
      continue;
    }
    try {
      let seq = p.headSeq!;
      const seed = saltSeed(p.header.salt);
      const scan = await scanRecords(file, reader, seed, SEGMENT_HEADER_BYTES, end, RECORD_PAYLOAD_BYTES_MAX, (record) => {
        if (record.type === RECORD_TYPE_ENTRY) {
          if (record.seq !== seq + 1) return false;
          seq = record.seq;
          entries++;
        } else {
          if (record.seq !== seq) return false;
          checkpoints++;
        }
        bytesChecked += record.size;
        return true;
      });
      segmentsChecked++;
      expected = seq + 1;
      if (next) {
        if (scan.end !== end || seq !== next.headSeq) {
          firstBad = { file: p.file, offset: scan.end, expectedSeq: seq + 1, reason: scan.reason === 'visitor' ? 'seq out of order' : `record ${scan.reason}` };
        }
      } else if (scan.end < end) {
        // The active segment: a break followed by a later valid record is damage; otherwise it is the tail.
        const later = await findNextValid(file, reader, seed, scan.end, end, RECORD_PAYLOAD_BYTES_MAX, seq);
        if (later !== undefined) {
          firstBad = { file: p.file, offset: scan.end, expectedSeq: seq + 1, reason: `${scan.reason === 'visitor' ? 'seq out of order' : `record ${scan.reason}`}, valid records resume at offset ${later}` };
        } else {
          const probeTail = new Uint8Array(Math.min(64 * 1024, end - scan.end));
          const got = await readFully(file, probeTail, scan.end);
          for (let k = got - 1; k >= 0; k--) {
            if (probeTail[k] !== 0) {
              tailBytesPending = k + 1;
              break;
            }
          }
        }
      }
    } finally {
      await file.close();
    }
  }
  for (const p of probes.slice(activeIndex + 1)) {
    if (p.problem && !(p.header && p.headZero)) notes.push(`${p.file}: ${p.problem} (after the active segment; recovery sets it aside or reuses it)`);
  }
  return {
    dir,
    ok: firstBad === undefined,
    segmentsChecked,
    entries,
    checkpoints,
    bytesChecked,
    firstSeq: activeIndex >= 0 ? firstSeq : 0,
    lastSeq: Math.max(0, expected - 1),
    durationMs: performance.now() - started,
    ...(firstBad ? { firstBad } : {}),
    tailBytesPending,
    notes,
  };
}

/**
 * The entries in one quarantine file (a segment's header followed by the records set aside), in file order,
 * each checked by CRC. What a demotion or recovery moved out of the log, for an operator to replay or to
 * audit; reading stops at the first record that does not decode.
 */
export async function readQuarantineFile(path: string, storage: Storage = createNodeStorage()): Promise<LogEntry[]> {
  const file = await storage.open(path, 'read');
  try {
    const header = new Uint8Array(SEGMENT_HEADER_BYTES);
    const got = await readFully(file, header, 0);
    const decoded = decodeSegmentHeader(header.subarray(0, got));
    if (!decoded.ok) throw new LastgaspError('LOG_CORRUPT', `${path} is not a quarantine file: ${decoded.reason}`, { file: path });
    const entries: LogEntry[] = [];
    const size = await file.size();
    // No record is larger than the file: small files get a small buffer.
    const payloadBytesMax = Math.min(RECORD_PAYLOAD_BYTES_MAX, size);
    const reader = new ChunkReader(payloadBytesMax, Math.min(256 * 1024, size));
    await scanRecords(file, reader, saltSeed(decoded.header.salt), SEGMENT_HEADER_BYTES, size, payloadBytesMax, (record, bytes, _view, at) => {
      if (record.type === RECORD_TYPE_ENTRY) {
        const start = at + RECORD_HEADER_BYTES;
        entries.push({ seq: record.seq, epoch: record.epoch, timestampMs: record.timestampMs, payload: bytes.slice(start, start + record.payloadBytes) });
      }
      return true;
    });
    return entries;
  } finally {
    await file.close();
  }
}

export interface CommandIo {
  stdout(line: string): void;
  stderr(line: string): void;
}

const HELP = `Usage: lastgasp log <inspect|verify> [DIR | --config FILE] [--json]

Look at an agent's flash log. DIR is the agent's dataDir (its log is in DIR/log) or the log directory
itself; --config FILE takes the dataDir from the agent's config. Both commands only read: they open
files read-only, take no lock and write nothing, so they are safe to run while the agent is appending.

Commands:
  inspect   segments (state, seq range, bytes used of allocated), the committed end, epoch,
            watermarks from the last checkpoint, quarantine files and space on disk
  verify    read every record of every segment and check its CRC-32C and seq continuity;
            exits 1 and prints the file and byte offset of the first bad record

Options:
  --config FILE  the agent's config file (YAML or JSON): its dataDir
  --json         print one JSON object instead of text
  -h, --help     show this help

Exit status: 0 ok, 1 corruption found (verify), 2 the directory cannot be read, 64 bad usage.
The byte layout is documented in agent/log/FORMAT.md (format version ${LOG_FORMAT_VERSION}).`;

const LOG_COMMAND: CommandSpec = { help: HELP, options: { config: { type: 'string' }, json: { type: 'boolean' } }, positionals: { min: 1, max: 2, names: 'inspect|verify and DIR' } };

function formatInspect(report: InspectReport): string[] {
  const lines = [
    `log ${report.dir} (format v${report.formatVersion})`,
    `  seq ${report.firstSeq}..${report.committed}  epoch ${report.epoch}  ${report.cleanClose ? 'closed cleanly' : 'not closed cleanly (open, or crashed)'}`,
    `  watermarks: replicated ${report.watermarks.replicated}, replica-acked ${report.watermarks.replicaAcked}, retention floor ${report.watermarks.retentionFloor ?? 'none'}`,
    `  space: ${report.space.usedBytes} bytes used in ${report.space.segmentBytes} allocated; spares ${report.space.spareBytes}; quarantine ${report.space.quarantineBytes}; total ${report.space.totalBytes}`,
    `  lock: ${formatLock(report.lock)}`,
    ...(report.demotionPending ? ['  demotion: interrupted; the next open finishes it'] : []),
    '  segments:',
  ];
  for (const s of report.segments) {
    const range = s.state === 'spare' || s.state === 'damaged' ? '-' : s.lastSeq === 0 ? `${s.firstSeq}.. (empty)` : `${s.firstSeq}..${s.lastSeq}`;
    lines.push(`    ${s.file.split('/').pop()}  ${s.state.padEnd(7)}  seq ${range.padEnd(20)}  ${s.bytesUsed}/${s.fileBytes} bytes${s.problem ? `  (${s.problem})` : ''}`);
  }
  if (report.quarantine.length > 0) {
    lines.push('  quarantine:');
    for (const q of report.quarantine) lines.push(`    ${q.file.split('/').pop()}  ${q.bytes} bytes`);
  }
  return lines;
}

function formatLock(lock: InspectReport['lock']): string {
  if (!lock) return 'none';
  const since = new Date(lock.sinceMs).toISOString();
  if (lock.released) return `free (last held by pid ${lock.pid} on ${lock.host} from ${since})`;
  return lock.alive ? `held by pid ${lock.pid} on ${lock.host} since ${since}` : `stale (pid ${lock.pid} on ${lock.host} is gone; the next open takes it over)`;
}

function formatVerify(report: VerifyReport): string[] {
  const mb = report.bytesChecked / 1e6;
  const lines = [
    `${report.ok ? 'OK' : 'CORRUPT'}: ${report.dir}: ${report.entries} entries (seq ${report.firstSeq}..${report.lastSeq}), ${report.checkpoints} checkpoints, ${report.segmentsChecked} segments, ${mb.toFixed(1)} MB checked in ${report.durationMs.toFixed(0)} ms`,
  ];
  if (report.firstBad) lines.push(`first bad record: ${report.firstBad.file} at byte offset ${report.firstBad.offset} (expected seq ${report.firstBad.expectedSeq}): ${report.firstBad.reason}`);
  if (report.tailBytesPending > 0) lines.push(`tail: ${report.tailBytesPending} bytes after the last valid record (a write in flight, or a torn tail the next open cuts)`);
  for (const note of report.notes) lines.push(`note: ${note}`);
  return lines;
}

/**
 * `lastgasp log ...`: returns the exit status. `dataDirOf` reads an agent's config for --config (the CLI
 * passes the config loader; the log itself knows nothing of configs).
 */
export async function logCommand(argv: string[], io: CommandIo, dataDirOf?: (configFile: string) => Promise<string>): Promise<number> {
  let command: string;
  let dir: string;
  let json: boolean;
  try {
    const args = parseCommand(argv, LOG_COMMAND);
    const [name, given] = args.positionals as [string, string | undefined];
    if (name !== 'inspect' && name !== 'verify') throw new UsageError(`unknown command "${name}" (expected inspect or verify)`);
    const configFile = args.string('config');
    if ((given === undefined) === (configFile === undefined)) throw new UsageError('give DIR (the agent\'s dataDir or its log directory) or --config FILE, one of them');
    if (configFile !== undefined && !dataDirOf) throw new UsageError('--config is not available here; give DIR');
    command = name;
    dir = given ?? join(await dataDirOf!(configFile!), 'log');
    json = args.has('json');
  } catch (error) {
    if (error instanceof HelpRequested) return void io.stdout(error.text), 0;
    if (!(error instanceof UsageError)) throw error;
    io.stderr(`lastgasp log: ${error.message} (see lastgasp log --help)`);
    return EXIT_USAGE;
  }
  try {
    // The agent's dataDir holds the log in log/: take it, so that the directory the config names works.
    if (await isDirectory(join(dir, 'log'))) dir = join(dir, 'log');
    if (command === 'inspect') {
      const report = await inspectLog(dir);
      if (json) io.stdout(JSON.stringify(report));
      else for (const line of formatInspect(report)) io.stdout(line);
      return 0;
    }
    const report = await verifyLog(dir);
    if (json) io.stdout(JSON.stringify(report));
    else for (const line of formatVerify(report)) io.stdout(line);
    return report.ok ? 0 : 1;
  } catch (error) {
    io.stderr(`lastgasp log ${command}: ${error instanceof Error ? error.message : String(error)}`);
    return 2;
  }
}

async function isDirectory(path: string): Promise<boolean> {
  return (await stat(path).catch(() => undefined))?.isDirectory() === true;
}
