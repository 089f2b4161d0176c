/**
 * Reading a live application's `-wal` with plain reads for the capture (capture.ts): the header and whole
 * frames from a position on, and where its last valid commit ends. The WAL file carries no SQLite lock, so
 * opening and closing it here costs SQLite nothing (its locks are on the database file and the `-shm`).
 */
import { open as openFile } from 'node:fs/promises';
import { decodeWalHeader, scanWalFrames, walFrameOffset, WAL_HEADER_BYTES, type WalCursor, type WalHeader } from './wal-format.ts';

/** Bytes of WAL read per step: bounds the memory a burst of writes costs (a few hundred 4 KiB frames). */
export const CAPTURE_READ_BYTES_MAX = 4 * 1024 * 1024;

export interface Position {
  /** Undefined while the generation started from a database without a WAL: any first header continues it. */
  header: WalHeader | undefined;
  cursor: WalCursor;
}

/**
 * The WAL's header and its frames from the position's cursor (at most `bytesMax`, whole frames only). `more`:
 * at least one whole frame lies past what was read (the read was cut by `bytesMax`, which is rarely a whole
 * number of frames, so comparing the length read with it cannot tell).
 */
export async function readFrom(path: string, position: Position | undefined, bytesMax: number): Promise<{ head: Uint8Array; frames: Uint8Array; size: number; mtimeMs: number; more: boolean } | undefined> {
  let handle;
  try {
    handle = await openFile(path, 'r');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  try {
    const info = await handle.stat();
    const head = new Uint8Array(Math.min(WAL_HEADER_BYTES, info.size));
    await handle.read(head, 0, head.length, 0);
    const pageBytes = head.length === WAL_HEADER_BYTES ? new DataView(head.buffer).getUint32(8) : 0;
    const from = position?.header && pageBytes ? walFrameOffset(pageBytes, position.cursor.frameIndex) : WAL_HEADER_BYTES;
    const frameBytes = pageBytes + 24;
    let length = Math.max(0, Math.min(info.size - from, bytesMax));
    if (pageBytes) length -= length % frameBytes;
    const frames = new Uint8Array(length);
    if (length > 0) await handle.read(frames, 0, length, from);
    return { head, frames, size: info.size, mtimeMs: info.mtimeMs, more: pageBytes > 0 && info.size - from - length >= frameBytes };
  } finally {
    await handle.close();
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
