/**
 * The staging buffer of the group commit: appends encode and checksum their record straight into it
 * (payload copied once), and the writer later writes a slice of it with one positional write. Two of these
 * alternate: one gathers while the other is being written and synced. Sealing each record as it is
 * appended spreads the CRC over the appends, which under real traffic arrive while the previous batch's
 * fdatasync is in flight, instead of doing all of it between that sync and the next write.
 */
import { CHECKPOINT_RECORD_BYTES, RECORD_HEADER_BYTES, RECORD_TYPE_ENTRY, encodeRecordHeader, recordBytes, sealRecord } from './format.ts';

/** Room kept before the first record for a checkpoint (watermarks, epoch) or a new segment's head record. */
export const BATCH_PREFIX_BYTES = CHECKPOINT_RECORD_BYTES;
/** Initial staging size: a full batch of 256-byte entries from 256 writers (72 KiB) fits without growing. */
const BATCH_INITIAL_BYTES = 256 * 1024;
/** `seed` of a batch holding no record yet. CRC states are 32-bit unsigned, so this never matches one. */
const SEED_NONE = -1;

export type Resolve = (value: unknown) => void;
export type Reject = (error: unknown) => void;

export class Batch {
  bytes = new Uint8Array(BATCH_INITIAL_BYTES);
  view = new DataView(this.bytes.buffer);
  /** End of the staged records; starts after the prefix. */
  used = BATCH_PREFIX_BYTES;
  records = 0;
  lastSeq = 0;
  /**
   * The CRC seed (the active segment's salt state) the staged records were sealed with. A batch that lands
   * in another segment (a roll) is resealed with that segment's seed; `mixedSeeds` says the active segment
   * changed while this batch gathered, so that some records carry the old seed and some the new.
   */
  seed = SEED_NONE;
  mixedSeeds = false;
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

  /** Encode and seal one entry at the end of the staged records, with the CRC seeded by `seed`. */
  put(payload: Uint8Array, seq: number, epoch: number, timestampMs: number, seed: number): void {
    const size = recordBytes(payload.length);
    this.reserve(size);
    const at = this.used;
    encodeRecordHeader(this.view, at, RECORD_TYPE_ENTRY, payload.length, seq, epoch, timestampMs);
    this.bytes.set(payload, at + RECORD_HEADER_BYTES);
    // Padding must be zero: the buffer is reused, so clear the few alignment bytes explicitly.
    for (let i = at + RECORD_HEADER_BYTES + payload.length; i < at + size; i++) this.bytes[i] = 0;
    sealRecord(this.bytes, this.view, at, seed);
    if (this.seed !== seed) {
      if (this.seed !== SEED_NONE) this.mixedSeeds = true;
      this.seed = seed;
    }
    this.used += size;
    this.records++;
    this.lastSeq = seq;
  }

  /** Make the records in `[start, end)` valid in a segment seeded with `seed` (after a roll). */
  reseal(start: number, end: number, seed: number): void {
    if (this.seed === seed && !this.mixedSeeds) return;
    for (let at = start; at < end; ) at += sealRecord(this.bytes, this.view, at, seed);
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
    this.seed = SEED_NONE;
    this.mixedSeeds = false;
    this.resolves.length = 0;
    this.rejects.length = 0;
    this.waiterSeq.length = 0;
    this.waiterEpoch.length = 0;
    this.waiterEnd.length = 0;
  }
}
