/**
 * The database kept on a node that is not primary: the log's SQLite entries (entry.ts) applied in seq order,
 * so that the file is always the primary's database as of a transaction it committed, and the application
 * can start on it the moment this node takes over.
 *
 * Crash-consistent with redo journals of its own (redo-journal.ts): the transactions to apply are written
 * there first in SQLite's WAL format (wal-format.ts: salts and a checksum chain, the commit frame last) and
 * fdatasynced, and only then are their page images written into the file, which is cut to the last commit's
 * size, as a checkpoint would. A crash before the journal's commit frame is on flash leaves the file
 * untouched; a crash after it is repaired at the next start by writing the journal's pages again (whole page
 * images: twice is the same as once). Readable at any time: the pages are written under SQLite's own
 * EXCLUSIVE lock, with the file in rollback mode, so a reader sees it between applies only
 * (replica-apply.ts); SQLite here only takes that lock and never reads pages, which the plain writes change
 * behind its back.
 * A snapshot (a new generation) is written into `<db>.lastgasp-new`, fsynced, and renamed over the file.
 *
 * The position (the last entry whose transaction is in the file) is the latest journal's seq; the state
 * file `sqlite-<name>.json` in the data directory keeps the generation, whether the capture owns the file,
 * and the position as of its last write, durably, at a snapshot, a handover and a set-aside only: an apply
 * costs two syncs (its journal, the file), not four. While the node is primary the
 * replica is paused (the capture owns the file); when it is a standby again its file holds the application's
 * own writes, some of which may never have left: that file is set aside and the replica waits for the
 * new primary's next snapshot.
 */
import { open as openFile, readFile, rename, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { FlashLog } from '../log/index.ts';
import { nodeFs, writeFileAtomic, type Clock, type Logger } from '../util/index.ts';
import { decodeSqliteEntry, SQLITE_FLAG_SNAPSHOT, type SqliteEntry } from './entry.ts';
import { applyPagesLocked, closeApplyConnection, markNewFile, switchToWal } from './replica-apply.ts';
import { RedoJournals } from './redo-journal.ts';
import { StepSpacing } from './step-spacing.ts';
import type { WalFrame } from './wal-format.ts';

/** Entries read from the log per step (bounds a catch-up's memory with the log's own 4 MiB read limit). */
const REPLICA_READ_ENTRIES = 1024;
const REPLICA_READ_BYTES = 4 * 1024 * 1024;
/** Frames held before they are written and checkpointed even if more commits are coming. */
const REPLICA_FRAMES_MAX = 4096;

export interface ReplicaOptions {
  path: string;
  name: string;
  dataDir: string;
  log: FlashLog;
  logger: Logger;
  clock: Clock;
  /**
   * The least time between the starts of two applies that new commits in the log set off (0, the default:
   * none). Each apply costs two fsyncs (the redo journal's and the file's), so a standby behind a busy
   * application applies what a few batches brought at once; its copy lags by up to this much. A handover
   * (takeover) applies everything at once, whatever the interval.
   */
  applyIntervalMs?: number;
}

interface ReplicaState {
  /** Every entry up to this seq is accounted for: applied, or not this database's. */
  seq: number;
  generation: string | undefined;
  /** Set when this node's capture started on the file: its contents are then the application's own. */
  captured: boolean;
}

export class SqliteReplica {
  private state: ReplicaState = { seq: 0, generation: undefined, captured: false };
  /** The transaction being assembled, and the transactions complete but not yet written. */
  private open: Map<number, Uint8Array> | undefined;
  private ready: WalFrame[] = [];
  private readySeq = 0;
  private snapshotFile: Awaited<ReturnType<typeof openFile>> | undefined;
  private pageBytes = 0;
  private scanned = 0;
  private paused = true;
  private running: Promise<void> | undefined;
  private again = false;
  private unsubscribe: (() => void) | undefined;
  readonly counters = { commitsApplied: 0, snapshotsApplied: 0, snapshotsAbandoned: 0, entriesSkipped: 0, entriesUndecodable: 0, setAside: 0, appliedSeq: 0, lastSetAside: '' };

  private readonly journals: RedoJournals;
  /** Applies set off by new commits, spaced by applyIntervalMs. */
  private readonly spacing: StepSpacing;

  constructor(private readonly options: ReplicaOptions) {
    this.journals = new RedoJournals(options.path);
    this.spacing = new StepSpacing(options.clock, options.applyIntervalMs ?? 0);
  }

  /** The last seq read from the log (applied, skipped, or waiting for its commit). */
  get position(): number {
    return this.scanned;
  }

  private get stateFile(): string {
    return join(this.options.dataDir, `sqlite-${this.options.name}.json`);
  }

  async load(): Promise<void> {
    try {
      this.state = { ...this.state, ...(JSON.parse(await readFile(this.stateFile, 'utf8')) as Partial<ReplicaState>) };
    } catch {
      // No state yet: apply from the log's start.
    }
    this.scanned = this.state.seq;
    this.counters.appliedSeq = this.state.seq;
    await this.redo();
  }

  /** Follow the log (this node is a standby). A file the application wrote here is set aside first. */
  async resume(): Promise<void> {
    if (this.state.captured) await this.setAside();
    this.paused = false;
    this.holdTail();
    this.unsubscribe ??= this.options.log.onCommit(() => this.kickSpaced());
    this.kick();
    await this.running;
  }

  /** Stop applying (this node becomes primary, or the agent stops); resolves once no apply runs. */
  async pause(): Promise<void> {
    this.paused = true;
    this.unsubscribe?.();
    this.unsubscribe = undefined;
    this.spacing.cancel();
    await this.running;
    this.options.log.holdTail(this.holdName, undefined);
    closeApplyConnection(this.options.path);
  }

  /** What comes after this file's position stays in the log's memory until it is read (FlashLog.holdTail). */
  private holdTail(): void {
    if (!this.paused) this.options.log.holdTail(this.holdName, this.scanned + 1);
  }

  private get holdName(): string {
    return `sqlite:${this.options.name}`;
  }

  /**
   * Apply everything up to `seq`, then let the capture own the file: the application starts on it. Not on a
   * file this node's capture owned when the agent stopped (it restarts as primary): that file is the
   * application's own, and the log holds only what was captured from it, perhaps less (what it committed
   * while the agent was down, or before the capture copied it). Applying the log there would write the
   * capture's own snapshot over the file and lose those transactions.
   */
  async handOverAt(seq: number): Promise<void> {
    if (this.state.captured) await this.pause();
    else await this.applyUpTo(seq);
    await this.saveState({ ...this.state, captured: true });
  }

  private async applyUpTo(seq: number): Promise<void> {
    this.paused = false;
    while (this.scanned < seq) {
      const before = this.scanned;
      await this.running;
      this.kick();
      await this.running;
      // An apply that failed (logged) makes no progress: the application starts on what the file holds.
      if (this.scanned === before || this.options.log.watermarks().committed < seq) break;
    }
    await this.pause();
    // A file this replica made is in rollback mode (replica-apply.ts); the application and the capture
    // expect WAL mode.
    if (this.state.generation !== undefined) {
      // A reader holding the file for long keeps SQLite from switching it: the application then starts on it
      // in rollback mode and switches it itself (its PRAGMA journal_mode=WAL), and the capture attaches after.
      await switchToWal(this.options.path).catch((error: unknown) => this.options.logger.warn(`sqlite ${this.options.name}: cannot switch ${this.options.path} back to WAL mode before the application starts (${(error as Error).message}); the application's PRAGMA journal_mode=WAL does it`, { event: 'sqlite-wal-switch', db: this.options.name }));
    }
  }

  status(): Record<string, unknown> {
    return { name: this.options.name, path: this.options.path, role: 'replica', generation: this.state.generation, ...this.counters };
  }

  /** An apply for what new commits brought: spaced by applyIntervalMs. */
  private kickSpaced(): void {
    if (this.paused) return;
    if (this.running) {
      this.again = true;
      return;
    }
    if (this.spacing.due(() => this.kick())) this.kick();
  }

  private kick(): void {
    if (this.paused) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.spacing.started();
    this.running = this.catchUp()
      .catch((error: unknown) => this.options.logger.error(`sqlite ${this.options.name}: cannot apply the log to ${this.options.path}: ${(error as Error).message}`, { event: 'sqlite-replica-error', db: this.options.name }))
      .finally(() => {
        this.running = undefined;
        if (this.again) {
          this.again = false;
          this.kickSpaced();
        }
      });
  }

  private async catchUp(): Promise<void> {
    const log = this.options.log;
    if (this.scanned + 1 < log.firstSeq) {
      // Retention removed entries this file never got: only a later snapshot can bring it up to date.
      this.options.logger.warn(`sqlite ${this.options.name}: the log starts at seq ${log.firstSeq}, after this file's position ${this.scanned}; waiting for the primary's next snapshot`, { event: 'sqlite-replica-gap', db: this.options.name });
      this.scanned = log.firstSeq - 1;
      this.state = { ...this.state, generation: undefined };
    }
    while (!this.paused && this.scanned < log.watermarks().committed) {
      const batch = await log.read(this.scanned + 1, { entriesMax: REPLICA_READ_ENTRIES, bytesMax: REPLICA_READ_BYTES });
      if (batch.length === 0) break;
      for (const entry of batch) {
        await this.take(entry.seq, entry.payload);
        this.scanned = entry.seq;
        if (this.ready.length >= REPLICA_FRAMES_MAX) await this.flush();
      }
      await this.flush();
      this.holdTail();
    }
  }

  private async take(seq: number, payload: Uint8Array): Promise<void> {
    const decoded = decodeSqliteEntry(payload);
    if (decoded === undefined) return;
    if (!decoded.ok) {
      this.counters.entriesUndecodable++;
      return;
    }
    const entry = decoded.entry;
    if (entry.db !== this.options.name) return;
    if (entry.flags & SQLITE_FLAG_SNAPSHOT) {
      await this.flush();
      await this.startSnapshot(entry);
    } else if (this.snapshotFile && entry.generation !== this.snapshotGeneration) {
      // A snapshot cut short (an entry of another generation before its last): its pages must not be mixed
      // with that generation's transactions, nor its end taken from one of them.
      await this.abandonSnapshot(entry.generation);
    }
    if (!(entry.flags & SQLITE_FLAG_SNAPSHOT) && entry.generation !== this.state.generation && entry.generation !== this.snapshotGeneration) {
      // A transaction of a generation whose snapshot this file does not hold: applying it would corrupt.
      this.counters.entriesSkipped++;
      return;
    }
    if (this.snapshotFile) {
      for (const { pgno, page } of entry.pages) await this.snapshotFile.write(page, 0, page.length, (pgno - 1) * entry.pageBytes);
      if (entry.commitPages !== 0) await this.finishSnapshot(entry, seq);
      return;
    }
    this.open ??= new Map();
    for (const { pgno, page } of entry.pages) this.open.set(pgno, page);
    if (entry.commitPages === 0) return;
    const pages = [...this.open];
    this.open = undefined;
    this.pageBytes = entry.pageBytes;
    pages.forEach(([pgno, page], index) => this.ready.push({ pgno, page, commitPages: index === pages.length - 1 ? entry.commitPages : 0 }));
    this.readySeq = seq;
  }

  private snapshotGeneration: string | undefined;

  private async startSnapshot(entry: SqliteEntry): Promise<void> {
    await this.snapshotFile?.close();
    this.open = undefined;
    this.snapshotGeneration = entry.generation;
    this.snapshotFile = await openFile(this.options.path + '.lastgasp-new', 'w+', 0o600);
  }

  private async abandonSnapshot(next: string): Promise<void> {
    const generation = this.snapshotGeneration;
    await this.snapshotFile!.close();
    this.snapshotFile = undefined;
    this.snapshotGeneration = undefined;
    await rm(this.options.path + '.lastgasp-new', { force: true });
    this.counters.snapshotsAbandoned++;
    this.options.logger.warn(`sqlite ${this.options.name}: the snapshot of generation ${generation} ended before its last entry (an entry of generation ${next} came next); it is dropped and this file stays as it was`, { event: 'sqlite-snapshot-abandoned', db: this.options.name, generation, next });
  }

  private async finishSnapshot(entry: SqliteEntry, seq: number): Promise<void> {
    const file = this.snapshotFile!;
    this.snapshotFile = undefined;
    await file.truncate(entry.commitPages * entry.pageBytes);
    await markNewFile(file, entry.commitPages);
    await file.datasync();
    await file.close();
    // The position so far into the state file, then the journals emptied (their pages are the old file's):
    // a crash from here on finds no redo to write into the new file, and no transactions of the old
    // generation between the state's position and this snapshot.
    await this.saveState(this.state);
    await this.journals.clear();
    // The old file's WAL (always checkpointed, but perhaps left by a crash) must not meet the new file.
    await rm(this.options.path + '-wal', { force: true });
    await rm(this.options.path + '-shm', { force: true });
    await rename(this.options.path + '.lastgasp-new', this.options.path);
    await nodeFs.syncDir(dirname(this.options.path));
    this.snapshotGeneration = undefined;
    this.counters.snapshotsApplied++;
    await this.saveState({ seq, generation: entry.generation, captured: false });
    this.options.logger.info(`sqlite ${this.options.name}: snapshot of generation ${entry.generation} applied (${entry.commitPages} pages)`, { event: 'sqlite-snapshot-applied', db: this.options.name, seq, generation: entry.generation });
  }

  /**
   * Apply the complete transactions: first into the redo journal (the frames in WAL format, the commit frame
   * last, fdatasynced), then their page images into the file, which is cut to the last commit's size and
   * fdatasynced; then the journal is emptied. A crash before the journal's commit frame is on flash leaves
   * the file as it was; after it, `load` applies the journal again (page images: applying twice is once).
   */
  private async flush(): Promise<void> {
    if (this.ready.length === 0) return;
    const frames = this.ready;
    const commits = frames.filter((frame) => frame.commitPages !== 0).length;
    this.ready = [];
    await this.journals.write(this.pageBytes, this.readySeq, frames);
    await applyPagesLocked(this.options.path, this.pageBytes, frames);
    // Durable in the journal: the state file is not written (see the file's comment).
    this.state = { ...this.state, seq: this.readySeq };
    this.counters.appliedSeq = this.readySeq;
    this.counters.commitsApplied += commits;
  }

  /** An apply a crash interrupted goes into the file again; the latest journal's seq is the position. */
  private async redo(): Promise<void> {
    const latest = await this.journals.latest();
    if (!latest || (latest.seq !== undefined && latest.seq <= this.state.seq)) return;
    await applyPagesLocked(this.options.path, latest.pageBytes, latest.frames);
    if (latest.seq !== undefined) {
      this.state = { ...this.state, seq: latest.seq };
      this.scanned = this.counters.appliedSeq = latest.seq;
    } else {
      // An older agent's journal (its state file has the position): done with, so never applied again.
      await this.journals.clear();
    }
    this.options.logger.info(`sqlite ${this.options.name}: the last apply (to seq ${latest.seq ?? this.state.seq}) applied again from ${latest.path}`, { event: 'sqlite-redo', db: this.options.name, seq: latest.seq });
  }

  private async setAside(): Promise<void> {
    const target = `${this.options.path}.set-aside-${this.options.clock.nowMs()}`;
    // The journals' pages are this file's: the next file must never get them from a redo.
    await this.journals.clear();
    let moved = false;
    for (const suffix of ['', '-wal']) {
      moved = (await rename(this.options.path + suffix, target + suffix).then(() => true, () => false)) || moved;
    }
    await rm(this.options.path + '-shm', { force: true });
    if (moved) {
      this.counters.setAside++;
      this.counters.lastSetAside = target;
      this.options.logger.warn(`sqlite ${this.options.name}: this node's database may hold transactions that never reached the new primary; set aside as ${target} (the database follows the new primary's from its next snapshot)`, { event: 'sqlite-set-aside', db: this.options.name, file: target });
    }
    // A demotion may have cut the log below this position; the new primary's snapshot lies after the cut.
    const seq = Math.min(this.state.seq, this.options.log.watermarks().committed);
    this.scanned = seq;
    await this.saveState({ seq, generation: undefined, captured: false });
  }

  private async saveState(state: ReplicaState): Promise<void> {
    this.state = state;
    this.counters.appliedSeq = state.seq;
    await writeFileAtomic(this.stateFile, new TextEncoder().encode(JSON.stringify(state)));
  }
}
