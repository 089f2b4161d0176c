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
  CHECKPOINT_HEAD,
  CHECKPOINT_RECORD_BYTES,
  RECORD_TYPE_CHECKPOINT,
  RECORD_TYPE_ENTRY,
  RETENTION_FLOOR_NONE,
  SEGMENT_HEADER_BYTES,
  decodeCheckpointPayload,
  decodeRecord,
  decodeSegmentHeader,
  isQuarantineFileName,
  parseSegmentFileName,
  saltSeed,
  type CheckpointState,
  type SegmentHeader,
} from './format.ts';
import { ChunkReader, findNextValid, lastNonZeroEnd, scanRecords } from './scan.ts';
import { quarantineFileName, resumeDemotion } from './demotion.ts';
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

interface Probe {
  readonly id: number;
  readonly path: string;
  readonly file: StorageFile;
  readonly size: number;
  readonly header: SegmentHeader | undefined;
  readonly headerProblem: string | undefined;
  /** The head checkpoint (seq and state) if the head slot holds a valid one. */
  readonly head: { seq: number; state: CheckpointState } | undefined;
  readonly headZero: boolean;
}

async function probeSegment(storage: Storage, dir: string, id: number, payloadBytesMax: number): Promise<Probe> {
  const path = segmentPath(dir, id);
  const file = await storage.open(path, 'readwrite');
  await file.sync();
  const size = await file.size();
  const block = new Uint8Array(SEGMENT_HEADER_BYTES + CHECKPOINT_RECORD_BYTES);
  let got = 0;
  while (got < block.length) {
    const n = await file.read(block, got, block.length - got, got);
    if (n <= 0) break;
    got += n;
  }
  const decoded = decodeSegmentHeader(block.subarray(0, got));
  const headZero = block.subarray(SEGMENT_HEADER_BYTES).every((byte) => byte === 0);
  if (!decoded.ok) return { id, path, file, size, header: undefined, headerProblem: decoded.reason, head: undefined, headZero };
  const header = decoded.header;
  if (header.segmentId !== id) {
    return { id, path, file, size, header, headerProblem: `header names segment ${header.segmentId}`, head: undefined, headZero };
  }
  const view = new DataView(block.buffer);
  const record = decodeRecord(block, view, SEGMENT_HEADER_BYTES, got, saltSeed(header.salt), 0);
  let head: Probe['head'];
  if (record.ok && record.type === RECORD_TYPE_CHECKPOINT) {
    const state = decodeCheckpointPayload(view, SEGMENT_HEADER_BYTES + 24);
    if (state.kind === CHECKPOINT_HEAD) head = { seq: record.seq, state };
  }
  return { id, path, file, size, header, headerProblem: undefined, head, headZero };
}

const quarantineName = quarantineFileName;

export async function recoverLog(ctx: RecoverContext): Promise<RecoveredState> {
  const { storage, dir, logger } = ctx;
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
  const ids = names.map(parseSegmentFileName).filter((id): id is number => id !== undefined).sort((a, b) => a - b);
  const quarantineFiles = names.filter(isQuarantineFileName);
  const probes: Probe[] = [];
  for (const id of ids) probes.push(await probeSegment(storage, dir, id, ctx.payloadBytesMax));
  const nextSegmentId = (ids.length > 0 ? ids[ids.length - 1]! : 0) + 1;
  const hint = ctx.durableHint;
  let dirChanged = false;
  const quarantine = async (probe: Probe, why: string) => {
    const name = quarantineName(probe.id, 0, ctx.clock.nowMs());
    await probe.file.close();
    await storage.rename(probe.path, `${dir}/${name}`);
    quarantineFiles.push(name);
    dirChanged = true;
    logger.error(`segment ${probe.path} set aside as ${name}: ${why}`, { segment: probe.id });
  };

  // The active segment is the newest with a valid header and head checkpoint (and not past a fault's durable point).
  let activeIndex = -1;
  for (let i = probes.length - 1; i >= 0; i--) {
    const probe = probes[i]!;
    if (probe.head && probe.header && (!hint || probe.id <= hint.segmentId)) {
      activeIndex = i;
      break;
    }
  }

  // Newer files: spares, interrupted recycles, torn segment starts, or damaged segments.
  const spares: Spare[] = [];
  let quarantinedRecords = 0;
  let quarantineFile: string | undefined;
  for (const probe of probes.slice(activeIndex + 1)) {
    const reusable =
      probe.header !== undefined &&
      probe.size === probe.header.segmentBytes &&
      (probe.headZero || probe.headerProblem !== undefined || (hint !== undefined && probe.id > hint.segmentId));
    if (reusable && probe.header) {
      // Re-salt: whatever a crash left after the head can then never validate.
      const spare: Spare = { id: probe.id, path: probe.path, salt: ctx.randomSalt(), segmentBytes: probe.header.segmentBytes };
      await writeSpareHeader(probe.file, spare, ctx.clock.nowMs());
      await probe.file.close();
      spares.push(spare);
    } else if (probe.header === undefined && probe.headZero) {
      await probe.file.close();
      await storage.unlink(probe.path);
      dirChanged = true;
    } else {
      await quarantine(probe, probe.headerProblem ?? 'its head checkpoint does not decode (a torn segment start or corruption)');
      quarantineFile = quarantineFiles[quarantineFiles.length - 1];
    }
  }

  if (activeIndex < 0) {
    if (dirChanged) await storage.syncDir(dir);
    return {
      segments: [],
      activeFile: undefined,
      spares,
      nextSegmentId,
      committed: 0,
      epoch: 1,
      replicated: 0,
      replicaAcked: 0,
      retentionFloor: RETENTION_FLOOR_NONE,
      tornBytes: 0,
      quarantinedRecords,
      quarantineFile,
      quarantineFiles,
      cleanClose: false,
    };
  }

  // Older segments: each head must name its predecessor; the log is the newest unbroken chain.
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
      await storage.unlink(probe.path);
      dirChanged = true;
    } else {
      await quarantine(probe, 'it is not linked to the segments after it (damaged header or head, or a gap)');
    }
  }

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

  const active = segments[segments.length - 1]!;
  const activeProbe = probes[activeIndex]!;
  const file = activeProbe.file;
  const reader = new ChunkReader(ctx.payloadBytesMax);
  let state = activeProbe.head!.state;
  let lastSeq = activeProbe.head!.seq;
  let epoch = state.epoch;
  let lastKind = state.kind;
  const limit = hint && hint.segmentId === active.id ? Math.min(hint.offset, active.segmentBytes) : active.segmentBytes;
  const scan = await scanRecords(file, reader, active.seed, SEGMENT_HEADER_BYTES, limit, ctx.payloadBytesMax, (record, bytes, view, at, offset) => {
    if (record.type === RECORD_TYPE_ENTRY) {
      if (record.seq !== lastSeq + 1) return false;
      lastSeq = record.seq;
      if (record.epoch > epoch) epoch = record.epoch;
      active.index.add(record.seq, offset);
      lastKind = 0;
    } else {
      if (record.seq !== lastSeq) return false;
      state = decodeCheckpointPayload(view, at + 24);
      if (state.epoch > epoch) epoch = state.epoch;
      lastKind = state.kind;
    }
    return true;
  });
  const end = scan.end;
  active.lastSeq = lastSeq;
  active.bytesUsed = end;
  active.indexed = true;

  let tornBytes = 0;
  let zeroFrom = end;
  let zeroTo = end;
  const cleanClose = lastKind === CHECKPOINT_CLOSE && !hint;
  if (!cleanClose && end < active.segmentBytes) {
    const next = hint ? undefined : await findNextValid(file, reader, active.seed, end, active.segmentBytes, ctx.payloadBytesMax, lastSeq);
    if (next !== undefined) {
      // Corruption in the middle: follow the chain that resumes at `next` and set everything from `end` to its end aside.
      let count = 0;
      let runSeq = -1;
      const run = await scanRecords(file, reader, active.seed, next, active.segmentBytes, ctx.payloadBytesMax, (record) => {
        if (record.type === RECORD_TYPE_ENTRY) {
          if (runSeq >= 0 && record.seq !== runSeq + 1) return false;
          runSeq = record.seq;
          count++;
        }
        return true;
      });
      const name = quarantineName(active.id, end, ctx.clock.nowMs());
      await copyAside(storage, file, `${dir}/${name}`, end, run.end, reader);
      quarantineFiles.push(name);
      quarantineFile = name;
      quarantinedRecords += count;
      dirChanged = true;
      zeroTo = Math.min(active.segmentBytes, run.end + BATCH_BYTES_MAX);
      logger.error(`corrupt record in ${active.path} at offset ${end} (after seq ${lastSeq}): ${count} later entries set aside in ${name}`, {
        segment: active.id,
        offset: end,
        reason: scan.reason,
      });
    } else {
      zeroTo = await lastNonZeroEnd(file, reader, end, Math.min(active.segmentBytes, end + BATCH_BYTES_MAX));
      tornBytes = zeroTo - end;
      if (tornBytes > 0) logger.warn(`torn tail in ${active.path}: ${tornBytes} bytes after offset ${end} (seq ${lastSeq}) zeroed`);
    }
  }
  if (zeroTo > zeroFrom) {
    await zeroRange(file, zeroFrom, zeroTo);
    await file.datasync();
  }
  if (dirChanged) await storage.syncDir(dir);

  const committed = lastSeq;
  return {
    segments,
    activeFile: file,
    spares,
    nextSegmentId,
    committed,
    epoch,
    replicated: Math.min(state.replicated, committed),
    replicaAcked: Math.min(state.replicaAcked, committed),
    retentionFloor: state.retentionFloor,
    tornBytes,
    quarantinedRecords,
    quarantineFile,
    quarantineFiles,
    cleanClose,
  };
}
