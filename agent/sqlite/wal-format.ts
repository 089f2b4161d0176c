/**
 * SQLite's write-ahead log, as bytes: the 32-byte header, the 24-byte frame headers, and the running
 * checksum that chains them (sqlite.org/fileformat2.html §4.1, "WAL File Format"). Pure functions over
 * Uint8Array: the capture reads the application's `-wal` with them, and the replica writes its own with
 * `encodeWal`. Nothing here does I/O or throws on bad input; bad bytes end a scan and say why.
 *
 * What a reader may trust (fileformat2 §4.1 and walformat.html §2): a frame is valid only if its salts equal
 * the header's and its checksum continues the chain; frames after the last valid *commit* frame belong to a
 * transaction that never committed (or was torn by a crash) and may even be rewritten in place by the next
 * writer, so a scan hands out only frames up to the last valid commit.
 */

/** Header magic; the low bit says in which byte order the checksum reads the words (fileformat2 §4.1). */
export const WAL_MAGIC_LITTLE = 0x377f0682;
export const WAL_MAGIC_BIG = 0x377f0683;
/** The only WAL format version SQLite has written since 3.7.0. */
export const WAL_VERSION = 3007000;
export const WAL_HEADER_BYTES = 32;
export const WAL_FRAME_HEADER_BYTES = 24;
/** Page sizes SQLite allows: powers of two from 512 to 65536 (fileformat2 §1.3.2). */
export const SQLITE_PAGE_BYTES_MIN = 512;
export const SQLITE_PAGE_BYTES_MAX = 65536;

export interface WalHeader {
  /** Magic 0x377f0683: the checksum reads big-endian words; 0x377f0682: little-endian. */
  readonly bigEndianChecksum: boolean;
  readonly pageBytes: number;
  readonly checkpointSeq: number;
  /** Incremented by every WAL reset (a writer starting over at frame 1 after a full checkpoint). */
  readonly salt1: number;
  /** Random at every reset. */
  readonly salt2: number;
  /** The checksum over bytes 0-23, which the first frame's checksum continues. */
  readonly checksum: Checksum;
}

export type Checksum = readonly [number, number];

export type WalHeaderResult = { ok: true; header: WalHeader } | { ok: false; reason: 'short' | 'magic' | 'version' | 'page-size' | 'checksum' };

export interface WalFrame {
  readonly pgno: number;
  /** The database's size in pages after this commit; 0 on a frame that is not a commit's last. */
  readonly commitPages: number;
  readonly page: Uint8Array;
}

/** Where a scan stands: frames before `frameIndex` are read, and `checksum` is the chain at that point. */
export interface WalCursor {
  readonly frameIndex: number;
  readonly checksum: Checksum;
}

export interface WalScan {
  /** Valid frames up to and including the last commit frame in the bytes scanned; none of a torn tail. */
  readonly frames: WalFrame[];
  /** The number of commit frames among them. */
  readonly commits: number;
  /** The cursor just past the last commit frame (the start cursor when there was none). */
  readonly end: WalCursor;
  /** The cursor just past each commit frame, in order (the last is `end`): where a partial append stops. */
  readonly commitEnds: WalCursor[];
  /** Valid frames after the last commit: a transaction being written, or torn by a crash. */
  readonly uncommittedFrames: number;
  /** Why the scan stopped: the bytes ran out on a frame boundary, or a frame did not validate. */
  readonly stop: 'end' | 'short-frame' | 'salt' | 'checksum';
}

export function walFrameBytes(pageBytes: number): number {
  return WAL_FRAME_HEADER_BYTES + pageBytes;
}

/** The byte offset of frame `frameIndex` (0-based) in a WAL of this page size. */
export function walFrameOffset(pageBytes: number, frameIndex: number): number {
  return WAL_HEADER_BYTES + frameIndex * walFrameBytes(pageBytes);
}

export function validPageBytes(pageBytes: number): boolean {
  return pageBytes >= SQLITE_PAGE_BYTES_MIN && pageBytes <= SQLITE_PAGE_BYTES_MAX && (pageBytes & (pageBytes - 1)) === 0;
}

export function decodeWalHeader(bytes: Uint8Array): WalHeaderResult {
  if (bytes.length < WAL_HEADER_BYTES) return { ok: false, reason: 'short' };
  const view = new DataView(bytes.buffer, bytes.byteOffset, WAL_HEADER_BYTES);
  const magic = view.getUint32(0);
  if (magic !== WAL_MAGIC_LITTLE && magic !== WAL_MAGIC_BIG) return { ok: false, reason: 'magic' };
  if (view.getUint32(4) !== WAL_VERSION) return { ok: false, reason: 'version' };
  const pageBytes = view.getUint32(8);
  if (!validPageBytes(pageBytes)) return { ok: false, reason: 'page-size' };
  const bigEndianChecksum = magic === WAL_MAGIC_BIG;
  const checksum = walChecksum(bytes.subarray(0, 24), bigEndianChecksum, [0, 0]);
  if (checksum[0] !== view.getUint32(24) || checksum[1] !== view.getUint32(28)) return { ok: false, reason: 'checksum' };
  return { ok: true, header: { bigEndianChecksum, pageBytes, checkpointSeq: view.getUint32(12), salt1: view.getUint32(16), salt2: view.getUint32(20), checksum } };
}

const HOST_LITTLE_ENDIAN = new Uint8Array(Uint32Array.of(1).buffer)[0] === 1;

/**
 * SQLite's WAL checksum (fileformat2 §4.1): over 32-bit words taken in pairs, s0 += x[i] + s1,
 * s1 += x[i+1] + s0, modulo 2^32, continuing from `start`. `bytes.length` is a multiple of 8.
 */
export function walChecksum(bytes: Uint8Array, bigEndian: boolean, start: Checksum): Checksum {
  // In 32-bit signed arithmetic (`| 0`), which V8 keeps in integer registers; `>>> 0` at each step made every
  // sum a double, three times slower. The same bits modulo 2^32, made unsigned at the end.
  let s0 = start[0] | 0;
  let s1 = start[1] | 0;
  // Words in this host's order (SQLite writes its WAL in the order of the host that created it: here, most
  // often) on 4-byte aligned memory (frames are, in a WAL and in a redo journal) are read as an Int32Array
  // rather than through DataView loads; the pages are most of the bytes the capture and a replica touch.
  if (bigEndian !== HOST_LITTLE_ENDIAN && (bytes.byteOffset & 3) === 0) {
    const words = new Int32Array(bytes.buffer, bytes.byteOffset, (bytes.length >>> 3) * 2);
    for (let i = 0; i < words.length; i += 2) {
      s0 = (s0 + words[i]! + s1) | 0;
      s1 = (s1 + words[i + 1]! + s0) | 0;
    }
    return [s0 >>> 0, s1 >>> 0];
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let offset = 0; offset + 8 <= bytes.length; offset += 8) {
    s0 = (s0 + view.getInt32(offset, !bigEndian) + s1) | 0;
    s1 = (s1 + view.getInt32(offset + 4, !bigEndian) + s0) | 0;
  }
  return [s0 >>> 0, s1 >>> 0];
}

/**
 * Scan frames from `bytes`, which start at the frame boundary of `start.frameIndex`, up to the last valid
 * commit frame. The page images returned are views into `bytes`.
 */
export function scanWalFrames(bytes: Uint8Array, header: WalHeader, start: WalCursor): WalScan {
  const frameBytes = walFrameBytes(header.pageBytes);
  const frames: WalFrame[] = [];
  const commitEnds: WalCursor[] = [];
  let pending: WalFrame[] = [];
  let commits = 0;
  let end = start;
  let checksum = start.checksum;
  let stop: WalScan['stop'] = 'end';
  for (let offset = 0, index = start.frameIndex; ; offset += frameBytes, index++) {
    if (offset === bytes.length) break;
    if (offset + frameBytes > bytes.length) {
      stop = 'short-frame';
      break;
    }
    const view = new DataView(bytes.buffer, bytes.byteOffset + offset, WAL_FRAME_HEADER_BYTES);
    if (view.getUint32(8) !== header.salt1 || view.getUint32(12) !== header.salt2) {
      stop = 'salt';
      break;
    }
    checksum = walChecksum(bytes.subarray(offset, offset + 8), header.bigEndianChecksum, checksum);
    checksum = walChecksum(bytes.subarray(offset + WAL_FRAME_HEADER_BYTES, offset + frameBytes), header.bigEndianChecksum, checksum);
    if (checksum[0] !== view.getUint32(16) || checksum[1] !== view.getUint32(20)) {
      stop = 'checksum';
      break;
    }
    const frame = { pgno: view.getUint32(0), commitPages: view.getUint32(4), page: bytes.subarray(offset + WAL_FRAME_HEADER_BYTES, offset + frameBytes) };
    pending.push(frame);
    if (frame.commitPages !== 0) {
      frames.push(...pending);
      pending = [];
      commits++;
      end = { frameIndex: index + 1, checksum };
      commitEnds.push(end);
    }
  }
  return { frames, commits, end, commitEnds, uncommittedFrames: pending.length, stop };
}

/**
 * A complete WAL file: header with these salts, then the frames with their chained checksums (big-endian
 * checksum words, magic 0x377f0683). The replica writes its transactions this way so that SQLite's own
 * recovery applies them, or ignores a torn tail.
 */
export function encodeWal(pageBytes: number, salts: { salt1: number; salt2: number; checkpointSeq?: number }, frames: readonly WalFrame[]): Uint8Array {
  const frameBytes = walFrameBytes(pageBytes);
  const out = new Uint8Array(WAL_HEADER_BYTES + frames.length * frameBytes);
  const view = new DataView(out.buffer);
  view.setUint32(0, WAL_MAGIC_BIG);
  view.setUint32(4, WAL_VERSION);
  view.setUint32(8, pageBytes);
  view.setUint32(12, salts.checkpointSeq ?? 0);
  view.setUint32(16, salts.salt1);
  view.setUint32(20, salts.salt2);
  let checksum = walChecksum(out.subarray(0, 24), true, [0, 0]);
  view.setUint32(24, checksum[0]);
  view.setUint32(28, checksum[1]);
  frames.forEach((frame, index) => {
    if (frame.page.length !== pageBytes) throw new RangeError(`frame ${index}: page of ${frame.page.length} bytes in a WAL of ${pageBytes}-byte pages`);
    const offset = WAL_HEADER_BYTES + index * frameBytes;
    view.setUint32(offset, frame.pgno);
    view.setUint32(offset + 4, frame.commitPages);
    view.setUint32(offset + 8, salts.salt1);
    view.setUint32(offset + 12, salts.salt2);
    out.set(frame.page, offset + WAL_FRAME_HEADER_BYTES);
    checksum = walChecksum(out.subarray(offset, offset + 8), true, checksum);
    checksum = walChecksum(out.subarray(offset + WAL_FRAME_HEADER_BYTES, offset + frameBytes), true, checksum);
    view.setUint32(offset + 16, checksum[0]);
    view.setUint32(offset + 20, checksum[1]);
  });
  return out;
}

/** The SQLite database file header fields the checks need (fileformat2 §1.3). */
export interface DbHeader {
  readonly pageBytes: number;
  /** 1 = legacy rollback journal, 2 = WAL (bytes 18 and 19: write and read versions). */
  readonly writeVersion: number;
  readonly readVersion: number;
  /** The in-header database size in pages (valid since 3.7.0 when the change counters agree). */
  readonly pages: number;
}

export const SQLITE_DB_HEADER_BYTES = 100;
const SQLITE_DB_MAGIC = 'SQLite format 3\u0000';

export function decodeDbHeader(bytes: Uint8Array): { ok: true; header: DbHeader } | { ok: false; reason: 'short' | 'magic' | 'page-size' } {
  if (bytes.length < SQLITE_DB_HEADER_BYTES) return { ok: false, reason: 'short' };
  for (let i = 0; i < SQLITE_DB_MAGIC.length; i++) if (bytes[i] !== SQLITE_DB_MAGIC.charCodeAt(i)) return { ok: false, reason: 'magic' };
  const view = new DataView(bytes.buffer, bytes.byteOffset, SQLITE_DB_HEADER_BYTES);
  const raw = view.getUint16(16);
  // The value 1 stands for 65536, which does not fit in two bytes (fileformat2 §1.3.2).
  const pageBytes = raw === 1 ? 65536 : raw;
  if (!validPageBytes(pageBytes)) return { ok: false, reason: 'page-size' };
  return { ok: true, header: { pageBytes, writeVersion: bytes[18]!, readVersion: bytes[19]!, pages: view.getUint32(28) } };
}
