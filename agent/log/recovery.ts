/**
 * Recovery: turn whatever a crash left in the directory into a gap-free log, from the last checkpoint.
 *
 * Segments before the newest one were fully synced before the next was started, and each newer segment's
 * head checkpoint records where its predecessor ended, so only the active (newest) segment is scanned;
 * older ones are checked by their header and head record alone. In the active segment the scan stops at the
 * first record that does not decode or continue the seq; if a valid record of this segment's life follows
 * later, the break was corruption in the middle and the rest is moved to a quarantine file; otherwise it is
 * a torn tail. Either way the region after the end is zeroed, so that nothing torn can ever be read back.
 * Files and the directory are fsynced before anything is read (TigerBeetle's rule: decide only on durable
 * bytes).
 */
import { systemErrorCode, type Clock, type Logger } from '../util/index.ts';
import {
  BATCH_BYTES_MAX,
  CHECKPOINT_CLOSE,
  CHECKPOINT_RECORD_BYTES,
  RETENTION_FLOOR_NONE,
  SEGMENT_HEADER_BYTES,
  isQuarantineFileName,
  parseSegmentFileName,
  saltSeed,
  type CheckpointState,
} from './format.ts';
import { quarantineFileName, resumeDemotion } from './demotion.ts';
import { assertWriteRange } from './invariants.ts';
import { probeSegment, walkChain, type ChainEnd, type SegmentProbe } from './probe.ts';
import { ChunkReader, lastNonZeroEnd, surveyBreak, type BreakSurvey } from './scan.ts';
import { SeqIndex, copyAside, segmentPath, writeSpareHeader, zeroRange, type Segment, type Spare } from './segments.ts';
import type { Storage, StorageFile } from './storage/index.ts';

export interface RecoverContext {
  readonly storage: Storage;
  readonly dir: string;
  readonly payloadBytesMax: number;
  readonly logger: Logger;
  readonly clock: Clock;
  readonly randomSalt: () => number;
  /**
   * After an fdatasync fault: the last position known durable. Anything past it is treated as torn even if the
   * page cache still shows it, because Linux may have dropped the failed pages (fsyncgate).
   */
  readonly durableHint?: { segmentId: number; offset: number };
}

export interface RecoveredState {
  /** Oldest first; the last one is the active segment. Empty for a new log. */
  readonly segments: Segment[];
  /** Open read-write handle on the active segment. */
  readonly activeFile: StorageFile | undefined;
  readonly spares: Spare[];
  readonly nextSegmentId: number;
  readonly committed: number;
  readonly epoch: number;
  readonly replicated: number;
  readonly replicaAcked: number;
  readonly retentionFloor: number;
  readonly tornBytes: number;
  readonly quarantinedRecords: number;
  readonly quarantineFile: string | undefined;
  readonly quarantineFiles: string[];
  /** True when the log ended with a clean-close checkpoint. */
  readonly cleanClose: boolean;
}

/** A probed segment with the read-write handle recovery keeps on it until it is settled. */
interface OpenProbe extends SegmentProbe {
  readonly file: StorageFile;
}

export async function recoverLog(ctx: RecoverContext): Promise<RecoveredState> {
  return new RecoveryWalk(ctx).run();
}

/**
 * One recovery, as a walk over the probes of the directory's segments: finish an interrupted demotion, probe
 * every segment, pick the active one, settle the files after it (spares or damage) and before it (the chain
 * of sealed segments), then scan the active segment's tail.
 */
class RecoveryWalk {
  private dirChanged = false;
  private quarantineFiles: string[] = [];
  private quarantinedRecords = 0;
  private quarantineFile: string | undefined;
  private readonly spares: Spare[] = [];

  constructor(private readonly ctx: RecoverContext) {}

  async run(): Promise<RecoveredState> {
    const { storage, dir } = this.ctx;
    const names = await this.prepareDir();
    const ids = names.map(parseSegmentFileName).filter((id): id is number => id !== undefined).sort((a, b) => a - b);
    this.quarantineFiles = names.filter(isQuarantineFileName);
    const probes: OpenProbe[] = [];
    for (const id of ids) probes.push(await this.probe(id));
    const nextSegmentId = (ids.length > 0 ? ids[ids.length - 1]! : 0) + 1;
    const activeIndex = this.activeIndexOf(probes);
    await this.settleNewer(probes.slice(activeIndex + 1));
    if (activeIndex < 0) {
      if (this.dirChanged) await storage.syncDir(dir);
      return this.state([], undefined, nextSegmentId, { lastSeq: 0, epoch: 1, state: undefined, tornBytes: 0, cleanClose: false });
    }
    const firstIndex = await this.settleOlder(probes, activeIndex);
    const segments = await this.chain(probes, firstIndex, activeIndex);
    const activeProbe = probes[activeIndex]!;
    const tail = await this.scanActive(segments[segments.length - 1]!, activeProbe);
    if (this.dirChanged) await storage.syncDir(dir);
    return this.state(segments, activeProbe.file, nextSegmentId, tail);
  }

  /** Sync the directory, finish an interrupted demotion and drop cut-short spares; returns the names left. */
  private async prepareDir(): Promise<string[]> {
    const { storage, dir, logger } = this.ctx;
    await storage.mkdirp(dir);
    await storage.syncDir(dir);
    // A demotion a crash interrupted is finished before anything is read, so that its half-moved entries are
    // never mistaken for a torn tail or mid-log corruption.
    await resumeDemotion(storage, dir, await storage.list(dir), logger);
    const names = await storage.list(dir);
    for (const name of names) {
      // A spare whose preallocation was cut short; it never held data.
      if (name.endsWith('.log.tmp')) {
        await storage.unlink(`${dir}/${name}`).catch((error: unknown) => {
          if (systemErrorCode(error) !== 'ENOENT') throw error;
        });
      }
    }
    return names;
  }

  /** Open a segment read-write and probe it, after an fsync: decide only on durable bytes. */
  private async probe(id: number): Promise<OpenProbe> {
    const path = segmentPath(this.ctx.dir, id);
    const file = await this.ctx.storage.open(path, 'readwrite');
    await file.sync();
    return { ...(await probeSegment(file, path, id)), file };
  }

  /** The active segment is the newest with a valid header and head checkpoint (and not past a fault's durable point). */
  private activeIndexOf(probes: readonly OpenProbe[]): number {
    const hint = this.ctx.durableHint;
    for (let i = probes.length - 1; i >= 0; i--) {
      const probe = probes[i]!;
      if (probe.head && probe.header && (!hint || probe.id <= hint.segmentId)) return i;
    }
    return -1;
  }

  private async quarantine(probe: OpenProbe, why: string): Promise<void> {
    const name = quarantineFileName(probe.id, 0, this.ctx.clock.nowMs());
    await probe.file.close();
    await this.ctx.storage.rename(probe.path, `${this.ctx.dir}/${name}`);
    this.quarantineFiles.push(name);
    this.dirChanged = true;
    this.ctx.logger.error(`segment ${probe.path} set aside as ${name}: ${why}`, { segment: probe.id });
  }

  /** Files newer than the active segment: spares, interrupted recycles, torn segment starts, or damaged segments. */
  private async settleNewer(probes: readonly OpenProbe[]): Promise<void> {
    const hint = this.ctx.durableHint;
    for (const probe of probes) {
      const reusable =
        probe.header !== undefined &&
        probe.size === probe.header.segmentBytes &&
        (probe.headZero || probe.headerProblem !== undefined || (hint !== undefined && probe.id > hint.segmentId));
      if (reusable && probe.header) {
        // Re-salt: whatever a crash left after the head can then never validate.
        const spare: Spare = { id: probe.id, path: probe.path, salt: this.ctx.randomSalt(), segmentBytes: probe.header.segmentBytes };
        await writeSpareHeader(probe.file, spare, this.ctx.clock.nowMs());
        await probe.file.close();
        this.spares.push(spare);
      } else if (probe.header === undefined && probe.headZero) {
        await probe.file.close();
        await this.ctx.storage.unlink(probe.path);
        this.dirChanged = true;
      } else {
        await this.quarantine(probe, probe.headerProblem ?? 'its head checkpoint does not decode (a torn segment start or corruption)');
        this.quarantineFile = this.quarantineFiles[this.quarantineFiles.length - 1];
      }
    }
  }

  /** Older segments: each head must name its predecessor; the log is the newest unbroken chain. Returns its first index. */
  private async settleOlder(probes: readonly OpenProbe[], activeIndex: number): Promise<number> {
    let firstIndex = activeIndex;
    while (firstIndex > 0) {
      const newer = probes[firstIndex]!;
      const older = probes[firstIndex - 1]!;
      if (older.head && older.header && newer.head!.state.prevSegmentId === older.id) firstIndex--;
      else break;
    }
    for (let i = 0; i < firstIndex; i++) {
      const probe = probes[i]!;
      if (probe.header === undefined && probe.headZero && probe.size < SEGMENT_HEADER_BYTES + CHECKPOINT_RECORD_BYTES) {
        await probe.file.close();
        await this.ctx.storage.unlink(probe.path);
        this.dirChanged = true;
      } else {
        await this.quarantine(probe, 'it is not linked to the segments after it (damaged header or head, or a gap)');
      }
    }
    return firstIndex;
  }

  /** The segments of the chain, oldest first: a sealed one ends where the next one's head says. */
  private async chain(probes: readonly OpenProbe[], firstIndex: number, activeIndex: number): Promise<Segment[]> {
    const segments: Segment[] = [];
    for (let i = firstIndex; i <= activeIndex; i++) {
      const probe = probes[i]!;
      const header = probe.header!;
      const next = i < activeIndex ? probes[i + 1]!.head! : undefined;
      segments.push({
        id: probe.id,
        path: probe.path,
        salt: header.salt,
        seed: saltSeed(header.salt),
        segmentBytes: header.segmentBytes,
        baseSeq: probe.head!.seq + 1,
        lastSeq: next ? next.seq : probe.head!.seq,
        bytesUsed: next ? next.state.prevBytesUsed : SEGMENT_HEADER_BYTES + CHECKPOINT_RECORD_BYTES,
        index: new SeqIndex(),
        indexed: false,
      });
      if (i < activeIndex) await probe.file.close();
    }
    return segments;
  }

  /**
   * Follow the active segment's chain to its end (indexing it), then settle what lies after: a later valid
   * record means corruption in the middle (set aside), otherwise a torn tail; either way the region is zeroed.
   */
  private async scanActive(active: Segment, probe: OpenProbe): Promise<ActiveTail> {
    const { ctx } = this;
    const hint = ctx.durableHint;
    const reader = new ChunkReader(ctx.payloadBytesMax);
    const limit = hint && hint.segmentId === active.id ? Math.min(hint.offset, active.segmentBytes) : active.segmentBytes;
    const chain = await walkChain(probe.file, reader, active.seed, SEGMENT_HEADER_BYTES, limit, ctx.payloadBytesMax, probe.head!, (seq, offset) =>
      active.index.add(seq, offset),
    );
    const end = chain.end;
    active.lastSeq = chain.lastSeq;
    active.bytesUsed = end;
    active.indexed = true;
    const cleanClose = chain.lastKind === CHECKPOINT_CLOSE && !hint;
    let tornBytes = 0;
    if (!cleanClose && end < active.segmentBytes) {
      const after = hint ? undefined : await surveyBreak(probe.file, reader, active.seed, end, active.segmentBytes, ctx.payloadBytesMax, chain.lastSeq, BATCH_BYTES_MAX);
      let zeroTo: number;
      if (after && after.runs.length > 0) zeroTo = await this.setAsideAfter(active, probe.file, reader, end, after, chain);
      else {
        zeroTo = await lastNonZeroEnd(probe.file, reader, end, Math.min(active.segmentBytes, end + BATCH_BYTES_MAX));
        tornBytes = zeroTo - end;
        if (tornBytes > 0) ctx.logger.warn(`torn tail in ${active.path}: ${tornBytes} bytes after offset ${end} (seq ${chain.lastSeq}) zeroed`);
      }
      if (zeroTo > end) {
        assertWriteRange(end, zeroTo - end, active.segmentBytes, true, `recovery: zeroing the tail of ${active.path}`);
        await zeroRange(probe.file, end, zeroTo);
        await probe.file.datasync();
      }
    }
    return { lastSeq: chain.lastSeq, epoch: chain.epoch, state: chain.state, tornBytes, cleanClose };
  }

  /**
   * Valid records after the break: copy `[end, the last run's end)` aside, so that nothing that may have been
   * acknowledged is lost, and report it: as a write torn by the power cut (warning: its entries were almost
   * certainly never acknowledged, since the acknowledgement waits for the fdatasync that never returned) or
   * as corruption in the middle (error). Returns where zeroing stops.
   */
  private async setAsideAfter(active: Segment, file: StorageFile, reader: ChunkReader, end: number, after: BreakSurvey, chain: ChainEnd): Promise<number> {
    const { ctx } = this;
    const last = after.runs.at(-1)!;
    const count = after.entries;
    const name = quarantineFileName(active.id, end, ctx.clock.nowMs());
    await copyAside(ctx.storage, file, `${ctx.dir}/${name}`, end, last.end, reader);
    this.quarantineFiles.push(name);
    this.quarantineFile = name;
    this.quarantinedRecords += count;
    this.dirChanged = true;
    const details = { segment: active.id, offset: end, reason: chain.reason, runs: after.runs.length, tornWrite: after.tornWrite };
    if (after.tornWrite) {
      ctx.logger.warn(
        `torn write in ${active.path} at offset ${end} (after seq ${chain.lastSeq}): sectors of the last write never reached the disk while later ones did; its ${count} later entries (most likely never acknowledged) set aside in ${name}`,
        details,
      );
    } else {
      ctx.logger.error(`corrupt record in ${active.path} at offset ${end} (after seq ${chain.lastSeq}): ${count} later entries set aside in ${name}`, details);
    }
    return Math.min(active.segmentBytes, last.end + BATCH_BYTES_MAX);
  }

  private state(segments: Segment[], activeFile: StorageFile | undefined, nextSegmentId: number, tail: ActiveTail): RecoveredState {
    const committed = tail.lastSeq;
    return {
      segments,
      activeFile,
      spares: this.spares,
      nextSegmentId,
      committed,
      epoch: tail.epoch,
      replicated: Math.min(tail.state?.replicated ?? 0, committed),
      replicaAcked: Math.min(tail.state?.replicaAcked ?? 0, committed),
      retentionFloor: tail.state?.retentionFloor ?? RETENTION_FLOOR_NONE,
      tornBytes: tail.tornBytes,
      quarantinedRecords: this.quarantinedRecords,
      quarantineFile: this.quarantineFile,
      quarantineFiles: this.quarantineFiles,
      cleanClose: tail.cleanClose,
    };
  }
}

/** What the scan of the active segment found; `state` is undefined for a log with no segment. */
interface ActiveTail {
  readonly lastSeq: number;
  readonly epoch: number;
  readonly state: CheckpointState | undefined;
  readonly tornBytes: number;
  readonly cleanClose: boolean;
}
