/**
 * The flash log: segment files on local flash, one writer loop that group-commits appends (one positional
 * write of a pre-concatenated buffer and one fdatasync per batch), watermarks persisted as checkpoint
 * records that ride the same batches, retention by whole segments, and recovery from the last checkpoint.
 * The contract is in types.ts; the byte layout in FORMAT.md.
 *
 * Still one class of about 1,400 lines (group commit, segments, retention, watermarks, admission, fence, cut):
 * the split into parts that each own their state is issue 13's redesign, left for a session with no other
 * change in flight in this file.
 */
import { setImmediate } from 'node:timers';
import { LastgaspError, silentLogger, systemClock, type Clock, type ErrorCode, type Logger, type TimerHandle } from '../util/index.ts';
import { BATCH_PREFIX_BYTES, Batch } from './batch.ts';
import {
  BATCH_BYTES_MAX,
  CHECKPOINT_CLOSE,
  CHECKPOINT_EPOCH,
  CHECKPOINT_HEAD,
  CHECKPOINT_QUARANTINE,
  CHECKPOINT_RECORD_BYTES,
  CHECKPOINT_WATERMARKS,
  RECORD_HEADER_BYTES,
  RECORD_TYPE_CHECKPOINT,
  RECORD_TYPE_ENTRY,
  RECORD_U48_MAX,
  RETENTION_FLOOR_NONE,
  SEGMENT_HEADER_BYTES,
  encodeCheckpointPayload,
  encodeRecordHeader,
  recordBytes,
  sealRecord,
} from './format.ts';
import { applyDemotion, demotionFiles, finishDemotion, prepareDemotion, writeDemotionIntent, type DemotionPlan } from './demotion.ts';
import { acquireDirLock, type DirLock } from './lock.ts';
import {
  ioError,
  newCounters,
  resolveOptions,
  type Counters,
  type CreateFlashLogOptions,
  type ResolvedOptions,
} from './options.ts';
import { SegmentHandles, TailCache } from './read-cache.ts';
import { READ_CHUNK_BYTES, readEntries, type ReadContext } from './reader.ts';
import { recoverLog, type RecoveredState } from './recovery.ts';
import { ChunkReader, scanRecords } from './scan.ts';
import { createSpare, newSegment, randomSalt, recycleSegment, segmentPath, type Segment, type Spare } from './segments.ts';
import { createNodeStorage, type Storage, type StorageFile } from './storage.ts';
import type {
  AppendResult,
  FlashLog,
  LogEntry,
  LogStatus,
  ReadLimits,
  RecoveryReport,
  SyncMode,
  Watermarks,
} from './types.ts';

/** After a fault, recovery is retried with this backoff (doubling) until it succeeds. */
const FAULT_RETRY_MS_MIN = 1000;
const FAULT_RETRY_MS_MAX = 30_000;
/**
 * Chunks up to this size are written with a synchronous positional write on the event loop; larger ones go
 * through the thread pool. Copying 72 KiB (a batch of 256 entries of 256 B) into the page cache measured
 * 10-20 us here, while the pool round trip it replaces measured 60-140 us on this shared two-core VM; at
 * 256 KiB (the default lingerBytes) the copy is still well under a typical fdatasync, and above it the
 * hop is small next to the copy.
 */
export const LOG_WRITE_INLINE_BYTES_MAX = 256 * 1024;
/** One spare segment is kept ready so that a roll never waits for a zero-fill. */
const SPARES_MAX = 1;

type Lifecycle = 'new' | 'opening' | 'open' | 'closing' | 'closed';

interface CheckpointSnapshot {
  kind: number;
  epoch: number;
  replicated: number;
  replicaAcked: number;
  retentionFloor: number;
}

/** The engine behind `FlashLog`, with what tests, tools and the supervisor may also use. */
export interface FlashLogEngine extends FlashLog {
  readonly options: Readonly<ResolvedOptions>;
  /** The watermarks as the last synced checkpoint holds them (what a crash now would recover). */
  durableWatermarks(): Watermarks;
  /** Resolves once a recovery after an I/O fault, if one is running, has finished. */
  whenRecovered(): Promise<void>;
  /** Resolves once background work (retention, spare preparation) started so far has finished. */
  whenSettled(): Promise<void>;
}

export function createFlashLog(options: CreateFlashLogOptions): FlashLogEngine {
  return new SegmentedFlashLog(options);
}

class SegmentedFlashLog implements FlashLogEngine {
  readonly options: Readonly<ResolvedOptions>;
  private readonly storage: Storage;
  private readonly logger: Logger;
  private readonly clock: Clock;
  private readonly saltSource: () => number;

  private lifecycle: Lifecycle = 'new';
  /** A demotion is under way: appends are refused until it ends. */
  private demoting = false;
  /** A fence stands (see `fence`): appends are refused with this code and message until `unfence`. */
  private fenceState: { code: ErrorCode; message: string } | undefined;
  private lock: DirLock | undefined;
  private segments: Segment[] = [];
  private activeFile: StorageFile | undefined;
  private spares: Spare[] = [];
  private spareJob: Promise<void> | undefined;
  private spareError: LastgaspError | undefined;
  private nextSegmentId = 1;
  /** Files of segments that retention released, waiting to be recycled into spares. */
  private quarantineFiles: string[] = [];

  private committed = 0;
  private nextSeq = 1;
  private currentEpoch = 1;
  private replicated = 0;
  private replicaAcked = 0;
  private retentionFloor: number;
  /** What the last synced checkpoint says: retention relies only on these. */
  private durable: CheckpointSnapshot = { kind: 0, epoch: 1, replicated: 0, replicaAcked: 0, retentionFloor: RETENTION_FLOOR_NONE };
  private watermarksDirty = false;
  private forcedCheckpoint = 0;
  private checkpointWaiters: Array<{ resolve: () => void; reject: (error: unknown) => void }> = [];
  private watermarkTimer: TimerHandle | undefined;

  /** The most record bytes one `appendMany` may stage: what one write into a fresh segment holds. */
  private readonly batchBytesMax: number;
  private staging = new Batch();
  private writing = new Batch();
  /**
   * One executor shared by every append's promise, reading what it registers from these two fields (set
   * right before `new Promise`, which runs the executor synchronously): a closure per append would be one
   * more allocation on the hottest path.
   */
  /** Appenders (append or appendReplicated calls) in the last batch written: the linger's evidence of concurrency. */
  private lastBatchWaiters = 0;
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
  private syncMode: SyncMode = 'batched';
  /** The throttle's limits: the options' at first, then as setUnreplicatedLimits sizes them. */
  private unreplicatedLimits: { soft: number; hard: number; field: string };
  private readonly commitListeners = new Set<(committed: number) => void>();
  private readonly replicatedListeners = new Set<(marks: Watermarks) => void>();

  private fault: LastgaspError | undefined;
  private faultRetryMs = FAULT_RETRY_MS_MIN;
  private faultTimer: TimerHandle | undefined;
  private recovering: Promise<void> | undefined;
  private maintenance: Promise<void> = Promise.resolve();
  private spaceWaiters: Array<() => void> = [];
  private readonly counters: Counters = newCounters();
  private readonly readContext: ReadContext;
  /** What the replication read takes from memory and the files it keeps open (read-cache.ts). */
  private readonly tailCache = new TailCache();
  private readonly readHandles: SegmentHandles;
  private idleChunkReader: ChunkReader | undefined;
  private readonly onBatchSynced: ((entries: number) => void) | undefined;

  constructor(options: CreateFlashLogOptions) {
    this.options = resolveOptions(options);
    this.unreplicatedLimits = { soft: this.options.unreplicatedSoftBytes, hard: this.options.unreplicatedHardBytes, field: 'log.unreplicatedHardBytes' };
    this.storage = options.storage ?? createNodeStorage();
    this.logger = (options.logger ?? silentLogger).child('agent:log');
    this.clock = options.clock ?? systemClock;
    this.saltSource = options.randomSalt ?? randomSalt;
    this.onBatchSynced = options.onBatchSynced;
    this.retentionFloor = options.retentionFloor ?? RETENTION_FLOOR_NONE;
    this.batchBytesMax = Math.min(BATCH_BYTES_MAX, this.options.segmentBytes - SEGMENT_HEADER_BYTES - CHECKPOINT_RECORD_BYTES) - BATCH_PREFIX_BYTES;
    this.readHandles = new SegmentHandles(this.storage);
    this.readContext = {
      storage: this.storage,
      tail: this.tailCache,
      handles: this.readHandles,
      payloadBytesMax: this.options.entryBytesMax,
      segments: () => this.segments,
      committed: () => this.committed,
      firstSeq: () => this.firstSeq,
      onCorrupt: () => {
        this.counters.readCorruptions++;
      },
      // One idle buffer is kept: replication reads batch after batch, and each fresh reader costs the
      // largest record plus a chunk (hundreds of KiB). A read that overlaps another gets its own.
      takeChunkReader: () => {
        const reader = this.idleChunkReader ?? new ChunkReader(this.options.entryBytesMax, READ_CHUNK_BYTES);
        this.idleChunkReader = undefined;
        return reader;
      },
      releaseChunkReader: (reader) => {
        this.idleChunkReader = reader;
      },
    };
  }

  // ---- lifecycle ---------------------------------------------------------------------------------------

  async open(): Promise<RecoveryReport> {
    if (this.lifecycle !== 'new') throw new LastgaspError('LOG_CLOSED', `log ${this.options.dir}: open() called twice; create a new log object to reopen`);
    this.lifecycle = 'opening';
    const started = this.clock.monotonicMs();
    let recovered: RecoveredState;
    try {
      // The lock comes first: recovery writes (zeroes a torn tail, moves files aside), which must never
      // happen under a live agent's feet.
      await this.storage.mkdirp(this.options.dir);
      this.lock = await acquireDirLock(this.storage, this.options.dir);
      recovered = await recoverLog(this.recoverContext(undefined));
    } catch (error) {
      this.lifecycle = 'closed';
      await this.releaseLock();
      throw error instanceof LastgaspError ? error : ioError(error, `opening the log in ${this.options.dir}`);
    }
    this.adopt(recovered);
    if (recovered.segments.length === 0) {
      // A new log: its first segment starts with a head checkpoint, written and synced before open resolves.
      this.forcedCheckpoint = CHECKPOINT_HEAD;
    }
    this.lifecycle = 'open';
    if (this.forcedCheckpoint !== 0) {
      try {
        await this.forceCheckpoint(CHECKPOINT_HEAD);
      } catch (error) {
        await this.close().catch(() => undefined);
        throw error;
      }
    }
    this.ensureSpare();
    this.scheduleRetention();
    const report: RecoveryReport = {
      firstSeq: this.firstSeq,
      committed: this.committed,
      epoch: this.currentEpoch,
      tornBytes: recovered.tornBytes,
      quarantinedRecords: recovered.quarantinedRecords,
      quarantineFile: recovered.quarantineFile,
      durationMs: this.clock.monotonicMs() - started,
    };
    this.logger.info(`opened ${this.options.dir}: seq ${report.firstSeq}..${report.committed}, epoch ${report.epoch}`, {
      tornBytes: report.tornBytes,
      quarantinedRecords: report.quarantinedRecords,
      cleanClose: recovered.cleanClose,
    });
    return report;
  }

  async close(): Promise<void> {
    if (this.lifecycle === 'closed' || this.lifecycle === 'closing') return;
    if (this.lifecycle === 'new') {
      this.lifecycle = 'closed';
      return;
    }
    this.lifecycle = 'closing';
    if (this.faultTimer) {
      // Recovery is waiting to retry after a failure: give up on it rather than wait out the backoff.
      this.faultTimer.cancel();
      this.faultTimer = undefined;
    } else if (this.recovering) await this.recovering;
    if (!this.fault) await this.forceCheckpoint(CHECKPOINT_CLOSE).catch(() => undefined);
    await this.whenIdle();
    await this.maintenance;
    if (this.spareJob) await this.spareJob;
    this.cancelTimers();
    const closed = new LastgaspError('LOG_CLOSED', `log ${this.options.dir} is closed`);
    this.staging.rejectFrom(0, closed);
    this.staging.reset();
    for (const wake of this.spaceWaiters.splice(0)) wake();
    const file = this.activeFile;
    this.activeFile = undefined;
    this.lifecycle = 'closed';
    this.readHandles.releaseAll();
    if (file) await file.close().catch(() => undefined);
    await this.releaseLock();
  }

  private async releaseLock(): Promise<void> {
    const lock = this.lock;
    this.lock = undefined;
    if (!lock) return;
    await lock.release().catch((error: unknown) => this.logger.warn(`could not release the lock ${lock.file}`, { error }));
  }

  private cancelTimers(): void {
    this.lingerTimer?.cancel();
    this.lingerTimer = undefined;
    this.watermarkTimer?.cancel();
    this.watermarkTimer = undefined;
    this.faultTimer?.cancel();
    this.faultTimer = undefined;
  }

  private recoverContext(durableHint: { segmentId: number; offset: number } | undefined) {
    return {
      storage: this.storage,
      dir: this.options.dir,
      payloadBytesMax: this.options.entryBytesMax,
      logger: this.logger,
      clock: this.clock,
      randomSalt: this.saltSource,
      durableHint,
    };
  }

  private adopt(recovered: RecoveredState): void {
    // Recovery may have moved segments aside or cut a torn tail: nothing read before may be served again.
    this.tailCache.clear();
    this.readHandles.releaseAll();
    this.segments = recovered.segments;
    this.activeFile = recovered.activeFile;
    this.spares = recovered.spares;
    this.nextSegmentId = Math.max(this.nextSegmentId, recovered.nextSegmentId);
    this.quarantineFiles = recovered.quarantineFiles;
    this.committed = recovered.committed;
    this.nextSeq = recovered.committed + 1;
    this.currentEpoch = Math.max(this.currentEpoch, recovered.epoch);
    // Watermarks never go backwards: after a fault recovery the in-memory values may be ahead of the disk.
    this.replicated = Math.min(Math.max(this.replicated, recovered.replicated), this.committed);
    this.replicaAcked = Math.min(Math.max(this.replicaAcked, recovered.replicaAcked), this.committed);
    if (this.retentionFloor === RETENTION_FLOOR_NONE) this.retentionFloor = recovered.retentionFloor;
    this.durable = {
      kind: 0,
      epoch: recovered.epoch,
      replicated: recovered.replicated,
      replicaAcked: recovered.replicaAcked,
      retentionFloor: recovered.retentionFloor,
    };
    this.watermarksDirty = this.replicated !== recovered.replicated || this.replicaAcked !== recovered.replicaAcked;
    this.counters.tornBytes += recovered.tornBytes;
    this.counters.quarantinedRecords += recovered.quarantinedRecords;
  }

  // ---- appends -----------------------------------------------------------------------------------------

  get firstSeq(): number {
    return this.segments.length > 0 ? this.segments[0]!.baseSeq : this.committed + 1;
  }

  get epoch(): number {
    return this.currentEpoch;
  }

  private refuse(): LastgaspError | undefined {
    if (this.lifecycle !== 'open') {
      return new LastgaspError('LOG_CLOSED', `log ${this.options.dir} is ${this.lifecycle === 'new' ? 'not open yet (call open())' : 'closed'}`);
    }
    if (this.fault) {
      return new LastgaspError('LOG_FAULT', `log ${this.options.dir} stopped after an I/O fault and is recovering: ${this.fault.message}`, {
        cause: this.fault.code,
      });
    }
    if (this.demoting) {
      return new LastgaspError('LOG_SEQ', `log ${this.options.dir} is being cut back by a demotion; append again once it is done`, { dir: this.options.dir });
    }
    return undefined;
  }

  /** What refuses a new append: a fence first (it says why the writer must go elsewhere), then `refuse`. */
  private refuseAppend(): LastgaspError | undefined {
    const fence = this.fenceState;
    if (fence === undefined || this.lifecycle !== 'open') return this.refuse();
    this.counters.fencedRefusals++;
    return new LastgaspError(fence.code, fence.message, { dir: this.options.dir, fenced: true });
  }

  append(payload: Uint8Array): Promise<AppendResult> {
    const refused = this.refuseAppend();
    if (refused) return Promise.reject(refused);
    if (payload.length > this.options.entryBytesMax) {
      return Promise.reject(
        new LastgaspError('ENTRY_TOO_LARGE', `entry of ${payload.length} bytes exceeds the log's entryBytesMax of ${this.options.entryBytesMax}; split it or raise log.entryBytesMax`, {
          bytes: payload.length,
          max: this.options.entryBytesMax,
        }),
      );
    }
    let gate: Promise<void> | undefined;
    try {
      gate = this.admit(recordBytes(payload.length), false);
    } catch (error) {
      return Promise.reject(error);
    }
    if (gate !== undefined) return gate.then(() => this.appendAdmitted(payload));
    return this.stageEntry(payload);
  }

  /**
   * Many entries as one: they take consecutive seqs, are staged together and share one waiter, so the batch
   * costs one promise and one wake-up, and it is acknowledged whole or not at all. The batch is refused as a
   * whole (one entry too large makes none of them staged), and its bytes must fit in one write of the group
   * commit, so that it lands in one write (see `chunkEnd`).
   */
  appendMany(payloads: readonly Uint8Array[]): Promise<AppendResult> {
    const refused = this.refuseAppend();
    if (refused) return Promise.reject(refused);
    let bytes = 0;
    for (let i = 0; i < payloads.length; i++) {
      const length = payloads[i]!.length;
      if (length > this.options.entryBytesMax) {
        return Promise.reject(
          new LastgaspError('ENTRY_TOO_LARGE', `entry ${i} of the batch has ${length} bytes, over the log's entryBytesMax of ${this.options.entryBytesMax}; split it or raise log.entryBytesMax`, {
            index: i,
            bytes: length,
            max: this.options.entryBytesMax,
          }),
        );
      }
      bytes += recordBytes(length);
    }
    if (payloads.length === 0) return Promise.reject(new LastgaspError('BAD_REQUEST', 'a batch append needs at least one entry'));
    if (bytes > this.batchBytesMax) {
      return Promise.reject(
        new LastgaspError('ENTRY_TOO_LARGE', `a batch of ${bytes} bytes of records is over the ${this.batchBytesMax} one write of the log can hold; send it as several batches`, {
          bytes,
          max: this.batchBytesMax,
        }),
      );
    }
    return this.appendManyAdmitted(payloads, bytes, false);
  }

  private appendManyAdmitted(payloads: readonly Uint8Array[], bytes: number, throttled: boolean): Promise<AppendResult> {
    if (throttled) {
      const refused = this.refuseAppend();
      if (refused) return Promise.reject(refused);
    }
    let gate: Promise<void> | undefined;
    try {
      gate = this.admit(bytes, throttled);
    } catch (error) {
      return Promise.reject(error);
    }
    if (gate !== undefined) return gate.then(() => this.appendManyAdmitted(payloads, bytes, true));
    if (this.nextSeq + payloads.length - 1 > RECORD_U48_MAX) return Promise.reject(new LastgaspError('LOG_SEQ', `log ${this.options.dir}: seq space exhausted`));
    const epoch = this.currentEpoch;
    const nowMs = this.clock.nowMs();
    const seed = this.activeSeed();
    for (const payload of payloads) this.staging.put(payload, this.nextSeq++, epoch, nowMs, seed);
    this.counters.appends += payloads.length;
    this.counters.batchAppends++;
    this.waitSeq = this.nextSeq - 1;
    this.waitEpoch = epoch;
    const promise = new Promise<AppendResult>(this.enqueueWaiter);
    this.scheduleFlush();
    return promise;
  }

  /** After a throttle delay or a wait for space: check again, but do not throttle twice. */
  private appendAdmitted(payload: Uint8Array): Promise<AppendResult> {
    const refused = this.refuseAppend();
    if (refused) return Promise.reject(refused);
    let gate: Promise<void> | undefined;
    try {
      gate = this.admit(recordBytes(payload.length), true);
    } catch (error) {
      return Promise.reject(error);
    }
    if (gate !== undefined) return gate.then(() => this.appendAdmitted(payload));
    return this.stageEntry(payload);
  }

  /** The CRC seed records are sealed with as they are staged: the active segment's (resealed after a roll). */
  private activeSeed(): number {
    const active = this.segments[this.segments.length - 1];
    return active ? active.seed : 0;
  }

  private stageEntry(payload: Uint8Array): Promise<AppendResult> {
    if (this.nextSeq > RECORD_U48_MAX) throw new LastgaspError('LOG_SEQ', `log ${this.options.dir}: seq space exhausted`);
    const seq = this.nextSeq++;
    const epoch = this.currentEpoch;
    this.staging.put(payload, seq, epoch, this.clock.nowMs(), this.activeSeed());
    this.counters.appends++;
    this.waitSeq = seq;
    this.waitEpoch = epoch;
    const promise = new Promise<AppendResult>(this.enqueueWaiter);
    this.scheduleFlush();
    return promise;
  }

  appendReplicated(entries: readonly LogEntry[]): Promise<void> {
    const refused = this.refuseAppend();
    if (refused) return Promise.reject(refused);
    if (entries.length === 0) return Promise.resolve();
    let bytes = 0;
    for (let i = 0; i < entries.length; i++) {
      const entry = entries[i]!;
      if (entry.seq !== this.nextSeq + i) {
        return Promise.reject(
          new LastgaspError('LOG_SEQ', `replicated entry ${i} has seq ${entry.seq}, expected ${this.nextSeq + i} (the log's committed end is ${this.committed})`, {
            expected: this.nextSeq + i,
            got: entry.seq,
            committed: this.committed,
          }),
        );
      }
      if (entry.payload.length > this.options.entryBytesMax) {
        return Promise.reject(
          new LastgaspError('ENTRY_TOO_LARGE', `replicated entry seq ${entry.seq} has ${entry.payload.length} bytes, above entryBytesMax ${this.options.entryBytesMax}`, {
            seq: entry.seq,
          }),
        );
      }
      if (!(entry.epoch >= 0 && entry.epoch <= 0xffff_ffff) || !(entry.timestampMs >= 0 && entry.timestampMs <= RECORD_U48_MAX)) {
        return Promise.reject(new LastgaspError('LOG_SEQ', `replicated entry seq ${entry.seq} has an epoch or timestamp out of range`, { seq: entry.seq }));
      }
      bytes += recordBytes(entry.payload.length);
    }
    let gate: Promise<void> | undefined;
    try {
      gate = this.admit(bytes, true);
    } catch (error) {
      return Promise.reject(error);
    }
    if (gate !== undefined) return gate.then(() => this.appendReplicated(entries));
    const staging = this.staging;
    const seed = this.activeSeed();
    let epochMax = this.currentEpoch;
    for (const entry of entries) {
      staging.put(entry.payload, entry.seq, entry.epoch, entry.timestampMs, seed);
      if (entry.epoch > epochMax) epochMax = entry.epoch;
    }
    this.nextSeq += entries.length;
    // A replica's epoch follows what it stores, so that a takeover's beginEpoch must go above the primary's.
    this.currentEpoch = epochMax;
    this.counters.appendsReplicated += entries.length;
    this.waitSeq = entries[entries.length - 1]!.seq;
    this.waitEpoch = -1;
    const promise = new Promise<void>(this.enqueueWaiter);
    this.scheduleFlush();
    return promise;
  }

  // ---- admission: quota, hard and soft unreplicated limits ----------------------------------------------

  private unreplicatedBytes(): number {
    const pending = this.staging.stagedBytes + (this.writerRunning ? this.writing.stagedBytes : 0);
    return this.unreplicatedCommittedBytes() + pending;
  }

  /** Bytes of synced records above the replicated watermark (an estimate within one index step). */
  private unreplicatedCommittedBytes(): number {
    const from = this.replicated + 1;
    if (from > this.committed || this.segments.length === 0) return 0;
    let total = 0;
    for (let i = this.segments.length - 1; i >= 0; i--) {
      const segment = this.segments[i]!;
      if (segment.baseSeq > from) {
        total += segment.bytesUsed - SEGMENT_HEADER_BYTES;
        continue;
      }
      total += segment.bytesUsed - this.positionOf(segment, from);
      break;
    }
    return total;
  }

  private positionOf(segment: Segment, seq: number): number {
    if (segment.indexed) return segment.index.lookup(seq, SEGMENT_HEADER_BYTES);
    const span = Math.max(1, segment.lastSeq - segment.baseSeq + 1);
    const fraction = Math.min(1, Math.max(0, (seq - segment.baseSeq) / span));
    return SEGMENT_HEADER_BYTES + Math.floor(fraction * (segment.bytesUsed - SEGMENT_HEADER_BYTES));
  }

  /** Bytes that can still be appended without a new file beyond the quota. */
  private spaceLeft(): number {
    if (this.options.quotaBytes === Number.POSITIVE_INFINITY) return Number.POSITIVE_INFINITY;
    const active = this.segments[this.segments.length - 1];
    const pending = this.staging.used + (this.writerRunning ? this.writing.used : 0);
    let left = active ? active.segmentBytes - active.bytesUsed - pending : 0;
    const allocated = this.bytesOnDisk();
    const capacity = this.options.segmentBytes - SEGMENT_HEADER_BYTES - 2 * CHECKPOINT_RECORD_BYTES;
    left += this.spares.length * capacity;
    left += Math.floor((this.options.quotaBytes - allocated) / this.options.segmentBytes) * capacity;
    return left;
  }

  private bytesOnDisk(): number {
    let total = 0;
    for (const segment of this.segments) total += segment.segmentBytes;
    for (const spare of this.spares) total += spare.segmentBytes;
    if (this.spareJob) total += this.options.segmentBytes;
    return total;
  }

  /** undefined: go ahead now; a promise: wait (throttle or space) and ask again; throws LOG_FULL to refuse. */
  private admit(bytes: number, throttled: boolean): Promise<void> | undefined {
    const { hard, soft, field } = this.unreplicatedLimits;
    const needsUnreplicated = hard > 0 || soft > 0;
    const unreplicated = needsUnreplicated ? this.unreplicatedBytes() : 0;
    if (hard > 0 && unreplicated + bytes > hard) {
      return this.full(`${unreplicated} bytes are not replicated yet, at the hard limit of ${hard} (${field})`);
    }
    if (bytes + BATCH_PREFIX_BYTES > this.spaceLeft()) {
      this.scheduleRetention();
      return this.full(`the log's quota of ${this.options.quotaBytes} bytes is full of entries that are not yet replicated or are held by the retention floor`);
    }
    if (!throttled && soft > 0 && unreplicated > soft) {
      this.counters.throttledAppends++;
      const span = hard > soft ? hard - soft : soft;
      const delayMs = Math.max(1, Math.ceil((this.options.throttleDelayMsMax * (unreplicated - soft)) / span));
      return new Promise((resolve) => this.clock.setTimeout(resolve, Math.min(delayMs, this.options.throttleDelayMsMax)));
    }
    return undefined;
  }

  private full(why: string): Promise<void> {
    this.counters.fullRejections++;
    const error = new LastgaspError('LOG_FULL', `log ${this.options.dir} is full: ${why}; appends resume as replication catches up`, {
      dir: this.options.dir,
    });
    if (this.options.fullPolicy === 'reject') throw error;
    return new Promise<void>((resolve, reject) => {
      let done = false;
      const timer = this.clock.setTimeout(() => {
        if (done) return;
        done = true;
        const at = this.spaceWaiters.indexOf(wake);
        if (at >= 0) this.spaceWaiters.splice(at, 1);
        reject(error);
      }, this.options.fullWaitMs);
      const wake = () => {
        if (done) return;
        done = true;
        timer.cancel();
        resolve();
      };
      this.spaceWaiters.push(wake);
    });
  }

  private wakeSpaceWaiters(): void {
    if (this.spaceWaiters.length === 0) return;
    for (const wake of this.spaceWaiters.splice(0)) wake();
  }

  // ---- the writer loop ---------------------------------------------------------------------------------

  /**
   * Whether the staged batch should wait (up to lingerMs) for more appends before its write and sync. Only
   * when more are likely: the previous batch had more appenders than this one holds so far, so others are
   * on their way. A lone sequential writer (batches of one) therefore never waits out the linger and sees
   * about one fdatasync of latency; concurrent writers fill their batch and it goes as soon as it is as
   * large as the last one. Never on battery ('immediate'), never past lingerBytes, never for a checkpoint
   * someone waits on, never behind a fence (no append can join the batch any more).
   */
  private shouldLinger(): boolean {
    return (
      this.syncMode === 'batched' &&
      this.fenceState === undefined &&
      this.options.lingerMs > 0 &&
      this.forcedCheckpoint === 0 &&
      this.staging.stagedBytes < this.options.lingerBytes &&
      this.staging.resolves.length < this.lastBatchWaiters
    );
  }

  private scheduleFlush(): void {
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
      this.counters.lingers++;
      this.lingerTimer = this.clock.setTimeout(this.runWriterBound, this.options.lingerMs);
    } else setImmediate(this.runWriterBound);
  }

  private readonly runWriterBound = (): void => {
    void this.runWriter();
  };

  private hasWork(): boolean {
    return this.staging.records > 0 || this.forcedCheckpoint !== 0;
  }

  private async runWriter(): Promise<void> {
    this.lingerTimer?.cancel();
    this.lingerTimer = undefined;
    this.flushScheduled = false;
    if (this.writerRunning || this.paused > 0) return;
    this.writerRunning = true;
    try {
      while (this.hasWork() && !this.fault && this.paused === 0) {
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
    if (this.hasWork() && !this.fault && this.paused === 0) this.scheduleFlush();
    else if (!this.hasWork()) for (const wake of this.idleWaiters.splice(0)) wake();
  }

  /** Resolve once nothing is staged or being written. */
  private whenIdle(): Promise<void> {
    if (!this.writerRunning && !this.hasWork()) return Promise.resolve();
    if (this.fault) return Promise.resolve();
    return new Promise((resolve) => {
      this.idleWaiters.push(resolve);
      this.scheduleFlush();
    });
  }

  private snapshot(kind: number): CheckpointSnapshot {
    return { kind, epoch: this.currentEpoch, replicated: this.replicated, replicaAcked: this.replicaAcked, retentionFloor: this.retentionFloor };
  }

  private encodeCheckpoint(batch: Batch, at: number, cp: CheckpointSnapshot, prev: Segment | undefined): void {
    encodeRecordHeader(batch.view, at, RECORD_TYPE_CHECKPOINT, CHECKPOINT_RECORD_BYTES - RECORD_HEADER_BYTES, this.committed, cp.epoch, this.clock.nowMs());
    encodeCheckpointPayload(
      {
        kind: cp.kind,
        epoch: cp.epoch,
        replicated: cp.replicated,
        replicaAcked: cp.replicaAcked,
        retentionFloor: cp.retentionFloor,
        logFirstSeq: this.firstSeq,
        prevSegmentId: prev ? prev.id : 0,
        prevBytesUsed: prev ? prev.bytesUsed : 0,
      },
      batch.view,
      at + RECORD_HEADER_BYTES,
    );
  }

  /**
   * Write and sync one batch, in chunks of at most BATCH_BYTES_MAX (the unsynced window recovery zeroes),
   * each one positional write plus one fdatasync. A chunk that does not fit in the active segment goes to a
   * new segment whose head checkpoint is written in the same write.
   */
  private async commitBatch(batch: Batch): Promise<void> {
    let checkpoint: CheckpointSnapshot | undefined;
    let checkpointWaiters: SegmentedFlashLog['checkpointWaiters'] = [];
    if (this.watermarksDirty || this.forcedCheckpoint !== 0) {
      checkpoint = this.snapshot(this.forcedCheckpoint !== 0 ? this.forcedCheckpoint : CHECKPOINT_WATERMARKS);
      this.watermarksDirty = false;
      this.forcedCheckpoint = 0;
      checkpointWaiters = this.checkpointWaiters;
      this.checkpointWaiters = [];
      // The watermark timer stays armed: when it fires it finds nothing dirty and does nothing. Cancelling and
      // re-arming it on every batch (replication marks after every commit) was a timer churn per batch.
    }
    let start = BATCH_PREFIX_BYTES;
    let waiter = 0;
    let first = true;
    try {
      while (first || start < batch.used) {
        const wantsCheckpoint = first && checkpoint !== undefined;
        let active = this.segments[this.segments.length - 1];
        let roll = active === undefined;
        let end = roll ? start : this.chunkEnd(batch, start, active!, wantsCheckpoint);
        if (!roll && end === start) {
          // Nothing fits: roll, unless this is a checkpoint alone and the slot kept for it is still free.
          const checkpointOnly = wantsCheckpoint && batch.used === start;
          roll = !checkpointOnly || active!.segmentBytes - active!.bytesUsed < CHECKPOINT_RECORD_BYTES;
        }
        if (roll) {
          await this.roll();
          active = this.segments[this.segments.length - 1]!;
          end = this.chunkEnd(batch, start, active, true, true);
        }
        const segment = active!;
        const withPrefix = roll || wantsCheckpoint;
        const from = withPrefix ? start - CHECKPOINT_RECORD_BYTES : start;
        let headState: CheckpointSnapshot = this.durable;
        if (withPrefix) {
          // A head takes the state as it is now (a chunk of a long batch may roll after marks moved on), so
          // that retention can release the previous segment right after this write.
          const cp = roll ? this.snapshot(CHECKPOINT_HEAD) : checkpoint!;
          headState = cp;
          this.encodeCheckpoint(batch, from, cp, roll ? this.segments[this.segments.length - 2] : undefined);
          sealRecord(batch.bytes, batch.view, from, segment.seed);
        }
        const position = segment.bytesUsed;
        batch.reseal(start, end, segment.seed);
        const lastSeq = end > start ? this.indexChunk(batch, segment, start, end, position - from) : this.committed;
        const length = end - from;
        const file = this.activeFile!;
        try {
          // One positional write of the whole chunk. A batch of ordinary size is copied into the page cache
          // right here, saving a thread-pool round trip; a large one goes through the pool so that the event
          // loop is never held for long (see LOG_WRITE_INLINE_BYTES_MAX).
          if (length <= LOG_WRITE_INLINE_BYTES_MAX) file.writeSync(batch.bytes, from, length, position);
          else await file.write(batch.bytes, from, length, position);
        } catch (error) {
          throw this.enterFault(error, `writing ${length} bytes to ${segment.path} at offset ${position}`, batch, waiter);
        }
        try {
          await file.datasync();
        } catch (error) {
          throw this.enterFault(error, `fdatasync of ${segment.path}`, batch, waiter);
        }
        this.counters.batches++;
        this.counters.syncs++;
        this.counters.bytesWritten += length;
        segment.bytesUsed = position + length;
        if (withPrefix) {
          this.counters.checkpoints++;
          this.durable = headState;
          for (const w of checkpointWaiters) w.resolve();
          checkpointWaiters = [];
        }
        const advanced = lastSeq > this.committed;
        if (advanced) {
          this.onBatchSynced?.(lastSeq - this.committed);
          this.tailCache.remember(batch.bytes, start, end, this.committed + 1, lastSeq, this.replicated);
          segment.lastSeq = lastSeq;
          this.committed = lastSeq;
        }
        while (waiter < batch.resolves.length && batch.waiterEnd[waiter]! <= end) {
          const epoch = batch.waiterEpoch[waiter]!;
          batch.resolves[waiter]!(epoch >= 0 ? { seq: batch.waiterSeq[waiter]!, epoch } : undefined);
          waiter++;
        }
        if (advanced) this.notifyCommit();
        if (roll) this.afterRoll();
        else if (withPrefix) this.scheduleRetention();
        start = end;
        first = false;
      }
    } catch (error) {
      for (const w of checkpointWaiters) w.reject(error);
      if (!(error instanceof LastgaspError) || !this.fault) {
        // Not a fault (no space for a new segment): give up this batch and everything staged after it.
        batch.rejectFrom(waiter, error);
        this.dropStaged(error);
      }
    }
  }

  /**
   * Add the chunk's records to the segment's sparse index and return the seq of its last record. Only the
   * records at which a sample can fall are decoded: the index keeps one per INDEX_SPACING_BYTES.
   */
  private indexChunk(batch: Batch, segment: Segment, start: number, end: number, toFile: number): number {
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
    return this.committed;
  }

  /**
   * End (staging offset) of the records from `start` that fit in one chunk in `segment`. A chunk that cannot
   * take everything ends where a waiter's records end, so that the records of one call (an `appendMany`, a
   * replicated batch) go out in one write: a crash of the process then leaves all of them on disk or none.
   * When no waiter's records fit (a roll comes next), it returns `start`; in a fresh segment (`split`) a
   * call larger than one write is split rather than never written.
   */
  private chunkEnd(batch: Batch, start: number, segment: Segment, withPrefix: boolean, split = false): number {
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

  private dropStaged(error: unknown): void {
    this.staging.rejectFrom(0, error);
    this.staging.reset();
    this.nextSeq = this.committed + 1;
  }

  private notifyCommit(): void {
    const committed = this.committed;
    for (const listener of this.commitListeners) {
      try {
        listener(committed);
      } catch (error) {
        this.logger.error('onCommit listener threw', { error });
      }
    }
  }

  // ---- segments: roll, spares, retention ---------------------------------------------------------------

  /** Make a spare the active segment (its head record goes out with the next write). */
  private async roll(): Promise<void> {
    const spare = await this.takeSpare();
    let file: StorageFile;
    try {
      file = await this.storage.open(spare.path, 'readwrite');
    } catch (error) {
      this.spares.unshift(spare);
      throw ioError(error, `opening segment ${spare.path}`);
    }
    const previous = this.activeFile;
    this.activeFile = file;
    this.segments.push(newSegment(spare, this.committed + 1));
    this.counters.rolls++;
    if (previous) await previous.close().catch(() => undefined);
  }

  /**
   * After the first write into a new segment: its head made the watermarks durable, so retention can now
   * release the oldest segment, and that file becomes the next spare without a zero-fill. Only if retention
   * frees nothing is a spare preallocated from scratch.
   */
  private afterRoll(): void {
    this.maintenance = this.maintenance
      .then(() => this.runRetention())
      .then(() => this.ensureSpare())
      .catch((error: unknown) => this.logger.error('retention after a roll failed', { error }));
  }

  private async takeSpare(): Promise<Spare> {
    for (let attempt = 0; attempt < 2; attempt++) {
      const spare = this.spares.shift();
      if (spare) return spare;
      this.ensureSpare(true);
      if (this.spareJob) await this.spareJob;
    }
    const spare = this.spares.shift();
    if (spare) return spare;
    if (this.spareError) throw this.spareError;
    this.counters.fullRejections++;
    throw new LastgaspError('LOG_FULL', `log ${this.options.dir} is full: no room under the quota of ${this.options.quotaBytes} bytes for a new segment`);
  }

  /**
   * Prepare a spare segment in the background if none is ready and the quota allows. Not while the log
   * syncs every batch at once (on battery, the brownout flush): the zero-fill of a whole segment competes
   * with the flush for the flash and the CPU (it overlapped every profiled drain, issue 12). A roll that
   * finds no spare then (`onDemand`) still prepares one, and the fill resumes when the sync mode is back.
   */
  private ensureSpare(onDemand = false): void {
    if (this.spareJob || this.spares.length >= SPARES_MAX || this.lifecycle === 'closed') return;
    if (!onDemand && this.syncMode === 'immediate') return;
    if (this.bytesOnDisk() + this.options.segmentBytes > this.options.quotaBytes) return;
    const spare: Spare = {
      id: this.nextSegmentId++,
      path: segmentPath(this.options.dir, this.nextSegmentId - 1),
      salt: this.saltSource(),
      segmentBytes: this.options.segmentBytes,
    };
    const job = createSpare(this.storage, this.options.dir, spare, this.clock.nowMs()).then(
      () => {
        this.spares.push(spare);
        this.spareError = undefined;
        this.counters.sparesCreated++;
      },
      async (error: unknown) => {
        this.spareError = ioError(error, `preallocating segment ${spare.path}`);
        this.logger.error(this.spareError.message, { segment: spare.id });
        await this.storage.unlink(`${spare.path}.tmp`).catch(() => undefined);
      },
    );
    this.spareJob = job.finally(() => {
      this.spareJob = undefined;
      this.wakeSpaceWaiters();
    });
  }

  private scheduleRetention(): void {
    if (this.segments.length < 2) return;
    const head = this.segments[0]!;
    if (!this.deletable(head)) return;
    this.maintenance = this.maintenance.then(() => this.runRetention()).catch((error: unknown) => {
      this.logger.error('retention failed', { error });
    });
  }

  /** Whole segments only, and only when every entry in them is durably replicated and below the floor. */
  private deletable(segment: Segment): boolean {
    return segment.lastSeq <= this.durable.replicated && segment.lastSeq < this.retentionFloor;
  }

  private async runRetention(): Promise<void> {
    let changed = false;
    while (this.segments.length > 1 && this.lifecycle !== 'closed' && !this.fault && this.deletable(this.segments[0]!)) {
      const segment = this.segments.shift()!;
      this.readHandles.release(segment);
      changed = true;
      const recycle = this.spares.length < SPARES_MAX && !this.spareJob && segment.segmentBytes === this.options.segmentBytes;
      if (recycle) {
        const spare: Spare = { id: this.nextSegmentId++, path: segmentPath(this.options.dir, this.nextSegmentId - 1), salt: this.saltSource(), segmentBytes: segment.segmentBytes };
        try {
          await recycleSegment(this.storage, this.options.dir, segment.path, spare, this.clock.nowMs());
          this.spares.push(spare);
          this.counters.segmentsRecycled++;
        } catch (error) {
          this.logger.error(`recycling ${segment.path} failed`, { error });
          await this.storage.unlink(segment.path).catch(() => undefined);
          await this.storage.unlink(spare.path).catch(() => undefined);
          this.counters.segmentsDeleted++;
        }
      } else {
        await this.storage.unlink(segment.path);
        this.counters.segmentsDeleted++;
      }
    }
    if (changed) {
      await this.storage.syncDir(this.options.dir);
      this.ensureSpare();
      this.wakeSpaceWaiters();
    }
  }

  // ---- faults --------------------------------------------------------------------------------------------

  /**
   * A failed write or fdatasync stops appends at once: the kernel may already have dropped the dirty pages
   * and a retried fsync could then "succeed" over lost data (fsyncgate; PostgreSQL panics here). Every
   * waiter of this batch and everything staged fails, and the log reopens its files and recovers from what
   * is on disk, treating everything past the last synced offset as torn.
   */
  private enterFault(error: unknown, what: string, batch: Batch, waiter: number): LastgaspError {
    const typed = ioError(error, what);
    const active = this.segments[this.segments.length - 1]!;
    this.fault = typed;
    this.counters.faults++;
    this.logger.error(`${typed.message}; appends stopped, reopening the log to recover from what is on disk (no retry of the sync)`, {
      code: typed.code,
      committed: this.committed,
    });
    batch.rejectFrom(waiter, typed);
    const stopped = new LastgaspError('LOG_FAULT', `log ${this.options.dir} stopped after an I/O fault: ${typed.message}`, { cause: typed.code });
    this.dropStaged(stopped);
    for (const w of this.checkpointWaiters.splice(0)) w.reject(stopped);
    this.forcedCheckpoint = 0;
    for (const wake of this.idleWaiters.splice(0)) wake();
    // A segment whose head was never synced is not part of the durable log: point at its predecessor.
    const durableSegment = active.bytesUsed > SEGMENT_HEADER_BYTES ? active : this.segments[this.segments.length - 2];
    const hint = durableSegment ? { segmentId: durableSegment.id, offset: durableSegment.bytesUsed } : { segmentId: 0, offset: 0 };
    this.recovering = this.recoverAfterFault(hint);
    return typed;
  }

  private async recoverAfterFault(hint: { segmentId: number; offset: number }): Promise<void> {
    const file = this.activeFile;
    this.activeFile = undefined;
    if (file) await file.close().catch(() => undefined);
    await this.maintenance;
    if (this.spareJob) await this.spareJob;
    try {
      const recovered = await recoverLog(this.recoverContext(hint));
      this.adopt(recovered);
      if (recovered.segments.length === 0) this.forcedCheckpoint = CHECKPOINT_HEAD;
      this.fault = undefined;
      this.faultRetryMs = FAULT_RETRY_MS_MIN;
      this.counters.faultRecoveries++;
      this.logger.info(`recovered after the fault: seq ${this.firstSeq}..${this.committed}; appends resumed`);
      this.recovering = undefined;
      this.ensureSpare();
      if (this.hasWork()) this.scheduleFlush();
    } catch (error) {
      const typed = error instanceof LastgaspError ? error : ioError(error, `recovering ${this.options.dir}`);
      this.fault = typed;
      this.logger.error(`recovery after the fault failed: ${typed.message}; retrying in ${this.faultRetryMs} ms`);
      const delay = this.faultRetryMs;
      this.faultRetryMs = Math.min(FAULT_RETRY_MS_MAX, this.faultRetryMs * 2);
      this.recovering = new Promise<void>((resolve) => {
        if (this.lifecycle === 'closing' || this.lifecycle === 'closed') {
          resolve();
          return;
        }
        this.faultTimer = this.clock.setTimeout(() => {
          this.faultTimer = undefined;
          resolve(this.recoverAfterFault(hint));
        }, delay);
      });
    }
  }

  async whenSettled(): Promise<void> {
    for (;;) {
      const maintenance = this.maintenance;
      const spare = this.spareJob;
      await maintenance;
      if (spare) await spare;
      if (maintenance === this.maintenance && this.spareJob === undefined) return;
    }
  }

  async whenRecovered(): Promise<void> {
    while (this.recovering) await this.recovering;
  }

  // ---- reading -------------------------------------------------------------------------------------------

  read(fromSeq: number, limits: ReadLimits): Promise<LogEntry[]> {
    if (this.lifecycle !== 'open' && this.lifecycle !== 'closing') {
      return Promise.reject(new LastgaspError('LOG_CLOSED', `log ${this.options.dir} is not open`));
    }
    return readEntries(this.readContext, fromSeq, limits);
  }

  async *entries(fromSeq: number): AsyncIterable<LogEntry> {
    let seq = fromSeq;
    for (;;) {
      const page = await this.read(seq, { entriesMax: 512, bytesMax: 1024 * 1024 });
      if (page.length === 0) return;
      for (const entry of page) yield entry;
      seq = page[page.length - 1]!.seq + 1;
    }
  }

  // ---- watermarks, epoch, modes --------------------------------------------------------------------------

  watermarks(): Watermarks {
    return { committed: this.committed, replicated: this.replicated, replicaAcked: this.replicaAcked };
  }

  durableWatermarks(): Watermarks {
    return { committed: this.committed, replicated: this.durable.replicated, replicaAcked: this.durable.replicaAcked };
  }

  markReplicated(seq: number): void {
    const value = Math.min(seq, this.committed);
    if (!(value > this.replicated)) return;
    this.replicated = value;
    this.watermarksChanged();
    this.notifyReplicated();
    // Writers held at the unreplicated limit may go on now.
    this.wakeSpaceWaiters();
  }

  markReplicaAcked(seq: number): void {
    const value = Math.min(seq, this.committed);
    if (!(value > this.replicaAcked)) return;
    this.replicaAcked = value;
    this.watermarksChanged();
    this.notifyReplicated();
  }

  onReplicated(listener: (marks: Watermarks) => void): () => void {
    this.replicatedListeners.add(listener);
    return () => {
      this.replicatedListeners.delete(listener);
    };
  }

  private notifyReplicated(): void {
    if (this.replicatedListeners.size === 0) return;
    const marks = this.watermarks();
    for (const listener of this.replicatedListeners) {
      try {
        listener(marks);
      } catch (error) {
        this.logger.error('onReplicated listener threw', { error });
      }
    }
  }

  /** Ride the next batch; if none comes within the linger, write a checkpoint on its own. */
  private watermarksChanged(): void {
    this.watermarksDirty = true;
    if (this.watermarkTimer || this.lifecycle !== 'open') return;
    this.watermarkTimer = this.clock.setTimeout(() => {
      this.watermarkTimer = undefined;
      if (!this.watermarksDirty || this.lifecycle !== 'open' || this.fault) return;
      if (this.forcedCheckpoint === 0) this.forcedCheckpoint = CHECKPOINT_WATERMARKS;
      this.scheduleFlush();
    }, this.options.watermarkLingerMs);
  }

  syncWatermarks(): Promise<void> {
    const refused = this.refuse();
    if (refused) return Promise.reject(refused);
    return this.forceCheckpoint(CHECKPOINT_WATERMARKS);
  }

  private forceCheckpoint(kind: number): Promise<void> {
    const refused = this.fault ? this.refuse() : undefined;
    if (refused) return Promise.reject(refused);
    return new Promise<void>((resolve, reject) => {
      if (this.forcedCheckpoint === 0 || kind === CHECKPOINT_CLOSE || kind === CHECKPOINT_HEAD) this.forcedCheckpoint = kind;
      this.checkpointWaiters.push({ resolve, reject });
      this.scheduleFlush();
    });
  }

  async beginEpoch(epoch: number): Promise<void> {
    const refused = this.refuse();
    if (refused) throw refused;
    if (!Number.isInteger(epoch) || epoch <= this.currentEpoch || epoch > 0xffff_ffff) {
      throw new LastgaspError('LOG_SEQ', `epoch ${epoch} must be an integer above the current epoch ${this.currentEpoch}`, {
        epoch,
        current: this.currentEpoch,
      });
    }
    this.currentEpoch = epoch;
    await this.forceCheckpoint(CHECKPOINT_EPOCH);
  }

  setSyncMode(mode: SyncMode): void {
    this.syncMode = mode;
    if (mode === 'batched' && this.lifecycle === 'open') this.ensureSpare();
    if (mode === 'immediate' && this.lingerTimer) {
      this.lingerTimer.cancel();
      this.lingerTimer = undefined;
      this.flushScheduled = false;
      this.scheduleFlush();
    }
  }

  setUnreplicatedLimits(softBytes: number, hardBytes: number, field: string): void {
    if (!(softBytes >= 0 && hardBytes >= 0)) throw new Error(`unreplicated limits must be >= 0 (soft ${softBytes}, hard ${hardBytes})`);
    this.unreplicatedLimits = { soft: hardBytes > 0 ? Math.min(softBytes, hardBytes) : softBytes, hard: hardBytes, field };
  }

  setRetentionFloor(seq: number): void {
    if (!(seq >= 0)) return;
    if (seq === this.retentionFloor) return;
    this.retentionFloor = seq;
    this.watermarksChanged();
    this.scheduleRetention();
  }

  onCommit(listener: (committed: number) => void): () => void {
    this.commitListeners.add(listener);
    return () => {
      this.commitListeners.delete(listener);
    };
  }

  // ---- fence ---------------------------------------------------------------------------------------------

  async fence(code: ErrorCode, message: string): Promise<number> {
    const refused = this.lifecycle === 'open' ? undefined : this.refuse();
    if (refused) throw refused;
    this.fenceState = { code, message };
    this.counters.fences++;
    // Writers held for space wake now and meet the fence, instead of waiting out fullWaitMs; writers at the
    // throttle meet it when their delay ends. Neither was admitted, so neither is waited for.
    this.wakeSpaceWaiters();
    // Whatever is staged goes now (a lingering batch stops lingering: shouldLinger is false behind a fence),
    // and the batch being written is carried through its fdatasync. A fault settles them all (failed).
    while ((this.writerRunning || this.staging.records > 0) && !this.fault && this.lifecycle === 'open') await this.whenIdle();
    this.logger.info(`fenced at seq ${this.committed} (${code}): appends refused`, { committed: this.committed, code });
    return this.committed;
  }

  unfence(): void {
    if (this.fenceState === undefined) return;
    this.fenceState = undefined;
    this.logger.info(`fence lifted at seq ${this.committed}: appends admitted again`);
  }

  // ---- demotion ------------------------------------------------------------------------------------------

  async quarantineAfter(seq: number): Promise<{ records: number; file: string | undefined }> {
    const refused = this.refuse();
    if (refused) throw refused;
    // New appends are refused from here on: the ones already staged are written first, and under a steady
    // stream of appends the wait for an idle writer would otherwise never end.
    this.demoting = true;
    this.paused++;
    try {
      while (this.writerRunning || this.staging.records > 0) {
        this.paused--;
        await this.whenIdle();
        this.paused++;
      }
      if (this.fault) throw this.refuse()!;
      if (seq >= this.committed) return { records: 0, file: undefined };
      if (seq < this.firstSeq - 1) {
        throw new LastgaspError('LOG_SEQ', `cannot keep the log up to seq ${seq}: retention already removed seqs below ${this.firstSeq}`, {
          seq,
          firstSeq: this.firstSeq,
        });
      }
      return await this.cutAfter(seq);
    } finally {
      this.demoting = false;
      this.paused--;
      if (this.hasWork()) this.scheduleFlush();
    }
  }

  /**
   * Set aside everything after `seq` through the crash-consistent steps of demotion.ts: copy, commit an
   * intent, apply, update the state, delete the intent; only then may appends go on (they are paused).
   */
  private async cutAfter(seq: number): Promise<{ records: number; file: string | undefined }> {
    const dir = this.options.dir;
    let keep = this.segments.length - 1;
    while (keep > 0 && this.segments[keep]!.baseSeq > seq + 1) keep--;
    const target = this.segments[keep]!;
    const later = this.segments.slice(keep + 1);
    const records = this.committed - seq;
    if (later.length > 0 && this.activeFile) {
      // The active segment is among those moved aside: its handle goes, the cut segment's comes.
      await this.activeFile.close().catch(() => undefined);
      this.activeFile = undefined;
    }
    let plan: DemotionPlan;
    try {
      const file = this.activeFile ?? (this.activeFile = await this.storage.open(target.path, 'readwrite'));
      plan = {
        keepSeq: seq,
        segmentId: target.id,
        cutOffset: await this.cutOffset(file, target, seq),
        endOffset: target.bytesUsed,
        laterSegmentIds: later.map((segment) => segment.id),
        stampMs: this.clock.nowMs(),
        epoch: this.currentEpoch,
        replicated: Math.min(this.replicated, seq),
        replicaAcked: Math.min(this.replicaAcked, seq),
        retentionFloor: this.retentionFloor,
        logFirstSeq: this.firstSeq,
      };
      await prepareDemotion(this.storage, dir, file, plan, this.options.entryBytesMax);
      await writeDemotionIntent(this.storage, dir, plan);
      await applyDemotion(this.storage, dir, plan, this.logger, file);
    } catch (error) {
      // The directory is between two of the steps: reopen and let recovery finish (or drop) the demotion.
      throw this.enterFault(error, `demotion after seq ${seq} in ${dir}`, this.writing, this.writing.resolves.length);
    }
    const cut = plan.cutOffset;
    this.segments = this.segments.slice(0, keep + 1);
    // Seqs after the cut will be written again with other contents, and later segments were moved aside.
    this.tailCache.clear();
    this.readHandles.releaseAll();
    this.dropStaged(new LastgaspError('LOG_SEQ', `log ${dir} was cut back to seq ${seq} by a demotion; appends staged meanwhile were not written`, { seq }));
    // The segment now ends with the plan's checkpoint at the cut.
    target.bytesUsed = cut + CHECKPOINT_RECORD_BYTES;
    target.lastSeq = seq;
    target.index.truncate(cut);
    this.counters.checkpoints++;
    this.committed = seq;
    this.nextSeq = seq + 1;
    this.replicated = plan.replicated;
    this.replicaAcked = plan.replicaAcked;
    this.durable = { kind: CHECKPOINT_QUARANTINE, epoch: plan.epoch, replicated: plan.replicated, replicaAcked: plan.replicaAcked, retentionFloor: plan.retentionFloor };
    // The intent goes before any new record can be written at the cut: replaying it later would zero them.
    try {
      await finishDemotion(this.storage, dir);
    } catch (error) {
      throw this.enterFault(error, `finishing the demotion after seq ${seq} in ${dir}`, this.writing, this.writing.resolves.length);
    }
    const files = demotionFiles(plan);
    this.quarantineFiles.push(...files);
    this.counters.quarantinedRecords += records;
    this.logger.warn(`demotion: ${records} entries after seq ${seq} set aside in ${files.join(', ')}`, { seq, records });
    return { records, file: files[files.length - 1] };
  }

  /** Offset of the first entry after `seq` in `segment` (its end if there is none). */
  private async cutOffset(file: StorageFile, segment: Segment, seq: number): Promise<number> {
    const reader = new ChunkReader(this.options.entryBytesMax);
    let cut = -1;
    // Only an index gives a record boundary to start from; a sealed segment not read yet is scanned whole.
    const from = segment.indexed ? segment.index.lookup(seq, SEGMENT_HEADER_BYTES) : SEGMENT_HEADER_BYTES;
    await scanRecords(file, reader, segment.seed, from, segment.bytesUsed, this.options.entryBytesMax, (record, _b, _v, _at, offset) => {
      if (record.type === RECORD_TYPE_ENTRY && record.seq > seq) {
        cut = offset;
        return false;
      }
      return true;
    });
    return cut < 0 ? segment.bytesUsed : cut;
  }

  // ---- status --------------------------------------------------------------------------------------------

  status(): LogStatus {
    const segments = this.segments.map((segment) => ({
      id: segment.id,
      file: segment.path,
      firstSeq: segment.baseSeq,
      lastSeq: segment.lastSeq >= segment.baseSeq ? segment.lastSeq : 0,
      bytesUsed: segment.bytesUsed,
      bytesAllocated: segment.segmentBytes,
    }));
    return {
      dir: this.options.dir,
      firstSeq: this.firstSeq,
      watermarks: this.watermarks(),
      epoch: this.currentEpoch,
      syncMode: this.syncMode,
      segments,
      bytesOnDisk: this.bytesOnDisk(),
      unreplicatedBytes: this.unreplicatedBytes(),
      quarantine: [...this.quarantineFiles],
      counters: { ...this.counters, spares: this.spares.length },
      fault: this.fault ? this.fault.message : undefined,
      fenced: this.fenceState?.code,
    };
  }
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
