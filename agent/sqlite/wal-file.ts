/**
 * Reading a live application's `-wal` with plain reads for the capture (capture.ts): the header and whole
 * frames from a position on, and where its last valid commit ends. The WAL file carries no SQLite lock, so
 * opening and closing it here costs SQLite nothing (its locks are on the database file and the `-shm`).
 *
 * Only frames SQLite counts as committed are read: up to the WAL-index's `mxFrame` (the `-shm` header). A
 * valid commit frame past it is a transaction whose writer died after writing its commit frame and before
 * publishing it in the index (SIGKILL between the two): no connection ever saw it, the application was
 * never told it committed, and the next writer overwrites it. Copying it would give the replica a state the
 * application never had (the SQLite campaign found one: its transaction 1372 on the standby was the killed
 * process's, not the one the restarted application committed under that id).
 */
import { closeSync, fstatSync, openSync, readSync, statSync, type Stats } from 'node:fs';
import { endianness } from 'node:os';
import { databaseFile } from './db-file.ts';
import { decodeWalHeader, scanWalFrames, walFrameOffset, WAL_FRAME_HEADER_BYTES, WAL_HEADER_BYTES, type WalCursor, type WalHeader } from './wal-format.ts';

/** Bytes of WAL read per step: bounds the memory a burst of writes costs (a few hundred 4 KiB frames). */
export const CAPTURE_READ_BYTES_MAX = 4 * 1024 * 1024;

export interface Position {
  /** Undefined while the generation started from a database without a WAL: any first header continues it. */
  header: WalHeader | undefined;
  cursor: WalCursor;
}

export interface WalRead {
  head: Uint8Array;
  frames: Uint8Array;
  size: number;
  mtimeMs: number;
  more: boolean;
  /**
   * A frame of this WAL (its salts) lies right after the last one the index publishes: a writer between
   * writing its transaction and publishing it (microseconds, unless it was descheduled or killed there). Its
   * file-change event has already come, and no other may follow: the capture reads again shortly.
   */
  unpublished: boolean;
  /** The frames of this WAL that SQLite counts as committed (the index's `mxFrame`; 0 when unknown). */
  committedFrames: number;
}

/**
 * The `-wal` file kept open across the capture's steps (one read of a few new frames per step; an open and a
 * close around each cost more than the read). Reads are synchronous: the pages were just written by the
 * application and are in the page cache. Each read checks that the path still names the file held (a WAL
 * deleted by the last connection to close and created again is another file) and opens it anew when not.
 */
export class WalFile {
  private fd: number | undefined;
  private ino = -1;
  private dev = -1;
  private scratch = new Uint8Array(0);

  constructor(readonly path: string) {}

  /**
   * The WAL's header and its frames from the position's cursor (at most `bytesMax`, whole frames only);
   * undefined when there is no WAL. `more`: at least one whole frame lies past what was read (the read was
   * cut by `bytesMax`, which is rarely a whole number of frames, so comparing the length read with it cannot
   * tell). With `scratch`, the frames are read into a buffer this reader keeps and reads into again at its
   * next read with `scratch`: they are the caller's until then only (the capture copies them into entries at
   * once; a read of a few frames per step would otherwise allocate, and leave to the collector, megabytes a
   * second behind a busy application).
   */
  async read(position: Position | undefined, bytesMax: number, scratch = false): Promise<WalRead | undefined> {
    const info = this.reopen();
    if (!info) return undefined;
    const fd = this.fd!;
    const head = new Uint8Array(Math.min(WAL_HEADER_BYTES, info.size));
    readFully(fd, head, 0);
    const pageBytes = head.length === WAL_HEADER_BYTES ? new DataView(head.buffer).getUint32(8) : 0;
    const fromFrame = position?.header && pageBytes ? position.cursor.frameIndex : 0;
    const from = pageBytes ? walFrameOffset(pageBytes, fromFrame) : WAL_HEADER_BYTES;
    const frameBytes = pageBytes + WAL_FRAME_HEADER_BYTES;
    // Read after the header: a reset after this changes the salts of any frame read, which the scan refuses.
    const committed = pageBytes ? await committedFrames(this.path, head) : 0;
    const end = Math.min(info.size, walFrameOffset(pageBytes, Math.max(fromFrame, committed)));
    let length = Math.max(0, Math.min(end - from, bytesMax));
    if (pageBytes) length -= length % frameBytes;
    const frames = scratch ? this.scratchOf(length) : new Uint8Array(length);
    if (length > 0) {
      // A WAL truncated since the stat (a TRUNCATE checkpoint) reads short: whole frames only, as always.
      length = readFully(fd, frames, from);
      if (pageBytes) length -= length % frameBytes;
    }
    const more = pageBytes > 0 && end - from - length >= frameBytes;
    const unpublished = !more && pageBytes > 0 && committed >= fromFrame && framesOfWal(fd, head, walFrameOffset(pageBytes, committed), info.size);
    return { head, frames: frames.subarray(0, length), size: info.size, mtimeMs: info.mtimeMs, more, unpublished, committedFrames: committed };
  }

  /**
   * `length` bytes of the kept buffer, grown if need be; a read longer than one step's usual (a large
   * transaction) gets its own. Exactly `length`: the read fills what it is given, and a longer view would
   * take frames past the index's last commit (an unpublished transaction: see the file's comment).
   */
  private scratchOf(length: number): Uint8Array {
    if (length > CAPTURE_READ_BYTES_MAX) return new Uint8Array(length);
    if (this.scratch.length < length) this.scratch = new Uint8Array(Math.min(CAPTURE_READ_BYTES_MAX, Math.max(length, 2 * this.scratch.length)));
    return this.scratch.subarray(0, length);
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }

  /** The file at the path now, opened if it is not the one held; undefined (and nothing held) when none. */
  private reopen(): Stats | undefined {
    let info: Stats;
    try {
      info = statSync(this.path);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      this.close();
      return undefined;
    }
    if (this.fd !== undefined && info.ino === this.ino && info.dev === this.dev) return info;
    this.close();
    try {
      this.fd = openSync(this.path, 'r');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw error;
    }
    // The file opened, which may already be a newer one than the one stat saw.
    const opened = fstatSync(this.fd);
    this.ino = opened.ino;
    this.dev = opened.dev;
    return opened;
  }
}

/** Where a frame header's salts are (wal-format.ts). */
const FRAME_SALTS = 8;

/** Whether the frame at `offset` exists and carries the salts of the WAL whose header is `head` (a stale frame from before a reset does not). */
function framesOfWal(fd: number, head: Uint8Array, offset: number, size: number): boolean {
  if (size < offset + WAL_FRAME_HEADER_BYTES) return false;
  const frame = new Uint8Array(WAL_FRAME_HEADER_BYTES);
  if (readFully(fd, frame, offset) < WAL_FRAME_HEADER_BYTES) return false;
  return equalBytes(frame.subarray(FRAME_SALTS, FRAME_SALTS + 8), head.subarray(WAL_HEADER_SALTS, WAL_HEADER_SALTS + 8));
}

/** Read until `bytes` is full or the file ends; the length read. */
function readFully(fd: number, bytes: Uint8Array, position: number): number {
  let done = 0;
  while (done < bytes.length) {
    const count = readSync(fd, bytes, done, bytes.length - done, position + done);
    if (count === 0) break;
    done += count;
  }
  return done;
}

/** One read of the WAL at `path` (a file opened and closed for it): WalFile.read. */
export async function readFrom(path: string, position: Position | undefined, bytesMax: number): Promise<WalRead | undefined> {
  const file = new WalFile(path);
  try {
    return await file.read(position, bytesMax);
  } finally {
    file.close();
  }
}

/** Where the WAL's last valid commit ends, read in bounded steps (the WAL is stable under the barrier). */
export async function findWalEnd(path: string): Promise<Position> {
  let position: Position = { header: undefined, cursor: { frameIndex: 0, checksum: [0, 0] } };
  let bytesMax = CAPTURE_READ_BYTES_MAX;
  for (;;) {
    const file = await readFrom(path, position, bytesMax);
    const decoded = file && file.head.length === WAL_HEADER_BYTES ? decodeWalHeader(file.head) : undefined;
    if (!decoded?.ok) return position;
    const header = decoded.header;
    if (position.header === undefined) position = { header, cursor: { frameIndex: 0, checksum: header.checksum } };
    const scan = scanWalFrames(file!.frames, header, position.cursor);
    position = { header, cursor: scan.end };
    if (!file!.more) return position;
    bytesMax = scan.commits > 0 ? CAPTURE_READ_BYTES_MAX : bytesMax * 2;
  }
}

/** The WAL-index header: two copies of 48 bytes, written one after the other; a reader takes them when equal. */
const WAL_INDEX_HEADER_BYTES = 48;
const WAL_INDEX_IS_INIT = 12;
const WAL_INDEX_MX_FRAME = 16;
const WAL_INDEX_SALTS = 32;
const WAL_HEADER_SALTS = 16;

/**
 * How many frames of the WAL whose header is `head` SQLite counts as committed: `mxFrame` from the
 * `-shm` header (native byte order; its salts are the WAL header's bytes), 0 when the index is missing,
 * being written (the copies differ), or of another WAL (the salts differ): the next step reads again.
 */
async function committedFrames(walPath: string, head: Uint8Array): Promise<number> {
  // Through the process's kept descriptor (db-file.ts): closing one of its own would drop SQLite's read
  // locks on the -shm, the capture's pin among them, and the application could then reset the WAL under it.
  const shm = await databaseFile(walPath.replace(/-wal$/, '-shm'));
  const index = new Uint8Array(2 * WAL_INDEX_HEADER_BYTES);
  if (!shm || shm.read(index, 0) < index.length) return 0;
  const first = index.subarray(0, WAL_INDEX_HEADER_BYTES);
  const second = index.subarray(WAL_INDEX_HEADER_BYTES);
  if (first[WAL_INDEX_IS_INIT] !== 1 || !equalBytes(first, second)) return 0;
  if (!equalBytes(first.subarray(WAL_INDEX_SALTS, WAL_INDEX_SALTS + 8), head.subarray(WAL_HEADER_SALTS, WAL_HEADER_SALTS + 8))) return 0;
  return new DataView(index.buffer).getUint32(WAL_INDEX_MX_FRAME, endianness() === 'LE');
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((byte, index) => byte === b[index]);
}
