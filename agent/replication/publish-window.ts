/**
 * The window of batches handed to the links and not yet acknowledged by a quorum of brokers: each batch's
 * PUBACKs and failures, whether it made its quorum or can no longer, and taking the acknowledged ones off
 * the front in seq order. The publisher owns what each outcome then does (watermarks, the drain meter,
 * sending again); this only keeps the count.
 */
import type { MadeBatch } from './batch-source.ts';
import type { DeliveryMark } from './drain-meter.ts';

export interface InflightBatch {
  readonly first: number;
  readonly last: number;
  readonly bytes: number;
  /** Links it was handed to. */
  readonly sentTo: number;
  /** The pooled buffer its payload was encoded into, given back once every link settled the publish. */
  readonly buffer: Uint8Array | undefined;
  /** When it was handed to the links (monotonic ms): its acknowledgement measures the round trip. */
  readonly sentAtMs: number;
  /** Bytes in flight when it was handed over, itself included: what the link had to carry before its ack. */
  readonly bytesAhead: number;
  /** For its delivery-rate sample (drain-meter.ts). */
  readonly delivery: DeliveryMark;
  acks: number;
  failures: number;
  quorum: boolean;
  failed: boolean;
}

/** What a link's failure to take a batch means for it. */
export type FailureVerdict = 'already-done' | 'minority' | 'failed';

export class PublishWindow {
  private readonly batches: InflightBatch[] = [];

  /** PUBACKs a batch needs (1 in cluster mode). */
  constructor(private readonly quorum: number) {}

  get size(): number {
    return this.batches.length;
  }

  /** Bytes of the batches in flight. */
  bytes(): number {
    let bytes = 0;
    for (const batch of this.batches) bytes += batch.bytes;
    return bytes;
  }

  clear(): void {
    this.batches.length = 0;
  }

  /** `made` was handed to `sentTo` links at `sentAtMs`. */
  open(made: MadeBatch, sentTo: number, sentAtMs: number, delivery: DeliveryMark): InflightBatch {
    const bytes = made.payload.length;
    const batch: InflightBatch = { first: made.first, last: made.last, bytes, sentTo, buffer: made.buffer, sentAtMs, bytesAhead: this.bytes() + bytes, delivery, acks: 0, failures: 0, quorum: false, failed: false };
    this.batches.push(batch);
    return batch;
  }

  /** Every link answered the publish (PUBACK or failure): its buffer may be reused. */
  static settled(batch: InflightBatch): boolean {
    return batch.acks + batch.failures === batch.sentTo;
  }

  /** A PUBACK for `batch`: true when it is the one that made the quorum. */
  puback(batch: InflightBatch): boolean {
    batch.acks++;
    if (batch.quorum || batch.failed || batch.acks < this.quorum) return false;
    batch.quorum = true;
    return true;
  }

  /**
   * A link failed `batch`. While the others can still make the quorum this is a minority refusal; once
   * they cannot, the batch failed and leaves the window.
   */
  failure(batch: InflightBatch): FailureVerdict {
    batch.failures++;
    if (batch.failed) return 'already-done';
    // The others made the quorum before this link answered: still a minority's refusal, and counted, so that
    // a broker that refuses everything shows even when it is always the last to answer.
    if (batch.quorum || batch.sentTo - batch.failures >= this.quorum) return 'minority';
    batch.failed = true;
    const index = this.batches.indexOf(batch);
    if (index >= 0) this.batches.splice(index, 1);
    return 'failed';
  }

  /** Batches that `seq` covers count as acknowledged (the siblings hold them); true if any did just now. */
  retire(seq: number): boolean {
    let any = false;
    for (const batch of this.batches) {
      if (batch.last > seq || batch.quorum || batch.failed) continue;
      batch.quorum = true;
      any = true;
    }
    return any;
  }

  /**
   * Take the acknowledged batches that follow `acked` off the window: the new acknowledged seq and the
   * bytes taken.
   */
  advance(acked: number): { acked: number; bytes: number } {
    let bytes = 0;
    let advanced = true;
    while (advanced) {
      advanced = false;
      for (let index = 0; index < this.batches.length; index++) {
        const candidate = this.batches[index]!;
        if (candidate.quorum && candidate.first <= acked + 1) {
          acked = Math.max(acked, candidate.last);
          this.batches.splice(index, 1);
          bytes += candidate.bytes;
          advanced = true;
          break;
        }
      }
    }
    return { acked, bytes };
  }
}
