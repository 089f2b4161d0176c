/**
 * The agent is the database's checkpointer (Litestream's lesson: an application that checkpoints on its own
 * can reset the WAL under a copier that has not read it yet). Two read-write connections of its own:
 *
 * - the barrier: `BEGIN IMMEDIATE` takes SQLite's WAL write lock, so no transaction commits while a new
 *   generation finds the WAL's end and takes its snapshot there, or while the capture copies to the WAL's
 *   end and checkpoints with nothing of its own pinned; rolled back at once (it never writes);
 * - the checkpointer: `wal_checkpoint(PASSIVE)`, which never waits for and never blocks the application's
 *   readers or writers. RESTART and TRUNCATE are never used: they wait for every reader and stop writers
 *   meanwhile (Litestream #724, #237). A checkpoint cannot run on the connection that holds the barrier
 *   (SQLite answers SQLITE_LOCKED), hence two connections.
 *
 * A full passive checkpoint (every frame backfilled) lets the application's next write reset the WAL to its
 * start: that is how the WAL stays bounded, and the capture expects exactly that reset afterwards.
 */
import type { Clock } from '../util/index.ts';
import { isBusy, openSqlite, type SqliteConnection } from './connection.ts';
import type { Position } from './wal-file.ts';

/**
 * How long a checkpoint tries for the write barrier in a row (blocking the event loop) before the capture's
 * next step: at first, doubled at each step that did not get it, up to the most; the most at once for a
 * capture behind the application. An application committing without a pause frees the lock for
 * microseconds between its transactions (tryBarrier).
 */
const BARRIER_SPIN_MS = 5;
const BARRIER_SPIN_MAX_MS = 40;

export function barrierSpinMs(tries: number, behind: boolean): number {
  return behind ? BARRIER_SPIN_MAX_MS : Math.min(BARRIER_SPIN_MAX_MS, BARRIER_SPIN_MS * 2 ** Math.max(0, tries - 1));
}

/**
 * Once the WAL holds this many times checkpointFrames copied frames and more are still to copy, the capture
 * copies the rest under the barrier (capture.ts): the WAL's bound, for an application faster than the log.
 */
export const WAL_FRAMES_FACTOR = 4;
/**
 * The longest a checkpoint holds the barrier (a timer lets it go, in the middle of an append if need be):
 * a capture behind the application appends to the log under it, which holds the application's writers
 * back while it catches up, and is released without a checkpoint when the end was not reached; the next
 * step takes it again. Well within the busy_timeout the README asks of the application (5 s).
 */
export const BARRIER_HOLD_MAX_MS = 2000;
/**
 * The most frames a checkpoint copies under the barrier and still backfills there (4 MiB of 4 KiB pages): a
 * longer tail is backfilled once the barrier is let go (capture.ts, then the barrier is tried again), since a
 * checkpoint runs synchronously and a long one would keep the application's writers, timer or not (a run that
 * allowed 8,192 frames past the WAL's bound held them up to 4.2 s, near their busy_timeout: bench:sqlite's
 * maintenance mix).
 */
export const BARRIER_TAIL_FRAMES_MAX = 1024;

/** Where the capture's last checkpoint left its position. */
export interface LastCheckpoint {
  salt1: number | undefined;
  frameIndex: number;
}

/**
 * A checkpoint blocks the event loop while it copies pages and syncs the database file, and holds the
 * application's writers for its tail. Due once the WAL holds checkpointFrames copied frames; a complete one
 * lets the application's next write start the WAL over, and the count starts again. One that was not
 * complete (an application's reader held an older snapshot) is tried again checkpointFrames/4 frames later,
 * or once the application pauses (the step copied nothing: `idle`); never twice at the same position (an
 * idle application's WAL would be checkpointed at every poll).
 */
export function checkpointDue(position: Position | undefined, last: LastCheckpoint | undefined, checkpointFrames: number, idle: boolean): boolean {
  if (!position || position.cursor.frameIndex < checkpointFrames) return false;
  if (!last || last.salt1 !== position.header?.salt1) return true;
  const since = position.cursor.frameIndex - last.frameIndex;
  return since >= Math.max(1, Math.floor(checkpointFrames / 4)) || (idle && since > 0);
}

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
    // Each refused try throws, and the error's stack trace was half its cost (43 µs a try against 22 without):
    // no trace while spinning, so that twice the tries fit in a spin and the agent burns half the CPU on it.
    const traceLimit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    try {
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
    } finally {
      Error.stackTraceLimit = traceLimit;
    }
  }

  /**
   * Run `work` holding the barrier: tried at every `pollMs` while a writer holds the lock, until `stopped`
   * (then undefined); run at once when the barrier is already held (it stays held for its holder). Each try
   * spins a little longer (barrierSpinMs): single tries missed the gaps of an application committing
   * without a pause for over a thousand transactions, and the capture copies nothing until it has it.
   */
  async hold<T>(stopped: () => boolean, clock: Clock, pollMs: number, work: () => Promise<T>): Promise<T | undefined> {
    if (this.holding) return work();
    for (let tries = 1; !this.tryBarrier(barrierSpinMs(tries, false)); tries++) {
      if (stopped()) return undefined;
      await new Promise<void>((resolve) => clock.setTimeout(resolve, pollMs));
    }
    try {
      return await work();
    } finally {
      this.releaseBarrier();
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
