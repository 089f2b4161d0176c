/**
 * The byte work of one chunk of the group commit, as pure functions over a staged batch: where a chunk
 * ends, the checkpoint record that prefixes it, and the index samples of its records. Used only by
 * group-commit.ts.
 */
import type { Batch } from './batch.ts';
import { BATCH_BYTES_MAX, CHECKPOINT_RECORD_BYTES, RECORD_HEADER_BYTES, RECORD_TYPE_CHECKPOINT, encodeCheckpointPayload, encodeRecordHeader, recordBytes } from './format.ts';
import type { Segment } from './segments.ts';
import type { CheckpointSnapshot } from './watermarks.ts';

/** Encode the checkpoint `cp` at staging offset `at`, its record seq the committed end it follows. */
export function encodeCheckpoint(batch: Batch, at: number, cp: CheckpointSnapshot, committed: number, logFirstSeq: number, nowMs: number, prev: Segment | undefined): void {
  encodeRecordHeader(batch.view, at, RECORD_TYPE_CHECKPOINT, CHECKPOINT_RECORD_BYTES - RECORD_HEADER_BYTES, committed, cp.epoch, nowMs);
  encodeCheckpointPayload(
    {
      kind: cp.kind,
      epoch: cp.epoch,
      replicated: cp.replicated,
      replicaAcked: cp.replicaAcked,
      retentionFloor: cp.retentionFloor,
      logFirstSeq,
      prevSegmentId: prev ? prev.id : 0,
      prevBytesUsed: prev ? prev.bytesUsed : 0,
    },
    batch.view,
    at + RECORD_HEADER_BYTES,
  );
}

/**
 * Add the chunk's records to the segment's sparse index and return the seq of its last record. Only the
 * records at which a sample can fall are decoded: the index keeps one per INDEX_SPACING_BYTES.
 */
export function indexChunk(batch: Batch, segment: Segment, start: number, end: number, toFile: number, committed: number): number {
  const view = batch.view;
  let at = start;
  while (at < end) {
    const size = recordBytes(view.getUint32(at + 4, true) & 0xff_ffff);
    if (segment.index.wants(at + toFile) || at + size >= end) {
      const seq = view.getUint32(at + 8, true) + view.getUint16(at + 12, true) * 0x1_0000_0000;
      segment.index.add(seq, at + toFile);
      if (at + size >= end) return seq;
    }
    at += size;
  }
  return committed;
}

/**
 * End (staging offset) of the records from `start` that fit in one chunk in `segment`. A chunk that cannot
 * take everything ends where a waiter's records end, so that the records of one call (an `appendMany`, a
 * replicated batch) go out in one write: a crash of the process then leaves all of them on disk or none.
 * When no waiter's records fit (a roll comes next), it returns `start`; in a fresh segment (`split`) a
 * call larger than one write is split rather than never written.
 */
export function chunkEnd(batch: Batch, start: number, segment: Segment, withPrefix: boolean, split = false): number {
  const prefix = withPrefix ? CHECKPOINT_RECORD_BYTES : 0;
  // Keep room for a final checkpoint (a clean close, a quarantine) in every segment.
  const room = Math.min(BATCH_BYTES_MAX, segment.segmentBytes - segment.bytesUsed - CHECKPOINT_RECORD_BYTES) - prefix;
  let end = start;
  while (end < batch.used) {
    const size = recordBytes(batch.view.getUint32(end + 4, true) & 0xff_ffff);
    if (end + size - start > room) break;
    end += size;
  }
  if (end === batch.used) return end;
  const boundary = lastWaiterEndAtOrBefore(batch.waiterEnd, end);
  if (boundary > start) return boundary;
  return split ? end : start;
}

/** The largest of the ascending `ends` that is at most `at` (0 when none is). */
function lastWaiterEndAtOrBefore(ends: readonly number[], at: number): number {
  let low = 0;
  let high = ends.length;
  while (low < high) {
    const mid = (low + high) >>> 1;
    if (ends[mid]! <= at) low = mid + 1;
    else high = mid;
  }
  return low === 0 ? 0 : ends[low - 1]!;
}
