/**
 * A generation's snapshot read without `sqlite_dbpage`, for a SQLite built without it (Deno's node:sqlite).
 * Called inside the capture's read transaction, taken under the write barrier at the WAL's end: the database
 * as that transaction sees it is the file's pages overlaid by the newest WAL frame of each page up to that
 * end. The file may change while it is read, but only by a checkpoint copying those same frames into it
 * (the read transaction keeps it from going further), and every page a checkpoint writes is taken from the
 * WAL here anyway; the WAL's frames up to the end cannot be overwritten while the transaction holds it.
 */
import { open as openFile } from 'node:fs/promises';
import { databaseFile } from './db-file.ts';
import { decodeWalHeader, scanWalFrames, walFrameOffset, WAL_HEADER_BYTES, type WalCursor } from './wal-format.ts';

export class PlainSnapshotReader {
  private constructor(
    private readonly path: string,
    private readonly pageBytes: number,
    private readonly fromWal: Map<number, Uint8Array>,
  ) {}

  /** The newest image of each page in the WAL up to `end` (the position the read transaction was taken at). */
  static async open(path: string, pageBytes: number, end: WalCursor | undefined): Promise<PlainSnapshotReader> {
    const fromWal = new Map<number, Uint8Array>();
    if (end && end.frameIndex > 0) {
      const wal = await openFile(path + '-wal', 'r');
      try {
        const head = new Uint8Array(WAL_HEADER_BYTES);
        await wal.read(head, 0, WAL_HEADER_BYTES, 0);
        const decoded = decodeWalHeader(head);
        if (!decoded.ok) throw new Error(`${path}-wal: the WAL header went bad under the write barrier (${decoded.reason})`);
        const bytes = new Uint8Array(walFrameOffset(pageBytes, end.frameIndex) - WAL_HEADER_BYTES);
        await wal.read(bytes, 0, bytes.length, WAL_HEADER_BYTES);
        const scan = scanWalFrames(bytes, decoded.header, { frameIndex: 0, checksum: decoded.header.checksum });
        if (scan.end.frameIndex !== end.frameIndex) throw new Error(`${path}-wal: ${scan.end.frameIndex} valid frames where the write barrier saw ${end.frameIndex}`);
        for (const frame of scan.frames) fromWal.set(frame.pgno, frame.page);
      } finally {
        await wal.close();
      }
    }
    return new PlainSnapshotReader(path, pageBytes, fromWal);
  }

  /** Pages `first`..`last`, from the WAL where it has them, else from the file (its kept descriptor). */
  async pages(first: number, last: number): Promise<Array<{ pgno: number; page: Uint8Array }>> {
    const file = await databaseFile(this.path);
    if (!file) throw new Error(`${this.path}: the database file vanished while its snapshot was read`);
    const out: Array<{ pgno: number; page: Uint8Array }> = [];
    for (let pgno = first; pgno <= last; pgno++) {
      let page = this.fromWal.get(pgno);
      if (!page) {
        page = new Uint8Array(this.pageBytes);
        file.read(page, (pgno - 1) * this.pageBytes);
      }
      out.push({ pgno, page });
    }
    return out;
  }
}
