/**
 * What a capture needs to go on in the same generation after the agent restarts, instead of sending a
 * snapshot of the whole database through the log at every start: `sqlite-capture-<name>.json` in the data
 * directory, written after each append (the entries are then committed in the log).
 *
 * The file is a claim, checked before it is trusted. It is written without fsync (a power cut may leave it
 * old, torn or missing), so the capture resumes only when everything still agrees: the database file is
 * the same (device and inode), the log's entry at the recorded seq is this database's commit of the
 * recorded generation and no entry of this database follows it (an older file would otherwise make the
 * capture append transactions again that the log already has, and a replica applying them twice in a row
 * would pass through states the application never had), and the WAL still holds the recorded frames (same
 * salts, and the last one captured has the recorded checksum). Anything else starts a new generation.
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import { open as openFile, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { FlashLog } from '../log/index.ts';
import { crc32c } from '../util/index.ts';
import { decodeSqliteEntry } from './entry.ts';
import { decodeWalHeader, walFrameOffset, WAL_HEADER_BYTES, type WalCursor, type WalHeader } from './wal-format.ts';

/** Log entries read after the recorded seq looking for a later entry of the database; beyond, a new generation. */
const RESUME_SCAN_ENTRIES_MAX = 100_000;

export interface CaptureResumeOptions {
  dataDir: string;
  log: FlashLog;
}

export interface CaptureState {
  generation: string;
  /** The log seq of the last entry appended for this database. */
  seq: number;
  /** The log seq of the generation's snapshot (its first entry). */
  snapshotSeq: number;
  /** The database file's identity. */
  dev: number;
  ino: number;
  salt1: number;
  salt2: number;
  frameIndex: number;
  checksum: [number, number];
  /** The agent's own full checkpoint was the last thing done: the WAL's next reset is expected. */
  expectReset: boolean;
}

export function captureStatePath(dataDir: string, name: string): string {
  return join(dataDir, `sqlite-capture-${name}.json`);
}

/**
 * The state file, kept open and written in place after each append: one write, instead of an open, a write,
 * a close and a rename per step. Not fsynced (see the file's comment: `resumable` checks it before use). The
 * JSON is followed by its CRC-32C on a line of its own, and padded with spaces over whatever longer text was
 * there: a write that a power cut tore could otherwise mix two positions (a newer seq with an older frame,
 * which the checks would take for a consistent older state), and it is refused at load instead.
 */
export class CaptureStateFile {
  private fd: number | undefined;
  private length = 0;

  constructor(readonly path: string) {}

  save(state: CaptureState): void {
    const body = JSON.stringify(state);
    const text = `${body}\n${crc32c(encoder.encode(body)).toString(16)}\n`;
    if (this.fd === undefined) {
      this.fd = openSync(this.path, 'w', 0o600);
      this.length = 0;
    }
    const bytes = encoder.encode(text.padEnd(this.length, ' '));
    for (let done = 0; done < bytes.length; ) done += writeSync(this.fd, bytes, done, bytes.length - done, done);
    this.length = Math.max(this.length, bytes.length);
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}

const encoder = new TextEncoder();

export async function loadCaptureState(path: string): Promise<CaptureState | undefined> {
  try {
    const [body, crc] = (await readFile(path, 'utf8')).split('\n');
    if (body === undefined || crc !== crc32c(encoder.encode(body)).toString(16)) return undefined;
    const state = JSON.parse(body) as CaptureState;
    return typeof state.generation === 'string' && Number.isInteger(state.seq) && Number.isInteger(state.snapshotSeq) && Array.isArray(state.checksum) ? state : undefined;
  } catch {
    return undefined;
  }
}

export async function fileIdentity(path: string): Promise<{ dev: number; ino: number }> {
  const info = await stat(path);
  return { dev: info.dev, ino: info.ino };
}

/**
 * The position to go on from, or why not. Called with the capture's read transaction held, so the WAL
 * cannot be reset between this check and the first copy.
 */
export async function resumable(state: CaptureState | undefined, dbPath: string, name: string, log: FlashLog): Promise<{ ok: true; header: WalHeader; cursor: WalCursor } | { ok: false; reason: string }> {
  if (!state) return { ok: false, reason: 'the capture started (no position kept from a previous run)' };
  const identity = await fileIdentity(dbPath);
  if (identity.dev !== state.dev || identity.ino !== state.ino) return { ok: false, reason: 'the capture started on a database file that was replaced' };
  const logCheck = await lastEntryIsOurs(state, name, log);
  if (logCheck !== undefined) return { ok: false, reason: `the capture started, and ${logCheck}` };
  const wal = await readWalAt(dbPath + '-wal', state.frameIndex);
  if (!wal) return { ok: false, reason: 'the capture started and the WAL is gone' };
  const { header, lastChecksum } = wal;
  if (header.salt1 !== state.salt1 || header.salt2 !== state.salt2) return { ok: false, reason: `the capture started after a WAL reset it did not see (salt-1 ${state.salt1} → ${header.salt1})` };
  if (state.frameIndex > 0 && (lastChecksum?.[0] !== state.checksum[0] || lastChecksum?.[1] !== state.checksum[1])) return { ok: false, reason: 'the capture started and the WAL no longer holds the frames it captured' };
  return { ok: true, header, cursor: { frameIndex: state.frameIndex, checksum: state.checksum } };
}

async function lastEntryIsOurs(state: CaptureState, name: string, log: FlashLog): Promise<string | undefined> {
  if (state.seq < log.firstSeq || state.seq > log.watermarks().committed) return `its last entry (seq ${state.seq}) is not in the log`;
  let scanned = 0;
  for (let seq = state.seq; seq <= log.watermarks().committed && scanned < RESUME_SCAN_ENTRIES_MAX; ) {
    const batch = await log.read(seq, { entriesMax: 1024, bytesMax: 4 * 1024 * 1024 });
    if (batch.length === 0) break;
    for (const entry of batch) {
      const decoded = decodeSqliteEntry(entry.payload);
      const ours = decoded?.ok === true && decoded.entry.db === name;
      if (entry.seq === state.seq && !(ours && decoded.entry.generation === state.generation && decoded.entry.commitPages !== 0)) return `the log's entry at seq ${state.seq} is not its last commit`;
      if (entry.seq > state.seq && ours) return `the log holds entries of this database after seq ${state.seq}`;
    }
    scanned += batch.length;
    seq = batch.at(-1)!.seq + 1;
  }
  return scanned >= RESUME_SCAN_ENTRIES_MAX ? `more than ${RESUME_SCAN_ENTRIES_MAX} log entries follow its last one` : undefined;
}

/** The WAL's header and the checksum in the header of frame `frameIndex - 1` (the last one captured). */
async function readWalAt(path: string, frameIndex: number): Promise<{ header: WalHeader; lastChecksum: [number, number] | undefined } | undefined> {
  let handle;
  try {
    handle = await openFile(path, 'r');
  } catch {
    return undefined;
  }
  try {
    const head = new Uint8Array(WAL_HEADER_BYTES);
    if ((await handle.read(head, 0, WAL_HEADER_BYTES, 0)).bytesRead < WAL_HEADER_BYTES) return undefined;
    const decoded = decodeWalHeader(head);
    if (!decoded.ok) return undefined;
    if (frameIndex === 0) return { header: decoded.header, lastChecksum: undefined };
    const frameHead = new Uint8Array(24);
    if ((await handle.read(frameHead, 0, 24, walFrameOffset(decoded.header.pageBytes, frameIndex - 1))).bytesRead < 24) return { header: decoded.header, lastChecksum: undefined };
    const view = new DataView(frameHead.buffer);
    return { header: decoded.header, lastChecksum: [view.getUint32(16), view.getUint32(20)] };
  } finally {
    await handle.close();
  }
}
