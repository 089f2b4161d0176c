/**
 * The segment pool: the live segments (oldest first, the last one active) with the handle on the active
 * file, the spare kept ready so that a roll never waits for a zero-fill, retention by whole segments (a
 * released file becomes the next spare without a zero-fill), and the quarantine files set aside. A part of
 * the flash log (flash-log.ts is its only importer); it asks the watermarks, through its host, whether a
 * segment may be released.
 */
import { LastgaspError, type Clock, type Logger } from '../util/index.ts';
import { CHECKPOINT_RECORD_BYTES, SEGMENT_HEADER_BYTES } from './format.ts';
import { invariant } from './invariants.ts';
import { ioError, type Counters, type ResolvedOptions } from './options.ts';
import type { RecoveredState } from './recovery.ts';
import { createSpare, newSegment, recycleSegment, segmentPath, type FillHold, type Segment, type Spare } from './segments.ts';
import type { Storage, StorageFile } from './storage/index.ts';
import type { SyncMode } from './types.ts';

/** One spare segment is kept ready so that a roll never waits for a zero-fill. */
const SPARES_MAX = 1;
/** How often a zero-fill held by the brownout flush looks again. */
const FILL_HOLD_POLL_MS = 10;

export interface SegmentPoolHost {
  readonly options: Readonly<ResolvedOptions>;
  readonly storage: Storage;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly counters: Counters;
  readonly saltSource: () => number;
  isClosed(): boolean;
  faulted(): boolean;
  /** A cut (quarantineAfter) is under way: it chose its segments by position, so none may leave meanwhile. */
  cutting(): boolean;
  syncMode(): SyncMode;
  /** Whether the watermarks let retention release a segment whose last entry is `lastSeq`. */
  releasable(lastSeq: number): boolean;
  /** Space was freed (or a spare job ended): writers held for space ask again. */
  spaceFreed(): void;
  /** A segment left the log: the read side closes any file it keeps open on it. */
  segmentReleased(segment: Segment): void;
}

export class SegmentPool {
  /** Oldest first; the last one is the active segment. */
  segments: Segment[] = [];
  /** Read-write handle on the active segment. */
  activeFile: StorageFile | undefined;
  /** Files of segments set aside (recovery, demotion), for status. */
  readonly quarantineFiles: string[] = [];
  private spares: Spare[] = [];
  private spareJob: Promise<void> | undefined;
  private spareError: LastgaspError | undefined;
  /** Someone waits for the running fill (a roll, whenSettled): no flush holds it then, nor a close ends it. */
  private fillAwaited = false;
  /** A close (or a fault's reopen) ends the running fill, unless someone waits for it. */
  private fillAbandoned = false;
  /** Wakes the running fill from its hold. */
  private wakeFill: (() => void) | undefined;
  private nextSegmentId = 1;
  /** Retention and spare preparation, one after the other. */
  private maintenance: Promise<void> = Promise.resolve();

  constructor(private readonly host: SegmentPoolHost) {}

  adopt(recovered: RecoveredState): void {
    this.segments = recovered.segments;
    this.activeFile = recovered.activeFile;
    this.spares = recovered.spares;
    this.nextSegmentId = Math.max(this.nextSegmentId, recovered.nextSegmentId);
    this.quarantineFiles.splice(0, this.quarantineFiles.length, ...recovered.quarantineFiles);
  }

  active(): Segment | undefined {
    return this.segments[this.segments.length - 1];
  }

  /** The first seq still in the log (`committed + 1` while it holds no segment). */
  firstSeq(committed: number): number {
    return this.segments.length > 0 ? this.segments[0]!.baseSeq : committed + 1;
  }

  /** The CRC seed records are sealed with as they are staged: the active segment's (resealed after a roll). */
  activeSeed(): number {
    const active = this.segments[this.segments.length - 1];
    return active ? active.seed : 0;
  }

  /** Make a spare the active segment, its first seq `baseSeq` (its head record goes out with the next write). */
  async roll(baseSeq: number): Promise<void> {
    const spare = await this.takeSpare();
    let file: StorageFile;
    try {
      file = await this.host.storage.open(spare.path, 'readwrite');
    } catch (error) {
      this.spares.unshift(spare);
      throw ioError(error, `opening segment ${spare.path}`);
    }
    const previous = this.activeFile;
    this.activeFile = file;
    this.segments.push(newSegment(spare, baseSeq));
    this.host.counters.rolls++;
    if (previous) await previous.close().catch(() => undefined);
  }

  /**
   * After the first write into a new segment: its head made the watermarks durable, so retention can now
   * release the oldest segment, and that file becomes the next spare without a zero-fill. Only if retention
   * frees nothing is a spare preallocated from scratch.
   */
  afterRoll(): void {
    this.maintenance = this.maintenance
      .then(() => this.runRetention())
      .then(() => this.ensureSpare())
      .catch((error: unknown) => this.host.logger.error('retention after a roll failed', { error }));
  }

  private async takeSpare(): Promise<Spare> {
    for (let attempt = 0; attempt < 2; attempt++) {
      const spare = this.spares.shift();
      if (spare) return spare;
      this.ensureSpare(true);
      this.awaitFill();
      if (this.spareJob) await this.spareJob;
    }
    const spare = this.spares.shift();
    if (spare) return spare;
    if (this.spareError) throw this.spareError;
    this.host.counters.fullRejections++;
    const { options } = this.host;
    throw new LastgaspError('LOG_FULL', `log ${options.dir} is full: no room under the quota of ${options.quotaBytes} bytes for a new segment`);
  }

  /**
   * Prepare a spare segment in the background if none is ready and the quota allows. Not while the log
   * syncs every batch at once (on battery, the brownout flush): the zero-fill of a whole segment competes
   * with the flush for the flash and the CPU (it overlapped every profiled drain, issue 12). A roll that
   * finds no spare then (`onDemand`) still prepares one, and the fill resumes when the sync mode is back.
   */
  ensureSpare(onDemand = false): void {
    const { host } = this;
    const { options } = host;
    if (this.spareJob || this.spares.length >= SPARES_MAX || host.isClosed()) return;
    if (!onDemand && host.syncMode() === 'immediate') return;
    if (this.bytesOnDisk() + options.segmentBytes > options.quotaBytes) return;
    const spare = this.nextSpare(options.segmentBytes);
    this.fillAwaited = onDemand;
    this.fillAbandoned = false;
    const job = createSpare(host.storage, options.dir, spare, host.clock.nowMs(), this.fillHold()).then(
      async (ready) => {
        if (!ready) {
          await host.storage.unlink(`${spare.path}.tmp`).catch(() => undefined);
          return;
        }
        this.spares.push(spare);
        this.spareError = undefined;
        host.counters.sparesCreated++;
      },
      async (error: unknown) => {
        this.spareError = ioError(error, `preallocating segment ${spare.path}`);
        host.logger.error(this.spareError.message, { segment: spare.id });
        await host.storage.unlink(`${spare.path}.tmp`).catch(() => undefined);
      },
    );
    this.spareJob = job.finally(() => {
      this.spareJob = undefined;
      host.spaceFreed();
    });
  }

  /**
   * A background fill under way stands still while the log flushes (immediate sync mode: on battery, the
   * flush needs the flash and the CPU; ensureSpare starts none then), unless something waits for it, and a
   * close ends it (the next open fills a spare again): a stop, at a brownout's end or not, waited for up to
   * 64 MiB of zeros. Polled on the process's own timers, not the log's clock: a clock a test moves by hand
   * would hold the fill.
   */
  private fillHold(): FillHold {
    const { host } = this;
    return {
      held: () => !this.fillAwaited && host.syncMode() === 'immediate',
      abandoned: () => this.fillAbandoned && !this.fillAwaited,
      wait: () =>
        new Promise<void>((resolve) => {
          const timer = setTimeout(() => this.wakeFill?.(), FILL_HOLD_POLL_MS);
          timer.unref?.();
          this.wakeFill = () => {
            this.wakeFill = undefined;
            clearTimeout(timer);
            resolve();
          };
        }),
    };
  }

  /** Something waits for the running fill: no hold from here on. */
  private awaitFill(): void {
    this.fillAwaited = true;
    this.wakeFill?.();
  }

  private nextSpare(segmentBytes: number): Spare {
    const id = this.nextSegmentId++;
    return { id, path: segmentPath(this.host.options.dir, id), salt: this.host.saltSource(), segmentBytes };
  }

  scheduleRetention(): void {
    if (this.segments.length < 2) return;
    if (!this.host.releasable(this.segments[0]!.lastSeq)) return;
    this.maintenance = this.maintenance.then(() => this.runRetention()).catch((error: unknown) => {
      this.host.logger.error('retention failed', { error });
    });
  }

  /** Whole segments only, and only when every entry in them is durably replicated and below the floor. */
  private async runRetention(): Promise<void> {
    const { host } = this;
    const { storage, options, counters } = host;
    let changed = false;
    while (this.segments.length > 1 && !host.isClosed() && !host.faulted() && !host.cutting() && host.releasable(this.segments[0]!.lastSeq)) {
      const segment = this.segments.shift()!;
      host.segmentReleased(segment);
      changed = true;
      const recycle = this.spares.length < SPARES_MAX && !this.spareJob && segment.segmentBytes === options.segmentBytes;
      if (recycle) {
        const spare = this.nextSpare(segment.segmentBytes);
        try {
          await recycleSegment(storage, options.dir, segment.path, spare, host.clock.nowMs());
          this.spares.push(spare);
          counters.segmentsRecycled++;
        } catch (error) {
          host.logger.error(`recycling ${segment.path} failed`, { error });
          await storage.unlink(segment.path).catch(() => undefined);
          await storage.unlink(spare.path).catch(() => undefined);
          counters.segmentsDeleted++;
        }
      } else {
        await storage.unlink(segment.path);
        counters.segmentsDeleted++;
      }
    }
    if (changed) {
      await storage.syncDir(options.dir);
      this.ensureSpare();
      host.spaceFreed();
    }
  }

  /** Resolves once background work (retention, spare preparation) started so far has finished. */
  async whenSettled(): Promise<void> {
    for (;;) {
      const maintenance = this.maintenance;
      const spare = this.spareJob;
      this.awaitFill();
      await maintenance;
      if (spare) await spare;
      if (maintenance === this.maintenance && this.spareJob === undefined) return;
    }
  }

  /** Wait for the background work running now (not for what it may start); a fill nobody waits for ends. */
  async quiesce(): Promise<void> {
    await this.maintenance;
    this.fillAbandoned = true;
    this.wakeFill?.();
    if (this.spareJob) await this.spareJob;
  }

  /** Close the active segment's handle (close, a fault); the segments stay described. */
  async closeActive(): Promise<void> {
    const file = this.activeFile;
    this.activeFile = undefined;
    if (file) await file.close().catch(() => undefined);
  }

  /** The active segment's handle, opened on `path` if there is none (after a cut moved the active one aside). */
  async reopenActive(path: string): Promise<StorageFile> {
    return this.activeFile ?? (this.activeFile = await this.host.storage.open(path, 'readwrite'));
  }

  /** A cut kept the segments up to `target`; the later ones are in quarantine now. */
  cutBack(target: Segment): void {
    const keep = this.segments.indexOf(target);
    invariant(keep >= 0, `cut: segment ${target.path} is no longer in the log`);
    this.segments = this.segments.slice(0, keep + 1);
  }

  /** Bytes of synced records from `from` on (an estimate within one index step), 0 when `from` is past `committed`. */
  bytesFrom(from: number, committed: number): number {
    if (from > committed || this.segments.length === 0) return 0;
    let total = 0;
    for (let i = this.segments.length - 1; i >= 0; i--) {
      const segment = this.segments[i]!;
      if (segment.baseSeq > from) {
        total += segment.bytesUsed - SEGMENT_HEADER_BYTES;
        continue;
      }
      total += segment.bytesUsed - positionOf(segment, from);
      break;
    }
    return total;
  }

  /** Bytes that can still be appended without a new file beyond the quota, `pendingBytes` being staged. */
  spaceLeft(pendingBytes: number): number {
    const { options } = this.host;
    if (options.quotaBytes === Number.POSITIVE_INFINITY) return Number.POSITIVE_INFINITY;
    const active = this.segments[this.segments.length - 1];
    let left = active ? active.segmentBytes - active.bytesUsed - pendingBytes : 0;
    const allocated = this.bytesOnDisk();
    const capacity = options.segmentBytes - SEGMENT_HEADER_BYTES - 2 * CHECKPOINT_RECORD_BYTES;
    left += this.spares.length * capacity;
    left += Math.floor((options.quotaBytes - allocated) / options.segmentBytes) * capacity;
    return left;
  }

  bytesOnDisk(): number {
    let total = 0;
    for (const segment of this.segments) total += segment.segmentBytes;
    for (const spare of this.spares) total += spare.segmentBytes;
    if (this.spareJob) total += this.host.options.segmentBytes;
    return total;
  }

  spareCount(): number {
    return this.spares.length;
  }
}

/** The offset of a record at or before `seq` in `segment`: from its index, or interpolated for a sealed one not read yet. */
function positionOf(segment: Segment, seq: number): number {
  if (segment.indexed) return segment.index.lookup(seq, SEGMENT_HEADER_BYTES);
  const span = Math.max(1, segment.lastSeq - segment.baseSeq + 1);
  const fraction = Math.min(1, Math.max(0, (seq - segment.baseSeq) / span));
  return SEGMENT_HEADER_BYTES + Math.floor(fraction * (segment.bytesUsed - SEGMENT_HEADER_BYTES));
}
