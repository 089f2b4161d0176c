/**
 * The standby's side: applies batches from the primary to its own flash log, exactly once and in order,
 * and acknowledges its durable position. De-duplication is by seq against the local log (a batch wholly at
 * or below `committed` is a duplicate, a batch starting past `committed + 1` is a gap and triggers one
 * resend request); fencing is by epoch (a sender older than the leader this node knows is ignored, and an
 * entry may not carry an epoch older than the one before it).
 */
import type { FlashLog, LogEntry } from '../log/index.ts';
import type { Clock, Logger } from '../util/index.ts';
import type { AckMessage, BatchMessage } from './wire.ts';

/** Do not repeat the same resend request more often than this (its batches are on their way). */
const WANT_REPEAT_MS = 1000;

export interface ReceiverOptions {
  log: FlashLog;
  group: string;
  node: string;
  /** Publishes an ack to every broker (retained, QoS 1). */
  sendAck: (ack: AckMessage) => Promise<void>;
  logger: Logger;
  clock: Clock;
}

export class Receiver {
  private active = false;
  private leaderEpoch = 0;
  private lastEntryEpoch = 0;
  private lastWant = 0;
  private lastWantAtMs = -Infinity;
  private acking = false;
  private ackAgain = false;
  private readonly counters = { batchesApplied: 0, entriesApplied: 0, duplicateBatches: 0, gaps: 0, fenced: 0, epochRegressions: 0, appendFailures: 0 };

  constructor(private readonly options: ReceiverOptions) {}

  async start(): Promise<void> {
    this.active = true;
    this.lastEntryEpoch = await this.lastLocalEpoch();
    // A standby that (re)starts cannot know what it missed while away (a broker drops messages for a
    // subscription its session did not have yet), so its first ack asks for everything after its position.
    void this.sendAck(this.options.log.watermarks().committed + 1);
  }

  stop(): void {
    this.active = false;
  }

  /** The newest leader epoch this node knows; batches from older senders are fenced off. */
  setLeaderEpoch(epoch: number): void {
    this.leaderEpoch = Math.max(this.leaderEpoch, epoch);
  }

  stats(): Record<string, number> {
    return { ...this.counters };
  }

  async onBatch(batch: BatchMessage): Promise<void> {
    if (!this.active) return;
    const log = this.options.log;
    if (batch.epoch < this.leaderEpoch) {
      this.counters.fenced++;
      this.options.logger.warn('ignored a batch from a fenced-off primary', { from: batch.node, epoch: batch.epoch, leaderEpoch: this.leaderEpoch });
      return;
    }
    const entries = batch.entries;
    const first = entries[0]!.seq;
    const last = entries[entries.length - 1]!.seq;
    const committed = log.watermarks().committed;
    if (last <= committed) {
      this.counters.duplicateBatches++;
      return;
    }
    if (first > committed + 1) {
      this.counters.gaps++;
      this.requestResend(committed + 1, first);
      return;
    }
    const fresh = entries.slice(committed + 1 - first);
    if (!this.epochsMonotone(fresh)) {
      this.counters.epochRegressions++;
      this.options.logger.error('rejected a batch whose epochs go backwards', { from: batch.node, first, last });
      return;
    }
    try {
      await log.appendReplicated(fresh);
    } catch (error) {
      this.counters.appendFailures++;
      this.options.logger.error('could not store replicated entries; the primary will resend them', { first: fresh[0]!.seq, error });
      return;
    }
    this.lastEntryEpoch = fresh[fresh.length - 1]!.epoch;
    this.counters.batchesApplied++;
    this.counters.entriesApplied += fresh.length;
    this.ack();
  }

  private epochsMonotone(entries: readonly LogEntry[]): boolean {
    let previous = this.lastEntryEpoch;
    for (const entry of entries) {
      if (entry.epoch < previous) return false;
      previous = entry.epoch;
    }
    return true;
  }

  private requestResend(want: number, seen: number): void {
    const now = this.options.clock.monotonicMs();
    if (want === this.lastWant && now - this.lastWantAtMs < WANT_REPEAT_MS) return;
    this.lastWant = want;
    this.lastWantAtMs = now;
    this.options.logger.info('gap in the replicated stream; asking for a resend', { want, seen });
    void this.sendAck(want);
  }

  /** One ack in flight at a time; the latest position wins (acks are cumulative). */
  private ack(): void {
    if (this.acking) {
      this.ackAgain = true;
      return;
    }
    this.acking = true;
    void this.sendAck(undefined).finally(() => {
      this.acking = false;
      if (this.ackAgain && this.active) {
        this.ackAgain = false;
        this.ack();
      }
    });
  }

  private async sendAck(want: number | undefined): Promise<void> {
    const log = this.options.log;
    const ack: AckMessage = {
      group: this.options.group,
      node: this.options.node,
      epoch: log.epoch,
      seq: log.watermarks().committed,
      ...(want !== undefined ? { want } : {}),
      atMs: this.options.clock.nowMs(),
    };
    await this.options.sendAck(ack).catch((error: unknown) => this.options.logger.warn('ack not delivered; the next one carries the position', { error }));
  }

  private async lastLocalEpoch(): Promise<number> {
    const log = this.options.log;
    const committed = log.watermarks().committed;
    if (committed < log.firstSeq) return 0;
    const [last] = await log.read(committed, { entriesMax: 1, bytesMax: 1 });
    return last?.epoch ?? 0;
  }
}
