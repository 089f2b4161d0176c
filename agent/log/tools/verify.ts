/**
 * `lastgasp log verify`: read every record of every segment of the chain and check its CRC-32C and seq
 * continuity, read-only; the first bad record is reported by file and byte offset. The active segment's
 * unsynced tail (bytes after its last valid record with nothing valid beyond) is reported as pending, not
 * as damage, and so is the last write torn by a power cut (later records within one write of the break, after
 * sectors that were never written), with a note: the next open sets those records aside.
 */
import { systemErrorCode } from '../../util/index.ts';
import { BATCH_BYTES_MAX, RECORD_PAYLOAD_BYTES_MAX, SEGMENT_HEADER_BYTES, saltSeed } from '../format.ts';
import { readFully, walkChain } from '../probe.ts';
import { ChunkReader, surveyBreak } from '../scan.ts';
import { createNodeStorage, type Storage, type StorageFile } from '../storage/index.ts';
import { activeIndexOf, surveyLog, type SurveyedSegment } from './survey.ts';

export interface VerifyReport {
  readonly dir: string;
  readonly ok: boolean;
  readonly segmentsChecked: number;
  readonly entries: number;
  readonly checkpoints: number;
  readonly bytesChecked: number;
  readonly firstSeq: number;
  readonly lastSeq: number;
  readonly durationMs: number;
  /** The first problem found: file, byte offset, what was expected there. */
  readonly firstBad?: { file: string; offset: number; expectedSeq: number; reason: string };
  /** Bytes after the active segment's last valid record that are not zero (an in-flight write, or a torn tail recovery will cut). */
  readonly tailBytesPending: number;
  readonly notes: string[];
}

/** The running totals of one verification. */
interface Tally {
  entries: number;
  checkpoints: number;
  bytesChecked: number;
  segmentsChecked: number;
  tailBytesPending: number;
  firstBad: VerifyReport['firstBad'];
  notes: string[];
}

export async function verifyLog(dir: string, storage: Storage = createNodeStorage()): Promise<VerifyReport> {
  const started = performance.now();
  const { probes } = await surveyLog(storage, dir);
  const activeIndex = activeIndexOf(probes);
  const notes: string[] = [];
  const tally: Tally = { entries: 0, checkpoints: 0, bytesChecked: 0, segmentsChecked: 0, tailBytesPending: 0, firstBad: undefined, notes };
  let firstSeq = 0;
  let expected = -1;
  const reader = new ChunkReader(RECORD_PAYLOAD_BYTES_MAX);
  for (let i = 0; i <= activeIndex && !tally.firstBad; i++) {
    const p = probes[i]!;
    if (!p.head || !p.header) {
      tally.firstBad = { file: p.path, offset: p.problem?.includes('header') ? 0 : SEGMENT_HEADER_BYTES, expectedSeq: Math.max(expected, 1), reason: p.problem ?? 'no head checkpoint' };
      break;
    }
    const baseSeq = p.head.seq + 1;
    if (expected >= 0 && baseSeq !== expected) {
      tally.firstBad = { file: p.path, offset: SEGMENT_HEADER_BYTES, expectedSeq: expected, reason: `segment starts at seq ${baseSeq}, the previous one ended at ${expected - 1}` };
      break;
    }
    if (expected < 0) firstSeq = baseSeq;
    let file: StorageFile;
    try {
      file = await storage.open(p.path, 'read');
    } catch (error) {
      if (systemErrorCode(error) !== 'ENOENT') throw error;
      notes.push(`${p.path} was removed (retention) while verifying`);
      expected = -1;
      continue;
    }
    try {
      expected = await verifySegment(file, reader, p, i < activeIndex ? probes[i + 1]! : undefined, tally);
    } finally {
      await file.close();
    }
  }
  for (const p of probes.slice(activeIndex + 1)) {
    if (p.problem && !(p.header && p.headZero)) notes.push(`${p.path}: ${p.problem} (after the active segment; recovery sets it aside or reuses it)`);
  }
  const { firstBad } = tally;
  return {
    dir,
    ok: firstBad === undefined,
    segmentsChecked: tally.segmentsChecked,
    entries: tally.entries,
    checkpoints: tally.checkpoints,
    bytesChecked: tally.bytesChecked,
    firstSeq: activeIndex >= 0 ? firstSeq : 0,
    lastSeq: Math.max(0, expected - 1),
    durationMs: performance.now() - started,
    ...(firstBad ? { firstBad } : {}),
    tailBytesPending: tally.tailBytesPending,
    notes,
  };
}

/**
 * Walk one segment's chain: up to where the next segment's head says it ends (a sealed one), or to the end
 * of the file (the active one). Returns the seq expected next.
 */
async function verifySegment(file: StorageFile, reader: ChunkReader, p: SurveyedSegment, next: SurveyedSegment | undefined, tally: Tally): Promise<number> {
  const end = next?.head ? next.head.state.prevBytesUsed : p.size;
  const seed = saltSeed(p.header!.salt);
  const chain = await walkChain(file, reader, seed, SEGMENT_HEADER_BYTES, end, RECORD_PAYLOAD_BYTES_MAX, p.head!);
  const seq = chain.lastSeq;
  tally.entries += chain.entries;
  tally.checkpoints += chain.checkpoints;
  tally.bytesChecked += chain.bytes;
  tally.segmentsChecked++;
  const reason = chain.reason === 'visitor' ? 'seq out of order' : `record ${chain.reason}`;
  if (next) {
    if (chain.end !== end || seq !== next.head?.seq) tally.firstBad = { file: p.path, offset: chain.end, expectedSeq: seq + 1, reason };
  } else if (chain.end < end) {
    // The active segment: a break followed by later valid records is damage, unless it has the shape of the
    // last write torn by a power cut (see surveyBreak); otherwise it is the tail.
    const after = await surveyBreak(file, reader, seed, chain.end, end, RECORD_PAYLOAD_BYTES_MAX, seq, BATCH_BYTES_MAX);
    const first = after.runs[0];
    if (first && !after.tornWrite) {
      tally.firstBad = { file: p.path, offset: chain.end, expectedSeq: seq + 1, reason: `${reason}, valid records resume at offset ${first.start}` };
    } else {
      if (first) {
        tally.notes.push(
          `${p.path}: torn last write at byte offset ${chain.end}: ${after.entries} entries after never-written sectors (offsets ${first.start}..${after.runs.at(-1)!.end}); a write the power cut tore before its fdatasync returned, so never acknowledged; the next open sets them aside`,
        );
      }
      const from = after.runs.at(-1)?.end ?? chain.end;
      const probeTail = new Uint8Array(Math.min(64 * 1024, end - from));
      const got = await readFully(file, probeTail, from);
      for (let k = got - 1; k >= 0; k--) {
        if (probeTail[k] !== 0) {
          tally.tailBytesPending = from - chain.end + k + 1;
          break;
        }
      }
    }
  }
  return seq + 1;
}
