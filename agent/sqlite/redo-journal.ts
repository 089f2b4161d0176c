/**
 * The replica's redo journals (replica.ts): each apply's frames are written to one first, in SQLite's WAL
 * format (salts, checksum chain, the commit frame last) and fdatasynced, before its pages touch the file. Two
 * files, `<db>.lastgasp-redo` and `<db>.lastgasp-redo-1`, used in turn, and each carries the log seq of its
 * apply's last transaction (in its salts, marked by JOURNAL_MARK in the checkpoint-sequence field).
 *
 * So the journals are the replica's position, durable without a sync of their own: the one with the highest
 * seq is the last apply begun, and every earlier apply reached the file before its successor's journal was
 * written (the file is fdatasynced at the end of each apply). After a crash that one is applied again (whole
 * page images: twice is once) and its seq is where the replica stands. A crash while a journal is written
 * leaves the other, one apply older, intact, and the file untouched by the torn one. The state file is then
 * written only on the rare changes (a snapshot, a handover, a file set aside), where it must be durable.
 * Before the file is replaced (a snapshot renamed in, a file set aside) both journals are emptied: their
 * pages belong to the old file, and a redo must never write them into the new one.
 */
import { open as openFile, readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { nodeFs } from '../util/index.ts';
import { decodeWalHeader, encodeWal, scanWalFrames, WAL_HEADER_BYTES, type WalFrame } from './wal-format.ts';

/** 'lgs1' in the WAL header's checkpoint-sequence field: the salts carry the apply's seq. */
const JOURNAL_MARK = 0x6c677331;
const SALT_SPAN = 2 ** 32;

export interface JournaledApply {
  /** The log seq of the apply's last transaction; undefined for a journal of an older agent (no seq kept). */
  readonly seq: number | undefined;
  readonly pageBytes: number;
  readonly frames: WalFrame[];
  readonly path: string;
}

export class RedoJournals {
  /** The file the next apply goes to: never the one holding the latest apply. */
  private next = 0;
  private named = false;

  constructor(private readonly dbPath: string) {}

  private path(index: number): string {
    return this.dbPath + (index === 0 ? '.lastgasp-redo' : '.lastgasp-redo-1');
  }

  /** Journal an apply (fdatasynced): after this, its pages may go into the file. */
  async write(pageBytes: number, seq: number, frames: readonly WalFrame[]): Promise<void> {
    await this.writeFile(this.next, encodeWal(pageBytes, { salt1: Math.floor(seq / SALT_SPAN), salt2: seq % SALT_SPAN, checkpointSeq: JOURNAL_MARK }, frames));
    this.next ^= 1;
  }

  /** Both emptied (fdatasynced): before the file is replaced. */
  async clear(): Promise<void> {
    for (const index of [0, 1]) await this.writeFile(index, new Uint8Array(0));
  }

  /** The last apply begun whose journal is whole, if any; the next write goes to the other file. */
  async latest(): Promise<JournaledApply | undefined> {
    const found: Array<JournaledApply & { index: number }> = [];
    for (const index of [0, 1]) {
      const bytes = await readFile(this.path(index)).then((buffer) => new Uint8Array(buffer), () => undefined);
      const decoded = bytes && bytes.length > 0 ? decodeWalHeader(bytes) : undefined;
      if (!decoded?.ok) continue;
      const { header } = decoded;
      const scan = scanWalFrames(bytes!.subarray(WAL_HEADER_BYTES), header, { frameIndex: 0, checksum: header.checksum });
      if (scan.commits === 0) continue;
      const seq = header.checkpointSeq === JOURNAL_MARK ? header.salt1 * SALT_SPAN + header.salt2 : undefined;
      found.push({ index, seq, pageBytes: header.pageBytes, frames: scan.frames, path: this.path(index) });
    }
    // An older agent's journal (one file, no seq) is the only one there: it is the last apply.
    const latest = found.sort((a, b) => (b.seq ?? Infinity) - (a.seq ?? Infinity))[0];
    if (latest) this.next = latest.index ^ 1;
    return latest;
  }

  private async writeFile(index: number, bytes: Uint8Array): Promise<void> {
    const file = await openFile(this.path(index), 'w', 0o600);
    try {
      await file.write(bytes);
      await file.datasync();
    } finally {
      await file.close();
    }
    // The journals' names must be durable before the file is touched; they are created once, then reused.
    if (!this.named) {
      for (const other of [0, 1]) {
        const handle = await openFile(this.path(other), 'a', 0o600);
        await handle.close();
      }
      await nodeFs.syncDir(dirname(this.dbPath));
      this.named = true;
    }
  }
}
