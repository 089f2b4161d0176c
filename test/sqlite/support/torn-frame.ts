/**
 * A torn frame at a WAL's end, as a power cut in the middle of a frame's write leaves it: the header of the
 * next frame (a commit frame, with the WAL's salts and the checksum a whole frame would have had) and only
 * the first part of its page. Past the end of the file the frame is short; over stale frames of an older
 * WAL the rest of the slot keeps their bytes. Either way SQLite's recovery, and the capture, must stop
 * before it. A real SQLite cannot be made to tear a write on demand, so the test writes it, and only with
 * every process that writes the WAL stopped.
 */
import { open } from 'node:fs/promises';
import { decodeWalHeader, walChecksum, walFrameBytes, WAL_FRAME_HEADER_BYTES, WAL_HEADER_BYTES, type Checksum } from '../../../agent/sqlite/index.ts';
import { randomInt } from '../../log/support/random.ts';

/** Bytes of the page left out at the least: a stale tail that differs from the intended one breaks the checksum. */
const LEFT_OUT_MIN = 8;

export interface TornFrame {
  /** The slot the frame was written to (0-based), just past the last frame whose checksum chains. */
  frameIndex: number;
  /** Page bytes written of the page's size. */
  pageBytesWritten: number;
  /** The slot was past the file's end (a short frame) rather than over stale bytes. */
  short: boolean;
}

/** Write a torn frame after the last valid frame of `walPath`; undefined when there is no valid WAL. */
export async function writeTornFrame(walPath: string, random: () => number): Promise<TornFrame | undefined> {
  let handle;
  try {
    handle = await open(walPath, 'r+');
  } catch {
    return undefined;
  }
  try {
    const { size } = await handle.stat();
    const bytes = new Uint8Array(size);
    await handle.read(bytes, 0, size, 0);
    const decoded = decodeWalHeader(bytes);
    if (!decoded.ok) return undefined;
    const { header } = decoded;
    const frameBytes = walFrameBytes(header.pageBytes);
    // The last frame whose salts and checksum chain, committed or not: the next write goes after it.
    let checksum: Checksum = header.checksum;
    let frameIndex = 0;
    let commitPages = 1;
    for (let offset = WAL_HEADER_BYTES; offset + frameBytes <= size; offset += frameBytes, frameIndex++) {
      const view = new DataView(bytes.buffer, offset, WAL_FRAME_HEADER_BYTES);
      if (view.getUint32(8) !== header.salt1 || view.getUint32(12) !== header.salt2) break;
      const next = walChecksum(bytes.subarray(offset + WAL_FRAME_HEADER_BYTES, offset + frameBytes), header.bigEndianChecksum, walChecksum(bytes.subarray(offset, offset + 8), header.bigEndianChecksum, checksum));
      if (next[0] !== view.getUint32(16) || next[1] !== view.getUint32(20)) break;
      checksum = next;
      if (view.getUint32(4) !== 0) commitPages = view.getUint32(4);
    }
    const offset = WAL_HEADER_BYTES + frameIndex * frameBytes;
    const frame = new Uint8Array(frameBytes);
    for (let index = 0; index < frame.length; index++) frame[index] = randomInt(random, 256);
    const page = frame.subarray(WAL_FRAME_HEADER_BYTES);
    const short = offset + frameBytes > size;
    // The page's last bytes as intended differ from those the slot keeps, so the frame never validates.
    if (!short) for (let index = frameBytes - LEFT_OUT_MIN; index < frameBytes; index++) frame[index] = bytes[offset + index]! ^ 0xff;
    const view = new DataView(frame.buffer);
    view.setUint32(0, 1);
    view.setUint32(4, commitPages);
    view.setUint32(8, header.salt1);
    view.setUint32(12, header.salt2);
    const whole = walChecksum(page, header.bigEndianChecksum, walChecksum(frame.subarray(0, 8), header.bigEndianChecksum, checksum));
    view.setUint32(16, whole[0]);
    view.setUint32(20, whole[1]);
    const pageBytesWritten = randomInt(random, header.pageBytes - LEFT_OUT_MIN);
    await handle.write(frame, 0, WAL_FRAME_HEADER_BYTES + pageBytesWritten, offset);
    await handle.sync();
    return { frameIndex, pageBytesWritten, short };
  } finally {
    await handle.close();
  }
}
