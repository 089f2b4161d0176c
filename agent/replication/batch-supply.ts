/**
 * Where the publisher's batches come from: the head of the prepared tail when it is exactly the next batch,
 * else one made from the log now (batch-source.ts); and where their buffers go back to (batch-buffers.ts).
 * It owns those three and the timer that drops the pooled buffers once replication has been caught up for
 * a while; the publisher decides when a batch is wanted, and sends it.
 */
import type { Clock, Logger, TimerHandle } from '../util/index.ts';
import { BATCH_BUFFERS_IDLE_MS, BatchBuffers } from './batch-buffers.ts';
import { BatchSource, entryTooLargeError, type BatchSourceOptions, type MakeResult } from './batch-source.ts';
import { PreparedTail, type PreparedTailHost, type TakeCheck } from './prepared-tail.ts';

export interface BatchSupplyOptions extends Omit<BatchSourceOptions, 'buffers'> {
  batchBytesMax: number;
  /** The publisher's window: as many pooled buffers are kept. */
  windowMax: number;
  /** Memory the prepared tail may hold (prepared-tail.ts PREPARED_BYTES_MAX by default; 0: none). */
  preparedBytesMax?: number;
  clock: Clock;
  logger: Logger;
  host: PreparedTailHost;
}

export class BatchSupply {
  private readonly buffers: BatchBuffers;
  private readonly source: BatchSource;
  private readonly prepared: PreparedTail;
  private trimTimer: TimerHandle | undefined;
  /** The entry last reported as too large for the brokers: reported once, however often it is tried. */
  private tooLargeSeq = 0;

  constructor(private readonly options: BatchSupplyOptions) {
    this.buffers = new BatchBuffers(options.batchBytesMax, options.windowMax);
    this.source = new BatchSource({ ...options, buffers: this.buffers });
    this.prepared = new PreparedTail({
      log: options.log,
      source: this.source,
      clock: options.clock,
      bytesMax: options.preparedBytesMax,
      batchEntriesMax: options.batchEntriesMax,
      release: (batch) => batch.buffer && this.buffers.give(batch.buffer),
      host: options.host,
    });
  }

  /**
   * The batch at `check.nextSeq`: the prepared one if it passes `check` (else all are dropped), or one made
   * now; an entry too large for the brokers is logged the first time it is tried.
   */
  async next(check: TakeCheck): Promise<MakeResult> {
    const ready = this.prepared.take(check);
    if (ready) return { ok: true, batch: ready };
    const made = await this.source.make(check.nextSeq, check.plan);
    if (made.ok) this.prepared.learn(made.batch);
    else if (made.reason === 'too-large' && made.seq !== this.tooLargeSeq) {
      this.tooLargeSeq = made.seq;
      const error = entryTooLargeError(made.seq, made.entryBytes, check.plan.payloadBytesMax);
      this.options.logger.error(error.message, error.detail);
    }
    return made;
  }

  /**
   * Waits for a batch under preparation, which may be the very next one; true if there was one (the
   * publisher then looks again). The publisher never reads the log while a preparation does.
   */
  waitPreparing(): Promise<boolean> {
    return this.prepared.idle();
  }

  /** The publisher cannot send now: prepare the tail meanwhile. */
  prepareAhead(): void {
    this.prepared.schedule();
  }

  /** The next seq moved other than by sending: nothing prepared follows it any more. */
  dropPrepared(): void {
    this.prepared.clear();
  }

  /** A buffer every link is done with (or a batch not sent after all). */
  give(buffer: Uint8Array | undefined): void {
    if (buffer) this.buffers.give(buffer);
  }

  /**
   * Replication caught up: the pooled buffers (a window of half-MiB batches) need not outlive the burst;
   * they are dropped after BATCH_BUFFERS_IDLE_MS if `stillCaughtUp()` then.
   */
  caughtUp(stillCaughtUp: () => boolean): void {
    if (this.trimTimer) return;
    this.trimTimer = this.options.clock.setTimeout(() => {
      this.trimTimer = undefined;
      // Busy again: the next catch-up arms the timer anew.
      if (stillCaughtUp()) this.buffers.trim();
    }, BATCH_BUFFERS_IDLE_MS);
  }

  stop(): void {
    this.prepared.clear();
    this.trimTimer?.cancel();
    this.trimTimer = undefined;
    this.buffers.clear();
  }

  stats(): Record<string, number> {
    return { batchBuffersReused: this.buffers.reused, ...this.prepared.counters, preparedHeldBatches: this.prepared.batches, preparedHeldBytes: this.prepared.bytes, preparedThroughSeq: this.prepared.throughSeq };
  }
}
