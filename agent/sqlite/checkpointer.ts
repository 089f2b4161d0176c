/**
 * The agent is the database's checkpointer (Litestream's lesson: an application that checkpoints on its own
 * can reset the WAL under a copier that has not read it yet). Two read-write connections of its own:
 *
 * - the barrier: `BEGIN IMMEDIATE` takes SQLite's WAL write lock, so no transaction commits while a new
 *   generation finds the WAL's end and takes its snapshot there; rolled back at once (it never writes);
 * - the checkpointer: `wal_checkpoint(PASSIVE)`, which never waits for and never blocks the application's
 *   readers or writers. RESTART and TRUNCATE are never used: they wait for every reader and stop writers
 *   meanwhile (Litestream #724, #237). A checkpoint cannot run on the connection that holds the barrier
 *   (SQLite answers SQLITE_LOCKED), hence two connections.
 *
 * A full passive checkpoint (every frame backfilled) lets the application's next write reset the WAL to its
 * start: that is how the WAL stays bounded, and the capture expects exactly that reset afterwards.
 */
import { isBusy, openSqlite, type SqliteConnection } from './connection.ts';

export interface CheckpointResult {
  /** Frames in the WAL, and how many of them are now in the database file. */
  readonly walFrames: number;
  readonly checkpointedFrames: number;
  /** Every frame backfilled: the next write may start the WAL over. */
  readonly full: boolean;
}

export class WalCheckpointer {
  private barrier: SqliteConnection | undefined;
  private checkpointer: SqliteConnection | undefined;
  private holding = false;

  constructor(private readonly path: string) {}

  async open(): Promise<void> {
    this.barrier = await openSqlite(this.path, false);
    this.checkpointer = await openSqlite(this.path, false);
  }

  /** The barrier is held (by this process: SQLite's WAL write lock). */
  get held(): boolean {
    return this.holding;
  }

  /**
   * Take the write lock, trying again for at most `spinMs` while a writer holds it; false when none came free
   * (the agent never waits inside SQLite's busy handler). SQLite's write lock is a try-lock with no queue: an
   * application committing one transaction after the other frees it for microseconds between them, so a
   * single try at a random moment almost never gets it, while tries in a row for a few ms land in one of
   * those gaps.
   */
  tryBarrier(spinMs = 0): boolean {
    if (this.holding) return true;
    const until = performance.now() + spinMs;
    for (;;) {
      try {
        this.barrier!.exec('BEGIN IMMEDIATE');
        this.holding = true;
        return true;
      } catch (error) {
        if (!isBusy(error)) throw error;
        if (performance.now() >= until) return false;
      }
    }
  }

  releaseBarrier(): void {
    if (!this.holding) return;
    this.holding = false;
    this.barrier!.exec('ROLLBACK');
  }

  passive(): CheckpointResult {
    const row = this.checkpointer!.get('PRAGMA wal_checkpoint(PASSIVE)') ?? {};
    const walFrames = Number(row.log ?? -1);
    const checkpointedFrames = Number(row.checkpointed ?? -1);
    return { walFrames, checkpointedFrames, full: Number(row.busy ?? 1) === 0 && walFrames >= 0 && walFrames === checkpointedFrames };
  }

  /**
   * Close both. A read-write connection that closes last checkpoints and deletes the WAL: harmless here,
   * since the capture's next start then finds no WAL and begins with a new snapshot (capture-state.ts).
   */
  close(): void {
    if (this.holding) this.releaseBarrier();
    this.barrier?.close();
    this.checkpointer?.close();
    this.barrier = this.checkpointer = undefined;
  }
}
