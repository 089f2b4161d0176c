/**
 * Segment files: their in-memory description, the sparse seq index, and the two ways a fresh segment comes
 * to be (zero-filled from nothing, or recycled from a segment retention released).
 */
import { setImmediate } from 'node:timers';
import {
  CHECKPOINT_RECORD_BYTES,
  LOG_FORMAT_VERSION,
  SEGMENT_HEADER_BYTES,
  encodeSegmentHeader,
  saltSeed,
  segmentFileName,
} from './format.ts';
import { assertReadWithin, assertWriteRange, invariant } from './invariants.ts';
import { ChunkReader } from './scan.ts';
import type { Storage, StorageFile } from './storage/index.ts';

/** One sample of the sparse index every this many bytes: a read scans at most this far to find a seq. */
export const INDEX_SPACING_BYTES = 64 * 1024;
/**
 * Zero-fill write size when preallocating: one 4 KiB page per write. Linux 6.x gives ext4 files large folios
 * sized by the write that creates them; a segment zero-filled in 1 MiB writes then holds 1 MiB folios, and
 * every later 256 B append + fdatasync writes the whole 1 MiB folio back (measured on this project's 6.18
 * kernel: 1,048,576 device bytes per 256 B sync, against 4,096 after a 4 KiB fill). Page-sized fills keep
 * the cached folios at 4 KiB, which is what the device-bytes budget assumes.
 */
const ZERO_FILL_CHUNK_BYTES = 4096;
const ZEROS = new Uint8Array(ZERO_FILL_CHUNK_BYTES);
/** Zero-fill written per turn of the event loop (64 page writes, a fraction of a millisecond). */
const FILL_SLICE_BYTES = 256 * 1024;
/** Zero-fill between two background fdatasyncs of the spare being prepared. */
const FILL_SYNC_BYTES = 4 * 1024 * 1024;

/** Sparse seq → file offset samples of one segment, in increasing order. */
export class SeqIndex {
  private seqs: number[] = [];
  private offsets: number[] = [];
  private lastOffset = -INDEX_SPACING_BYTES;

  /** Remember that the record of `seq` starts at `offset`, if far enough from the previous sample. */
  add(seq: number, offset: number): void {
    if (offset - this.lastOffset < INDEX_SPACING_BYTES) return;
    this.seqs.push(seq);
    this.offsets.push(offset);
    this.lastOffset = offset;
  }

  /** Whether a record starting at `offset` would be sampled (so that callers decode only those). */
  wants(offset: number): boolean {
    return offset - this.lastOffset >= INDEX_SPACING_BYTES;
  }

  /** Offset of a record at or before `seq` (the segment's first record offset if none is sampled). */
  lookup(seq: number, fallback: number): number {
    let lo = 0;
    let hi = this.seqs.length - 1;
    let found = fallback;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (this.seqs[mid]! <= seq) {
        found = this.offsets[mid]!;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    return found;
  }

  /** Drop samples at or after `offset` (the log was cut back there). */
  truncate(offset: number): void {
    while (this.offsets.length > 0 && this.offsets[this.offsets.length - 1]! >= offset) {
      this.offsets.pop();
      this.seqs.pop();
    }
    this.lastOffset = this.offsets.length > 0 ? this.offsets[this.offsets.length - 1]! : -INDEX_SPACING_BYTES;
  }
}

export interface Segment {
  readonly id: number;
  readonly path: string;
  readonly salt: number;
  /** CRC state seeded with the salt, the start of every record's checksum in this segment. */
  readonly seed: number;
  readonly segmentBytes: number;
  /** First entry seq that belongs here (the head checkpoint's seq + 1). */
  baseSeq: number;
  /** Last entry seq stored here; baseSeq - 1 while it holds none. */
  lastSeq: number;
  /** Offset just past the last synced record. */
  bytesUsed: number;
  index: SeqIndex;
  /** True when the index covers every record (written or scanned here), false for sealed segments not yet read. */
  indexed: boolean;
}

/** A preallocated segment file with a valid header and an empty head, ready to become the active segment. */
export interface Spare {
  readonly id: number;
  readonly path: string;
  readonly salt: number;
  readonly segmentBytes: number;
}

export function segmentPath(dir: string, id: number): string {
  return `${dir}/${segmentFileName(id)}`;
}

export function newSegment(spare: Spare, baseSeq: number): Segment {
  return {
    id: spare.id,
    path: spare.path,
    salt: spare.salt,
    seed: saltSeed(spare.salt),
    segmentBytes: spare.segmentBytes,
    baseSeq,
    lastSeq: baseSeq - 1,
    bytesUsed: SEGMENT_HEADER_BYTES,
    index: new SeqIndex(),
    indexed: true,
  };
}

/**
 * Write a fresh header (new id, new salt) and zero the head slot, then fdatasync. Used for new spares, for
 * recycled files and for spares found at open: a new salt makes every record left in the file from before
 * fail its CRC, and a zero head marks the file as never activated.
 */
export async function writeSpareHeader(file: StorageFile, spare: Spare, nowMs: number): Promise<void> {
  const block = new Uint8Array(SEGMENT_HEADER_BYTES + CHECKPOINT_RECORD_BYTES);
  encodeSegmentHeader(
    { version: LOG_FORMAT_VERSION, segmentId: spare.id, salt: spare.salt, segmentBytes: spare.segmentBytes, createdMs: nowMs },
    block,
  );
  assertWriteRange(0, block.length, spare.segmentBytes, true, `segments: the header of spare ${spare.path}`);
  await file.write(block, 0, block.length, 0);
  await file.datasync();
}

/**
 * What may stop a spare's zero-fill between two slices (segment-pool.ts): while `held()` (the brownout
 * flush) it waits for `wait()` and asks again; once `abandoned()` (a close) it ends without its spare.
 */
export interface FillHold {
  held(): boolean;
  abandoned(): boolean;
  wait(): Promise<void>;
}

/**
 * Preallocate a segment by writing zeros over its whole length (Node has no fallocate; a sparse file from
 * ftruncate would make every later fdatasync allocate blocks and update the inode), under a temporary name
 * that recovery deletes, then rename it into place and make the directory entry durable.
 *
 * The page-sized writes are synchronous, FILL_SLICE_BYTES of them per turn of the event loop, with an
 * fdatasync in the background every FILL_SYNC_BYTES. Through the thread pool, a 64 MiB segment was 16,384
 * round trips queued ahead of the group commit's fdatasync (and as many wake-ups of the event loop): the
 * appends of a freshly started agent, and of one that had just rolled, waited behind its own zero-fill.
 * The periodic sync keeps the file's dirty pages few, so that a page-cache write never meets the kernel's
 * dirty-page throttle and the fill's writeback reaches the flash in small runs instead of one long one.
 * A `hold` stops the fill between slices for as long as it says, or for good: false, and the temporary
 * file is left for the caller (or the next open) to delete.
 */
export async function createSpare(storage: Storage, dir: string, spare: Spare, nowMs: number, hold?: FillHold): Promise<boolean> {
  const tmp = `${spare.path}.tmp`;
  const file = await storage.open(tmp, 'create');
  try {
    let offset = 0;
    while (offset < spare.segmentBytes) {
      while (hold?.held() && !hold.abandoned()) await hold.wait();
      if (hold?.abandoned()) return false;
      const sliceEnd = Math.min(spare.segmentBytes, offset + FILL_SLICE_BYTES);
      for (; offset < sliceEnd; offset += ZERO_FILL_CHUNK_BYTES) {
        const length = Math.min(ZERO_FILL_CHUNK_BYTES, spare.segmentBytes - offset);
        assertWriteRange(offset, length, spare.segmentBytes, true, `segments: the zero-fill of ${tmp}`);
        file.writeSync(ZEROS, 0, length, offset);
      }
      // The last stretch is synced with the header.
      if (offset >= spare.segmentBytes) break;
      if (offset % FILL_SYNC_BYTES === 0) await file.datasync();
      else await nextTurn();
    }
    await writeSpareHeader(file, spare, nowMs);
  } finally {
    await file.close();
  }
  await storage.rename(tmp, spare.path);
  await storage.syncDir(dir);
  return true;
}

function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/**
 * Turn a segment that retention released into a spare: rename it to the new id first (recovery treats a file
 * whose header names an older id as an interrupted recycle and finishes it), then re-salt it.
 */
export async function recycleSegment(storage: Storage, dir: string, fromPath: string, spare: Spare, nowMs: number): Promise<void> {
  await storage.rename(fromPath, spare.path);
  const file = await storage.open(spare.path, 'readwrite');
  try {
    await writeSpareHeader(file, spare, nowMs);
  } finally {
    await file.close();
  }
  await storage.syncDir(dir);
}

export function randomSalt(): number {
  const word = new Uint32Array(1);
  globalThis.crypto.getRandomValues(word);
  return word[0]!;
}

const ZERO_CHUNK = new Uint8Array(256 * 1024);

export async function zeroRange(file: StorageFile, from: number, to: number): Promise<void> {
  invariant(Number.isInteger(from) && from >= SEGMENT_HEADER_BYTES, `segments: zeroing from ${from} would touch a segment header`);
  for (let offset = from; offset < to; offset += ZERO_CHUNK.length) {
    await file.write(ZERO_CHUNK, 0, Math.min(ZERO_CHUNK.length, to - offset), offset);
  }
}

/**
 * Copy `[from, to)` of a segment into a new quarantine file that starts with the segment's own header, so
 * that `lastgasp log inspect` can decode what was set aside.
 */
export async function copyAside(storage: Storage, source: StorageFile, path: string, from: number, to: number, reader: ChunkReader): Promise<void> {
  const out = await storage.open(path, 'create');
  try {
    const header = new Uint8Array(SEGMENT_HEADER_BYTES);
    const got = await source.read(header, 0, SEGMENT_HEADER_BYTES, 0);
    assertReadWithin(got, SEGMENT_HEADER_BYTES, `segments: reading the header to copy into ${path}`);
    await out.write(header, 0, SEGMENT_HEADER_BYTES, 0);
    let position = SEGMENT_HEADER_BYTES;
    for (let offset = from; offset < to; ) {
      await reader.fill(source, offset, to);
      if (reader.length === 0) break;
      // The copy keeps every record at the same distance from the header as from the cut in the segment.
      invariant(position - SEGMENT_HEADER_BYTES === offset - from && offset + reader.length <= to, `segments: the copy into ${path} lost its step at ${offset}`);
      await out.write(reader.bytes, 0, reader.length, position);
      position += reader.length;
      offset += reader.length;
    }
    await out.sync();
  } finally {
    await out.close();
  }
}
