/**
 * Reads from any seq without loading the log: find the segment by binary search on its first seq, find a
 * nearby offset in its sparse index (built on first read for segments recovery did not scan), then scan
 * forward in bounded chunks. Every record read from a file is checked (CRC, seq continuity) on its way out.
 * What the last commits wrote comes from the tail cache instead (read-cache.ts), and the segment files stay
 * open between reads.
 */
import { LastgaspError } from '../util/index.ts';
import { RECORD_ALIGN_BYTES, RECORD_HEADER_BYTES, RECORD_TYPE_ENTRY, SEGMENT_HEADER_BYTES } from './format.ts';
import type { SegmentHandles, TailCache } from './read-cache.ts';
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
  /** The records of the last commits (read-cache.ts); without it every read goes to the disk. */
  readonly tail?: TailCache;
  /** Segment files kept open between reads (read-cache.ts); without it each read opens and closes its own. */
  readonly handles?: SegmentHandles;
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

/** Where one read stands: the next seq wanted, the payload bytes taken, and whether a limit was reached. */
interface ReadState {
  seq: number;
  bytes: number;
  full: boolean;
  readonly last: number;
  readonly entriesMax: number;
  readonly bytesMax: number;
  readonly out: LogEntry[];
  readonly copier: PayloadCopier;
}

/** Take the entry `seq` whose payload is `source[at, at + payloadBytes)`, unless a limit says stop. */
function take(state: ReadState, seq: number, epoch: number, timestampMs: number, source: Uint8Array, at: number, payloadBytes: number): boolean {
  const out = state.out;
  if (out.length > 0 && (out.length >= state.entriesMax || state.bytes + payloadBytes > state.bytesMax)) {
    state.full = true;
    return false;
  }
  const payload = state.copier.copy(source, at, payloadBytes);
  out.push({ seq, epoch, timestampMs, payload });
  state.bytes += payloadBytes;
  state.seq++;
  return true;
}

export async function readEntries(ctx: ReadContext, fromSeq: number, limits: ReadLimits): Promise<LogEntry[]> {
  const out: LogEntry[] = [];
  const last = ctx.committed();
  const seq = Math.max(1, Math.floor(fromSeq));
  if (seq > last) return out;
  const firstSeq = ctx.firstSeq();
  if (seq < firstSeq) {
    throw new LastgaspError('LOG_SEQ', `seq ${seq} is no longer in the log (retention removed everything below ${firstSeq})`, { seq, firstSeq });
  }
  const tail = ctx.tail;
  // A reader that lends a buffer reads batch after batch (the publisher, the key-value state): from then on
  // the log keeps the tail of its commits for it. Other reads (a standby's look at its last entry, the API)
  // arm nothing.
  if (limits.payloadBuffer) tail?.arm();
  const state: ReadState = { seq, bytes: 0, full: false, last, entriesMax: Math.max(1, limits.entriesMax), bytesMax: limits.bytesMax, out, copier: new PayloadCopier(limits.payloadBuffer) };
  let reader: ChunkReader | undefined;
  const chunkReader = () => (reader ??= ctx.takeChunkReader());
  try {
    // The disk serves what lies below the tail cache; the cache the rest; the disk again whatever the cache
    // did not have (it always ends at the committed end, so only after a change it was told of).
    const cachedFrom = tail?.firstSeq();
    const diskLast = cachedFrom === undefined ? last : Math.min(last, cachedFrom - 1);
    if (state.seq <= diskLast) await readSegments(ctx, state, diskLast, chunkReader);
    if (tail && !state.full && state.seq <= last) readTail(tail, state);
    if (!state.full && state.seq <= last) await readSegments(ctx, state, last, chunkReader);
    return out;
  } finally {
    if (reader) ctx.releaseChunkReader(reader);
  }
}

/**
 * Entries from the tail cache: bytes this process sealed and synced, never read back, so not CRC-checked;
 * copied out as they are visited, since the cache's ring is overwritten by later commits.
 */
function readTail(tail: TailCache, state: ReadState): void {
  tail.visitFrom(state.seq, (record) => {
    if (record.seq !== state.seq || record.seq > state.last) return false;
    return take(state, record.seq, record.epoch, record.timestampMs, record.bytes, record.at, record.payloadBytes);
  });
}

/** Open the segment's file for one read: through the shared handles when the log keeps them. */
async function openSegment(ctx: ReadContext, segment: Segment, seq: number): Promise<{ file: StorageFile; done: () => Promise<void> | void }> {
  try {
    if (ctx.handles) return await ctx.handles.take(segment);
    const file = await ctx.storage.open(segment.path, 'read');
    return { file, done: () => file.close() };
  } catch (error) {
    if (seq < ctx.firstSeq()) {
      throw new LastgaspError('LOG_SEQ', `seq ${seq} was removed by retention while being read`, { seq, firstSeq: ctx.firstSeq() }, { cause: error });
    }
    throw new LastgaspError('LOG_IO', `cannot open segment ${segment.path}: ${(error as Error).message}`, { segment: segment.id }, { cause: error });
  }
}

/** Entries from the segment files, from `state.seq` up to `last` or a limit; every record CRC-checked. */
async function readSegments(ctx: ReadContext, state: ReadState, last: number, chunkReader: () => ChunkReader): Promise<void> {
  // A copy: retention shifts released segments off the log's own array while this read waits on a file,
  // and walking the live array by index then skipped a segment and reported the next one as damaged (a
  // false LOG_CORRUPT, found by a reader that marks what it read as replicated while the writer rolls).
  // A segment released meanwhile is still walked here; reading it ends in LOG_SEQ below.
  const segments = ctx.segments().slice();
  for (let i = findSegment(segments, state.seq); i >= 0 && i < segments.length && state.seq <= last; i++) {
    const segment = segments[i]!;
    const { file, done } = await openSegment(ctx, segment, state.seq);
    try {
      if (!segment.indexed) await buildIndex(file, segment, ctx.payloadBytesMax);
      const entriesLeft = Math.min(state.entriesMax - state.out.length, last - state.seq + 1);
      const scan = await scanRecords(
        file,
        chunkReader(),
        segment.seed,
        segment.index.lookup(state.seq, SEGMENT_HEADER_BYTES),
        segment.bytesUsed,
        ctx.payloadBytesMax,
        (record, buf, _view, at) => {
          if (record.type !== RECORD_TYPE_ENTRY || record.seq < state.seq) return true;
          if (record.seq !== state.seq || state.seq > last) return false;
          return take(state, record.seq, record.epoch, record.timestampMs, buf, at + RECORD_HEADER_BYTES, record.payloadBytes);
        },
        // The records wanted lie at most an index step past where the scan starts; their span is at most the
        // byte limit plus a header and alignment padding per entry.
        INDEX_SPACING_BYTES + Math.min(state.bytesMax - state.bytes, ctx.payloadBytesMax * entriesLeft) + entriesLeft * (RECORD_HEADER_BYTES + RECORD_ALIGN_BYTES),
      );
      if (state.full || state.seq > last) break;
      if (scan.reason !== 'limit' && state.seq <= Math.min(last, segment.lastSeq)) {
        // Retention may have released this segment while it was being read, and its recycled file may
        // already carry new records (salted anew, so they never validate as old ones): the entries wanted
        // are gone, which is not corruption.
        if (!ctx.segments().includes(segment) || state.seq < ctx.firstSeq()) {
          throw new LastgaspError('LOG_SEQ', `seq ${state.seq} was removed by retention while being read`, { seq: state.seq, firstSeq: ctx.firstSeq() });
        }
        ctx.onCorrupt();
        throw new LastgaspError('LOG_CORRUPT', `segment ${segment.path} is damaged at offset ${scan.end} (seq ${state.seq} expected, ${scan.reason}); run \`lastgasp log verify\``, {
          segment: segment.id,
          offset: scan.end,
          seq: state.seq,
        });
      }
    } finally {
      await done();
    }
  }
}
