/**
 * Assertions around the log's disk I/O, in TigerBeetle's manner: before every write, that the bytes are what
 * the format says (aligned, in the file, records whose lengths add up, seqs contiguous); after every read,
 * that the read stayed in its bounds. They check the log's own arithmetic, never the disk's contents (a bad
 * record on disk is a torn tail or corruption, which recovery and reads handle as data); a failure is a bug
 * here and crashes with an AssertionError (agent/util/errors.ts: programmer errors are assertions). Each is
 * a few comparisons, so they stay on in production; messages are built only on failure.
 */
import assert from 'node:assert/strict';
import { RECORD_ALIGN_BYTES, RECORD_HEADER_BYTES, RECORD_PAYLOAD_BYTES_MAX, RECORD_TYPE_CHECKPOINT, RECORD_TYPE_ENTRY, CHECKPOINT_RECORD_BYTES, recordBytes } from './format.ts';

/** A write of `length` bytes at `position` stays inside a file of `fileBytes`; `aligned`: at a record boundary. */
export function assertWriteRange(position: number, length: number, fileBytes: number, aligned: boolean, what: string): void {
  if (!(Number.isInteger(position) && position >= 0 && length >= 0 && position + length <= fileBytes)) {
    assert.fail(`${what}: a write of ${length} bytes at ${position} does not fit in a file of ${fileBytes} bytes`);
  }
  if (aligned && position % RECORD_ALIGN_BYTES !== 0) assert.fail(`${what}: a write at ${position} is not at a ${RECORD_ALIGN_BYTES}-byte record boundary`);
}

/** Any other invariant of the log's own bookkeeping around a read or a write. */
export function invariant(condition: boolean, what: string): void {
  if (!condition) assert.fail(what);
}

/** A read returned no more bytes than it asked for. */
export function assertReadWithin(got: number, asked: number, what: string): void {
  if (!(got >= 0 && got <= asked)) assert.fail(`${what} (${got} of ${asked})`);
}

/**
 * The records staged in `[start, end)` of a batch, about to be written: each length field gives a whole,
 * aligned record of a known type, they add up to exactly `end - start`, and the entries carry the seqs
 * `firstSeq`, `firstSeq + 1`, ... with no gap. Returns the last entry's seq (`firstSeq - 1` if none).
 */
export function assertStagedRecords(view: DataView, start: number, end: number, firstSeq: number): number {
  let at = start;
  let seq = firstSeq - 1;
  while (at < end) {
    const lengthType = view.getUint32(at + 4, true);
    const type = lengthType >>> 24;
    const size = recordBytes(lengthType & RECORD_PAYLOAD_BYTES_MAX);
    if (type === RECORD_TYPE_ENTRY) {
      const recordSeq = view.getUint32(at + 8, true) + view.getUint16(at + 12, true) * 0x1_0000_0000;
      if (recordSeq !== seq + 1) assert.fail(`group commit: the record at batch offset ${at} has seq ${recordSeq}, expected ${seq + 1}`);
      seq = recordSeq;
    } else if (type !== RECORD_TYPE_CHECKPOINT || size !== CHECKPOINT_RECORD_BYTES) {
      assert.fail(`group commit: the record at batch offset ${at} has type ${type} and ${size} bytes`);
    }
    at += size;
  }
  if (at !== end) assert.fail(`group commit: the records from batch offset ${start} add up to ${at - start} bytes, not the chunk's ${end - start}`);
  return seq;
}

/** The checkpoint record encoded at `at` has its full size and carries seq `seq` (the committed end it follows). */
export function assertCheckpointRecord(view: DataView, at: number, seq: number): void {
  const lengthType = view.getUint32(at + 4, true);
  const recordSeq = view.getUint32(at + 8, true) + view.getUint16(at + 12, true) * 0x1_0000_0000;
  if (lengthType >>> 24 !== RECORD_TYPE_CHECKPOINT || recordBytes(lengthType & RECORD_PAYLOAD_BYTES_MAX) !== CHECKPOINT_RECORD_BYTES || recordSeq !== seq) {
    assert.fail(`group commit: the checkpoint at batch offset ${at} is malformed (seq ${recordSeq}, expected ${seq})`);
  }
}

/** A record the scanner accepted (its CRC checked by the decoder) lies whole, aligned, inside the span read. */
export function assertRecordRead(offset: number, size: number, limit: number): void {
  if (!(offset % RECORD_ALIGN_BYTES === 0 && size >= RECORD_HEADER_BYTES && size % RECORD_ALIGN_BYTES === 0 && offset + size <= limit)) {
    assert.fail(`scan: a record of ${size} bytes at ${offset} is not whole and aligned before the limit ${limit}`);
  }
}
