/**
 * `lastgasp log inspect`: what the log directory holds, as recovery would see it, without writing anything:
 * each segment's state and seq range, the committed end, the watermarks of the last checkpoint, quarantine
 * files, space on disk, the lock holder and an interrupted demotion.
 */
import { CHECKPOINT_CLOSE, LOG_FORMAT_VERSION, RECORD_PAYLOAD_BYTES_MAX, RETENTION_FLOOR_NONE, SEGMENT_HEADER_BYTES, saltSeed, type CheckpointState } from '../format.ts';
import { DEMOTION_INTENT_FILE } from '../demotion.ts';
import { readDirLock } from '../lock.ts';
import { walkChain } from '../probe.ts';
import { ChunkReader } from '../scan.ts';
import { createNodeStorage, type Storage } from '../storage/index.ts';
import { activeIndexOf, surveyLog, type SurveyedSegment } from './survey.ts';

export interface SegmentReport {
  readonly file: string;
  readonly id: number;
  /** active: the newest segment holding records; sealed: an older one; spare: preallocated, never used; damaged: unreadable header or head. */
  readonly state: 'active' | 'sealed' | 'spare' | 'damaged';
  readonly fileBytes: number;
  readonly firstSeq: number;
  /** 0 while the segment holds no entry. */
  readonly lastSeq: number;
  readonly bytesUsed: number;
  readonly epoch: number;
  readonly problem?: string;
}

export interface InspectReport {
  readonly dir: string;
  readonly formatVersion: number;
  readonly firstSeq: number;
  readonly committed: number;
  readonly epoch: number;
  readonly watermarks: { replicated: number; replicaAcked: number; retentionFloor: number | null };
  readonly cleanClose: boolean;
  readonly segments: SegmentReport[];
  readonly quarantine: Array<{ file: string; bytes: number }>;
  readonly space: { segmentBytes: number; spareBytes: number; quarantineBytes: number; totalBytes: number; usedBytes: number };
  /** The process that holds (or last held) the directory, and whether it still runs. */
  readonly lock: { pid: number; host: string; sinceMs: number; released: boolean; alive: boolean } | null;
  /** A demotion was interrupted; the next open finishes it. */
  readonly demotionPending: boolean;
}

/** What the walk of the active segment found: the log's end and its last checkpoint. */
interface LogEnd {
  committed: number;
  epoch: number;
  state: CheckpointState | undefined;
  cleanClose: boolean;
}

export async function inspectLog(dir: string, storage: Storage = createNodeStorage()): Promise<InspectReport> {
  const { probes, quarantine } = await surveyLog(storage, dir);
  const activeIndex = activeIndexOf(probes);
  const segments: SegmentReport[] = [];
  const end: LogEnd = { committed: 0, epoch: 1, state: undefined, cleanClose: false };
  for (let i = 0; i < probes.length; i++) {
    const p = probes[i]!;
    const next = probes[i + 1];
    if (!p.head || !p.header) {
      const spare = i > activeIndex && p.header !== undefined && p.headZero && !p.problem;
      segments.push({ file: p.path, id: p.id, state: spare ? 'spare' : 'damaged', fileBytes: p.size, firstSeq: 0, lastSeq: 0, bytesUsed: 0, epoch: 0, ...(p.problem ? { problem: p.problem } : {}) });
      continue;
    }
    const firstSeq = p.head.seq + 1;
    if (i < activeIndex && next?.head) {
      const lastSeq = next.head.seq;
      segments.push({ file: p.path, id: p.id, state: 'sealed', fileBytes: p.size, firstSeq, lastSeq: lastSeq >= firstSeq ? lastSeq : 0, bytesUsed: next.head.state.prevBytesUsed, epoch: p.head.state.epoch });
      continue;
    }
    segments.push(await inspectTail(storage, p, i === activeIndex, end));
  }
  return report(dir, storage, segments, quarantine, end);
}

/** The active segment: follow its records to the end, as recovery would, without writing anything. */
async function inspectTail(storage: Storage, p: SurveyedSegment, active: boolean, end: LogEnd): Promise<SegmentReport> {
  const file = await storage.open(p.path, 'read');
  try {
    const reader = new ChunkReader(RECORD_PAYLOAD_BYTES_MAX, 256 * 1024);
    const head = p.head!;
    const chain = await walkChain(file, reader, saltSeed(p.header!.salt), SEGMENT_HEADER_BYTES, p.size, RECORD_PAYLOAD_BYTES_MAX, head);
    end.committed = chain.lastSeq;
    end.epoch = chain.epoch;
    end.state = chain.state;
    end.cleanClose = chain.lastKind === CHECKPOINT_CLOSE;
    const firstSeq = head.seq + 1;
    const lastSeq = chain.lastSeq >= firstSeq ? chain.lastSeq : 0;
    return { file: p.path, id: p.id, state: active ? 'active' : 'sealed', fileBytes: p.size, firstSeq, lastSeq, bytesUsed: chain.end, epoch: chain.epoch };
  } finally {
    await file.close();
  }
}

async function report(dir: string, storage: Storage, segments: SegmentReport[], quarantine: InspectReport['quarantine'], end: LogEnd): Promise<InspectReport> {
  const { committed, state } = end;
  const live = segments.filter((s) => s.state === 'active' || s.state === 'sealed');
  const holder = await readDirLock(storage, dir);
  const demotionPending = (await storage.list(dir)).includes(DEMOTION_INTENT_FILE);
  const sum = (list: Array<{ fileBytes?: number; bytes?: number }>) => list.reduce((total, s) => total + (s.fileBytes ?? s.bytes ?? 0), 0);
  const segmentBytes = sum(live);
  const spareBytes = sum(segments.filter((s) => s.state === 'spare'));
  const quarantineBytes = sum(quarantine);
  return {
    dir,
    formatVersion: LOG_FORMAT_VERSION,
    firstSeq: live.length > 0 ? live[0]!.firstSeq : committed + 1,
    committed,
    epoch: end.epoch,
    watermarks: {
      replicated: Math.min(state?.replicated ?? 0, committed),
      replicaAcked: Math.min(state?.replicaAcked ?? 0, committed),
      retentionFloor: state && state.retentionFloor !== RETENTION_FLOOR_NONE ? state.retentionFloor : null,
    },
    cleanClose: end.cleanClose,
    segments,
    quarantine,
    space: {
      segmentBytes,
      spareBytes,
      quarantineBytes,
      totalBytes: segmentBytes + spareBytes + quarantineBytes + sum(segments.filter((s) => s.state === 'damaged')),
      usedBytes: live.reduce((total, s) => total + s.bytesUsed, 0),
    },
    lock: holder ? { pid: holder.pid, host: holder.host, sinceMs: holder.sinceMs, released: holder.released === true, alive: holder.alive } : null,
    demotionPending,
  };
}
