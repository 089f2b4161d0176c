/**
 * Plain file access to a database this process may also have open through SQLite, without ever dropping
 * SQLite's locks on it.
 *
 * Closing any descriptor of a file drops every POSIX lock the process holds on it (fcntl(2)), SQLite's
 * included. SQLite itself keeps count of the locks its connections hold per file, and a connection closed
 * while a statement it prepared is still alive (libsql finalizes statements when they are collected) goes
 * on counting: a later connection then believes the file already locked and never asks the kernel. So a
 * descriptor of the database, once opened here, is never closed while the file is at its path: one per path,
 * kept for the life of the process, replaced (and the old one closed) only when the path names another file
 * (a snapshot renamed in, a file set aside), whose locks no longer matter.
 *
 * The descriptor is a plain fd used with the synchronous calls: Deno's promise FileHandle reads through a
 * descriptor of its own and so drops the locks (seen: /proc/locks empty after one read), while its
 * readSync/writeSync/fdatasyncSync/ftruncateSync on the fd keep them. The pages read and written are few
 * per call; the fdatasync blocks the event loop for as long as the flash takes. The path is checked with a
 * synchronous stat too: the capture reads the `-shm` header through here at every step, and a stat is
 * cheaper than the thread-pool round trip an asynchronous one takes.
 */
import { closeSync, fdatasyncSync, fstatSync, ftruncateSync, openSync, readSync, statSync, writeSync } from 'node:fs';

export interface DatabaseFile {
  read(bytes: Uint8Array, position: number): number;
  write(bytes: Uint8Array, position: number): void;
  truncate(length: number): void;
  datasync(): void;
}

interface Kept {
  file: DatabaseFile;
  fd: number;
  dev: number;
  ino: number;
}

const kept = new Map<string, Promise<Kept | undefined>>();

/** The process's descriptor of the file at `path` (read-write when allowed), or undefined when there is none. */
export async function databaseFile(path: string): Promise<DatabaseFile | undefined> {
  const previous = kept.get(path);
  const next = (async () => {
    const held = await previous?.catch(() => undefined);
    let info;
    try {
      info = statSync(path);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return held;
      throw error;
    }
    if (held && held.dev === info.dev && held.ino === info.ino) return held;
    if (held) closeSync(held.fd);
    let fd: number;
    try {
      fd = openSync(path, 'r+');
    } catch {
      fd = openSync(path, 'r');
    }
    const opened = fstatSync(fd);
    return { fd, file: fileOf(fd), dev: opened.dev, ino: opened.ino };
  })();
  kept.set(path, next);
  const result = await next;
  if (!result) return undefined;
  // A file that vanished from its path keeps its descriptor until the path names a file again.
  const now = statSync(path, { throwIfNoEntry: false });
  return now && now.ino === result.ino && now.dev === result.dev ? result.file : undefined;
}

function fileOf(fd: number): DatabaseFile {
  return {
    read: (bytes, position) => readSync(fd, bytes, 0, bytes.length, position),
    write: (bytes, position) => {
      for (let done = 0; done < bytes.length; ) done += writeSync(fd, bytes, done, bytes.length - done, position + done);
    },
    truncate: (length) => ftruncateSync(fd, length),
    datasync: () => fdatasyncSync(fd),
  };
}
