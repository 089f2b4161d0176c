/**
 * The log's watermarks (committed, replicated, replica-acked, the retention floor, the epoch) and the
 * checkpoints that make them durable: which checkpoint the next batch carries, who waits for it, what the
 * last synced one says (retention relies only on that), and the listeners told of each move. A part of the
 * flash log (flash-log.ts is its only importer): it writes nothing itself, the group commit carries its
 * checkpoints.
 */
import type { Clock, Logger, TimerHandle } from '../util/index.ts';
import type { DemotionPlan } from './demotion.ts';
import { CHECKPOINT_CLOSE, CHECKPOINT_HEAD, CHECKPOINT_QUARANTINE, CHECKPOINT_WATERMARKS, RETENTION_FLOOR_NONE } from './format.ts';
import type { RecoveredState } from './recovery.ts';
import type { Watermarks } from './types.ts';

/** The state a checkpoint record holds (its kind, and the marks at the time it was taken). */
export interface CheckpointSnapshot {
  readonly kind: number;
  readonly epoch: number;
  readonly replicated: number;
  readonly replicaAcked: number;
  readonly retentionFloor: number;
}

export interface CheckpointWaiter {
  resolve(): void;
  reject(error: unknown): void;
}

/** What the watermarks ask of the log around them: its state (a lone checkpoint only while open and sound), and a flush. */
export interface WatermarkHost {
  readonly clock: Clock;
  readonly logger: Logger;
  readonly watermarkLingerMs: number;
  isOpen(): boolean;
  faulted(): boolean;
  scheduleFlush(): void;
}

export class WatermarkBook {
  committed = 0;
  epoch = 1;
  replicated = 0;
  replicaAcked = 0;
  retentionFloor: number;
  /** What the last synced checkpoint says: retention relies only on these. */
  durable: CheckpointSnapshot = { kind: 0, epoch: 1, replicated: 0, replicaAcked: 0, retentionFloor: RETENTION_FLOOR_NONE };
  /** The kind of checkpoint the next batch must carry (0: none unless the marks moved). */
  forcedCheckpoint = 0;
  private dirty = false;
  private waiters: CheckpointWaiter[] = [];
  private timer: TimerHandle | undefined;
  private readonly commitListeners = new Set<(committed: number) => void>();
  private readonly replicatedListeners = new Set<(marks: Watermarks) => void>();

  constructor(
    private readonly host: WatermarkHost,
    retentionFloor: number,
  ) {
    this.retentionFloor = retentionFloor;
  }

  /** Take over what recovery found. Watermarks never go backwards: after a fault the memory may be ahead of the disk. */
  adopt(recovered: RecoveredState): void {
    this.committed = recovered.committed;
    this.epoch = Math.max(this.epoch, recovered.epoch);
    this.replicated = Math.min(Math.max(this.replicated, recovered.replicated), this.committed);
    this.replicaAcked = Math.min(Math.max(this.replicaAcked, recovered.replicaAcked), this.committed);
    if (this.retentionFloor === RETENTION_FLOOR_NONE) this.retentionFloor = recovered.retentionFloor;
    this.durable = { kind: 0, epoch: recovered.epoch, replicated: recovered.replicated, replicaAcked: recovered.replicaAcked, retentionFloor: recovered.retentionFloor };
    this.dirty = this.replicated !== recovered.replicated || this.replicaAcked !== recovered.replicaAcked;
  }

  snapshot(kind: number): CheckpointSnapshot {
    return { kind, epoch: this.epoch, replicated: this.replicated, replicaAcked: this.replicaAcked, retentionFloor: this.retentionFloor };
  }

  /** Whether the next batch must carry a checkpoint (the marks moved, or one was asked for). */
  wantsCheckpoint(): boolean {
    return this.dirty || this.forcedCheckpoint !== 0;
  }

  /**
   * The checkpoint the batch about to be written carries, with the callers waiting for it; the marks are
   * clean from here. The watermark timer stays armed: when it fires it finds nothing dirty and does nothing.
   * Cancelling and re-arming it on every batch (replication marks after every commit) was a timer churn per batch.
   */
  takeCheckpoint(): { checkpoint: CheckpointSnapshot; waiters: CheckpointWaiter[] } {
    const checkpoint = this.snapshot(this.forcedCheckpoint !== 0 ? this.forcedCheckpoint : CHECKPOINT_WATERMARKS);
    this.dirty = false;
    this.forcedCheckpoint = 0;
    const waiters = this.waiters;
    this.waiters = [];
    return { checkpoint, waiters };
  }

  /** Entries up to `seq` are synced. */
  commitTo(seq: number): void {
    this.committed = seq;
  }

  /** A demotion cut the log back to `seq`; the plan's checkpoint at the cut is synced. */
  cutTo(seq: number, plan: DemotionPlan): void {
    this.committed = seq;
    this.replicated = plan.replicated;
    this.replicaAcked = plan.replicaAcked;
    this.durable = { kind: CHECKPOINT_QUARANTINE, epoch: plan.epoch, replicated: plan.replicated, replicaAcked: plan.replicaAcked, retentionFloor: plan.retentionFloor };
  }

  /** A checkpoint was written and synced: it is what a crash now would recover. */
  checkpointSynced(state: CheckpointSnapshot): void {
    this.durable = state;
  }

  /** Fail everyone waiting for a checkpoint (an I/O fault); the forced one is dropped with them. */
  failCheckpoints(error: unknown): void {
    for (const waiter of this.waiters.splice(0)) waiter.reject(error);
    this.forcedCheckpoint = 0;
  }

  /** A checkpoint of `kind` on the next batch, or on its own; resolves once it is synced. */
  forceCheckpoint(kind: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (this.forcedCheckpoint === 0 || kind === CHECKPOINT_CLOSE || kind === CHECKPOINT_HEAD) this.forcedCheckpoint = kind;
      this.waiters.push({ resolve, reject });
      this.host.scheduleFlush();
    });
  }

  watermarks(): Watermarks {
    return { committed: this.committed, replicated: this.replicated, replicaAcked: this.replicaAcked };
  }

  durableWatermarks(): Watermarks {
    return { committed: this.committed, replicated: this.durable.replicated, replicaAcked: this.durable.replicaAcked };
  }

  /** Whether retention may release a segment whose last entry is `lastSeq`: durably replicated and below the floor. */
  releasable(lastSeq: number): boolean {
    return lastSeq <= this.durable.replicated && lastSeq < this.retentionFloor;
  }

  /** Returns whether the mark moved. */
  markReplicated(seq: number): boolean {
    const value = Math.min(seq, this.committed);
    if (!(value > this.replicated)) return false;
    this.replicated = value;
    this.changed();
    this.notifyReplicated();
    return true;
  }

  markReplicaAcked(seq: number): void {
    const value = Math.min(seq, this.committed);
    if (!(value > this.replicaAcked)) return;
    this.replicaAcked = value;
    this.changed();
    this.notifyReplicated();
  }

  /** Returns whether the floor moved. */
  setRetentionFloor(seq: number): boolean {
    if (!(seq >= 0)) return false;
    if (seq === this.retentionFloor) return false;
    this.retentionFloor = seq;
    this.changed();
    return true;
  }

  /** Ride the next batch; if none comes within the linger, write a checkpoint on its own. */
  changed(): void {
    this.dirty = true;
    if (this.timer || !this.host.isOpen()) return;
    this.timer = this.host.clock.setTimeout(() => {
      this.timer = undefined;
      if (!this.dirty || !this.host.isOpen() || this.host.faulted()) return;
      if (this.forcedCheckpoint === 0) this.forcedCheckpoint = CHECKPOINT_WATERMARKS;
      this.host.scheduleFlush();
    }, this.host.watermarkLingerMs);
  }

  cancelTimer(): void {
    this.timer?.cancel();
    this.timer = undefined;
  }

  onCommit(listener: (committed: number) => void): () => void {
    this.commitListeners.add(listener);
    return () => {
      this.commitListeners.delete(listener);
    };
  }

  onReplicated(listener: (marks: Watermarks) => void): () => void {
    this.replicatedListeners.add(listener);
    return () => {
      this.replicatedListeners.delete(listener);
    };
  }

  notifyCommit(): void {
    const committed = this.committed;
    for (const listener of this.commitListeners) {
      try {
        listener(committed);
      } catch (error) {
        this.host.logger.error('onCommit listener threw', { error });
      }
    }
  }

  private notifyReplicated(): void {
    if (this.replicatedListeners.size === 0) return;
    const marks = this.watermarks();
    for (const listener of this.replicatedListeners) {
      try {
        listener(marks);
      } catch (error) {
        this.host.logger.error('onReplicated listener threw', { error });
      }
    }
  }
}
