/**
 * Every file operation the log performs goes through `Storage`, so that the same engine runs on the real
 * file system and on the simulated one that loses unsynced writes, tears writes and flips bits
 * (sim-storage.ts). Errors are thrown as they come, carrying the system `code` (ENOENT, ENOSPC, EIO,
 * EROFS...); the log maps them to typed LastgaspErrors.
 *
 * The real implementation uses node:fs callbacks (lighter than fs/promises' FileHandle), positional reads
 * and writes only, and runs unchanged on Deno 2's node:fs.
 */
import * as fs from 'node:fs';

export type OpenMode =
  /** Read only; the file must exist. */
  | 'read'
  /** Read and write; the file must exist. */
  | 'readwrite'
  /** Create a new file for reading and writing; fails with EEXIST if it exists. */
  | 'create';

export interface StorageFile {
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

export interface Storage {
  /** Create the directory and its parents if missing. */
  mkdirp(dir: string): Promise<void>;
  /** Names (not paths) of the entries of a directory. */
  list(dir: string): Promise<string[]>;
  open(path: string, mode: OpenMode): Promise<StorageFile>;
  rename(from: string, to: string): Promise<void>;
  /** Give an existing file a second name; fails with EEXIST if `to` exists (atomic exclusive create, link(2)). */
  link(existing: string, to: string): Promise<void>;
  unlink(path: string): Promise<void>;
  /** fsync the directory itself, so that creations, renames and unlinks in it are durable. */
  syncDir(dir: string): Promise<void>;
}

const OPEN_FLAGS: Record<OpenMode, string> = { read: 'r', readwrite: 'r+', create: 'wx+' };

function call<T>(run: (done: (error: NodeJS.ErrnoException | null, value?: T) => void) => void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    run((error, value) => (error ? reject(error) : resolve(value as T)));
  });
}

class NodeFile implements StorageFile {
  readonly path: string;
  private readonly fd: number;

  constructor(path: string, fd: number) {
    this.path = path;
    this.fd = fd;
  }

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

/**
 * The real file system through node:fs (works as is on Deno 2). One shared instance: it holds no state, and
 * the directory lock recognises the locks this process holds per Storage object.
 */
export function createNodeStorage(): Storage {
  return NODE_STORAGE;
}

const NODE_STORAGE: Storage = {
  async mkdirp(dir) {
    await fs.promises.mkdir(dir, { recursive: true });
  },
  list(dir) {
    return fs.promises.readdir(dir);
  },
  async open(path, mode) {
    const fd = await call<number>((done) => fs.open(path, OPEN_FLAGS[mode], 0o644, done));
    return new NodeFile(path, fd);
  },
  rename(from, to) {
    return fs.promises.rename(from, to);
  },
  link(existing, to) {
    return fs.promises.link(existing, to);
  },
  unlink(path) {
    return fs.promises.unlink(path);
  },
  async syncDir(dir) {
    const fd = await call<number>((done) => fs.open(dir, 'r', done));
    try {
      await call<void>((done) => fs.fsync(fd, (error) => done(error)));
    } finally {
      await call<void>((done) => fs.close(fd, (error) => done(error)));
    }
  },
};
