/**
 * The cut: a running log set back to a seq (a demotion's `quarantineAfter`). It stops new appends, lets the
 * staged ones be written, finds the record boundary after the seq, runs demotion.ts's crash-consistent
 * steps on disk (copy aside, commit an intent, apply, finish), and moves the segment pool, the watermarks
 * and the group commit back to the cut. demotion.ts holds the steps on disk that recovery also replays; this
 * holds what only the live log does around them. A part of the flash log (flash-log.ts is its only
 * importer), reaching the other parts through the views below.
 */
import { LastgaspError, type Clock, type Logger } from '../util/index.ts';
import { applyDemotion, demotionFiles, finishDemotion, prepareDemotion, writeDemotionIntent, type DemotionPlan } from './demotion.ts';
import { CHECKPOINT_RECORD_BYTES, RECORD_TYPE_ENTRY, SEGMENT_HEADER_BYTES } from './format.ts';
import type { Counters, ResolvedOptions } from './options.ts';
import { ChunkReader, scanRecords } from './scan.ts';
import type { Segment } from './segments.ts';
import type { Storage, StorageFile } from './storage/index.ts';
import type { GroupCommit } from './group-commit.ts';
import type { SegmentPool } from './segment-pool.ts';
import type { WatermarkBook } from './watermarks.ts';

export interface CutHost {
  readonly options: Readonly<ResolvedOptions>;
  readonly storage: Storage;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly counters: Counters;
  readonly commit: Pick<GroupCommit, 'pause' | 'resume' | 'busy' | 'whenIdle' | 'hasWork' | 'scheduleFlush' | 'dropStaged' | 'nextSeq'>;
  readonly pool: Pick<SegmentPool, 'segments' | 'quarantineFiles' | 'closeActive' | 'reopenActive' | 'cutBack' | 'firstSeq' | 'scheduleRetention'>;
  readonly marks: Pick<WatermarkBook, 'committed' | 'epoch' | 'replicated' | 'replicaAcked' | 'retentionFloor' | 'cutTo'>;
  /** Why the log refuses work now (closed, faulted), or undefined. */
  refuse(): LastgaspError | undefined;
  faulted(): boolean;
  /** Seqs after the cut will be written again with other contents: the read side forgets what it kept. */
  forgetReads(): void;
  /** A failure between two steps on disk: reopen and let recovery finish (or drop) the demotion. */
  faultInFlight(error: unknown, what: string): LastgaspError;
}

export class Cut {
  /** A demotion is under way: appends are refused until it ends. */
  demoting = false;

  constructor(private readonly host: CutHost) {}

  /** `quarantineAfter`: everything after `seq` leaves the log for quarantine files. */
  async quarantineAfter(seq: number): Promise<{ records: number; file: string | undefined }> {
    const { host } = this;
    const refused = host.refuse();
    if (refused) throw refused;
    // New appends are refused from here on: the ones already staged are written first, and under a steady
    // stream of appends the wait for an idle writer would otherwise never end.
    this.demoting = true;
    host.commit.pause();
    try {
      while (host.commit.busy()) {
        host.commit.resume();
        await host.commit.whenIdle();
        host.commit.pause();
      }
      if (host.faulted()) throw host.refuse()!;
      if (seq >= host.marks.committed) return { records: 0, file: undefined };
      const firstSeq = host.pool.firstSeq(host.marks.committed);
      if (seq < firstSeq - 1) {
        throw new LastgaspError('LOG_SEQ', `cannot keep the log up to seq ${seq}: retention already removed seqs below ${firstSeq}`, { seq, firstSeq });
      }
      return await this.cutAfter(seq);
    } finally {
      this.demoting = false;
      // Retention waited for the cut (it chose its segments by position); what it may release now, it does.
      host.pool.scheduleRetention();
      host.commit.resume();
      if (host.commit.hasWork()) host.commit.scheduleFlush();
    }
  }

  /**
   * Set aside everything after `seq` through the crash-consistent steps of demotion.ts: copy, commit an
   * intent, apply, update the state, delete the intent; only then may appends go on (they are paused).
   */
  private async cutAfter(seq: number): Promise<{ records: number; file: string | undefined }> {
    const { host } = this;
    const { pool, marks, storage } = host;
    const dir = host.options.dir;
    let keep = pool.segments.length - 1;
    while (keep > 0 && pool.segments[keep]!.baseSeq > seq + 1) keep--;
    const target = pool.segments[keep]!;
    const later = pool.segments.slice(keep + 1);
    const records = marks.committed - seq;
    // The active segment is among those moved aside: its handle goes, the cut segment's comes.
    if (later.length > 0) await pool.closeActive();
    let plan: DemotionPlan;
    try {
      const file = await pool.reopenActive(target.path);
      plan = {
        keepSeq: seq,
        segmentId: target.id,
        cutOffset: await this.cutOffset(file, target, seq),
        endOffset: target.bytesUsed,
        laterSegmentIds: later.map((segment) => segment.id),
        stampMs: host.clock.nowMs(),
        epoch: marks.epoch,
        replicated: Math.min(marks.replicated, seq),
        replicaAcked: Math.min(marks.replicaAcked, seq),
        retentionFloor: marks.retentionFloor,
        logFirstSeq: pool.firstSeq(marks.committed),
      };
      await prepareDemotion(storage, dir, file, plan, host.options.entryBytesMax);
      await writeDemotionIntent(storage, dir, plan);
      await applyDemotion(storage, dir, plan, host.logger, file);
    } catch (error) {
      throw host.faultInFlight(error, `demotion after seq ${seq} in ${dir}`);
    }
    this.settle(plan, target, seq);
    // The intent goes before any new record can be written at the cut: replaying it later would zero them.
    try {
      await finishDemotion(storage, dir);
    } catch (error) {
      throw host.faultInFlight(error, `finishing the demotion after seq ${seq} in ${dir}`);
    }
    const files = demotionFiles(plan);
    pool.quarantineFiles.push(...files);
    host.counters.quarantinedRecords += records;
    host.logger.warn(`demotion: ${records} entries after seq ${seq} set aside in ${files.join(', ')}`, { seq, records });
    return { records, file: files[files.length - 1] };
  }

  /** The cut is on disk: the pool, the group commit and the marks move back to it. */
  private settle(plan: DemotionPlan, target: Segment, seq: number): void {
    const { host } = this;
    const cut = plan.cutOffset;
    host.pool.cutBack(target);
    host.forgetReads();
    host.commit.dropStaged(new LastgaspError('LOG_SEQ', `log ${host.options.dir} was cut back to seq ${seq} by a demotion; appends staged meanwhile were not written`, { seq }));
    // The segment now ends with the plan's checkpoint at the cut.
    target.bytesUsed = cut + CHECKPOINT_RECORD_BYTES;
    target.lastSeq = seq;
    target.index.truncate(cut);
    host.counters.checkpoints++;
    host.marks.cutTo(seq, plan);
    host.commit.nextSeq = seq + 1;
  }

  /** Offset of the first entry after `seq` in `segment` (its end if there is none). */
  private async cutOffset(file: StorageFile, segment: Segment, seq: number): Promise<number> {
    const payloadBytesMax = this.host.options.entryBytesMax;
    const reader = new ChunkReader(payloadBytesMax);
    let cut = -1;
    // Only an index gives a record boundary to start from; a sealed segment not read yet is scanned whole.
    const from = segment.indexed ? segment.index.lookup(seq, SEGMENT_HEADER_BYTES) : SEGMENT_HEADER_BYTES;
    await scanRecords(file, reader, segment.seed, from, segment.bytesUsed, payloadBytesMax, (record, _b, _v, _at, offset) => {
      if (record.type === RECORD_TYPE_ENTRY && record.seq > seq) {
        cut = offset;
        return false;
      }
      return true;
    });
    return cut < 0 ? segment.bytesUsed : cut;
  }
}
