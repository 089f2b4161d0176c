/**
 * A simulated file system behind the `Storage` interface that remembers, per file and per directory, what is
 * durable and what only sits in the "page cache", in the style of Pebble's MemFS and ALICE's persistence
 * model. It exists for the faults a real disk will not produce on demand: losing unsynced writes, keeping a
 * later write while dropping an earlier one, tearing a write at a sector boundary, growing a file without its
 * data, flipping a bit, failing an fdatasync (and, like Linux after fsyncgate, forgetting the failed pages).
 *
 * Model: writes, truncates, creations, renames and unlinks are "pending" until an fdatasync/fsync of that
 * file (for data) or of the directory (for names). A crash keeps everything durable plus any chosen subset
 * of the pending operations, possibly torn; `crashImage` builds that state as a new, fully synced storage.
 * All operations complete in a microtask, so a seeded workload replays identically.
 */
import { dirname } from 'node:path';
import { mkdirDurable } from '../../util/index.ts';
import type { OpenMode, Storage, StorageFile } from './storage.ts';

function fsError(code: string, message: string): Error {
  return Object.assign(new Error(`${code}: ${message}`), { code });
}

interface Inode {
  readonly ino: number;
  data: Uint8Array;
  size: number;
  durable: Uint8Array;
  durableSize: number;
}

export type PendingOp =
  | { readonly seq: number; readonly kind: 'write'; readonly ino: number; readonly offset: number; readonly bytes: Uint8Array; readonly path: string }
  | { readonly seq: number; readonly kind: 'truncate'; readonly ino: number; readonly size: number; readonly path: string }
  | { readonly seq: number; readonly kind: 'link'; readonly ino: number; readonly path: string }
  /** rename(2) is atomic: a crash leaves the old name or the new one, never both. */
  | { readonly seq: number; readonly kind: 'rename'; readonly ino: number; readonly path: string; readonly from: string }
  | { readonly seq: number; readonly kind: 'unlink'; readonly path: string };

/** How one pending op lands in a crash state: whole, or a write torn into kept and lost byte ranges. */
export interface AppliedOp {
  readonly op: PendingOp;
  /** For a write: the byte ranges (relative to the write) that reached the disk; omitted = all of it. */
  readonly keep?: ReadonlyArray<readonly [number, number]>;
  /** For a torn write: what the lost ranges hold, zeros (a file grown without its data) or the old bytes. */
  readonly lost?: 'zeros' | 'old';
}

export interface SimFaults {
  /** Throw EIO from the nth fdatasync/fsync of a file (1-based, counted across files), then forget its pending writes. */
  failSyncAt?: number;
  /** Throw this code from every write once set (ENOSPC, EIO, EROFS). */
  failWrites?: string;
}

export type SyncHook = (storage: SimStorage, what: { kind: 'datasync' | 'sync' | 'syncDir'; path: string }) => Promise<void> | void;

export class SimStorage implements Storage {
  private readonly inodes = new Map<number, Inode>();
  private names = new Map<string, number>();
  private durableNames = new Map<string, number>();
  /** The roots of relative and absolute paths always exist. */
  private readonly dirs = new Set<string>(['.', '/']);
  private pending: PendingOp[] = [];
  private nextIno = 1;
  private opSeq = 0;
  private syncCount = 0;
  /** Called before every sync makes anything durable: the crash harness explores crash states here. */
  beforeSync: SyncHook | undefined;
  readonly faults: SimFaults = {};
  readonly stats = { writes: 0, bytesWritten: 0, syncs: 0, dirSyncs: 0 };

  // ---- Storage ---------------------------------------------------------------------------------------------

  /** The same durable mkdir as the real storage (durable-fs.ts); directory names are not lost here, only counted as synced. */
  mkdirp(dir: string): Promise<void> {
    return mkdirDurable(this, dir);
  }

  async mkdir(dir: string): Promise<boolean> {
    if (this.dirs.has(dir)) return false;
    if (!this.dirs.has(dirname(dir))) throw fsError('ENOENT', `no directory ${dirname(dir)}`);
    this.dirs.add(dir);
    return true;
  }

  async list(dir: string): Promise<string[]> {
    if (!this.dirs.has(dir)) throw fsError('ENOENT', `no directory ${dir}`);
    const prefix = `${dir}/`;
    const out: string[] = [];
    for (const path of this.names.keys()) if (path.startsWith(prefix) && !path.slice(prefix.length).includes('/')) out.push(path.slice(prefix.length));
    return out.sort();
  }

  async open(path: string, mode: OpenMode): Promise<StorageFile> {
    let ino = this.names.get(path);
    if (mode === 'create') {
      if (ino !== undefined) throw fsError('EEXIST', path);
      const parent = path.slice(0, path.lastIndexOf('/'));
      if (!this.dirs.has(parent)) throw fsError('ENOENT', `no directory ${parent}`);
      ino = this.nextIno++;
      this.inodes.set(ino, { ino, data: new Uint8Array(0), size: 0, durable: new Uint8Array(0), durableSize: 0 });
      this.names.set(path, ino);
      this.pending.push({ seq: ++this.opSeq, kind: 'link', ino, path });
    }
    if (ino === undefined) throw fsError('ENOENT', path);
    return new SimFile(this, this.inodes.get(ino)!, path, mode !== 'read');
  }

  async rename(from: string, to: string): Promise<void> {
    const ino = this.names.get(from);
    if (ino === undefined) throw fsError('ENOENT', from);
    this.names.delete(from);
    this.names.set(to, ino);
    this.pending.push({ seq: ++this.opSeq, kind: 'rename', ino, path: to, from });
  }

  async link(existing: string, to: string): Promise<void> {
    const ino = this.names.get(existing);
    if (ino === undefined) throw fsError('ENOENT', existing);
    if (this.names.has(to)) throw fsError('EEXIST', to);
    this.names.set(to, ino);
    this.pending.push({ seq: ++this.opSeq, kind: 'link', ino, path: to });
  }

  async unlink(path: string): Promise<void> {
    if (!this.names.delete(path)) throw fsError('ENOENT', path);
    this.pending.push({ seq: ++this.opSeq, kind: 'unlink', path });
  }

  async syncDir(dir: string): Promise<void> {
    if (!this.dirs.has(dir)) throw fsError('ENOENT', dir);
    await this.beforeSync?.(this, { kind: 'syncDir', path: dir });
    this.stats.dirSyncs++;
    const prefix = `${dir}/`;
    const keep: PendingOp[] = [];
    for (const op of this.pending) {
      if ((op.kind === 'link' || op.kind === 'unlink' || op.kind === 'rename') && op.path.startsWith(prefix)) {
        if (op.kind === 'rename') this.durableNames.delete(op.from);
        if (op.kind === 'unlink') this.durableNames.delete(op.path);
        else this.durableNames.set(op.path, op.ino);
      } else keep.push(op);
    }
    this.pending = keep;
  }

  // ---- file operations (called by SimFile) -----------------------------------------------------------------

  /** @internal */
  writeInode(inode: Inode, path: string, buffer: Uint8Array, offset: number, length: number, position: number): void {
    if (this.faults.failWrites) throw fsError(this.faults.failWrites, `write to ${path}`);
    const end = position + length;
    if (end > inode.data.length) {
      const grown = new Uint8Array(Math.max(end, inode.data.length * 2));
      grown.set(inode.data.subarray(0, inode.size));
      inode.data = grown;
    }
    const bytes = buffer.slice(offset, offset + length);
    inode.data.set(bytes, position);
    if (end > inode.size) inode.size = end;
    this.pending.push({ seq: ++this.opSeq, kind: 'write', ino: inode.ino, offset: position, bytes, path });
    this.stats.writes++;
    this.stats.bytesWritten += length;
  }

  /** @internal */
  truncateInode(inode: Inode, path: string, size: number): void {
    if (size > inode.data.length) {
      const grown = new Uint8Array(size);
      grown.set(inode.data.subarray(0, inode.size));
      inode.data = grown;
    } else inode.data.fill(0, size, inode.size);
    inode.size = size;
    this.pending.push({ seq: ++this.opSeq, kind: 'truncate', ino: inode.ino, size, path });
  }

  /** @internal */
  async syncInode(inode: Inode, path: string, kind: 'datasync' | 'sync'): Promise<void> {
    await this.beforeSync?.(this, { kind, path });
    this.syncCount++;
    this.stats.syncs++;
    const mine = this.pending.filter((op) => (op.kind === 'write' || op.kind === 'truncate') && op.ino === inode.ino);
    this.pending = this.pending.filter((op) => !((op.kind === 'write' || op.kind === 'truncate') && op.ino === inode.ino));
    if (this.faults.failSyncAt === this.syncCount) {
      // Linux reports the writeback error once and marks the pages clean: the data stays visible in the page
      // cache but never reaches the disk (the fsyncgate behaviour).
      throw fsError('EIO', `fdatasync of ${path}`);
    }
    for (const op of mine) applyToDurable(inode, op);
  }

  // ---- crash states ----------------------------------------------------------------------------------------

  /**
   * A copy of the whole state (page cache, durable bytes, names, pending operations) that later operations on
   * this storage do not change. Crash states are built from a frozen copy: exploring them takes time, during
   * which the workload's other tasks go on writing and syncing.
   */
  freeze(): SimStorage {
    const copy = new SimStorage();
    for (const dir of this.dirs) copy.dirs.add(dir);
    // Only files that still have a name or a pending operation can matter to a crash state.
    const live = new Set<number>([...this.names.values(), ...this.durableNames.values()]);
    for (const op of this.pending) if (op.kind !== 'unlink') live.add(op.ino);
    for (const ino of live) {
      const inode = this.inodes.get(ino)!;
      copy.inodes.set(ino, { ino, data: inode.data.slice(0, inode.size), size: inode.size, durable: inode.durable.slice(0, inode.durableSize), durableSize: inode.durableSize });
    }
    copy.names = new Map(this.names);
    copy.durableNames = new Map(this.durableNames);
    copy.pending = [...this.pending];
    copy.nextIno = this.nextIno;
    copy.opSeq = this.opSeq;
    return copy;
  }

  /** Operations not yet durable, oldest first. */
  pendingOps(): readonly PendingOp[] {
    return this.pending;
  }

  /** Every durable byte of every durably named file (for flipping bits). */
  durableFiles(): Array<{ path: string; size: number }> {
    return [...this.durableNames].map(([path, ino]) => ({ path, size: this.inodes.get(ino)!.durableSize }));
  }

  /**
   * The storage as a crash would leave it: everything durable, plus `applied` (a subset of pendingOps(), in
   * order, possibly torn), then optionally one flipped bit. The result is a new storage with everything synced.
   */
  crashImage(applied: readonly AppliedOp[], flip?: { path: string; offset: number; bit: number }): SimStorage {
    const image = new SimStorage();
    for (const dir of this.dirs) image.dirs.add(dir);
    const bytes = new Map<number, { data: Uint8Array; size: number }>();
    const content = (ino: number) => {
      let entry = bytes.get(ino);
      if (!entry) {
        const inode = this.inodes.get(ino)!;
        const data = new Uint8Array(Math.max(inode.durableSize, 16));
        data.set(inode.durable.subarray(0, inode.durableSize));
        entry = { data, size: inode.durableSize };
        bytes.set(ino, entry);
      }
      return entry;
    };
    const names = new Map(this.durableNames);
    for (const { op, keep, lost } of applied) {
      if (op.kind === 'link') names.set(op.path, op.ino);
      else if (op.kind === 'rename') {
        names.delete(op.from);
        names.set(op.path, op.ino);
      } else if (op.kind === 'unlink') names.delete(op.path);
      else if (op.kind === 'truncate') {
        const entry = content(op.ino);
        entry.data = resize(entry.data, op.size);
        entry.data.fill(0, Math.min(op.size, entry.size));
        entry.size = op.size;
      } else {
        const entry = content(op.ino);
        const end = op.offset + op.bytes.length;
        entry.data = resize(entry.data, end);
        if (!keep) entry.data.set(op.bytes, op.offset);
        else {
          if (lost === 'zeros') entry.data.fill(0, op.offset, end);
          for (const [from, to] of keep) entry.data.set(op.bytes.subarray(from, to), op.offset + from);
        }
        // Zeros model a file grown without its data; old bytes beyond the old end are a hole, so the size ends where the last kept range does.
        const newEnd = !keep || lost === 'zeros' ? end : op.offset + Math.max(0, ...keep.map(([, to]) => to));
        if (newEnd > entry.size) entry.size = newEnd;
      }
    }
    for (const [path, ino] of names) {
      let imageIno = image.inodeFor.get(ino);
      if (imageIno === undefined) {
        const entry = content(ino);
        const data = entry.data.slice(0, entry.size);
        imageIno = image.nextIno++;
        image.inodes.set(imageIno, { ino: imageIno, data, size: entry.size, durable: data.slice(), durableSize: entry.size });
        image.inodeFor.set(ino, imageIno);
      }
      image.names.set(path, imageIno);
      image.durableNames.set(path, imageIno);
    }
    image.inodeFor.clear();
    if (flip) {
      const ino = image.names.get(flip.path);
      if (ino !== undefined) {
        const inode = image.inodes.get(ino)!;
        if (flip.offset < inode.size) {
          inode.data[flip.offset]! ^= 1 << flip.bit;
          inode.durable[flip.offset]! ^= 1 << flip.bit;
        }
      }
    }
    return image;
  }

  private readonly inodeFor = new Map<number, number>();

  /** Read a file's current (page-cache) contents; for assertions. */
  readFile(path: string): Uint8Array | undefined {
    const ino = this.names.get(path);
    if (ino === undefined) return undefined;
    const inode = this.inodes.get(ino)!;
    return inode.data.slice(0, inode.size);
  }
}

function resize(data: Uint8Array, size: number): Uint8Array {
  if (size <= data.length) return data;
  const grown = new Uint8Array(Math.max(size, data.length * 2));
  grown.set(data);
  return grown;
}

function applyToDurable(inode: Inode, op: PendingOp): void {
  if (op.kind === 'write') {
    const end = op.offset + op.bytes.length;
    inode.durable = resize(inode.durable, end);
    inode.durable.set(op.bytes, op.offset);
    if (end > inode.durableSize) inode.durableSize = end;
  } else if (op.kind === 'truncate') {
    inode.durable = resize(inode.durable, op.size);
    inode.durable.fill(0, Math.min(op.size, inode.durableSize));
    inode.durableSize = op.size;
  }
}

class SimFile implements StorageFile {
  private closed = false;

  constructor(
    private readonly fs: SimStorage,
    private readonly inode: Inode,
    readonly path: string,
    private readonly writable: boolean,
  ) {}

  private check(write: boolean): void {
    if (this.closed) throw fsError('EBADF', `${this.path} is closed`);
    if (write && !this.writable) throw fsError('EBADF', `${this.path} is open read-only`);
  }

  async read(buffer: Uint8Array, offset: number, length: number, position: number): Promise<number> {
    this.check(false);
    const end = Math.min(this.inode.size, position + length);
    if (end <= position) return 0;
    buffer.set(this.inode.data.subarray(position, end), offset);
    return end - position;
  }

  async write(buffer: Uint8Array, offset: number, length: number, position: number): Promise<void> {
    this.check(true);
    this.fs.writeInode(this.inode, this.path, buffer, offset, length, position);
  }

  writeSync(buffer: Uint8Array, offset: number, length: number, position: number): void {
    this.check(true);
    this.fs.writeInode(this.inode, this.path, buffer, offset, length, position);
  }

  async datasync(): Promise<void> {
    this.check(false);
    await this.fs.syncInode(this.inode, this.path, 'datasync');
  }

  async sync(): Promise<void> {
    this.check(false);
    await this.fs.syncInode(this.inode, this.path, 'sync');
  }

  async size(): Promise<number> {
    this.check(false);
    return this.inode.size;
  }

  async truncate(bytes: number): Promise<void> {
    this.check(true);
    this.fs.truncateInode(this.inode, this.path, bytes);
  }

  async close(): Promise<void> {
    this.check(false);
    this.closed = true;
  }
}
