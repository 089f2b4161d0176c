/**
 * What makes the replication read cheap (issue 12): the publisher reads, batch after batch, what the group
 * commit has just written. Two things spare it most of the cost that the brownout drain's profile showed
 * (a third of its CPU in the log read):
 *
 * - the records of the last commits, kept in memory as the writer sealed them (`TailCache`): a reader that
 *   is caught up takes its entries from there, with no file I/O, and without checking CRCs, since these
 *   bytes never left this process's memory (the check guards what comes back from the disk). A standby's
 *   SQLite replica, which applies what the replicated batches brought a moment later, holds it too
 *   (FlashLog.holdTail): its reads of the disk and their CRC checks were an eighth of that agent's CPU;
 * - the segment files kept open between reads (`SegmentHandles`), where each read opened and closed its
 *   segment: three thread-pool round trips per batch instead of one.
 *
 * The log tells the cache what changes under it: a segment released by retention (its handle is closed
 * once no read uses it: its file is recycled into a spare or deleted, and an open handle would keep a
 * deleted file's space), and a cut or a recovery (everything is dropped: seqs after a cut are written
 * again with other contents, and a recovery may have moved segments aside).
 */
import { RECORD_HEADER_BYTES, RECORD_TYPE_ENTRY, recordBytes } from './format.ts';
import type { Segment } from './segments.ts';
import type { Storage, StorageFile } from './storage/index.ts';

/**
 * Record bytes the tail cache holds at most: 16 full replication batches of 256 KiB, or 8 of the default
 * 512 KiB, so that a publisher a full window behind (8 batches in flight, the next being read) still reads
 * from memory. A reader further behind reads the older part from the disk.
 */
export const TAIL_CACHE_BYTES_MAX = 4 * 1024 * 1024;
/** The ring the cache starts with: a few commits of 256 writers, or one default lingerBytes batch and more. */
const RING_BYTES_MIN = 512 * 1024;
/**
 * Segment files kept open for reads: a read crosses at most one segment boundary, so two cover a reader
 * going through the log in order; a third is closed when opened.
 */
export const READ_HANDLES_MAX = 2;

/** The records of one committed write: consecutive entries, `firstSeq` to `lastSeq`, at `bytes` in the ring. */
interface TailChunk {
  readonly firstSeq: number;
  readonly lastSeq: number;
  readonly bytes: Uint8Array;
  readonly view: DataView;
  /** Ring bytes the chunk takes: its own, and the ring's end it skipped when it did not fit there. */
  readonly span: number;
}

/** One entry as the cache hands it to the reader: the payload is `bytes[at, at + payloadBytes)`, to be copied at once. */
export interface CachedRecord {
  readonly seq: number;
  readonly epoch: number;
  readonly timestampMs: number;
  readonly bytes: Uint8Array;
  readonly at: number;
  readonly payloadBytes: number;
}

export class TailCache {
  /** The chunks held are `chunks[head..]`, oldest first: dropping one is a step of `head`, not a copy. */
  private chunks: TailChunk[] = [];
  private head = 0;
  private bytes = 0;
  /**
   * The copies live in one ring: the chunks, in order, take consecutive stretches of it (a chunk that does
   * not fit before the ring's end starts again at its beginning), and a new chunk takes the place of the
   * oldest. A copy per commit into fresh memory cost the publishing gateway a tenth of its CPU (the
   * allocation and the first touch of its pages, bench:replication's profile); a copy into the ring's warm
   * pages is a memcpy. The ring starts at RING_BYTES_MIN and doubles, up to `bytesMax`, only when what it
   * would overwrite is still wanted (a reader behind): a gateway whose publisher keeps up keeps a small one
   * resident. Nothing outside this class keeps a view of the ring (the reader copies each payload as it
   * visits it), so overwriting what was dropped is safe.
   */
  private ring: Uint8Array | undefined;
  /** Where the next chunk goes, and the ring bytes the chunks held take (their spans). */
  private writeAt = 0;
  private used = 0;
  /**
   * Off until the log is first read batch by batch (a read that lends a buffer: the publisher's, the key-value
   * state's) or a reader holds it (hold: a standby's SQLite replica): a log nobody reads as it grows keeps no
   * copy of what it writes.
   */
  private armed = false;
  /**
   * Readers that follow the log (FlashLog.holdTail) and the seq each reads next: the chunks from the lowest
   * on are kept even once replicated (on a standby everything stored counts as replicated at once).
   */
  private readonly holds = new Map<string, number>();
  private holdFrom = Infinity;

  constructor(
    private readonly bytesMax = TAIL_CACHE_BYTES_MAX,
    private readonly ringBytesMin = RING_BYTES_MIN,
  ) {}

  arm(): void {
    this.armed = true;
  }

  hold(reader: string, seq: number | undefined): void {
    if (seq === undefined) this.holds.delete(reader);
    else {
      this.holds.set(reader, seq);
      this.armed = true;
    }
    this.holdFrom = Math.min(Infinity, ...this.holds.values());
  }

  /**
   * Keep a copy of `records[start, end)`, entries `firstSeq` to `lastSeq` just synced, and drop what is
   * replicated at the configured level (a reader no longer wants it, except a sibling's rare resend
   * request, which the disk serves) and not held (hold), and, oldest first, what the copy needs the room of.
   */
  remember(records: Uint8Array, start: number, end: number, firstSeq: number, lastSeq: number, replicated: number): void {
    if (!this.armed || lastSeq < firstSeq) return;
    const newest = this.head < this.chunks.length ? this.chunks[this.chunks.length - 1] : undefined;
    // The chunks stay one run of seqs, so that a lookup may walk from one to the next.
    if (newest && newest.lastSeq + 1 !== firstSeq) this.clear();
    const released = Math.min(replicated, this.holdFrom - 1);
    while (this.head < this.chunks.length && this.chunks[this.head]!.lastSeq <= released) this.dropOldest();
    const length = end - start;
    // Larger than the whole ring, or nobody wants it: not kept, and the run starts afresh after it.
    if (length > this.bytesMax || lastSeq <= released) {
      this.clear();
      return;
    }
    let ring = (this.ring ??= new Uint8Array(Math.min(this.bytesMax, this.ringBytesMin)));
    // Past the ring's end the chunk starts again at 0, and the end it skips counts as its own until it is dropped.
    const wraps = () => this.writeAt + length > ring.length;
    const skip = () => (wraps() ? ring.length - this.writeAt : 0);
    const fits = () => ring.length - this.used >= skip() + length;
    // What is left is wanted still: a larger ring rather than dropping it, while the bound allows.
    if (ring.length < this.bytesMax && !fits()) ring = this.grow(length);
    // Emptied, the ring starts over at 0 (clear), where a chunk of at most the bound fits.
    while (!fits()) this.dropOldest();
    const skipped = skip();
    const at = wraps() ? 0 : this.writeAt;
    ring.set(records.subarray(start, end), at);
    const bytes = ring.subarray(at, at + length);
    this.chunks.push({ firstSeq, lastSeq, bytes, view: new DataView(ring.buffer, ring.byteOffset + at, length), span: skipped + length });
    this.bytes += length;
    this.used += skipped + length;
    this.writeAt = at + length;
    // Compact once the dropped part is most of the array (one-entry commits make thousands of chunks).
    if (this.head > 64 && this.head * 2 > this.chunks.length) {
      this.chunks = this.chunks.slice(this.head);
      this.head = 0;
    }
  }

  /** A ring with room for `length` more after what is held (doubling, up to bytesMax), the chunks moved to its start in order. */
  private grow(length: number): Uint8Array {
    let size = this.ring!.length * 2;
    while (size < this.bytes + length) size *= 2;
    const ring = new Uint8Array(Math.min(this.bytesMax, size));
    let at = 0;
    const chunks = this.chunks.slice(this.head).map((chunk) => {
      const bytes = chunk.bytes.length;
      ring.set(chunk.bytes, at);
      const moved: TailChunk = { firstSeq: chunk.firstSeq, lastSeq: chunk.lastSeq, bytes: ring.subarray(at, at + bytes), view: new DataView(ring.buffer, ring.byteOffset + at, bytes), span: bytes };
      at += bytes;
      return moved;
    });
    this.chunks = chunks;
    this.head = 0;
    this.ring = ring;
    this.writeAt = at;
    this.used = at;
    return ring;
  }

  private dropOldest(): void {
    const oldest = this.chunks[this.head++]!;
    this.bytes -= oldest.bytes.length;
    this.used -= oldest.span;
    if (this.head === this.chunks.length) this.clear();
  }

  /** The first seq held, or undefined when empty. */
  firstSeq(): number | undefined {
    return this.chunks[this.head]?.firstSeq;
  }

  /** Index of the chunk holding `seq`, or -1: the chunks are one run of seqs, in order. */
  private find(seq: number): number {
    let lo = this.head;
    let hi = this.chunks.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const chunk = this.chunks[mid]!;
      if (seq < chunk.firstSeq) hi = mid - 1;
      else if (seq > chunk.lastSeq) lo = mid + 1;
      else return mid;
    }
    return -1;
  }

  /**
   * Visit the cached entries from `seq` on, in order, until `visit` returns false or the cache ends.
   * Returns false, visiting nothing, when `seq` is not cached.
   */
  visitFrom(seq: number, visit: (record: CachedRecord) => boolean): boolean {
    let index = this.find(seq);
    if (index < 0) return false;
    for (; index < this.chunks.length; index++) {
      const chunk = this.chunks[index]!;
      const view = chunk.view;
      for (let at = 0; at < chunk.bytes.length; ) {
        const lengthType = view.getUint32(at + 4, true);
        const payloadBytes = lengthType & 0xff_ffff;
        const recordSeq = view.getUint32(at + 8, true) + view.getUint16(at + 12, true) * 0x1_0000_0000;
        if (lengthType >>> 24 === RECORD_TYPE_ENTRY && recordSeq >= seq) {
          const record: CachedRecord = {
            seq: recordSeq,
            epoch: view.getUint32(at + 20, true),
            timestampMs: view.getUint16(at + 14, true) * 0x1_0000_0000 + view.getUint32(at + 16, true),
            bytes: chunk.bytes,
            at: at + RECORD_HEADER_BYTES,
            payloadBytes,
          };
          if (!visit(record)) return true;
        }
        at += recordBytes(payloadBytes);
      }
    }
    return true;
  }

  clear(): void {
    this.chunks = [];
    this.head = 0;
    this.bytes = 0;
    this.writeAt = 0;
    this.used = 0;
  }

  /** Bytes held (stats and tests). */
  get bytesHeld(): number {
    return this.bytes;
  }

  /** The ring's size, 0 before the first copy (tests). */
  get ringBytes(): number {
    return this.ring?.length ?? 0;
  }
}

interface Handle {
  readonly segment: Segment;
  readonly file: Promise<StorageFile>;
  users: number;
  /** Released (retention, a cut, a recovery, the log closing): closed once no read uses it. */
  released: boolean;
}

/** Open segment files shared by reads, closed when their segment leaves the log or when over the bound. */
export class SegmentHandles {
  private readonly handles: Handle[] = [];

  constructor(
    private readonly storage: Storage,
    private readonly max = READ_HANDLES_MAX,
  ) {}

  /** The segment's file, open for reading, and the call that gives it back once the read is over. */
  async take(segment: Segment): Promise<{ file: StorageFile; done: () => void }> {
    let taken = this.handles.find((candidate) => candidate.segment === segment);
    if (taken) taken.users++;
    else {
      // Counted as used before the bound is enforced, so that it is never the one released.
      taken = { segment, file: this.storage.open(segment.path, 'read'), users: 1, released: false };
      this.handles.push(taken);
      this.trim();
    }
    let file: StorageFile;
    try {
      file = await taken.file;
    } catch (error) {
      taken.users--;
      this.drop(taken);
      throw error;
    }
    let given = false;
    const done = () => {
      if (given) return;
      given = true;
      taken.users--;
      if (taken.released) this.closeIfUnused(taken);
      // Reads at once may have opened more than the bound: the extra ones go as they finish.
      else this.trim();
    };
    return { file, done };
  }

  /** The segment left the log: its file is recycled or deleted, so no later read may use this handle. */
  release(segment: Segment): void {
    const handle = this.handles.find((candidate) => candidate.segment === segment);
    if (handle) this.releaseHandle(handle);
  }

  /** Every handle goes (a cut, a recovery, the log closing). */
  releaseAll(): void {
    for (const handle of [...this.handles]) this.releaseHandle(handle);
  }

  /** Handles open or opening (tests). */
  get open(): number {
    return this.handles.length;
  }

  private releaseHandle(handle: Handle): void {
    handle.released = true;
    // Gone from the list at once: a read that starts now opens the path afresh (or fails to).
    this.drop(handle);
    this.closeIfUnused(handle);
  }

  /** Over the bound: release the oldest handles no read is using. */
  private trim(): void {
    for (let index = 0; this.handles.length > this.max && index < this.handles.length; ) {
      const handle = this.handles[index]!;
      if (handle.users > 0) {
        index++;
        continue;
      }
      this.releaseHandle(handle);
    }
  }

  private drop(handle: Handle): void {
    const index = this.handles.indexOf(handle);
    if (index >= 0) this.handles.splice(index, 1);
  }

  private closeIfUnused(handle: Handle): void {
    if (handle.users > 0) return;
    handle.file.then(
      (file) => file.close(),
      () => undefined,
    ).catch(() => undefined);
  }
}
