/**
 * Writing a replica's file so that any SQLite reader (another process: a report, a backup, a shell) sees it
 * only as of a whole transaction, never half-applied.
 *
 * The replica keeps its file in rollback-journal mode (header bytes 18 and 19 set to 1), not in WAL mode as
 * the primary's: there SQLite's readers take a SHARED lock on the file for each read transaction, and a
 * connection that holds EXCLUSIVE keeps them all out. The agent takes that lock through SQLite itself
 * (`BEGIN EXCLUSIVE` on a connection of its own), writes the page images with plain writes while it holds
 * it, and releases it; a reader waits (its busy timeout) and then sees the new state. Each apply also
 * raises the file change counter (header offset 24), which is how a reader in rollback mode knows that the
 * pages it cached are stale. SQLite's own pager cannot write these pages: `sqlite_dbpage` in the libsql
 * build (3.45) updates pages in place but can neither grow nor shrink the file.
 *
 * Two traps shape the steps. Closing any file handle on the database drops every POSIX lock this process
 * holds on it, SQLite's included: the plain writes go through the process's one kept descriptor of the file
 * (db-file.ts). And a -wal file next to the database puts every reader into WAL mode
 * whatever the header says: the replica never leaves one (snapshots remove it before the rename), and the
 * switch back to WAL before the application starts is done by SQLite (`PRAGMA journal_mode=WAL`).
 */
import { statSync } from 'node:fs';
import { open as openFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { LastgaspError } from '../util/index.ts';
import { isBusy, openSqlite, type SqliteConnection } from './connection.ts';
import { databaseFile, type DatabaseFile } from './db-file.ts';
import type { WalFrame } from './wal-format.ts';

type FileHandle = Awaited<ReturnType<typeof openFile>>;

/** SQLite's busy handler runs this long per attempt (it blocks the event loop); between attempts it yields. */
const LOCK_SLICE_MS = 50;
const LOCK_PAUSE_MS = 10;
/** A reader holding its transaction longer than this makes the apply fail (logged, retried at the next commit). */
const LOCK_WAIT_MS = 10_000;
const HEADER_BYTES = 100;

/**
 * Page images at (pgno - 1) × pageBytes in order, the file cut to the last commit's size, the header marked
 * (rollback mode, change counter raised, in-header size valid), fdatasynced; all under SQLite's EXCLUSIVE lock.
 */
export async function applyPagesLocked(path: string, pageBytes: number, frames: readonly WalFrame[]): Promise<void> {
  const last = frames.findLast((frame) => frame.commitPages !== 0);
  if (!last) return;
  // The process's one descriptor of the file, opened before the lock is taken and never closed (db-file.ts).
  const file = await databaseFile(path);
  if (!file) throw new LastgaspError('SQLITE_UNSUITABLE', `${path}: the replica's database file is gone; it is made again from the primary's next snapshot`, { path });
  await underExclusiveLock(path, async () => {
    const counter = readHeader(file).getUint32(24);
    for (const { pgno, page } of frames) file.write(page, (pgno - 1) * pageBytes);
    file.truncate(last.commitPages * pageBytes);
    markHeader(file, counter + 1, last.commitPages);
    file.datasync();
  });
}

/** A new file no reader has open yet (a snapshot before its rename): marked as the replica keeps it. */
export async function markNewFile(handle: FileHandle, commitPages: number): Promise<void> {
  const header = new Uint8Array(HEADER_BYTES);
  await handle.read(header, 0, HEADER_BYTES, 0);
  const view = new DataView(header.buffer);
  patchHeader(view, view.getUint32(24) + 1, commitPages);
  await handle.write(header, 0, HEADER_BYTES, 0);
}

/** Before the application starts on the file: back to WAL mode, by SQLite. */
export async function switchToWal(path: string): Promise<void> {
  const connection = await openSqlite(path, false);
  try {
    connection.exec(`PRAGMA busy_timeout=${LOCK_SLICE_MS}`);
    await retryBusy(path, () => connection.exec('PRAGMA journal_mode=WAL'));
  } finally {
    connection.close();
  }
}

/**
 * The connection each apply takes the lock through, kept from one apply to the next while the path names
 * the file it was opened on (a snapshot renamed in, or a file set aside, is another: its connection is
 * closed and one opened on the new file). Opening one per apply cost more than the apply's own writes (about
 * 1.7 ms of CPU each on the benchmark's standby). Between applies it holds no lock: in rollback mode SQLite
 * lets go of the file when a transaction ends.
 */
const applyConnections = new Map<string, { connection: SqliteConnection; dev: number; ino: number }>();

async function applyConnection(path: string): Promise<SqliteConnection> {
  const info = statSync(path);
  const held = applyConnections.get(path);
  if (held && held.dev === info.dev && held.ino === info.ino) return held.connection;
  closeApplyConnection(path);
  const connection = await openSqlite(path, false);
  connection.exec(`PRAGMA busy_timeout=${LOCK_SLICE_MS}`);
  applyConnections.set(path, { connection, dev: info.dev, ino: info.ino });
  return connection;
}

/** Before anything else opens the file for writing (the application, once this node takes over). */
export function closeApplyConnection(path: string): void {
  applyConnections.get(path)?.connection.close();
  applyConnections.delete(path);
}

async function underExclusiveLock(path: string, body: () => Promise<void>): Promise<void> {
  const connection = await applyConnection(path);
  // A file in WAL mode (made before replicas kept rollback mode, or opened by an application here by mistake)
  // is checkpointed and switched by SQLite; on a file in rollback mode this does nothing. Only exec here: a
  // connection that never prepared a statement really closes at close() (db-file.ts).
  await retryBusy(path, () => connection.exec('PRAGMA journal_mode=DELETE'));
  await retryBusy(path, () => connection.exec('BEGIN EXCLUSIVE'));
  try {
    await body();
  } finally {
    // Nothing was written through SQLite: this only releases the lock.
    connection.exec('ROLLBACK');
  }
}

async function retryBusy(path: string, step: () => unknown): Promise<void> {
  const deadline = Date.now() + LOCK_WAIT_MS;
  for (;;) {
    try {
      step();
      return;
    } catch (error) {
      if (!isBusy(error)) throw error;
      if (Date.now() > deadline) throw new LastgaspError('SQLITE_UNSUITABLE', `${path}: a reader held the database for more than ${LOCK_WAIT_MS} ms; the replica applies its transactions when the reader's transaction ends (keep read transactions on a standby's database short)`, { path, reason: 'busy' });
      // Between attempts the event loop runs (replication, heartbeats); the reader's PENDING wait resumes after.
      await sleep(LOCK_PAUSE_MS);
    }
  }
}

function readHeader(file: DatabaseFile): DataView {
  const header = new Uint8Array(HEADER_BYTES);
  file.read(header, 0);
  return new DataView(header.buffer);
}

function markHeader(file: DatabaseFile, counter: number, commitPages: number): void {
  const view = readHeader(file);
  patchHeader(view, counter, commitPages);
  file.write(new Uint8Array(view.buffer), 0);
}

/**
 * The header as SQLite in rollback mode expects it after a commit (sqlite.org fileformat2 §1.3): read and
 * write format 1, a new change counter, and the database size with version-valid-for equal to the counter.
 */
function patchHeader(view: DataView, counter: number, commitPages: number): void {
  view.setUint8(18, 1);
  view.setUint8(19, 1);
  view.setUint32(24, counter >>> 0);
  view.setUint32(28, commitPages);
  view.setUint32(92, counter >>> 0);
}
