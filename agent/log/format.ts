/**
 * The on-disk format of the flash log, as pure functions over Uint8Array/DataView (no I/O, no Buffer), so
 * that the writer, recovery, the reader and the operator tools share one definition. FORMAT.md beside this
 * file describes every byte; the constants here are the single source of the numbers it quotes.
 */
import { crc32cUpdate } from '../util/index.ts';

/** Bumped on any incompatible change of the layout below; readers refuse other versions. */
export const LOG_FORMAT_VERSION = 1;

/** "LGSEGMNT": the first eight bytes of every segment and quarantine file. */
export const SEGMENT_MAGIC = Uint8Array.from([0x4c, 0x47, 0x53, 0x45, 0x47, 0x4d, 0x4e, 0x54]);
/** Fixed segment header; records start right after it. A multiple of 8 so that records stay aligned. */
export const SEGMENT_HEADER_BYTES = 64;
/** Offset of the header's CRC-32C, which covers bytes [0, 60). */
export const SEGMENT_HEADER_CRC_OFFSET = 60;

/**
 * Record header: crc(4) lengthType(4) seqLo(4) seqHi(2) timestampHi(2) timestampLo(4) epoch(4). 24 bytes keeps
 * a 256 B entry at 280 B on disk (9 % overhead), which the device-bytes target (< 1.2 per payload byte) needs.
 */
export const RECORD_HEADER_BYTES = 24;
/** Records start on 8-byte boundaries, so a length field never straddles a 512 B sector (etcd's reason too). */
export const RECORD_ALIGN_BYTES = 8;
/** The length field is 24 bits. */
export const RECORD_PAYLOAD_BYTES_MAX = 0xff_ffff;
/** seq and timestamps are 48-bit: 2.8e14 entries, and milliseconds until the year 10889. */
export const RECORD_U48_MAX = 2 ** 48 - 1;

export const RECORD_TYPE_ENTRY = 1;
export const RECORD_TYPE_CHECKPOINT = 2;

/** Checkpoint payload, fixed size; see `CheckpointState`. */
export const CHECKPOINT_PAYLOAD_BYTES = 56;
export const CHECKPOINT_RECORD_BYTES = RECORD_HEADER_BYTES + CHECKPOINT_PAYLOAD_BYTES;

/** Kinds of checkpoint. Every kind carries the full state; the kind says why it was written. */
export const CHECKPOINT_HEAD = 1;
export const CHECKPOINT_WATERMARKS = 2;
export const CHECKPOINT_EPOCH = 3;
export const CHECKPOINT_CLOSE = 4;
export const CHECKPOINT_QUARANTINE = 5;

/**
 * Largest run of bytes the writer leaves unsynced: a batch is written and fdatasynced in chunks of at most
 * this size. Recovery zeroes this much after the last valid record, so that bytes of a torn batch can never
 * line up behind later appends and be read back as entries (etcd zeroes to the end for the same reason).
 */
export const BATCH_BYTES_MAX = 4 * 1024 * 1024;

/** Retention floor stored when the application has set none: nothing is held back by a floor. */
export const RETENTION_FLOOR_NONE = Number.MAX_SAFE_INTEGER;

export interface SegmentHeader {
  readonly version: number;
  readonly segmentId: number;
  /** Random per segment life; seeds every record CRC so that bytes from a recycled file's past never validate. */
  readonly salt: number;
  readonly segmentBytes: number;
  readonly createdMs: number;
}

export interface CheckpointState {
  readonly kind: number;
  readonly epoch: number;
  readonly replicated: number;
  readonly replicaAcked: number;
  readonly retentionFloor: number;
  /** First seq still in the log when the checkpoint was written. */
  readonly logFirstSeq: number;
  /** For a head checkpoint: the segment before this one (0 for the first segment of a log). */
  readonly prevSegmentId: number;
  readonly prevBytesUsed: number;
}

export function alignRecord(bytes: number): number {
  return (bytes + RECORD_ALIGN_BYTES - 1) & ~(RECORD_ALIGN_BYTES - 1);
}

export function recordBytes(payloadBytes: number): number {
  return alignRecord(RECORD_HEADER_BYTES + payloadBytes);
}

export function segmentFileName(segmentId: number): string {
  return `seg-${String(segmentId).padStart(10, '0')}.log`;
}

const SEGMENT_NAME = /^seg-(\d{10})\.log$/;

export function parseSegmentFileName(name: string): number | undefined {
  const match = SEGMENT_NAME.exec(name);
  return match ? Number(match[1]) : undefined;
}

export function isQuarantineFileName(name: string): boolean {
  return name.startsWith('quarantine-') && name.endsWith('.log');
}

function setU64(view: DataView, offset: number, value: number): void {
  view.setUint32(offset, value % 0x1_0000_0000, true);
  view.setUint32(offset + 4, Math.floor(value / 0x1_0000_0000), true);
}

function getU64(view: DataView, offset: number): number {
  return view.getUint32(offset, true) + view.getUint32(offset + 4, true) * 0x1_0000_0000;
}

export function encodeSegmentHeader(header: SegmentHeader, into: Uint8Array): void {
  into.fill(0, 0, SEGMENT_HEADER_BYTES);
  into.set(SEGMENT_MAGIC, 0);
  const view = new DataView(into.buffer, into.byteOffset, SEGMENT_HEADER_BYTES);
  view.setUint16(8, header.version, true);
  view.setUint16(10, SEGMENT_HEADER_BYTES, true);
  view.setUint32(12, header.segmentId, true);
  view.setUint32(16, header.salt, true);
  view.setUint32(20, header.segmentBytes, true);
  setU64(view, 24, header.createdMs);
  view.setUint32(SEGMENT_HEADER_CRC_OFFSET, crc32cUpdate(0, into, 0, SEGMENT_HEADER_CRC_OFFSET), true);
}

export type HeaderResult = { ok: true; header: SegmentHeader } | { ok: false; reason: string };

export function decodeSegmentHeader(bytes: Uint8Array): HeaderResult {
  if (bytes.length < SEGMENT_HEADER_BYTES) return { ok: false, reason: 'file shorter than a segment header' };
  for (let i = 0; i < SEGMENT_MAGIC.length; i++) {
    if (bytes[i] !== SEGMENT_MAGIC[i]) return { ok: false, reason: 'no segment magic' };
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, SEGMENT_HEADER_BYTES);
  if (view.getUint32(SEGMENT_HEADER_CRC_OFFSET, true) !== crc32cUpdate(0, bytes, 0, SEGMENT_HEADER_CRC_OFFSET)) {
    return { ok: false, reason: 'segment header CRC mismatch' };
  }
  const version = view.getUint16(8, true);
  if (version !== LOG_FORMAT_VERSION) return { ok: false, reason: `format version ${version}, this build reads ${LOG_FORMAT_VERSION}` };
  if (view.getUint16(10, true) !== SEGMENT_HEADER_BYTES) return { ok: false, reason: 'unexpected header length' };
  return {
    ok: true,
    header: {
      version,
      segmentId: view.getUint32(12, true),
      salt: view.getUint32(16, true),
      segmentBytes: view.getUint32(20, true),
      createdMs: getU64(view, 24),
    },
  };
}

/** The CRC state every record of a segment starts from: CRC-32C of the salt's four little-endian bytes. */
export function saltSeed(salt: number): number {
  const bytes = new Uint8Array(4);
  new DataView(bytes.buffer).setUint32(0, salt, true);
  return crc32cUpdate(0, bytes);
}

/**
 * Write a record header (CRC left zero) at `offset`; the payload follows at `offset + RECORD_HEADER_BYTES`.
 * Padding up to the alignment must already be zero.
 */
export function encodeRecordHeader(
  view: DataView,
  offset: number,
  type: number,
  payloadBytes: number,
  seq: number,
  epoch: number,
  timestampMs: number,
): void {
  view.setUint32(offset, 0, true);
  view.setUint32(offset + 4, (payloadBytes | (type << 24)) >>> 0, true);
  view.setUint32(offset + 8, seq % 0x1_0000_0000, true);
  view.setUint16(offset + 12, Math.floor(seq / 0x1_0000_0000), true);
  view.setUint16(offset + 14, Math.floor(timestampMs / 0x1_0000_0000), true);
  view.setUint32(offset + 16, timestampMs % 0x1_0000_0000, true);
  view.setUint32(offset + 20, epoch, true);
}

/** Compute and store the CRC of the record at `offset` (header already encoded, payload in place). */
export function sealRecord(bytes: Uint8Array, view: DataView, offset: number, seed: number): number {
  const payloadBytes = view.getUint32(offset + 4, true) & 0xff_ffff;
  view.setUint32(offset, crc32cUpdate(seed, bytes, offset + 4, offset + RECORD_HEADER_BYTES + payloadBytes), true);
  return recordBytes(payloadBytes);
}

export function encodeCheckpointPayload(state: CheckpointState, view: DataView, offset: number): void {
  view.setUint8(offset, state.kind);
  view.setUint8(offset + 1, 0);
  view.setUint16(offset + 2, 0, true);
  view.setUint32(offset + 4, state.epoch, true);
  setU64(view, offset + 8, state.replicated);
  setU64(view, offset + 16, state.replicaAcked);
  setU64(view, offset + 24, state.retentionFloor);
  setU64(view, offset + 32, state.logFirstSeq);
  view.setUint32(offset + 40, state.prevSegmentId, true);
  view.setUint32(offset + 44, state.prevBytesUsed, true);
  setU64(view, offset + 48, 0);
}

export function decodeCheckpointPayload(view: DataView, offset: number): CheckpointState {
  return {
    kind: view.getUint8(offset),
    epoch: view.getUint32(offset + 4, true),
    replicated: getU64(view, offset + 8),
    replicaAcked: getU64(view, offset + 16),
    retentionFloor: getU64(view, offset + 24),
    logFirstSeq: getU64(view, offset + 32),
    prevSegmentId: view.getUint32(offset + 40, true),
    prevBytesUsed: view.getUint32(offset + 44, true),
  };
}

/** What the decoder found at an offset. `ok: false` is the end of the valid log (torn tail or corruption). */
export type RecordResult =
  | { ok: true; type: number; payloadBytes: number; seq: number; epoch: number; timestampMs: number; size: number }
  | { ok: false; reason: 'short' | 'zero' | 'bad-type' | 'bad-length' | 'crc' };

/**
 * Decode and check the record at `offset` of `bytes` (which holds `[0, limit)` of a segment window).
 * Reused result objects would save an allocation per record; recovery and reads are I/O-bound enough that
 * clarity wins here.
 */
export function decodeRecord(bytes: Uint8Array, view: DataView, offset: number, limit: number, seed: number, payloadBytesMax: number): RecordResult {
  if (offset + RECORD_HEADER_BYTES > limit) return { ok: false, reason: 'short' };
  const lengthType = view.getUint32(offset + 4, true);
  const type = lengthType >>> 24;
  const payloadBytes = lengthType & 0xff_ffff;
  if (type === 0) return { ok: false, reason: lengthType === 0 && view.getUint32(offset, true) === 0 ? 'zero' : 'bad-type' };
  if (type !== RECORD_TYPE_ENTRY && type !== RECORD_TYPE_CHECKPOINT) return { ok: false, reason: 'bad-type' };
  if (type === RECORD_TYPE_CHECKPOINT ? payloadBytes !== CHECKPOINT_PAYLOAD_BYTES : payloadBytes > payloadBytesMax) {
    return { ok: false, reason: 'bad-length' };
  }
  const end = offset + RECORD_HEADER_BYTES + payloadBytes;
  if (end > limit) return { ok: false, reason: 'short' };
  if (view.getUint32(offset, true) !== crc32cUpdate(seed, bytes, offset + 4, end)) return { ok: false, reason: 'crc' };
  return {
    ok: true,
    type,
    payloadBytes,
    seq: view.getUint32(offset + 8, true) + view.getUint16(offset + 12, true) * 0x1_0000_0000,
    timestampMs: view.getUint16(offset + 14, true) * 0x1_0000_0000 + view.getUint32(offset + 16, true),
    epoch: view.getUint32(offset + 20, true),
    size: recordBytes(payloadBytes),
  };
}

/** Cheap pre-check used when searching for a valid record after a bad one: could a record start here? */
export function plausibleRecordStart(view: DataView, offset: number, limit: number, payloadBytesMax: number): boolean {
  if (offset + RECORD_HEADER_BYTES > limit) return false;
  const lengthType = view.getUint32(offset + 4, true);
  const type = lengthType >>> 24;
  const payloadBytes = lengthType & 0xff_ffff;
  if (type === RECORD_TYPE_ENTRY) return payloadBytes <= payloadBytesMax && offset + RECORD_HEADER_BYTES + payloadBytes <= limit;
  return type === RECORD_TYPE_CHECKPOINT && payloadBytes === CHECKPOINT_PAYLOAD_BYTES && offset + CHECKPOINT_RECORD_BYTES <= limit;
}

