/**
 * The capture's read transaction (capture.ts), on a read-only connection of its own: while it holds a
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

export class ReadPin {
  constructor(
    readonly connection: SqliteConnection,
    private readonly path: string,
    private readonly field: string,
  ) {}

  /** End the read transaction and begin one at the WAL's current end (a statement is what starts it). */
  retake(): void {
    this.release();
    this.connection.exec('BEGIN');
    try {
      this.connection.get('SELECT count(*) AS n FROM sqlite_master');
    } catch (error) {
      this.connection.exec('ROLLBACK');
      if (isBusy(error)) {
        throw new LastgaspError('SQLITE_UNSUITABLE', `${this.field}.path: ${this.path} cannot be read while the application has it open: it uses PRAGMA locking_mode=EXCLUSIVE (remove that), or holds its lock for a long time`, { path: this.path });
      }
      throw error;
    }
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
   * The transaction ends here, not at close: libsql closes a connection only once the statements it
   * prepared are collected, and until then a transaction left open would go on pinning the WAL.
   */
  close(): void {
    this.release();
    this.connection.close();
  }
}
