/**
 * A generation's snapshot read without `sqlite_dbpage`, for a SQLite built without it (Deno's node:sqlite).
 * Called inside the capture's read transaction, taken under the write barrier at the WAL's end: the database
 * as that transaction sees it is the file's pages overlaid by the newest WAL frame of each page up to that
 * end. The file may change while it is read, but only by a checkpoint copying those same frames into it
 * (the read transaction keeps it from going further), and every page a checkpoint writes is taken from the
 * WAL here anyway; the WAL's frames up to the end cannot be overwritten while the transaction holds it.
 */
import { open as openFile } from 'node:fs/promises';
import type { SqliteConnection } from './connection.ts';
import { databaseFile } from './db-file.ts';
import { pagesPerEntry, splitTransaction } from './entry.ts';
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

/**
 * A generation's snapshot as log entries: every page of the database as `reader`'s read transaction (taken
 * under the write barrier at `end`, the WAL's last commit) sees it.
 */
export async function snapshotPayloads(reader: SqliteConnection, path: string, end: WalCursor | undefined, entry: { db: string; generation: string; entryBytesMax: number }): Promise<{ payloads: Uint8Array[]; pageCount: number }> {
  const pageBytes = Number(reader.get('PRAGMA page_size')?.page_size);
  const pageCount = Number(reader.get('PRAGMA page_count')?.page_count);
  const perEntry = pagesPerEntry(entry.entryBytesMax, pageBytes);
  const payloads: Uint8Array[] = [];
  // SQLite's own page reader where the build has it (libsql); the file and the WAL read directly where not.
  const hasDbpage = Number(reader.get("SELECT count(*) AS n FROM pragma_module_list WHERE name = 'sqlite_dbpage'")?.n) === 1;
  const plain = hasDbpage ? undefined : await PlainSnapshotReader.open(path, pageBytes, end);
  for (let first = 1; first <= pageCount; first += perEntry) {
    const last = Math.min(pageCount, first + perEntry - 1);
    const pages = plain ? await plain.pages(first, last) : reader.all('SELECT pgno, data FROM sqlite_dbpage WHERE pgno BETWEEN ? AND ? ORDER BY pgno', [first, last]).map((row) => ({ pgno: Number(row.pgno), page: new Uint8Array(row.data as Uint8Array) }));
    payloads.push(...splitTransaction({ db: entry.db, generation: entry.generation, pageBytes }, pages, first + perEntry > pageCount ? pageCount : 0, first === 1, perEntry));
  }
  return { payloads, pageCount };
}
