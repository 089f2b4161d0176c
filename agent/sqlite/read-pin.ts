/**
 * The capture's read transaction (capture.ts), on read-only connections of its own: while it holds a
 * snapshot that includes WAL frames (SQLite's read locks 1..N), no checkpoint backfills past its mark and no
 * writer can start the WAL over, so no frame is overwritten before the capture has copied it.
 *
 * Taken on a WAL whose every frame is in the database file, SQLite gives it read lock 0 instead: a reader
 * there reads the file only, does not keep a writer from starting the WAL over, and keeps every checkpoint
 * from backfilling at all (a checkpoint needs lock 0 exclusively). That is what the checkpointer wants right
 * after its complete checkpoint under the write barrier (everything copied): the application's next write
 * resets the WAL, and nothing new can be checkpointed away before the capture has copied it and taken the
 * transaction again at the new end.
 */
import { LastgaspError } from '../util/index.ts';
import { isBusy, type SqliteConnection } from './connection.ts';

/**
 * Two read-only connections taken in turn: the new read transaction begins on the idle one before the old
 * one ends, so that the WAL is never without the agent's pin between the two. With one connection (end, then
 * begin) an application that checkpointed everything in that moment could reset the WAL under frames not
 * yet copied (it needs an application that checkpoints on its own, which the README advises against but
 * promises to survive).
 */
export class ReadPin {
  private current = 0;

  constructor(
    private readonly connections: readonly [SqliteConnection, SqliteConnection],
    private readonly path: string,
    private readonly field: string,
  ) {}

  /** The connection whose read transaction pins the WAL (snapshots are read inside it). */
  get connection(): SqliteConnection {
    return this.connections[this.current]!;
  }

  /** Begin a read transaction at the WAL's current end (a statement is what starts it), then end the old one. */
  retake(): void {
    const next = 1 - this.current;
    const connection = this.connections[next]!;
    try {
      // One exec, no prepared statement: a statement prepared per step cost several times the rest here
      // (libsql makes an object of each, freed only by the collector). The transaction stays open after the
      // SELECT's last row, holding its read mark until COMMIT.
      connection.exec('BEGIN; SELECT count(*) FROM sqlite_master');
    } catch (error) {
      try {
        connection.exec('ROLLBACK');
      } catch {
        // The BEGIN itself failed: no transaction to end.
      }
      if (isBusy(error)) {
        throw new LastgaspError('SQLITE_UNSUITABLE', `${this.field}.path: ${this.path} cannot be read while the application has it open: it uses PRAGMA locking_mode=EXCLUSIVE (remove that), or holds its lock for a long time`, { path: this.path });
      }
      throw error;
    }
    this.release();
    this.current = next;
  }

  /**
   * End it: nothing of the agent's is pinned. Only under the write barrier (or when stopping): the frames
   * not yet copied could otherwise be checkpointed and overwritten by the application's next write.
   */
  release(): void {
    try {
      this.connection.exec('COMMIT');
    } catch {
      // None was open.
    }
  }

  /**
   * The transactions end here, not at close: libsql closes a connection only once the statements it
   * prepared are collected, and until then a transaction left open would go on pinning the WAL.
   */
  close(): void {
    for (const connection of this.connections) {
      try {
        connection.exec('COMMIT');
      } catch {
        // None was open.
      }
      connection.close();
    }
  }
}
