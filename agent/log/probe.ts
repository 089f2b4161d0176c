/**
 * The one segment probe, shared by recovery (which decides on it, after syncing the file) and the operator
 * tools (which only report on it, read-only): what a segment file's first block says (its header and head
 * checkpoint), and the walk of its record chain from there. Both used to carry a copy of each; a fix to how
 * a head or a chain is judged now reaches both.
 */
import { assertReadWithin } from './invariants.ts';
import {
  CHECKPOINT_HEAD,
  CHECKPOINT_RECORD_BYTES,
  RECORD_HEADER_BYTES,
  RECORD_TYPE_CHECKPOINT,
  RECORD_TYPE_ENTRY,
  SEGMENT_HEADER_BYTES,
  decodeCheckpointPayload,
  decodeRecord,
  decodeSegmentHeader,
  saltSeed,
  type CheckpointState,
  type SegmentHeader,
} from './format.ts';
import { scanRecords, type ChunkReader } from './scan.ts';
import type { StorageFile } from './storage/index.ts';

/** A segment's head checkpoint: the seq before its first entry, and the state it made durable. */
export interface SegmentHead {
  readonly seq: number;
  readonly state: CheckpointState;
}

export interface SegmentProbe {
  readonly id: number;
  readonly path: string;
  /** The file's length in bytes. */
  readonly size: number;
  readonly header: SegmentHeader | undefined;
  /** Why the header is unusable (does not decode, or names another segment); undefined when it is fine. */
  readonly headerProblem: string | undefined;
  /** The head checkpoint, if the head slot holds a valid one of kind HEAD. */
  readonly head: SegmentHead | undefined;
  /** The head slot is all zeros: a spare never activated (or a file cut short before its head). */
  readonly headZero: boolean;
}

/** Read `into.length` bytes from `position` (fewer only at the end of the file); returns how many came. */
export async function readFully(file: StorageFile, into: Uint8Array, position: number): Promise<number> {
  let got = 0;
  while (got < into.length) {
    const n = await file.read(into, got, into.length - got, position + got);
    if (n <= 0) break;
    got += n;
  }
  assertReadWithin(got, into.length, 'probe: a read returned more bytes than asked for');
  return got;
}

/** Judge segment `id` at `path` from its first block: header, then head checkpoint (each CRC-checked by its decoder). */
export async function probeSegment(file: StorageFile, path: string, id: number): Promise<SegmentProbe> {
  const size = await file.size();
  const block = new Uint8Array(SEGMENT_HEADER_BYTES + CHECKPOINT_RECORD_BYTES);
  const got = await readFully(file, block, 0);
  const headZero = block.subarray(SEGMENT_HEADER_BYTES, got).every((byte) => byte === 0);
  const decoded = decodeSegmentHeader(block.subarray(0, got));
  if (!decoded.ok) return { id, path, size, header: undefined, headerProblem: decoded.reason, head: undefined, headZero };
  const header = decoded.header;
  if (header.segmentId !== id) {
    return { id, path, size, header, headerProblem: `header names segment ${header.segmentId}`, head: undefined, headZero };
  }
  const view = new DataView(block.buffer);
  const record = decodeRecord(block, view, SEGMENT_HEADER_BYTES, got, saltSeed(header.salt), 0);
  let head: SegmentHead | undefined;
  if (record.ok && record.type === RECORD_TYPE_CHECKPOINT) {
    const state = decodeCheckpointPayload(view, SEGMENT_HEADER_BYTES + RECORD_HEADER_BYTES);
    if (state.kind === CHECKPOINT_HEAD) head = { seq: record.seq, state };
  }
  return { id, path, size, header, headerProblem: undefined, head, headZero };
}

export interface ChainEnd {
  /** File offset just past the last record of the chain. */
  readonly end: number;
  /** Why the walk stopped (see `ScanEnd.reason`; 'visitor' means a seq out of order). */
  readonly reason: string;
  /** The seq of the last entry in the chain (the head's seq if none). */
  readonly lastSeq: number;
  /** The highest epoch of the chain's entries and checkpoints. */
  readonly epoch: number;
  /** The state of the chain's last checkpoint. */
  readonly state: CheckpointState;
  /** The kind of the chain's last record when it is a checkpoint, 0 when it is an entry. */
  readonly lastKind: number;
  readonly entries: number;
  readonly checkpoints: number;
  /** Bytes of the records walked. */
  readonly bytes: number;
}

/**
 * Follow the chain of records of one segment from `start` up to `limit`: each entry continues the seq, each
 * checkpoint repeats the last one. Stops at the first record that does not decode or does not continue.
 * `onEntry` sees each entry's seq and file offset (recovery builds the segment's index with it).
 */
export async function walkChain(
  file: StorageFile,
  reader: ChunkReader,
  seed: number,
  start: number,
  limit: number,
  payloadBytesMax: number,
  head: SegmentHead,
  onEntry?: (seq: number, offset: number) => void,
): Promise<ChainEnd> {
  let lastSeq = head.seq;
  let state = head.state;
  let epoch = state.epoch;
  let lastKind = state.kind;
  let entries = 0;
  let checkpoints = 0;
  let bytes = 0;
  const scan = await scanRecords(file, reader, seed, start, limit, payloadBytesMax, (record, _bytes, view, at, offset) => {
    if (record.type === RECORD_TYPE_ENTRY) {
      if (record.seq !== lastSeq + 1) return false;
      lastSeq = record.seq;
      if (record.epoch > epoch) epoch = record.epoch;
      onEntry?.(record.seq, offset);
      lastKind = 0;
      entries++;
    } else {
      if (record.seq !== lastSeq) return false;
      state = decodeCheckpointPayload(view, at + RECORD_HEADER_BYTES);
      if (state.epoch > epoch) epoch = state.epoch;
      lastKind = state.kind;
      checkpoints++;
    }
    bytes += record.size;
    return true;
  });
  return { end: scan.end, reason: scan.reason, lastSeq, epoch, state, lastKind, entries, checkpoints, bytes };
}
