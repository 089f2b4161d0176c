/**
 * The group commit: appends are staged into one of two alternating buffers (batch.ts) while the other is
 * written and synced; one writer loop takes the staged batch, lingers for more appends when more are on
 * their way, and commits it as chunks of one positional write and one fdatasync each. A batch's commit is
 * three steps per chunk: plan (where it goes, rolling to a new segment when it does not fit), write (the
 * checkpoint prefix, reseal, the assertions on what is about to hit the disk, the write and the sync), and
 * settle (the marks move, waiters resolve). A part of the flash log (flash-log.ts is its only importer); it
 * reaches the watermarks and the segment pool through the narrow views below. A little over 400 lines: the
 * writer loop and the three steps share the two batches and the linger's state, and split apart each would
 * need the other's back.
 */
import { setImmediate } from 'node:timers';
import { LastgaspError, RecentMax, type Clock, type TimerHandle } from '../util/index.ts';
import { BATCH_PREFIX_BYTES, Batch } from './batch.ts';
import { CHECKPOINT_HEAD, CHECKPOINT_RECORD_BYTES, RECORD_U48_MAX, sealRecord } from './format.ts';
import { chunkEnd, encodeCheckpoint, indexChunk } from './commit-chunk.ts';
import { assertCheckpointRecord, assertStagedRecords, assertWriteRange } from './invariants.ts';
import type { Counters, ResolvedOptions } from './options.ts';
import type { TailCache } from './read-cache.ts';
import type { Segment } from './segments.ts';
import type { StorageFile } from './storage/index.ts';
import type { AppendResult, LogEntry, SyncMode } from './types.ts';
import type { CheckpointSnapshot, CheckpointWaiter, WatermarkBook } from './watermarks.ts';

/**
 * Chunks up to this size are written with a synchronous positional write on the event loop; larger ones go
 * through the thread pool. Copying 72 KiB (a batch of 256 entries of 256 B) into the page cache measured
 * 10-20 us here, while the pool round trip it replaces measured 60-140 us on this shared two-core VM; at
 * 256 KiB (the default lingerBytes) the copy is still well under a typical fdatasync, and above it the
 * hop is small next to the copy.
 */
export const LOG_WRITE_INLINE_BYTES_MAX = 256 * 1024;

/** What the group commit reads and moves of the watermarks. */
export type CommitMarks = Pick<WatermarkBook, 'committed' | 'durable' | 'forcedCheckpoint' | 'wantsCheckpoint' | 'takeCheckpoint' | 'snapshot' | 'checkpointSynced' | 'commitTo' | 'notifyCommit' | 'replicated'>;

/** What the group commit needs of the segment pool: the active segment and its file, a roll, retention. */
export interface CommitPool {
  readonly segments: readonly Segment[];
  readonly activeFile: StorageFile | undefined;
  roll(baseSeq: number): Promise<void>;
  afterRoll(): void;
  scheduleRetention(): void;
  firstSeq(committed: number): number;
}

export interface GroupCommitHost {
  readonly options: Readonly<ResolvedOptions>;
  readonly clock: Clock;
  readonly counters: Counters;
  readonly marks: CommitMarks;
  readonly pool: CommitPool;
  readonly onBatchSynced: ((entries: number) => void) | undefined;
  /** Keeps what each commit wrote for the replication read (read-cache.ts). */
  readonly tailCache: Pick<TailCache, 'remember'>;
  syncMode(): SyncMode;
  fenced(): boolean;
  faulted(): boolean;
  /** A write or sync failed: stop appends, fail what waits, start recovery; returns the typed error. */
  enterFault(error: unknown, what: string, batch: Batch, waiter: number): LastgaspError;
}

/** fdatasyncs whose duration is remembered (recentSyncMsMax): a few seconds of commits at any rate. */
const SYNC_TIMES_KEPT = 64;

/** One chunk of a batch, planned: where it lands and what it carries. */
interface Chunk {
  readonly segment: Segment;
  /** The chunk opens a new segment (its head checkpoint is the prefix). */
  readonly roll: boolean;
  /** A checkpoint record precedes the entries, at `from`. */
  readonly withPrefix: boolean;
  /** Staging offsets: the write covers `[from, end)`, the entries `[start, end)`. */
  readonly from: number;
  readonly start: number;
  readonly end: number;
  /** The state the chunk's checkpoint makes durable (the durable one when it carries none). */
  readonly headState: CheckpointSnapshot;
  /** File offset of the write. */
  readonly position: number;
}

export class GroupCommit {
  /** The seq the next staged entry takes. */
  nextSeq = 1;
  private staging = new Batch();
  private writing = new Batch();
  /** Appenders (append or appendReplicated calls) in the last batch written: the linger's evidence of concurrency. */
  private lastBatchWaiters = 0;
  /**
   * One executor shared by every append's promise, reading what it registers from these two fields (set
   * right before `new Promise`, which runs the executor synchronously): a closure per append would be one
   * more allocation on the hottest path.
   */
  private waitSeq = 0;
  private waitEpoch = 0;
  private readonly enqueueWaiter = (resolve: (value: never) => void, reject: (error: unknown) => void): void => {
    this.staging.wait(resolve as (value: unknown) => void, reject, this.waitSeq, this.waitEpoch);
  };
  private writerRunning = false;
  private flushScheduled = false;
  private lingerTimer: TimerHandle | undefined;
  private idleWaiters: Array<() => void> = [];
  private paused = 0;
  /** How long the last group commits' fdatasyncs took (ms): what the brownout allows for its own syncs. */
  readonly syncTimes = new RecentMax(SYNC_TIMES_KEPT);

  constructor(private readonly host: GroupCommitHost) {}

  // ---- staging ---------------------------------------------------------------------------------------

  stageEntry(payload: Uint8Array, epoch: number, seed: number): Promise<AppendResult> {
    if (this.nextSeq > RECORD_U48_MAX) throw new LastgaspError('LOG_SEQ', `log ${this.host.options.dir}: seq space exhausted`);
    const seq = this.nextSeq++;
    this.staging.put(payload, seq, epoch, this.host.clock.nowMs(), seed);
    this.host.counters.appends++;
    this.waitSeq = seq;
    this.waitEpoch = epoch;
    const promise = new Promise<AppendResult>(this.enqueueWaiter);
    this.scheduleFlush();
    return promise;
  }

  /** Entries taking consecutive seqs under one waiter (see `appendMany`). */
  stageMany(payloads: readonly Uint8Array[], epoch: number, seed: number): Promise<AppendResult> {
    const { host } = this;
    if (this.nextSeq + payloads.length - 1 > RECORD_U48_MAX) return Promise.reject(new LastgaspError('LOG_SEQ', `log ${host.options.dir}: seq space exhausted`));
    const nowMs = host.clock.nowMs();
    for (const payload of payloads) this.staging.put(payload, this.nextSeq++, epoch, nowMs, seed);
    host.counters.appends += payloads.length;
    host.counters.batchAppends++;
    this.waitSeq = this.nextSeq - 1;
    this.waitEpoch = epoch;
    const promise = new Promise<AppendResult>(this.enqueueWaiter);
    this.scheduleFlush();
    return promise;
  }

  /** A replica's entries, with their own seqs (checked by the caller to continue `nextSeq`), epochs and stamps. */
  stageReplicated(entries: readonly LogEntry[], seed: number): Promise<void> {
    const staging = this.staging;
    for (const entry of entries) staging.put(entry.payload, entry.seq, entry.epoch, entry.timestampMs, seed);
    this.nextSeq += entries.length;
    this.host.counters.appendsReplicated += entries.length;
    this.waitSeq = entries[entries.length - 1]!.seq;
    this.waitEpoch = -1;
    const promise = new Promise<void>(this.enqueueWaiter);
    this.scheduleFlush();
    return promise;
  }

  /** Record bytes staged or being written (not yet synced). */
  pendingRecordBytes(): number {
    return this.staging.stagedBytes + (this.writerRunning ? this.writing.stagedBytes : 0);
  }

  /** Bytes of the staging buffers in use (prefixes included), what the active segment must still take. */
  pendingBufferBytes(): number {
    return this.staging.used + (this.writerRunning ? this.writing.used : 0);
  }

  /** Fail everything staged and start the seqs again after the committed end. */
  dropStaged(error: unknown): void {
    this.rejectStaged(error);
    this.nextSeq = this.host.marks.committed + 1;
  }

  /** Fail everything staged (the log closes). */
  rejectStaged(error: unknown): void {
    this.staging.rejectFrom(0, error);
    this.staging.reset();
  }

  /** The batch being written, and how many of its waiters are still to settle (all: a failure now fails them all). */
  inFlight(): { batch: Batch; waiter: number } {
    return { batch: this.writing, waiter: this.writing.resolves.length };
  }

  // ---- the writer loop -------------------------------------------------------------------------------

  /**
   * Whether the staged batch should wait (up to lingerMs) for more appends before its write and sync. Only
   * when more are likely: the previous batch had more appenders than this one holds so far, so others are
   * on their way. A lone sequential writer (batches of one) therefore never waits out the linger and sees
   * about one fdatasync of latency; concurrent writers fill their batch and it goes as soon as it is as
   * large as the last one. Never on battery ('immediate'), never past lingerBytes, never for a checkpoint
   * someone waits on, never behind a fence (no append can join the batch any more).
   */
  private shouldLinger(): boolean {
    const { host } = this;
    return (
      host.syncMode() === 'batched' &&
      !host.fenced() &&
      host.options.lingerMs > 0 &&
      host.marks.forcedCheckpoint === 0 &&
      this.staging.stagedBytes < host.options.lingerBytes &&
      this.staging.resolves.length < this.lastBatchWaiters
    );
  }

  scheduleFlush(): void {
    if (this.writerRunning || this.paused > 0) return;
    const lingering = this.shouldLinger();
    if (this.flushScheduled) {
      if (!lingering && this.lingerTimer) {
        this.lingerTimer.cancel();
        this.lingerTimer = undefined;
        setImmediate(this.runWriterBound);
      }
      return;
    }
    this.flushScheduled = true;
    if (lingering) {
      this.host.counters.lingers++;
      this.lingerTimer = this.host.clock.setTimeout(this.runWriterBound, this.host.options.lingerMs);
    } else setImmediate(this.runWriterBound);
  }

  /** The sync mode became 'immediate': a batch lingering now goes at once. */
  stopLingering(): void {
    if (!this.lingerTimer) return;
    this.lingerTimer.cancel();
    this.lingerTimer = undefined;
    this.flushScheduled = false;
    this.scheduleFlush();
  }

  cancelLinger(): void {
    this.lingerTimer?.cancel();
    this.lingerTimer = undefined;
  }

  private readonly runWriterBound = (): void => {
    void this.runWriter();
  };

  hasWork(): boolean {
    return this.staging.records > 0 || this.host.marks.forcedCheckpoint !== 0;
  }

  /** A batch is being written or records are staged. */
  busy(): boolean {
    return this.writerRunning || this.staging.records > 0;
  }

  private async runWriter(): Promise<void> {
    this.cancelLinger();
    this.flushScheduled = false;
    if (this.writerRunning || this.paused > 0) return;
    this.writerRunning = true;
    try {
      while (this.hasWork() && !this.host.faulted() && this.paused === 0) {
        const batch = this.staging;
        this.staging = this.writing;
        this.writing = batch;
        this.lastBatchWaiters = batch.resolves.length;
        await this.commitBatch(batch);
        batch.reset();
        if (this.shouldLinger()) break;
      }
    } finally {
      this.writerRunning = false;
    }
    if (this.hasWork() && !this.host.faulted() && this.paused === 0) this.scheduleFlush();
    else if (!this.hasWork()) this.wakeIdle();
  }

  /** Resolve once nothing is staged or being written. */
  whenIdle(): Promise<void> {
    if (!this.writerRunning && !this.hasWork()) return Promise.resolve();
    if (this.host.faulted()) return Promise.resolve();
    return new Promise((resolve) => {
      this.idleWaiters.push(resolve);
      this.scheduleFlush();
    });
  }

  wakeIdle(): void {
    for (const wake of this.idleWaiters.splice(0)) wake();
  }

  /** Hold the writer (a demotion cuts the log under it); `resume` lets it go on. Nests. */
  pause(): void {
    this.paused++;
  }

  resume(): void {
    this.paused--;
  }

  // ---- commit: plan, write, settle --------------------------------------------------------------------

  /**
   * Write and sync one batch, in chunks of at most BATCH_BYTES_MAX (the unsynced window recovery zeroes),
   * each one positional write plus one fdatasync. A chunk that does not fit in the active segment goes to a
   * new segment whose head checkpoint is written in the same write.
   */
  private async commitBatch(batch: Batch): Promise<void> {
    let checkpoint: CheckpointSnapshot | undefined;
    let checkpointWaiters: CheckpointWaiter[] = [];
    if (this.host.marks.wantsCheckpoint()) ({ checkpoint, waiters: checkpointWaiters } = this.host.marks.takeCheckpoint());
    let start = BATCH_PREFIX_BYTES;
    let waiter = 0;
    let first = true;
    try {
      while (first || start < batch.used) {
        const chunk = await this.planChunk(batch, start, first ? checkpoint : undefined);
        const lastSeq = await this.writeChunk(batch, chunk, waiter);
        waiter = this.settleChunk(batch, chunk, lastSeq, waiter, checkpointWaiters);
        if (chunk.withPrefix) checkpointWaiters = [];
        start = chunk.end;
        first = false;
      }
    } catch (error) {
      for (const w of checkpointWaiters) w.reject(error);
      if (!(error instanceof LastgaspError) || !this.host.faulted()) {
        // Not a fault (no space for a new segment): give up this batch and everything staged after it.
        batch.rejectFrom(waiter, error);
        this.dropStaged(error);
      }
    }
  }

  /** Where the chunk from `start` goes: the active segment if a waiter's records fit, else a new one (rolled here). */
  private async planChunk(batch: Batch, start: number, checkpoint: CheckpointSnapshot | undefined): Promise<Chunk> {
    const { pool, marks } = this.host;
    const wantsCheckpoint = checkpoint !== undefined;
    let active = pool.segments[pool.segments.length - 1];
    let roll = active === undefined;
    let end = roll ? start : chunkEnd(batch, start, active!, wantsCheckpoint);
    if (!roll && end === start) {
      // Nothing fits: roll, unless this is a checkpoint alone and the slot kept for it is still free.
      const checkpointOnly = wantsCheckpoint && batch.used === start;
      roll = !checkpointOnly || active!.segmentBytes - active!.bytesUsed < CHECKPOINT_RECORD_BYTES;
    }
    if (roll) {
      await pool.roll(marks.committed + 1);
      active = pool.segments[pool.segments.length - 1]!;
      end = chunkEnd(batch, start, active, true, true);
    }
    const withPrefix = roll || wantsCheckpoint;
    // A head takes the state as it is now (a chunk of a long batch may roll after marks moved on), so that
    // retention can release the previous segment right after this write.
    const headState = withPrefix ? (roll ? marks.snapshot(CHECKPOINT_HEAD) : checkpoint!) : marks.durable;
    return { segment: active!, roll, withPrefix, from: withPrefix ? start - CHECKPOINT_RECORD_BYTES : start, start, end, headState, position: active!.bytesUsed };
  }

  /** Encode the prefix, reseal for the segment, check the bytes, then one write and one fdatasync. Returns the chunk's last seq. */
  private async writeChunk(batch: Batch, chunk: Chunk, waiter: number): Promise<number> {
    const { segment, from, start, end, position } = chunk;
    const committed = this.host.marks.committed;
    if (chunk.withPrefix) {
      const prev = chunk.roll ? this.host.pool.segments[this.host.pool.segments.length - 2] : undefined;
      encodeCheckpoint(batch, from, chunk.headState, committed, this.host.pool.firstSeq(committed), this.host.clock.nowMs(), prev);
      sealRecord(batch.bytes, batch.view, from, segment.seed);
      assertCheckpointRecord(batch.view, from, committed);
    }
    batch.reseal(start, end, segment.seed);
    const length = end - from;
    assertWriteRange(position, length, segment.segmentBytes, true, `group commit: ${segment.path}`);
    assertStagedRecords(batch.view, start, end, committed + 1);
    const lastSeq = end > start ? indexChunk(batch, segment, start, end, position - from, committed) : committed;
    const file = this.host.pool.activeFile!;
    try {
      // One positional write of the whole chunk. A batch of ordinary size is copied into the page cache
      // right here, saving a thread-pool round trip; a large one goes through the pool so that the event
      // loop is never held for long (see LOG_WRITE_INLINE_BYTES_MAX).
      if (length <= LOG_WRITE_INLINE_BYTES_MAX) file.writeSync(batch.bytes, from, length, position);
      else await file.write(batch.bytes, from, length, position);
    } catch (error) {
      throw this.host.enterFault(error, `writing ${length} bytes to ${segment.path} at offset ${position}`, batch, waiter);
    }
    const syncStartMs = this.host.clock.monotonicMs();
    try {
      await file.datasync();
    } catch (error) {
      throw this.host.enterFault(error, `fdatasync of ${segment.path}`, batch, waiter);
    }
    this.syncTimes.note(this.host.clock.monotonicMs() - syncStartMs);
    return lastSeq;
  }

  /** The chunk is durable: count it, move the marks, resolve its waiters. Returns the next waiter to settle. */
  private settleChunk(batch: Batch, chunk: Chunk, lastSeq: number, waiter: number, checkpointWaiters: CheckpointWaiter[]): number {
    const { counters, marks, pool } = this.host;
    const { segment, end } = chunk;
    const length = end - chunk.from;
    counters.batches++;
    counters.syncs++;
    counters.bytesWritten += length;
    segment.bytesUsed = chunk.position + length;
    if (chunk.withPrefix) {
      counters.checkpoints++;
      marks.checkpointSynced(chunk.headState);
      for (const w of checkpointWaiters) w.resolve();
    }
    const advanced = lastSeq > marks.committed;
    if (advanced) {
      this.host.onBatchSynced?.(lastSeq - marks.committed);
      this.host.tailCache.remember(batch.bytes, chunk.start, end, marks.committed + 1, lastSeq, marks.replicated);
      segment.lastSeq = lastSeq;
      marks.commitTo(lastSeq);
    }
    while (waiter < batch.resolves.length && batch.waiterEnd[waiter]! <= end) {
      const epoch = batch.waiterEpoch[waiter]!;
      batch.resolves[waiter]!(epoch >= 0 ? { seq: batch.waiterSeq[waiter]!, epoch } : undefined);
      waiter++;
    }
    if (advanced) marks.notifyCommit();
    if (chunk.roll) pool.afterRoll();
    else if (chunk.withPrefix) pool.scheduleRetention();
    return waiter;
  }
}
