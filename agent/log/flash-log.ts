/**
 * The flash log: segment files on local flash, one writer loop that group-commits appends (one positional
 * write of a pre-concatenated buffer and one fdatasync per batch), watermarks persisted as checkpoint
 * records that ride the same batches, retention by whole segments, and recovery from the last checkpoint.
 * The contract is in types.ts; the byte layout in FORMAT.md.
 *
 * This file is the facade: the lifecycle (open, close), the public methods, and the wiring of the parts that
 * each own their state and are imported only from here: group-commit.ts (staging, linger, writer loop),
 * segment-pool.ts (segments, spares, retention), watermarks.ts (marks, checkpoints and their waiters),
 * admission.ts (quota, throttle, full policy), cut.ts (demotion's cut), faults.ts (stop and recover). A part
 * reaches another only through the callbacks its constructor method here gives it. (About 600 lines: the
 * FlashLog contract's thirty methods are each a few lines that hand over to a part, plus that wiring.)
 */
import { LastgaspError, silentLogger, systemClock, type Clock, type ErrorCode, type Logger } from '../util/index.ts';
import { BATCH_PREFIX_BYTES, Batch } from './batch.ts';
import {
  BATCH_BYTES_MAX,
  CHECKPOINT_CLOSE,
  CHECKPOINT_EPOCH,
  CHECKPOINT_HEAD,
  CHECKPOINT_RECORD_BYTES,
  CHECKPOINT_WATERMARKS,
  RETENTION_FLOOR_NONE,
  SEGMENT_HEADER_BYTES,
  recordBytes,
} from './format.ts';
import { checkBatch, checkEntry, checkReplicated } from './appends.ts';
import { Cut } from './cut.ts';
import { FaultRecovery, type DurablePoint } from './faults.ts';
import { GroupCommit } from './group-commit.ts';

export { LOG_WRITE_INLINE_BYTES_MAX } from './group-commit.ts';
import { SegmentPool } from './segment-pool.ts';
import { Admission } from './admission.ts';
import { WatermarkBook } from './watermarks.ts';
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
import { ChunkReader } from './scan.ts';
import { randomSalt } from './segments.ts';
import { createNodeStorage, type Storage } from './storage/index.ts';
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

type Lifecycle = 'new' | 'opening' | 'open' | 'closing' | 'closed';

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
  /** Committed end, epoch, watermarks and the checkpoints that make them durable. */
  private readonly marks: WatermarkBook;
  /** The cut back to a seq (demotion); its flag refuses appends while it runs. */
  private readonly cut: Cut;
  /** A fence stands (see `fence`): appends are refused with this code and message until `unfence`. */
  private fenceState: { code: ErrorCode; message: string } | undefined;
  private lock: DirLock | undefined;
  /** The segments, the active file, spares and retention. */
  private readonly pool: SegmentPool;

  /** The most record bytes one `appendMany` may stage: what one write into a fresh segment holds. */
  private readonly batchBytesMax: number;
  /** Staging, the linger and the writer loop. */
  private readonly commit: GroupCommit;
  private syncMode: SyncMode = 'batched';
  /** Quota, unreplicated limits and the full policy. */
  private readonly admission: Admission;

  /** The fault appends stopped on, and the recovery after it. */
  private readonly faults: FaultRecovery;
  private readonly counters: Counters = newCounters();
  private readonly readContext: ReadContext;
  /** What the replication read takes from memory and the files it keeps open (read-cache.ts). */
  private readonly tailCache = new TailCache();
  private readonly readHandles: SegmentHandles;
  private idleChunkReader: ChunkReader | undefined;

  constructor(options: CreateFlashLogOptions) {
    this.options = resolveOptions(options);
    this.storage = options.storage ?? createNodeStorage();
    this.logger = (options.logger ?? silentLogger).child('agent:log');
    this.clock = options.clock ?? systemClock;
    this.saltSource = options.randomSalt ?? randomSalt;
    this.readHandles = new SegmentHandles(this.storage);
    // The parts reach each other only through the callbacks given here, so each is built by its own method.
    this.pool = this.newPool();
    this.admission = this.newAdmission();
    this.marks = this.newMarks(options.retentionFloor ?? RETENTION_FLOOR_NONE);
    this.commit = this.newCommit(options.onBatchSynced);
    this.faults = this.newFaults();
    this.cut = this.newCut();
    this.batchBytesMax = Math.min(BATCH_BYTES_MAX, this.options.segmentBytes - SEGMENT_HEADER_BYTES - CHECKPOINT_RECORD_BYTES) - BATCH_PREFIX_BYTES;
    this.readContext = this.newReadContext();
  }

  private newPool(): SegmentPool {
    return new SegmentPool({
      options: this.options,
      storage: this.storage,
      clock: this.clock,
      logger: this.logger,
      counters: this.counters,
      saltSource: this.saltSource,
      isClosed: () => this.lifecycle === 'closed',
      cutting: () => this.cut.demoting,
      faulted: () => this.faults.fault !== undefined,
      syncMode: () => this.syncMode,
      releasable: (lastSeq) => this.marks.releasable(lastSeq),
      spaceFreed: () => this.admission.wakeSpaceWaiters(),
      segmentReleased: (segment) => this.readHandles.release(segment),
    });
  }

  private newAdmission(): Admission {
    return new Admission({
      options: this.options,
      clock: this.clock,
      counters: this.counters,
      unreplicatedBytes: () => this.unreplicatedBytes(),
      spaceLeft: () => this.spaceLeft(),
      scheduleRetention: () => this.pool.scheduleRetention(),
      refusing: () => this.fenceState !== undefined || this.refuse() !== undefined,
    });
  }

  private newMarks(retentionFloor: number): WatermarkBook {
    return new WatermarkBook(
      {
        clock: this.clock,
        logger: this.logger,
        watermarkLingerMs: this.options.watermarkLingerMs,
        isOpen: () => this.lifecycle === 'open',
        faulted: () => this.faults.fault !== undefined,
        scheduleFlush: () => this.commit.scheduleFlush(),
      },
      retentionFloor,
    );
  }

  private newCommit(onBatchSynced: ((entries: number) => void) | undefined): GroupCommit {
    return new GroupCommit({
      options: this.options,
      clock: this.clock,
      counters: this.counters,
      marks: this.marks,
      pool: this.pool,
      onBatchSynced,
      tailCache: this.tailCache,
      syncMode: () => this.syncMode,
      fenced: () => this.fenceState !== undefined,
      faulted: () => this.faults.fault !== undefined,
      enterFault: (error, what, batch, waiter) => this.enterFault(error, what, batch, waiter),
    });
  }

  private newFaults(): FaultRecovery {
    return new FaultRecovery({
      options: this.options,
      clock: this.clock,
      logger: this.logger,
      counters: this.counters,
      committed: () => this.marks.committed,
      isClosing: () => this.lifecycle === 'closing' || this.lifecycle === 'closed',
      stopAll: (stopped) => {
        this.commit.dropStaged(stopped);
        this.marks.failCheckpoints(stopped);
        this.commit.wakeIdle();
      },
      durablePoint: () => this.durablePoint(),
      reopen: (hint) => this.reopenAfterFault(hint),
      resumed: () => this.resumeAfterFault(),
    });
  }

  private newCut(): Cut {
    return new Cut({
      options: this.options,
      storage: this.storage,
      clock: this.clock,
      logger: this.logger,
      counters: this.counters,
      commit: this.commit,
      pool: this.pool,
      marks: this.marks,
      refuse: () => this.refuse(),
      faulted: () => this.faults.fault !== undefined,
      faultInFlight: (error, what) => this.faultInFlight(error, what),
      forgetReads: () => this.forgetReads(),
    });
  }

  /** Recovery or a cut changed what is on disk: nothing read before may be served again. */
  private forgetReads(): void {
    this.tailCache.clear();
    this.readHandles.releaseAll();
  }

  private newReadContext(): ReadContext {
    return {
      storage: this.storage,
      tail: this.tailCache,
      handles: this.readHandles,
      payloadBytesMax: this.options.entryBytesMax,
      segments: () => this.pool.segments,
      committed: () => this.marks.committed,
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
      this.marks.forcedCheckpoint = CHECKPOINT_HEAD;
    }
    this.lifecycle = 'open';
    if (this.marks.forcedCheckpoint !== 0) {
      try {
        await this.forceCheckpoint(CHECKPOINT_HEAD);
      } catch (error) {
        await this.close().catch(() => undefined);
        throw error;
      }
    }
    this.pool.ensureSpare();
    this.pool.scheduleRetention();
    const report: RecoveryReport = {
      firstSeq: this.firstSeq,
      committed: this.marks.committed,
      epoch: this.marks.epoch,
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
    await this.faults.settleForClose();
    if (!this.faults.fault) await this.forceCheckpoint(CHECKPOINT_CLOSE).catch(() => undefined);
    await this.commit.whenIdle();
    await this.pool.quiesce();
    this.cancelTimers();
    const closed = new LastgaspError('LOG_CLOSED', `log ${this.options.dir} is closed`);
    this.commit.rejectStaged(closed);
    this.admission.wakeSpaceWaiters();
    const closing = this.pool.closeActive();
    this.lifecycle = 'closed';
    this.readHandles.releaseAll();
    await closing;
    await this.releaseLock();
  }

  private async releaseLock(): Promise<void> {
    const lock = this.lock;
    this.lock = undefined;
    if (!lock) return;
    await lock.release().catch((error: unknown) => this.logger.warn(`could not release the lock ${lock.file}`, { error }));
  }

  private cancelTimers(): void {
    this.commit.cancelLinger();
    this.marks.cancelTimer();
    this.faults.cancelTimer();
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
    // Recovery may have moved segments aside or cut a torn tail.
    this.forgetReads();
    this.pool.adopt(recovered);
    this.marks.adopt(recovered);
    this.commit.nextSeq = recovered.committed + 1;
    this.counters.tornBytes += recovered.tornBytes;
    this.counters.quarantinedRecords += recovered.quarantinedRecords;
  }

  // ---- appends -----------------------------------------------------------------------------------------

  get firstSeq(): number {
    return this.pool.firstSeq(this.marks.committed);
  }

  get epoch(): number {
    return this.marks.epoch;
  }

  private refuse(): LastgaspError | undefined {
    if (this.lifecycle !== 'open') {
      return new LastgaspError('LOG_CLOSED', `log ${this.options.dir} is ${this.lifecycle === 'new' ? 'not open yet (call open())' : 'closed'}`);
    }
    if (this.faults.fault) {
      return new LastgaspError('LOG_FAULT', `log ${this.options.dir} stopped after an I/O fault and is recovering: ${this.faults.fault.message}`, {
        cause: this.faults.fault.code,
      });
    }
    if (this.cut.demoting) {
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
    const tooLarge = checkEntry(payload.length, this.options.entryBytesMax);
    if (tooLarge) return Promise.reject(tooLarge);
    let gate: Promise<void> | undefined;
    try {
      gate = this.admission.admit(recordBytes(payload.length), false);
    } catch (error) {
      return Promise.reject(error);
    }
    if (gate !== undefined) return gate.then(() => this.appendAdmitted(payload));
    return this.commit.stageEntry(payload, this.marks.epoch, this.pool.activeSeed());
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
    const bytes = checkBatch(payloads, this.options.entryBytesMax, this.batchBytesMax);
    if (bytes instanceof LastgaspError) return Promise.reject(bytes);
    return this.appendManyAdmitted(payloads, bytes, false);
  }

  private appendManyAdmitted(payloads: readonly Uint8Array[], bytes: number, throttled: boolean): Promise<AppendResult> {
    if (throttled) {
      const refused = this.refuseAppend();
      if (refused) return Promise.reject(refused);
    }
    let gate: Promise<void> | undefined;
    try {
      gate = this.admission.admit(bytes, throttled);
    } catch (error) {
      return Promise.reject(error);
    }
    if (gate !== undefined) return gate.then(() => this.appendManyAdmitted(payloads, bytes, true));
    return this.commit.stageMany(payloads, this.marks.epoch, this.pool.activeSeed());
  }

  /** After a throttle delay or a wait for space: check again, but do not throttle twice. */
  private appendAdmitted(payload: Uint8Array): Promise<AppendResult> {
    const refused = this.refuseAppend();
    if (refused) return Promise.reject(refused);
    let gate: Promise<void> | undefined;
    try {
      gate = this.admission.admit(recordBytes(payload.length), true);
    } catch (error) {
      return Promise.reject(error);
    }
    if (gate !== undefined) return gate.then(() => this.appendAdmitted(payload));
    return this.commit.stageEntry(payload, this.marks.epoch, this.pool.activeSeed());
  }

  appendReplicated(entries: readonly LogEntry[]): Promise<void> {
    const refused = this.refuseAppend();
    if (refused) return Promise.reject(refused);
    if (entries.length === 0) return Promise.resolve();
    const bytes = checkReplicated(entries, this.commit.nextSeq, this.marks.committed, this.options.entryBytesMax);
    if (bytes instanceof LastgaspError) return Promise.reject(bytes);
    let gate: Promise<void> | undefined;
    try {
      gate = this.admission.admit(bytes, true, true);
    } catch (error) {
      return Promise.reject(error);
    }
    if (gate !== undefined) return gate.then(() => this.appendReplicated(entries));
    let epochMax = this.marks.epoch;
    for (const entry of entries) if (entry.epoch > epochMax) epochMax = entry.epoch;
    const promise = this.commit.stageReplicated(entries, this.pool.activeSeed());
    // A replica's epoch follows what it stores, so that a takeover's beginEpoch must go above the primary's.
    this.marks.epoch = epochMax;
    return promise;
  }

  recentSyncMsMax(): number | undefined {
    return this.commit.syncTimes.max();
  }

  /** Bytes of the committed records from `seq` on (within one index step; 0 past the committed seq). */
  committedBytesFrom(seq: number): number {
    return this.pool.bytesFrom(seq, this.marks.committed);
  }

  // ---- what admission measures: bytes not yet replicated, room left under the quota ----------------------

  private unreplicatedBytes(): number {
    return this.pool.bytesFrom(this.marks.replicated + 1, this.marks.committed) + this.commit.pendingRecordBytes();
  }

  private spaceLeft(): number {
    return this.pool.spaceLeft(this.commit.pendingBufferBytes());
  }

  // ---- faults --------------------------------------------------------------------------------------------

  private enterFault(error: unknown, what: string, batch: Batch, waiter: number): LastgaspError {
    return this.faults.enter(error, what, batch, waiter);
  }

  /** A fault outside a batch's write (the cut): whatever is being written fails with it. */
  private faultInFlight(error: unknown, what: string): LastgaspError {
    const { batch, waiter } = this.commit.inFlight();
    return this.faults.enter(error, what, batch, waiter);
  }

  /** A segment whose head was never synced is not part of the durable log: point at its predecessor. */
  private durablePoint(): DurablePoint {
    const segments = this.pool.segments;
    const active = segments[segments.length - 1]!;
    const durableSegment = active.bytesUsed > SEGMENT_HEADER_BYTES ? active : segments[segments.length - 2];
    return durableSegment ? { segmentId: durableSegment.id, offset: durableSegment.bytesUsed } : { segmentId: 0, offset: 0 };
  }

  private async reopenAfterFault(hint: DurablePoint): Promise<void> {
    await this.pool.closeActive();
    await this.pool.quiesce();
    const recovered = await recoverLog(this.recoverContext(hint));
    this.adopt(recovered);
    if (recovered.segments.length === 0) this.marks.forcedCheckpoint = CHECKPOINT_HEAD;
  }

  private resumeAfterFault(): void {
    this.logger.info(`recovered after the fault: seq ${this.firstSeq}..${this.marks.committed}; appends resumed`);
    this.pool.ensureSpare();
    if (this.commit.hasWork()) this.commit.scheduleFlush();
  }

  whenSettled(): Promise<void> {
    return this.pool.whenSettled();
  }

  whenRecovered(): Promise<void> {
    return this.faults.whenRecovered();
  }

  // ---- reading -------------------------------------------------------------------------------------------

  holdTail(reader: string, seq: number | undefined): void {
    this.tailCache.hold(reader, seq);
  }

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
    return this.marks.watermarks();
  }

  durableWatermarks(): Watermarks {
    return this.marks.durableWatermarks();
  }

  markReplicated(seq: number): void {
    // Writers held at the unreplicated limit may go on once it moved.
    if (this.marks.markReplicated(seq)) this.admission.wakeSpaceWaiters();
  }

  markReplicaAcked(seq: number): void {
    this.marks.markReplicaAcked(seq);
  }

  onReplicated(listener: (marks: Watermarks) => void): () => void {
    return this.marks.onReplicated(listener);
  }

  syncWatermarks(): Promise<void> {
    const refused = this.refuse();
    if (refused) return Promise.reject(refused);
    return this.forceCheckpoint(CHECKPOINT_WATERMARKS);
  }

  private forceCheckpoint(kind: number): Promise<void> {
    const refused = this.faults.fault ? this.refuse() : undefined;
    if (refused) return Promise.reject(refused);
    return this.marks.forceCheckpoint(kind);
  }

  async beginEpoch(epoch: number): Promise<void> {
    const refused = this.refuse();
    if (refused) throw refused;
    if (!Number.isInteger(epoch) || epoch <= this.marks.epoch || epoch > 0xffff_ffff) {
      throw new LastgaspError('LOG_SEQ', `epoch ${epoch} must be an integer above the current epoch ${this.marks.epoch}`, {
        epoch,
        current: this.marks.epoch,
      });
    }
    this.marks.epoch = epoch;
    await this.forceCheckpoint(CHECKPOINT_EPOCH);
  }

  setSyncMode(mode: SyncMode): void {
    this.syncMode = mode;
    if (mode === 'batched' && this.lifecycle === 'open') this.pool.ensureSpare();
    if (mode === 'immediate') this.commit.stopLingering();
  }

  setUnreplicatedLimits(softBytes: number, hardBytes: number, field: string): void {
    this.admission.setUnreplicatedLimits(softBytes, hardBytes, field);
  }

  appendRoom(): number {
    return this.admission.room();
  }

  setRetentionFloor(seq: number): void {
    if (this.marks.setRetentionFloor(seq)) this.pool.scheduleRetention();
  }

  onCommit(listener: (committed: number) => void): () => void {
    return this.marks.onCommit(listener);
  }

  // ---- fence ---------------------------------------------------------------------------------------------

  async fence(code: ErrorCode, message: string): Promise<number> {
    const refused = this.lifecycle === 'open' ? undefined : this.refuse();
    if (refused) throw refused;
    this.fenceState = { code, message };
    this.counters.fences++;
    // Writers held for space wake now and meet the fence, instead of waiting out fullWaitMs; writers at the
    // throttle meet it when their delay ends. Neither was admitted, so neither is waited for.
    this.admission.wakeSpaceWaiters();
    // Whatever is staged goes now (a lingering batch stops lingering: shouldLinger is false behind a fence),
    // and the batch being written is carried through its fdatasync. A fault settles them all (failed).
    while (this.commit.busy() && !this.faults.fault && this.lifecycle === 'open') await this.commit.whenIdle();
    this.logger.info(`fenced at seq ${this.marks.committed} (${code}): appends refused`, { committed: this.marks.committed, code });
    return this.marks.committed;
  }

  unfence(): void {
    if (this.fenceState === undefined) return;
    this.fenceState = undefined;
    this.logger.info(`fence lifted at seq ${this.marks.committed}: appends admitted again`);
  }

  // ---- demotion ------------------------------------------------------------------------------------------

  quarantineAfter(seq: number): Promise<{ records: number; file: string | undefined }> {
    return this.cut.quarantineAfter(seq);
  }

  // ---- status --------------------------------------------------------------------------------------------

  setAsideRecords(): number {
    return this.counters.quarantinedRecords;
  }

  status(): LogStatus {
    const segments = this.pool.segments.map((segment) => ({
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
      epoch: this.marks.epoch,
      syncMode: this.syncMode,
      segments,
      bytesOnDisk: this.pool.bytesOnDisk(),
      unreplicatedBytes: this.unreplicatedBytes(),
      quarantine: [...this.pool.quarantineFiles],
      counters: { ...this.counters, spares: this.pool.spareCount() },
      fault: this.faults.fault ? this.faults.fault.message : undefined,
      fenced: this.fenceState?.code,
      recentSyncMsMax: this.commit.syncTimes.max() ?? 0,
    };
  }
}
