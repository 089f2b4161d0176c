/**
 * Reading records out of a segment file in bounded chunks: the scanner behind recovery, reads, index
 * building and `verify`. Memory is one chunk (plus room for the largest record), whatever the log's length.
 */
import {
  RECORD_HEADER_BYTES,
  RECORD_PAYLOAD_BYTES_MAX,
  RECORD_ALIGN_BYTES,
  decodeRecord,
  plausibleRecordStart,
  recordBytes,
  RECORD_TYPE_ENTRY,
  RECORD_TYPE_CHECKPOINT,
  type RecordResult,
} from './format.ts';
import { assertReadWithin, assertRecordRead } from './invariants.ts';
import type { StorageFile } from './storage/index.ts';

/** Bytes read per I/O when scanning: large enough that a read costs far less than checking its records. */
export const SCAN_CHUNK_BYTES = 1024 * 1024;

export type ValidRecord = Extract<RecordResult, { ok: true }>;

/** Called for each valid record; `offset` is the record's offset in the file. Return false to stop. */
export type RecordVisitor = (record: ValidRecord, bytes: Uint8Array, view: DataView, at: number, offset: number) => boolean;

export interface ScanEnd {
  /** File offset just past the last record accepted. */
  readonly end: number;
  /** Why the scan stopped: 'limit' (reached the end asked for), 'visitor', or the decoder's reason. */
  readonly reason: string;
}

export class ChunkReader {
  readonly bytes: Uint8Array;
  readonly view: DataView;
  /** File offset of bytes[0]. */
  base = 0;
  /** Valid bytes in the buffer. */
  length = 0;
  /** The largest record this reader must hold whole. */
  readonly recordBytesMax: number;
  /** The least a fill reads (unless the file ends first): the chunk size asked for. */
  readonly chunkBytes: number;

  constructor(payloadBytesMax: number, chunkBytes = SCAN_CHUNK_BYTES) {
    this.recordBytesMax = recordBytes(payloadBytesMax);
    this.chunkBytes = chunkBytes;
    this.bytes = new Uint8Array(chunkBytes + this.recordBytesMax);
    this.view = new DataView(this.bytes.buffer);
  }

  /**
   * Fill the buffer from file offset `from`, reading no further than `limit` and, when `bytesMax` is given,
   * no more than that (a caller that knows how much it needs spares copying the rest out of the page cache).
   */
  async fill(file: StorageFile, from: number, limit: number, bytesMax = Infinity): Promise<void> {
    const want = Math.min(this.bytes.length, limit - from, bytesMax);
    let got = 0;
    while (got < want) {
      const n = await file.read(this.bytes, got, want - got, from + got);
      if (n <= 0) break;
      got += n;
    }
    assertReadWithin(got, Math.max(0, want), 'scan: a read returned more bytes than asked for');
    this.base = from;
    this.length = got;
  }

  /**
   * Bytes the record starting at buffer offset `at` needs in the buffer, judged from its length field (at
   * most the largest valid record: a garbage length is the decoder's to reject, after a refill that would
   * hold any valid record).
   */
  recordNeeds(at: number): number {
    if (this.length - at < RECORD_HEADER_BYTES) return RECORD_HEADER_BYTES;
    return Math.min(recordBytes(this.view.getUint32(at + 4, true) & RECORD_PAYLOAD_BYTES_MAX), this.recordBytesMax);
  }
}

/**
 * Visit the chain of valid records in `[start, limit)`. Stops at the first record that does not decode,
 * at `limit`, or when the visitor returns false. `expectBytes`: how far past `start` the caller expects to
 * read, a hint that sizes the reads (the scan goes on past it if the visitor wants more).
 */
export async function scanRecords(
  file: StorageFile,
  reader: ChunkReader,
  seed: number,
  start: number,
  limit: number,
  payloadBytesMax: number,
  visit: RecordVisitor,
  expectBytes = Infinity,
): Promise<ScanEnd> {
  let offset = start;
  // A fill reads what the caller still expects to visit (a batch's span), at least a chunk, and at least the
  // record at hand; without an expectation, the whole buffer.
  const fillBytes = (from: number, needs: number) => Math.max(start + expectBytes - from, needs, reader.chunkBytes);
  await reader.fill(file, offset, limit, fillBytes(offset, RECORD_HEADER_BYTES));
  for (;;) {
    if (offset >= limit) return { end: offset, reason: 'limit' };
    let at = offset - reader.base;
    // Refill only when the next record is not whole in the buffer. Refilling whenever less than the largest
    // possible record was left re-read a 1 MiB buffer every 128 KiB (entryBytesMax 1 MiB, 128 KiB chunks):
    // nine times the bytes, a third of the brownout drain's CPU.
    const needs = reader.recordNeeds(at);
    if (reader.length - at < needs && reader.base + reader.length < limit) {
      await reader.fill(file, offset, limit, fillBytes(offset, needs));
      at = 0;
    }
    const record = decodeRecord(reader.bytes, reader.view, at, reader.length, seed, payloadBytesMax);
    if (!record.ok) return { end: offset, reason: record.reason };
    assertRecordRead(offset, record.size, limit);
    if (!visit(record, reader.bytes, reader.view, at, offset)) return { end: offset, reason: 'visitor' };
    offset += record.size;
  }
}

/**
 * After the chain broke at `from`, look for any later record that validates under this segment's salt and
 * continues the log (an entry above `lastSeq`, or a checkpoint at or above it). Finding one means the break
 * was not a plain torn tail: corruption in the middle, or a write torn sector by sector (surveyBreak tells
 * them apart). Checks every aligned offset up to `limit`.
 */
export async function findNextValid(
  file: StorageFile,
  reader: ChunkReader,
  seed: number,
  from: number,
  limit: number,
  payloadBytesMax: number,
  lastSeq: number,
): Promise<number | undefined> {
  let offset = from + RECORD_ALIGN_BYTES;
  while (offset < limit) {
    await reader.fill(file, offset, limit);
    if (reader.length < RECORD_HEADER_BYTES) return undefined;
    const stop = reader.length - RECORD_HEADER_BYTES;
    const atEnd = reader.base + reader.length >= limit;
    let at = 0;
    for (; at <= stop; at += RECORD_ALIGN_BYTES) {
      if (!atEnd && at + reader.recordBytesMax > reader.length) break;
      if (!plausibleRecordStart(reader.view, at, reader.length, payloadBytesMax)) continue;
      const record = decodeRecord(reader.bytes, reader.view, at, reader.length, seed, payloadBytesMax);
      if (!record.ok) continue;
      const continues =
        (record.type === RECORD_TYPE_ENTRY && record.seq > lastSeq) || (record.type === RECORD_TYPE_CHECKPOINT && record.seq >= lastSeq);
      if (continues) return reader.base + at;
    }
    if (atEnd) return undefined;
    offset = reader.base + at;
  }
  return undefined;
}

/** Offset just past the last non-zero byte in `[from, limit)`, or `from` if all are zero. */
export async function lastNonZeroEnd(file: StorageFile, reader: ChunkReader, from: number, limit: number): Promise<number> {
  let end = from;
  for (let offset = from; offset < limit; ) {
    await reader.fill(file, offset, limit);
    if (reader.length === 0) break;
    for (let i = reader.length - 1; i >= 0; i--) {
      if (reader.bytes[i] !== 0) {
        end = reader.base + i + 1;
        break;
      }
    }
    offset += reader.length;
  }
  return end;
}

/** One stretch of valid records found after a break. */
export interface ValidRun {
  readonly start: number;
  readonly end: number;
  /** Entries in the run (checkpoints are not counted). */
  readonly entries: number;
}

/** What lies after the point where a segment's chain broke. */
export interface BreakSurvey {
  /** The valid stretches after the break, in file order (empty: a plain torn tail, nothing valid beyond). */
  readonly runs: ValidRun[];
  /** Entries in all the runs. */
  readonly entries: number;
  /**
   * The damage looks like the last write torn by a power cut rather than damage to synced data: every valid
   * record after the break lies within one write (BATCH_BYTES_MAX) of it, and the gap before the first of them
   * holds a whole sector's worth of zeros (never written: segments are zero before records go in, and a
   * disk persists a pending write sector by sector, in any order). A bit flipped in synced data leaves no such
   * gap. Either way recovery sets the runs aside; this only decides how loudly it is reported.
   */
  readonly tornWrite: boolean;
}

/** A disk's unit of persistence: the pieces of a pending write that reach the disk, or not, independently. */
export const SECTOR_BYTES = 512;

/**
 * Find every valid stretch after a break at `from` (each continuing the log past `lastSeq`), and judge
 * whether the break is a write torn by a power cut. `windowBytes`: how far one write reaches.
 */
export async function surveyBreak(
  file: StorageFile,
  reader: ChunkReader,
  seed: number,
  from: number,
  limit: number,
  payloadBytesMax: number,
  lastSeq: number,
  windowBytes: number,
): Promise<BreakSurvey> {
  const runs: ValidRun[] = [];
  let offset = from;
  let seq = lastSeq;
  for (;;) {
    const next = await findNextValid(file, reader, seed, offset, limit, payloadBytesMax, seq);
    if (next === undefined) break;
    let entries = 0;
    let runSeq = -1;
    const run = await scanRecords(file, reader, seed, next, limit, payloadBytesMax, (record) => {
      if (record.type === RECORD_TYPE_ENTRY) {
        if (runSeq >= 0 && record.seq !== runSeq + 1) return false;
        runSeq = record.seq;
        entries++;
      }
      return true;
    });
    runs.push({ start: next, end: run.end, entries });
    seq = Math.max(runSeq, seq);
    // A run stopped by a record out of order looks on from that record itself (the search starts one step on).
    offset = run.reason === 'visitor' ? run.end - RECORD_ALIGN_BYTES : run.end;
  }
  const first = runs[0];
  const tornWrite = first !== undefined && runs.at(-1)!.end - from <= windowBytes && (await zeroRunWithin(file, reader, from, first.start, SECTOR_BYTES));
  return { runs, entries: runs.reduce((sum, run) => sum + run.entries, 0), tornWrite };
}

/** Whether `[from, to)` holds `runBytes` consecutive zero bytes. */
async function zeroRunWithin(file: StorageFile, reader: ChunkReader, from: number, to: number, runBytes: number): Promise<boolean> {
  let zeros = 0;
  for (let offset = from; offset < to; ) {
    await reader.fill(file, offset, to);
    if (reader.length === 0) return false;
    for (let i = 0; i < reader.length; i++) {
      zeros = reader.bytes[i] === 0 ? zeros + 1 : 0;
      if (zeros >= runBytes) return true;
    }
    offset += reader.length;
  }
  return false;
}
