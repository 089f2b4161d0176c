/**
 * The one audited path for every file the agent makes durable: the log's segments, lock claims, quarantine
 * files and demotion intents (through the log's `Storage` seam, whose real implementation is this file's
 * `nodeFs`), and the data directory, the KV snapshot and the leader record (through `mkdirDurable` and
 * `writeFileAtomic`).
 *
 * What it assumes of the file system, and why each step is here (the README's guarantee repeats this):
 * - fdatasync/fsync of a file makes its data and size durable, and nothing else. A new file's *name* is
 *   durable only after its directory is fsynced: POSIX promises no more, and f2fs, btrfs and UBIFS behave
 *   so; ext4's journal happens to commit names with the next fsync of anything, which hides a missing
 *   directory fsync (issue 16 lost every acknowledged write of a fresh data directory on a file system that
 *   does not).
 * - A directory fsync makes the names in that directory durable, including a subdirectory's name; so a
 *   directory created here is durable only once every new directory on its path is named durably in its
 *   parent.
 * - rename(2) replaces a name atomically: after a crash the old file or the new one, never neither.
 *
 * Modes are given at creation (0700 directories, 0600 files) so that no file is ever wider than private,
 * and set again with chmod/fchmod because the umask can only have narrowed them (0700 & ~umask), and an
 * agent that cannot reopen its own segment (a 0400 file) fails later, far from the cause.
 */
import * as fs from 'node:fs';
import { dirname } from 'node:path';
import { systemErrorCode } from './errors.ts';

/** Directories the agent creates: its data are nobody else's (issue 9). */
export const DIR_MODE = 0o700;
/** Files the agent creates. */
export const FILE_MODE = 0o600;

export type OpenMode =
  /** Read only; the file must exist. */
  | 'read'
  /** Read and write; the file must exist. */
  | 'readwrite'
  /** Create a new file (mode FILE_MODE) for reading and writing; fails with EEXIST if it exists. */
  | 'create';

export interface DurableFile {
  readonly path: string;
  /** Read up to `length` bytes at `position`; returns how many were read (fewer at end of file). */
  read(buffer: Uint8Array, offset: number, length: number, position: number): Promise<number>;
  /** Write exactly `length` bytes at `position` (implementations loop over short writes). */
  write(buffer: Uint8Array, offset: number, length: number, position: number): Promise<void>;
  /**
   * The same write, done before returning on the calling thread. For the group commit's batch write: copying
   * a batch into the page cache takes microseconds, while a round trip through libuv's thread pool (submit,
   * wake a worker, wake the event loop) costs tens to hundreds of them on a busy two-core gateway. Throws
   * like `write`.
   */
  writeSync(buffer: Uint8Array, offset: number, length: number, position: number): void;
  datasync(): Promise<void>;
  sync(): Promise<void>;
  size(): Promise<number>;
  truncate(bytes: number): Promise<void>;
  close(): Promise<void>;
}

/** The file operations durability is built from; the log's `Storage` is this plus `mkdirp`. */
export interface DurableFs {
  /** Create one directory (mode DIR_MODE); true if it was created, false if it already existed. */
  mkdir(dir: string): Promise<boolean>;
  /** Names (not paths) of the entries of a directory. */
  list(dir: string): Promise<string[]>;
  open(path: string, mode: OpenMode): Promise<DurableFile>;
  rename(from: string, to: string): Promise<void>;
  /** Give an existing file a second name; fails with EEXIST if `to` exists (atomic exclusive create, link(2)). */
  link(existing: string, to: string): Promise<void>;
  unlink(path: string): Promise<void>;
  /** fsync the directory itself, so that creations, renames and unlinks in it are durable. */
  syncDir(dir: string): Promise<void>;
}

/**
 * Create `dir` and any missing parents so that, once this resolves, the whole path survives a power cut:
 * every directory on it is named durably in its parent. Every parent from `dir` up to the root is fsynced,
 * not only those of the directories made now: a previous life may have created them and been killed
 * before its own fsyncs, which a SIGKILL never shows but a power cut does. Above the first directory that
 * existed before this call, a failure to sync (a read-only root, a parent we may not open) is not ours to
 * fix and is ignored; below it, it is thrown.
 */
export async function mkdirDurable(target: DurableFs, dir: string): Promise<void> {
  const created: string[] = [];
  await makeDirs(target, dir, created);
  const mustSync = new Set(created.map((path) => dirname(path)));
  for (let parent = dirname(dir); ; parent = dirname(parent)) {
    try {
      await target.syncDir(parent);
    } catch (error) {
      if (mustSync.has(parent)) throw error;
    }
    if (dirname(parent) === parent) break;
  }
}

async function makeDirs(target: DurableFs, dir: string, created: string[]): Promise<void> {
  try {
    if (await target.mkdir(dir)) created.push(dir);
  } catch (error) {
    if (systemErrorCode(error) !== 'ENOENT' || dirname(dir) === dir) throw error;
    await makeDirs(target, dirname(dir), created);
    if (await target.mkdir(dir)) created.push(dir);
  }
}

function randomHex(bytes: number): string {
  const buffer = new Uint8Array(bytes);
  globalThis.crypto.getRandomValues(buffer);
  return Array.from(buffer, (b) => b.toString(16).padStart(2, '0')).join('');
}

/** A temporary name next to `path`, unique per call: two writers of one file never share a temporary. */
export function temporaryPath(path: string): string {
  return `${path}.${randomHex(8)}.tmp`;
}

/** Whether a directory entry is a temporary `temporaryPath` made for the file named `base`. */
export function isTemporaryOf(name: string, base: string): boolean {
  return name.length === base.length + 21 && name.startsWith(`${base}.`) && /^[0-9a-f]{16}\.tmp$/.test(name.slice(base.length + 1));
}

/**
 * Replace a file so that a power cut leaves either the old or the new content, never a mix and never
 * nothing: write a unique temporary in the same directory, fsync it, rename it over the target, fsync the
 * directory. The directory must already be durable (mkdirDurable). For rare writes only: it costs two syncs.
 */
export async function replaceFileDurable(target: DurableFs, path: string, bytes: Uint8Array): Promise<void> {
  const temporary = temporaryPath(path);
  const file = await target.open(temporary, 'create');
  try {
    try {
      await file.write(bytes, 0, bytes.length, 0);
      await file.sync();
    } finally {
      await file.close();
    }
    await target.rename(temporary, path);
  } catch (error) {
    await target.unlink(temporary).catch(() => undefined);
    throw error;
  }
  await target.syncDir(dirname(path));
}

/** Remove a file and make the removal durable; a file already gone counts as removed. */
export async function unlinkDurable(target: DurableFs, path: string): Promise<void> {
  try {
    await target.unlink(path);
  } catch (error) {
    if (systemErrorCode(error) !== 'ENOENT') throw error;
  }
  await target.syncDir(dirname(path));
}

/** Remove the temporaries a crash left next to `base` in `dir` (call it while no writer of `base` runs). */
export async function removeTemporaries(target: DurableFs, dir: string, base: string): Promise<number> {
  let removed = 0;
  for (const name of await target.list(dir)) {
    if (!isTemporaryOf(name, base)) continue;
    await target.unlink(`${dir}/${name}`).catch(() => undefined);
    removed++;
  }
  if (removed > 0) await target.syncDir(dir);
  return removed;
}

// ---- the real file system ----------------------------------------------------------------------------

const OPEN_FLAGS: Record<OpenMode, string> = { read: 'r', readwrite: 'r+', create: 'wx+' };

function call<T>(run: (done: (error: NodeJS.ErrnoException | null, value?: T) => void) => void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    run((error, value) => (error ? reject(error) : resolve(value as T)));
  });
}

/** A file through node:fs callbacks (lighter than fs/promises' FileHandle); positional reads and writes only. */
class NodeFile implements DurableFile {
  constructor(
    readonly path: string,
    private readonly fd: number,
  ) {}

  read(buffer: Uint8Array, offset: number, length: number, position: number): Promise<number> {
    return call<number>((done) => fs.read(this.fd, buffer, offset, length, position, (error, bytesRead) => done(error, bytesRead)));
  }

  async write(buffer: Uint8Array, offset: number, length: number, position: number): Promise<void> {
    let done = 0;
    while (done < length) {
      const written = await call<number>((cb) =>
        fs.write(this.fd, buffer, offset + done, length - done, position + done, (error, bytes) => cb(error, bytes)),
      );
      // A regular file only writes short when the device is out of space; a zero-byte write would loop forever.
      if (written <= 0) throw Object.assign(new Error(`short write to ${this.path}`), { code: 'ENOSPC' });
      done += written;
    }
  }

  writeSync(buffer: Uint8Array, offset: number, length: number, position: number): void {
    let done = 0;
    while (done < length) {
      const written = fs.writeSync(this.fd, buffer, offset + done, length - done, position + done);
      if (written <= 0) throw Object.assign(new Error(`short write to ${this.path}`), { code: 'ENOSPC' });
      done += written;
    }
  }

  datasync(): Promise<void> {
    return call<void>((done) => fs.fdatasync(this.fd, (error) => done(error)));
  }

  sync(): Promise<void> {
    return call<void>((done) => fs.fsync(this.fd, (error) => done(error)));
  }

  size(): Promise<number> {
    return call<fs.Stats>((done) => fs.fstat(this.fd, done)).then((stats) => stats.size);
  }

  truncate(bytes: number): Promise<void> {
    return call<void>((done) => fs.ftruncate(this.fd, bytes, (error) => done(error)));
  }

  close(): Promise<void> {
    return call<void>((done) => fs.close(this.fd, (error) => done(error)));
  }
}

async function openNode(path: string, mode: OpenMode): Promise<NodeFile> {
  const fd = await call<number>((done) => fs.open(path, OPEN_FLAGS[mode], FILE_MODE, done));
  if (mode === 'create') {
    try {
      await call<void>((done) => fs.fchmod(fd, FILE_MODE, (error) => done(error)));
    } catch (error) {
      await call<void>((done) => fs.close(fd, (closeError) => done(closeError))).catch(() => undefined);
      throw error;
    }
  }
  return new NodeFile(path, fd);
}

/** The real file system through node:fs (works as is on Deno 2). It holds no state. */
export const nodeFs: DurableFs = {
  async mkdir(dir) {
    try {
      await fs.promises.mkdir(dir, { mode: DIR_MODE });
    } catch (error) {
      if (systemErrorCode(error) === 'EEXIST') return false;
      throw error;
    }
    await fs.promises.chmod(dir, DIR_MODE);
    return true;
  },
  list: (dir) => fs.promises.readdir(dir),
  open: openNode,
  rename: (from, to) => fs.promises.rename(from, to),
  link: (existing, to) => fs.promises.link(existing, to),
  unlink: (path) => fs.promises.unlink(path),
  async syncDir(dir) {
    const fd = await call<number>((done) => fs.open(dir, 'r', done));
    try {
      await call<void>((done) => fs.fsync(fd, (error) => done(error)));
    } finally {
      await call<void>((done) => fs.close(fd, (error) => done(error)));
    }
  },
};

/**
 * Create (durably) the agent's data directory on the real file system, and make it private (0700) even if
 * it existed with wider rights: it holds the application's data and the node's identity in the group.
 */
export async function makeDataDir(dir: string): Promise<void> {
  await mkdirDurable(nodeFs, dir);
  const stats = await fs.promises.stat(dir);
  if ((stats.mode & 0o777) !== DIR_MODE) await fs.promises.chmod(dir, DIR_MODE);
}
