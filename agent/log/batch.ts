/**
 * The staging buffer of the group commit: appends encode their record straight into it (payload copied
 * once), and the writer later seals CRCs and writes a slice of it with one positional write. Two of these
 * alternate: one gathers while the other is being written and synced.
 */
import { CHECKPOINT_RECORD_BYTES, RECORD_HEADER_BYTES, RECORD_TYPE_ENTRY, encodeRecordHeader, recordBytes } from './format.ts';

/** Room kept before the first record for a checkpoint (watermarks, epoch) or a new segment's head record. */
export const BATCH_PREFIX_BYTES = CHECKPOINT_RECORD_BYTES;
const BATCH_INITIAL_BYTES = 256 * 1024;

export type Resolve = (value: unknown) => void;
export type Reject = (error: unknown) => void;

export class Batch {
  bytes = new Uint8Array(BATCH_INITIAL_BYTES);
  view = new DataView(this.bytes.buffer);
  /** End of the staged records; starts after the prefix. */
  used = BATCH_PREFIX_BYTES;
  records = 0;
  lastSeq = 0;
  /** One waiter per `append` call or per `appendReplicated` call, in order. */
  readonly resolves: Resolve[] = [];
  readonly rejects: Reject[] = [];
  /** The value an append resolves with needs seq and epoch; -1 marks a replicated call (resolves undefined). */
  readonly waiterSeq: number[] = [];
  readonly waiterEpoch: number[] = [];
  /** Staging offset just past the waiter's last record: it resolves once a synced chunk reaches it. */
  readonly waiterEnd: number[] = [];

  get stagedBytes(): number {
    return this.used - BATCH_PREFIX_BYTES;
  }

  private reserve(bytes: number): void {
    if (this.used + bytes <= this.bytes.length) return;
    let size = this.bytes.length * 2;
    while (size < this.used + bytes) size *= 2;
    const grown = new Uint8Array(size);
    grown.set(this.bytes.subarray(0, this.used));
    this.bytes = grown;
    this.view = new DataView(grown.buffer);
  }

  /** Encode one entry (CRC still zero) at the end of the staged records. */
  put(payload: Uint8Array, seq: number, epoch: number, timestampMs: number): void {
    const size = recordBytes(payload.length);
    this.reserve(size);
    const at = this.used;
    encodeRecordHeader(this.view, at, RECORD_TYPE_ENTRY, payload.length, seq, epoch, timestampMs);
    this.bytes.set(payload, at + RECORD_HEADER_BYTES);
    // Padding must be zero: the buffer is reused, so clear the few alignment bytes explicitly.
    for (let i = at + RECORD_HEADER_BYTES + payload.length; i < at + size; i++) this.bytes[i] = 0;
    this.used += size;
    this.records++;
    this.lastSeq = seq;
  }

  wait(resolve: Resolve, reject: Reject, seq: number, epoch: number): void {
    this.resolves.push(resolve);
    this.rejects.push(reject);
    this.waiterSeq.push(seq);
    this.waiterEpoch.push(epoch);
    this.waiterEnd.push(this.used);
  }

  /** Reject every waiter from index `from` on. */
  rejectFrom(from: number, error: unknown): void {
    for (let i = from; i < this.rejects.length; i++) this.rejects[i]!(error);
  }

  reset(): void {
    this.used = BATCH_PREFIX_BYTES;
    this.records = 0;
    this.lastSeq = 0;
    this.resolves.length = 0;
    this.rejects.length = 0;
    this.waiterSeq.length = 0;
    this.waiterEpoch.length = 0;
    this.waiterEnd.length = 0;
  }
}
