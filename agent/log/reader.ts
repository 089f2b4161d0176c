/**
 * Reads from any seq without loading the log: find the segment by binary search on its first seq, find a
 * nearby offset in its sparse index (built on first read for segments recovery did not scan), then scan
 * forward in bounded chunks. Every record is checked (CRC, seq continuity) on its way out.
 */
import { LastgaspError } from '../util/index.ts';
import { RECORD_ALIGN_BYTES, RECORD_HEADER_BYTES, RECORD_TYPE_ENTRY, SEGMENT_HEADER_BYTES } from './format.ts';
import { ChunkReader, scanRecords } from './scan.ts';
import { INDEX_SPACING_BYTES, type Segment } from './segments.ts';
import type { Storage, StorageFile } from './storage/index.ts';
import type { LogEntry, ReadLimits } from './types.ts';

/** Chunk size for reads: a replication batch is typically well under this. */
export const READ_CHUNK_BYTES = 128 * 1024;

export interface ReadContext {
  readonly storage: Storage;
  readonly payloadBytesMax: number;
  segments(): readonly Segment[];
  committed(): number;
  firstSeq(): number;
  onCorrupt(): void;
  /** A chunk reader to use for one read, and to hand back after it: reads in a row reuse one buffer. */
  takeChunkReader(): ChunkReader;
  releaseChunkReader(reader: ChunkReader): void;
}

function findSegment(segments: readonly Segment[], seq: number): number {
  let lo = 0;
  let hi = segments.length - 1;
  let found = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    if (segments[mid]!.baseSeq <= seq) {
      found = mid;
      lo = mid + 1;
    } else hi = mid - 1;
  }
  return found;
}

async function buildIndex(file: StorageFile, segment: Segment, payloadBytesMax: number): Promise<void> {
  const reader = new ChunkReader(payloadBytesMax);
  await scanRecords(file, reader, segment.seed, SEGMENT_HEADER_BYTES, segment.bytesUsed, payloadBytesMax, (record, _b, _v, _at, offset) => {
    if (record.type === RECORD_TYPE_ENTRY) segment.index.add(record.seq, offset);
    return true;
  });
  segment.indexed = true;
}

/** Where the payloads of one read go: the caller's buffer while it has room, else a fresh buffer each. */
class PayloadCopier {
  private used = 0;

  constructor(private readonly into: Uint8Array | undefined) {}

  copy(source: Uint8Array, start: number, length: number): Uint8Array {
    const into = this.into;
    if (!into || this.used + length > into.length) return source.slice(start, start + length);
    const payload = into.subarray(this.used, this.used + length);
    payload.set(source.subarray(start, start + length));
    this.used += length;
    return payload;
  }
}

export async function readEntries(ctx: ReadContext, fromSeq: number, limits: ReadLimits): Promise<LogEntry[]> {
  const out: LogEntry[] = [];
  const last = ctx.committed();
  let seq = Math.max(1, Math.floor(fromSeq));
  if (seq > last) return out;
  const firstSeq = ctx.firstSeq();
  if (seq < firstSeq) {
    throw new LastgaspError('LOG_SEQ', `seq ${seq} is no longer in the log (retention removed everything below ${firstSeq})`, { seq, firstSeq });
  }
  const entriesMax = Math.max(1, limits.entriesMax);
  let reader: ChunkReader | undefined;
  try {
    const copier = new PayloadCopier(limits.payloadBuffer);
    return await readSegments(ctx, seq, last, entriesMax, limits.bytesMax, out, copier, () => (reader ??= ctx.takeChunkReader()));
  } finally {
    if (reader) ctx.releaseChunkReader(reader);
  }
}

async function readSegments(
  ctx: ReadContext,
  from: number,
  last: number,
  entriesMax: number,
  bytesMax: number,
  out: LogEntry[],
  copier: PayloadCopier,
  chunkReader: () => ChunkReader,
): Promise<LogEntry[]> {
  let seq = from;
  let bytes = 0;
  const segments = ctx.segments();
  for (let i = findSegment(segments, seq); i >= 0 && i < segments.length && seq <= last; i++) {
    const segment = segments[i]!;
    let file: StorageFile;
    try {
      file = await ctx.storage.open(segment.path, 'read');
    } catch (error) {
      if (seq < ctx.firstSeq()) {
        throw new LastgaspError('LOG_SEQ', `seq ${seq} was removed by retention while being read`, { seq, firstSeq: ctx.firstSeq() }, { cause: error });
      }
      throw new LastgaspError('LOG_IO', `cannot open segment ${segment.path}: ${(error as Error).message}`, { segment: segment.id }, { cause: error });
    }
    try {
      if (!segment.indexed) await buildIndex(file, segment, ctx.payloadBytesMax);
      const reader = chunkReader();
      let full = false;
      const limit = segment.bytesUsed;
      const entriesLeft = Math.min(entriesMax - out.length, last - seq + 1);
      const scan = await scanRecords(
        file,
        reader,
        segment.seed,
        segment.index.lookup(seq, SEGMENT_HEADER_BYTES),
        limit,
        ctx.payloadBytesMax,
        (record, buf, _view, at) => {
          if (record.type !== RECORD_TYPE_ENTRY || record.seq < seq) return true;
          if (record.seq !== seq || seq > last) return false;
          if (out.length > 0 && (out.length >= entriesMax || bytes + record.payloadBytes > bytesMax)) {
            full = true;
            return false;
          }
          const payload = copier.copy(buf, at + RECORD_HEADER_BYTES, record.payloadBytes);
          out.push({ seq: record.seq, epoch: record.epoch, timestampMs: record.timestampMs, payload });
          bytes += record.payloadBytes;
          seq++;
          return true;
        },
        // The records wanted lie at most an index step past where the scan starts; their span is at most the
        // byte limit plus a header and alignment padding per entry.
        INDEX_SPACING_BYTES + Math.min(bytesMax - bytes, ctx.payloadBytesMax * entriesLeft) + entriesLeft * (RECORD_HEADER_BYTES + RECORD_ALIGN_BYTES),
      );
      if (full || seq > last) break;
      if (scan.reason !== 'limit' && seq <= Math.min(last, segment.lastSeq)) {
        // Retention may have released this segment while it was being read, and its recycled file may
        // already carry new records (salted anew, so they never validate as old ones): the entries wanted
        // are gone, which is not corruption.
        if (!ctx.segments().includes(segment) || seq < ctx.firstSeq()) {
          throw new LastgaspError('LOG_SEQ', `seq ${seq} was removed by retention while being read`, { seq, firstSeq: ctx.firstSeq() });
        }
        ctx.onCorrupt();
        throw new LastgaspError('LOG_CORRUPT', `segment ${segment.path} is damaged at offset ${scan.end} (seq ${seq} expected, ${scan.reason}); run \`lastgasp log verify\``, {
          segment: segment.id,
          offset: scan.end,
          seq,
        });
      }
    } finally {
      await file.close();
    }
  }
  return out;
}
