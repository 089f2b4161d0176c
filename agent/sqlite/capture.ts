/**
 * Copies one SQLite database's committed transactions into the log while this node is primary (config
 * `app.sqlite`), without the application knowing:
 *
 * 1. A read transaction of the agent's own (a read-only connection) pins the WAL: while it holds a snapshot
 *    that includes WAL frames, no checkpoint goes past it and no writer can reset the WAL to its start, so no
 *    frame is overwritten before it is copied. After each copy it is taken again, at the new end.
 * 2. The `-wal` file is read with plain reads (at its changes, wal-watch.ts, and a short poll), verified frame by
 *    frame (salts, checksum chain: wal-format.ts), and every transaction up to the last valid commit frame
 *    becomes log entries (entry.ts), fsynced and replicated like every other entry.
 * 3. The agent is the database's checkpointer (checkpointer.ts): once the WAL holds checkpointFrames copied
 *    frames it checkpoints (PASSIVE) up to its read transaction, which is enough when the application has
 *    paused; otherwise it takes the write barrier, copies to the WAL's end, and checkpoints with nothing of
 *    its own pinned, so the checkpoint is complete however busy the application. The WAL is then reset by
 *    the application's next write, a reset the capture expects (salt-1 one higher). That keeps the WAL bounded.
 * 4. Every other change of the WAL's header (a reset it did not expect, the WAL gone) means frames it never
 *    saw may be lost: it starts a new generation, a consistent snapshot of the whole database (read inside
 *    its read transaction through sqlite_dbpage), chunked through the log. A start goes on in the generation
 *    it left when the WAL still holds what it captured (capture-state.ts); otherwise it is a new one too.
 * 5. A log that refuses appends (LOG_FULL: replication behind) holds the capture back, not the application:
 *    the capture goes on after the last transaction the log took whole, checkpoints nothing meanwhile (the
 *    WAL keeps what the log could not take, and grows), and a snapshot goes on from its last entry taken.
 *    Past walBytesMax it gives up what the log could not take (giveUp): the WAL is checkpointed and starts
 *    over, and a new generation follows once the log has room for the database.
 *
 * One class of some 760 lines: the copy, the checkpoint and a new generation each move the same three things
 * (the position, the read pin and the barrier), and splitting them would pass all three back and forth. What
 * stands apart is in files of its own: reading the WAL (wal-file.ts), the barrier and the checkpoints
 * (checkpointer.ts), the position file (capture-state.ts), the entries (entry.ts), the spacing of steps
 * (step-spacing.ts), when a change of the WAL sets one off (wal-watch.ts).
 */
import { LastgaspError, type Clock, type Logger, type TimerHandle } from '../util/index.ts';
import { openSqlite } from './connection.ts';
import { BARRIER_HOLD_MAX_MS, BARRIER_TAIL_FRAMES_MAX, barrierSpinMs, checkpointDue, WAL_FRAMES_FACTOR, WalCheckpointer, type CheckpointResult, type LastCheckpoint } from './checkpointer.ts';
import { CaptureStateFile, captureStatePath, fileIdentity, loadCaptureState, resumable, type CaptureResumeOptions } from './capture-state.ts';
import { checkDatabase } from './checks.ts';
import { appendGrouped, pagesPerEntry, transactionEntries } from './entry.ts';
import { ReadPin } from './read-pin.ts';
import { StepSpacing } from './step-spacing.ts';
import { snapshotPayloads } from './snapshot-pages.ts';
import { LagSamples } from './status-lines.ts';
import { decodeWalHeader, scanWalFrames, walFrameOffset, WAL_HEADER_BYTES, type WalCursor, type WalHeader, type WalScan } from './wal-format.ts';
import { CAPTURE_READ_BYTES_MAX, findWalEnd, WalFile, type Position } from './wal-file.ts';
import { WalWatch } from './wal-watch.ts';

/** The least WAL read per step when the log is nearly full (copy): a transaction of a few pages. */
const CAPTURE_READ_BYTES_MIN = 64 * 1024;
/** A generation's snapshot is taken again for retention only after this many times its size in transactions. */
const RESNAPSHOT_FACTOR = 4;
/** Lags kept for the p50/p99 in status. */
const LAG_SAMPLES = 512;
/** How soon a transaction seen written and not yet published is read again (capture.readAgainSoon). */
const PUBLISH_WAIT_MS = 1;
/**
 * The most log bytes one WAL frame becomes beside its page: its page number, and (one page per entry at
 * worst) an entry's framing and a record's header and alignment (entry.ts, 256 + 32).
 */
const FRAME_ENTRY_BYTES_MAX = 4 + 256 + 32;
/** A snapshot's entries weigh a little more than its pages (page numbers, entry and record framing). */
const SNAPSHOT_OVERHEAD = 1.05;
/**
 * After a snapshot dropped for the WAL's bound, the next one that does not fit the log's room whole waits
 * this long, doubled for each dropped in a row, up to the most: a database larger than the room (a small
 * log.unreplicatedHardBytes) behind an application that outwrites the link would otherwise be read and
 * partly sent again every second, never to finish (seen: 67 in a minute in the end-to-end test).
 */
const SNAPSHOT_RETRY_MS = 1000;
const SNAPSHOT_RETRY_MS_MAX = 5 * 60_000;
/** How many times in a row a checkpoint that copied a long tail under the barrier backfills it and tries again. */
const LONG_TAIL_ROUNDS = 2;

export interface CaptureOptions {
  path: string;
  name: string;
  /** Config field, for errors: "app.sqlite[0]". */
  field: string;
  node: string;
  pollMs: number;
  /**
   * The least time between the starts of two steps a file change sets off (0, the default: none): the
   * transactions committed meanwhile go into the log in one append and out in one batch, one fsync here and
   * on the standby instead of one each. The capture's lag grows by up to this much.
   */
  copyIntervalMs?: number;
  checkpointFrames: number;
  entryBytesMax: number;
  /** Appends entries in one group commit; resolves with the last one's seq. */
  append(payloads: readonly Uint8Array[]): Promise<number>;
  /**
   * Bytes the log would take now (FlashLog.appendRoom). A complete checkpoint under the barrier lets the
   * application start the WAL over as soon as the barrier is let go, so it runs only when the transactions
   * read under it fit: those the log then refused would be gone from the WAL, and a new generation follow.
   */
  appendRoom?: () => number;
  /** Whether the log holds nothing unreplicated: its room is then the most it will be (giveUp). */
  logCaughtUp?: () => boolean;
  /**
   * The most bytes of committed frames the WAL may hold while the log refuses the capture's appends (the WAL
   * keeps what the log could not take); past it they are given up (giveUp). Undefined: no bound.
   */
  walBytesMax?: number;
  logger: Logger;
  clock: Clock;
  /** Keep the position across restarts and go on in the same generation when it still holds (capture-state.ts). */
  resume?: CaptureResumeOptions | undefined;
}

export class SqliteCapture {
  private reader: ReadPin | undefined;
  private checkpointer: WalCheckpointer | undefined;
  private wal: WalFile | undefined;
  private stateFile: CaptureStateFile | undefined;
  private position: Position | undefined;
  private generation = '';
  private generationCount = 0;
  private expectReset = false;
  /** Steps run one at a time, in the order asked for; a step queued and not yet begun is not queued twice. */
  private chain: Promise<void> = Promise.resolve();
  private queued = false;
  /** Steps at the WAL's changes besides the poll (wal-watch.ts). */
  private readonly walWatch: WalWatch;
  private timer: TimerHandle | undefined;
  /** Steps set off by file changes, spaced by copyIntervalMs. */
  private readonly spacing: StepSpacing;
  private stopped = true;
  private publishWait: { at: number; timer: TimerHandle } | undefined;
  private lastError: string | undefined;
  private lastErrorKind: string | undefined;
  private generationReason = '';
  private readonly lags = new LagSamples(LAG_SAMPLES);
  readonly counters = { framesCaptured: 0, commitsCaptured: 0, entriesAppended: 0, bytesAppended: 0, appendFailures: 0, generations: 0, walResetsSeen: 0, checkpoints: 0, fullCheckpoints: 0, barrierTakes: 0, barrierBusy: 0, barrierMsMax: 0, lastCommitSeq: 0, walBytes: 0, walGiveUps: 0 };

  constructor(private readonly options: CaptureOptions) {
    this.spacing = new StepSpacing(options.clock, options.copyIntervalMs ?? 0);
    this.walWatch = new WalWatch({ path: options.path, copyIntervalMs: options.copyIntervalMs ?? 0, pollMs: options.pollMs, logger: options.logger, kick: () => this.kick() });
  }

  start(): void {
    this.stopped = false;
    this.walWatch.start();
    this.schedule();
    this.kick();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.timer?.cancel();
    this.spacing.cancel();
    this.publishWait?.timer.cancel();
    this.walWatch.stop();
    await this.chain;
    this.detach();
  }

  private detach(): void {
    this.reader?.close();
    this.checkpointer?.close();
    this.wal?.close();
    this.stateFile?.close();
    this.reader = this.checkpointer = undefined;
    this.wal = undefined;
    this.stateFile = undefined;
    this.position = undefined;
    // Its read transaction is gone, and with it what kept the frames after the snapshot's point.
    this.snapshotting = undefined;
  }

  /**
   * Copy every transaction committed so far; resolves with the log seq of the last one captured (0: none).
   * A failure is the caller's to handle, and status says it as it does a background step's.
   */
  async captureNow(): Promise<number> {
    const step = this.chain.then(() => this.step());
    this.chain = step.catch((error: unknown) => this.failed(error));
    await step;
    return this.counters.lastCommitSeq;
  }

  status(): Record<string, unknown> {
    const [lagMsP50, lagMsP99] = this.lags.quantiles([0.5, 0.99]);
    return { name: this.options.name, path: this.options.path, role: 'capture', generation: this.generation, generationReason: this.generationReason, ...this.counters, walGivenUp: this.givenUp !== undefined, lagMsP50, lagMsP99, error: this.lastError };
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = this.options.clock.setTimeout(() => {
      this.kick();
      this.schedule();
    }, this.options.pollMs);
  }

  private kick(): void {
    if (this.stopped || this.queued) return;
    // Spaced by copyIntervalMs while the application writes: the changes meanwhile are copied by one step.
    if (!this.spacing.due(() => this.kick())) return;
    this.queued = true;
    this.chain = this.chain.then(async () => {
      this.queued = false;
      this.spacing.started();
      if (this.stopped) return;
      this.walWatch.stepBegins();
      await this.step().catch((error: unknown) => this.failed(error));
      this.walWatch.stepEnded();
    });
  }

  /**
   * A transaction written and not yet published in the WAL index when the step read it (WalRead.unpublished):
   * its file-change event came first and was spent. Read again after PUBLISH_WAIT_MS instead of the next
   * poll; once per position, so a writer killed between the two costs one extra read.
   */
  private readAgainSoon(): void {
    const at = this.position?.cursor.frameIndex ?? 0;
    if (this.stopped || this.publishWait?.at === at) return;
    this.publishWait?.timer.cancel();
    const timer = this.options.clock.setTimeout(() => this.kick(), PUBLISH_WAIT_MS);
    this.publishWait = { at, timer };
  }

  /**
   * Logged once per failure, not once per step: a message that differs only in its figures (the log's
   * LOG_FULL names its unreplicated bytes, which move at every step while the brokers are away) is the same
   * failure. Status has the latest message as it is.
   */
  private failed(error: unknown): void {
    const message = (error as Error).message;
    const kind = withoutFigures(message);
    if (kind !== this.lastErrorKind) this.options.logger.error(`sqlite ${this.options.name}: ${message}`, { event: 'sqlite-capture-error', db: this.options.name, code: (error as LastgaspError).code });
    this.lastError = message;
    this.lastErrorKind = kind;
  }

  private async step(): Promise<void> {
    if (!this.reader) {
      try {
        if (!(await this.attach())) return;
      } catch (error) {
        // Half attached (the application held its lock while creating the file, say): start over next step.
        if (!this.snapshotting) {
          this.detach();
          throw error;
        }
        // Attached, with the first generation's snapshot begun and the rest refused (a full log): it goes on
        // from there at the next steps, as any snapshot does. Detached, each step would begin a new one and
        // append what fits of it, and a database larger than the log's room would never get in.
        if (this.appendFailing && !this.givenUp) await this.boundWal();
        throw error;
      }
    }
    let before: number | undefined;
    try {
      // Frames given up for the WAL's bound: nothing is copied before a new generation.
      if (this.givenUp) await this.afterGiveUp();
      // A snapshot the log refused part of goes on first: nothing of this database is appended before it ends.
      if (this.snapshotting) await this.appendSnapshot();
      before = this.position?.cursor.frameIndex;
      await this.copy();
    } catch (error) {
      if (this.appendFailing && !this.givenUp) await this.boundWal();
      throw error;
    }
    // Not while appends fail (a full log): the frames not in the log yet must stay in the WAL, which grows.
    if (!this.appendFailing && checkpointDue(this.position, this.lastCheckpoint, this.options.checkpointFrames, this.position?.cursor.frameIndex === before)) await this.checkpoint();
    // A standby that fell behind the log's retention waits for a snapshot after the gap (replica.ts): one
    // comes whenever retention has removed this generation's, so the log always holds one to start from.
    // Not sooner than RESNAPSHOT_FACTOR times the snapshot's bytes in transactions: retention drops segments
    // as soon as they are replicated, and a snapshot larger than a segment would otherwise set off the next.
    const firstSeq = this.options.resume?.log.firstSeq ?? 0;
    if (this.snapshotSeq > 0 && firstSeq > this.snapshotSeq && this.bytesSinceSnapshot >= RESNAPSHOT_FACTOR * this.snapshotBytes) {
      await this.newGeneration(`retention removed the generation's snapshot (seq ${this.snapshotSeq}, the log now starts at ${firstSeq}): a standby behind it needs a new one`);
    }
    this.lastError = this.lastErrorKind = undefined;
  }

  /** Open the connections once the database exists and passes the checks, and start the first generation. */
  private async attach(): Promise<boolean> {
    const { options } = this;
    // The check reads the file through the process's kept descriptor (db-file.ts): closing one of its own
    // would drop every POSIX lock the process holds on it, SQLite's included, and an application's last
    // close would then checkpoint and delete the WAL under the agent.
    const probe = await openSqlite(':memory:', false);
    const version = String(probe.get('SELECT sqlite_version() AS v')?.v ?? '0');
    probe.close();
    const check = await checkDatabase(options.path, `${options.field}.path`, version, options);
    if (!check.exists) return false;
    const first = await openSqlite(options.path, true);
    const second = await openSqlite(options.path, true).catch((error: unknown) => {
      first.close();
      throw error;
    });
    this.reader = new ReadPin([first, second], options.path, options.field);
    this.checkpointer = new WalCheckpointer(options.path);
    await this.checkpointer.open();
    this.identity = await fileIdentity(options.path);
    if (!options.resume) {
      await this.newGeneration('the capture started');
      return true;
    }
    // The read transaction first: from here on the WAL cannot be reset before the first copy.
    this.reader.retake();
    const state = await loadCaptureState(captureStatePath(options.resume.dataDir, options.name));
    const resume = await resumable(state, options.path, options.name, options.resume.log);
    if (!resume.ok) {
      await this.newGeneration(resume.reason);
      return true;
    }
    this.generation = state!.generation;
    this.position = { header: resume.header, cursor: resume.cursor };
    this.expectReset = state!.expectReset;
    this.counters.lastCommitSeq = state!.seq;
    this.snapshotSeq = state!.snapshotSeq;
    this.generationReason = 'resumed after a restart';
    options.logger.info(`sqlite ${options.name}: capture resumed in generation ${this.generation} at WAL frame ${resume.cursor.frameIndex} (log seq ${state!.seq}); no snapshot needed`, { event: 'sqlite-capture-resumed', db: options.name, generation: this.generation, seq: state!.seq });
    return true;
  }

  private identity: { dev: number; ino: number } | undefined;
  /** Transactions read under the barrier, appended once it is released (then the WAL may be reset). */
  private pending: PendingRead[] | undefined;
  /** The last append failed (LOG_FULL, most often): no checkpoint until one succeeds. */
  private appendFailing = false;
  /** What was given up for the WAL's bound (giveUp), until the new generation that follows. */
  private givenUp: { reason: string; retryAtMs: number; walFrames: number } | undefined;
  /** Snapshots dropped for the WAL's bound since the last generation that got into the log whole. */
  private snapshotsDropped = 0;
  /** A new generation whose snapshot the log has taken part of (appendSnapshot). */
  private snapshotting: Snapshotting | undefined;
  /** A checkpoint's copy under the barrier, which a timer lets go after BARRIER_HOLD_MAX_MS. */
  private barrierCopy = false;
  /** Steps in a row that found the barrier taken; the unbarriered checkpoint runs at the first only. */
  private barrierTries = 0;
  /** Where the last checkpoint left the position. */
  private lastCheckpoint: LastCheckpoint | undefined;
  /** The log seq of this generation's snapshot: once retention removes it, a standby starting over has none. */
  private snapshotSeq = 0;
  private snapshotBytes = 0;
  /** Bytes of transactions appended since the snapshot (this run's only: a restart counts from 0 again). */
  private bytesSinceSnapshot = 0;

  /** After each append: what a restart needs to go on in this generation (capture-state.ts). */
  private persist(): void {
    const { resume } = this.options;
    const position = this.position;
    if (!resume || !position?.header || !this.identity || this.counters.lastCommitSeq === 0) return;
    const { salt1, salt2 } = position.header;
    this.stateFile ??= new CaptureStateFile(captureStatePath(resume.dataDir, this.options.name));
    this.stateFile.save({ generation: this.generation, seq: this.counters.lastCommitSeq, ...this.identity, snapshotSeq: this.snapshotSeq, salt1, salt2, frameIndex: position.cursor.frameIndex, checksum: [position.cursor.checksum[0], position.cursor.checksum[1]], expectReset: this.expectReset });
  }

  /**
   * Read the WAL from the position to its last valid commit and append what is new; start over when it must.
   * Whether it reached the WAL's end (false: a checkpoint's barrier was let go first, `barrierCopy`).
   */
  private async copy(): Promise<boolean> {
    // No more than the log has room for (appendRoom): what it refused would be read and encoded again.
    const room = this.options.appendRoom?.();
    const readBytes = room === undefined ? CAPTURE_READ_BYTES_MAX : Math.max(CAPTURE_READ_BYTES_MIN, Math.min(CAPTURE_READ_BYTES_MAX, room));
    let bytesMax = readBytes;
    for (;;) {
      // Into the WAL reader's own buffer unless this read waits under the barrier (pending) past the next.
      const wal = await this.readWal(this.position!, bytesMax, this.pending === undefined);
      if (wal === 'none' || wal === 'new-generation') return true;
      const { header, bytes } = wal;
      const scan = scanWalFrames(bytes, header, this.position!.cursor);
      if (scan.commits > 0) {
        const start = this.position!.cursor;
        if (this.pending) this.pending.push({ header, start, scan, mtimeMs: wal.mtimeMs });
        else await this.appendTransactions(header, start, scan, wal.mtimeMs);
        this.position = { header, cursor: scan.end };
        this.expectReset = false;
        this.reader!.retake();
        if (!this.pending) this.persist();
      }
      if (!wal.more) {
        if (wal.unpublished) this.readAgainSoon();
        return true;
      }
      if (this.barrierCopy && !this.checkpointer!.held) return false;
      // Behind an application that writes faster than the log takes it: go on under the barrier (its writers
      // wait meanwhile), so that the WAL stops growing while the capture catches up (WAL_FRAMES_FACTOR).
      const behind = this.position!.cursor.frameIndex >= WAL_FRAMES_FACTOR * this.options.checkpointFrames;
      if (scan.commits > 0 && behind && !this.checkpointer!.held && (await this.checkpoint(true))) return true;
      // A transaction larger than one read: read more at once until its commit frame is in.
      bytesMax = scan.commits > 0 ? readBytes : bytesMax * 2;
    }
  }

  /** The header and the bytes after the cursor, or a new generation when the WAL is not the one followed. */
  private async readWal(position: Position, bytesMax: number, scratch: boolean): Promise<{ header: WalHeader; bytes: Uint8Array; mtimeMs: number; more: boolean; unpublished: boolean } | 'none' | 'new-generation'> {
    this.wal ??= new WalFile(this.options.path + '-wal');
    const file = await this.wal.read(position, bytesMax, scratch);
    this.counters.walBytes = file?.size ?? 0;
    this.walWatch.saw(file?.size, file?.mtimeMs);
    const decoded = file && file.head.length === WAL_HEADER_BYTES ? decodeWalHeader(file.head) : undefined;
    if (!decoded?.ok) {
      // No WAL (yet) is fine while none was followed; one that vanished or went bad took frames with it.
      if (position.header === undefined) return 'none';
      await this.newGeneration(decoded ? `the WAL header is not valid (${decoded.reason})` : 'the WAL disappeared');
      return 'new-generation';
    }
    const header = decoded.header;
    const followed = position.header;
    if (followed === undefined || (followed.salt1 === header.salt1 && followed.salt2 === header.salt2)) {
      if (followed === undefined) this.position = { header, cursor: { frameIndex: 0, checksum: header.checksum } };
      return { header, bytes: file!.frames, mtimeMs: file!.mtimeMs, more: file!.more, unpublished: file!.unpublished };
    }
    if (this.expectReset && header.salt1 === (followed.salt1 + 1) >>> 0) {
      // The reset that followed the agent's own full checkpoint: every frame of the old WAL was copied.
      this.counters.walResetsSeen++;
      this.expectReset = false;
      this.position = { header, cursor: { frameIndex: 0, checksum: header.checksum } };
      return this.readWal(this.position, bytesMax, scratch);
    }
    await this.newGeneration(`a WAL reset the agent did not see (salt-1 ${followed.salt1} → ${header.salt1}): the application checkpointed on its own, or the file was replaced`);
    return 'new-generation';
  }

  /**
   * Append a scan's transactions (read from `start`). When the log refuses (LOG_FULL, a fault), it holds a
   * prefix of them (appendGrouped): the position is put just after the last transaction it took whole, and
   * the rest is read from the WAL again at the next step. Never a transaction twice: a replica applying one
   * again after later ones would hold, for a while, a database the application never had. The rest of a
   * transaction split over several entries does come again, whole; the replica keeps a transaction's pages
   * by number until its commit, so the pages it gets twice are the same images.
   */
  private async appendTransactions(header: WalHeader, start: WalCursor, scan: WalScan, mtimeMs: number): Promise<void> {
    const perEntry = pagesPerEntry(this.options.entryBytesMax, header.pageBytes);
    const { payloads, ends } = transactionEntries({ db: this.options.name, generation: this.generation, pageBytes: header.pageBytes }, scan.frames, perEntry);
    let appended = 0;
    let refused = true;
    try {
      await this.appendAll(payloads, (entries, bytes) => {
        appended += entries;
        this.bytesSinceSnapshot += bytes;
      });
      refused = false;
    } finally {
      const whole = refused ? ends.filter((end) => end <= appended).length : ends.length;
      const cursor = whole === 0 ? start : scan.commitEnds[whole - 1]!;
      // Refused: the next step reads again after the last transaction the log took whole.
      if (refused) this.position = { header, cursor };
      this.counters.framesCaptured += cursor.frameIndex - start.frameIndex;
      this.counters.commitsCaptured += whole;
      if (whole > 0) this.lags.record(this.options.clock.nowMs() - mtimeMs);
    }
  }

  /** Append in groups (appendGrouped); `progress` after each group the log took. A refusal sets appendFailing. */
  private async appendAll(payloads: readonly Uint8Array[], progress: (entries: number, bytes: number, lastSeq: number) => void): Promise<void> {
    try {
      await appendGrouped(payloads, this.options.append, (seq, entries, bytes) => {
        this.counters.lastCommitSeq = seq;
        this.counters.entriesAppended += entries;
        this.counters.bytesAppended += bytes;
        progress(entries, bytes, seq);
      });
    } catch (error) {
      if (!this.appendFailing) this.options.logger.warn(`sqlite ${this.options.name}: the log refused the capture's append (${(error as Error).message}); the WAL keeps the transactions and no checkpoint runs until the log takes them`, { event: 'sqlite-append-refused', db: this.options.name, code: (error as LastgaspError).code });
      this.appendFailing = true;
      this.counters.appendFailures++;
      throw error;
    }
    if (this.appendFailing) this.options.logger.info(`sqlite ${this.options.name}: the log takes the capture's appends again`, { event: 'sqlite-append-resumed', db: this.options.name });
    this.appendFailing = false;
  }

  /**
   * The WAL's bound while the log refuses appends: past walBytesMax of committed frames, what the log could
   * not take is given up, and a snapshot waiting for room with it (its read transaction holds the WAL as the
   * capture's does; a standby given its first entries drops it at the next generation's, replica.ts). The
   * read transaction ends and the WAL is checkpointed whole, so the application's next write starts it over;
   * the standby keeps its copy as of the last transaction the log took, and a new generation follows once the
   * log has room (afterGiveUp). The file keeps the size it grew to (SQLite writes it again from its start) and
   * grows no further.
   */
  private async boundWal(): Promise<void> {
    const { options } = this;
    const max = options.walBytesMax;
    if (max === undefined) return;
    const wal = await this.walCommitted();
    if (wal.bytes <= max) return;
    const dropped = this.snapshotting;
    this.snapshotting = undefined;
    const reason = `the WAL outgrew walBytesMax (${wal.bytes} bytes committed, the most ${max}) while the log refused the capture's appends: the transactions not yet in the log were given up${dropped ? `, with generation ${dropped.generation}'s snapshot` : ''}`;
    if (dropped) this.snapshotsDropped++;
    const retryMs = dropped ? Math.min(SNAPSHOT_RETRY_MS_MAX, SNAPSHOT_RETRY_MS * 2 ** (this.snapshotsDropped - 1)) : 0;
    this.givenUp = { reason, retryAtMs: options.clock.nowMs() + retryMs, walFrames: -1 };
    this.counters.walGiveUps++;
    const when = retryMs > 0 ? `; one larger than the log's room is tried again in ${retryMs / 1000} s at the earliest` : '';
    options.logger.warn(`sqlite ${options.name}: ${reason}; the WAL starts over, and a new snapshot follows once the log has room${when}`, { event: 'sqlite-wal-given-up', db: options.name, walBytes: wal.bytes, walBytesMax: max, seq: this.counters.lastCommitSeq, droppedSnapshot: dropped?.generation, snapshotsDropped: this.snapshotsDropped });
    this.reader!.release();
    this.expectReset = false;
    this.checkpointGivenUp();
  }

  /**
   * After a give-up nothing is copied until the log has room for a snapshot of the database (or holds nothing
   * unreplicated, its room then the most it will be, and any retry delay after dropped snapshots is over,
   * SNAPSHOT_RETRY_MS, or the application wrote nothing since the last step); meanwhile the WAL is checkpointed as it fills (at checkpointFrames, or half
   * walBytesMax if that is less), and the step fails with LOG_FULL (the brownout's last capture waits for
   * room, as for any refusal). Then a new generation, whose snapshot stands for the frames given up.
   */
  private async afterGiveUp(): Promise<void> {
    const { options } = this;
    const room = options.appendRoom?.() ?? Number.POSITIVE_INFINITY;
    const needed = Math.max(CAPTURE_READ_BYTES_MIN, Math.ceil(this.databaseBytes() * SNAPSHOT_OVERHEAD));
    const givenUp = this.givenUp!;
    const wal = await this.walCommitted();
    // An application that wrote nothing since the last step does not outrun a snapshot now: no backoff.
    const quiet = wal.frames === givenUp.walFrames;
    givenUp.walFrames = wal.frames;
    const retryInMs = quiet ? 0 : givenUp.retryAtMs - options.clock.nowMs();
    if (room < needed && !(room >= CAPTURE_READ_BYTES_MIN && retryInMs <= 0 && options.logCaughtUp?.())) {
      if (wal.frames >= options.checkpointFrames || 2 * wal.bytes > (options.walBytesMax ?? Number.POSITIVE_INFINITY)) this.checkpointGivenUp();
      // Said the same way at each step (the capture logs a failure when its message changes).
      const retry = this.snapshotsDropped > 0 ? `, or for the retry after ${this.snapshotsDropped} snapshots dropped in a row` : '';
      throw new LastgaspError('LOG_FULL', `waiting for room in the log for a new snapshot (about ${Math.ceil(needed / 1048576)} MiB)${retry}; ${givenUp.reason}`);
    }
    const { reason } = givenUp;
    this.givenUp = undefined;
    // The give-up's barrier tries (checkpointGivenUp) are not the next checkpoint's: it starts with its unbarriered try again.
    this.barrierTries = 0;
    await this.newGeneration(reason);
  }

  /** The database's size as SQLite sees it (the file's, or more with pages only in the WAL so far). */
  private databaseBytes(): number {
    const row = this.reader!.connection.get('SELECT page_count * page_size AS bytes FROM pragma_page_count(), pragma_page_size()');
    return Number(row?.bytes ?? 0);
  }

  /**
   * The whole WAL checkpointed with nothing of the agent's pinned (giveUp), under the barrier: a checkpoint
   * complete while a writer is in its transaction is not enough, since that writer adds its frames without
   * starting the WAL over (it began on a read mark past the start), and so does every writer after it. Under
   * the barrier none is in a transaction, and the next one begins on the file alone and starts the WAL over.
   * Without the barrier (a writer kept it the whole spin) the checkpoint still backfills, and the next step
   * tries again with a longer spin (barrierSpinMs), as the barrier's checkpoint does.
   */
  private checkpointGivenUp(): void {
    const checkpointer = this.checkpointer!;
    const held = checkpointer.tryBarrier(barrierSpinMs(++this.barrierTries, false));
    if (held) this.barrierTries = 0;
    else this.counters.barrierBusy++;
    let result: CheckpointResult;
    try {
      result = checkpointer.passive();
    } finally {
      if (held) checkpointer.releaseBarrier();
    }
    this.counters.checkpoints++;
    if (result.full) this.counters.fullCheckpoints++;
  }

  /** The frames SQLite counts as committed in the WAL (its index's mxFrame) and their bytes: what it holds until its next reset. */
  private async walCommitted(): Promise<{ frames: number; bytes: number }> {
    this.wal ??= new WalFile(this.options.path + '-wal');
    const file = await this.wal.read(undefined, 0);
    const decoded = file && file.head.length === WAL_HEADER_BYTES ? decodeWalHeader(file.head) : undefined;
    if (!decoded?.ok) return { frames: 0, bytes: 0 };
    return { frames: file!.committedFrames, bytes: walFrameOffset(decoded.header.pageBytes, file!.committedFrames) };
  }

  /**
   * A consistent snapshot: under the write barrier the WAL's end is the last commit; the read transaction
   * taken there sees exactly that database, which is then read page by page while the application goes on.
   */
  private async newGeneration(reason: string): Promise<void> {
    const { options } = this;
    // Transactions read under the barrier go into the log before the snapshot that follows them.
    await this.appendPending();
    const generation = `${options.node}-${options.clock.nowMs().toString(36)}-${++this.generationCount}`;
    const position = await this.checkpointer!.hold(() => this.stopped, this.options.clock, this.options.pollMs, async () => {
      const position = await findWalEnd(options.path + '-wal');
      this.reader!.retake();
      return position;
    });
    // Found under a checkpoint's barrier (none follows a new generation): the writers need not wait for the snapshot.
    this.checkpointer!.releaseBarrier();
    const { payloads, pageCount } = await snapshotPayloads(this.reader!.connection, options.path, position?.cursor, { db: options.name, generation, entryBytesMax: options.entryBytesMax });
    this.snapshotting = { generation, reason, payloads, pageCount, position, appended: 0, firstSeq: 0 };
    await this.appendSnapshot();
  }

  /**
   * Append the snapshot's entries from where the log last stopped taking them (LOG_FULL: the next steps go
   * on as room comes, and nothing else of this database is appended meanwhile; the read transaction keeps the
   * frames after the snapshot's point in the WAL). Started again from the first entry, a snapshot larger
   * than the room replication frees between two steps would never end. The generation is this snapshot's
   * once it is all in the log.
   */
  private async appendSnapshot(): Promise<void> {
    const { options } = this;
    const snapshot = this.snapshotting!;
    await this.appendAll(snapshot.payloads.slice(snapshot.appended), (entries, _bytes, lastSeq) => {
      if (snapshot.appended === 0) snapshot.firstSeq = lastSeq - entries + 1;
      snapshot.appended += entries;
    });
    this.snapshotting = undefined;
    this.snapshotsDropped = 0;
    const { generation, reason, payloads, pageCount, position } = snapshot;
    this.generation = generation;
    this.snapshotSeq = snapshot.firstSeq;
    this.snapshotBytes = payloads.reduce((sum, payload) => sum + payload.length, 0);
    this.bytesSinceSnapshot = 0;
    this.position = position;
    // Every frame up to the WAL's end is in the snapshot, so a reset from here loses nothing (copying new
    // frames of this WAL clears this again, as after a checkpoint). Taken again on lock 0 when the WAL was all
    // checkpointed (a complete checkpoint just before), the read transaction lets the application's next write
    // reset the WAL: taken for a reset not seen, that cost a second whole snapshot (bench:sqlite, maintenance).
    this.expectReset = true;
    this.persist();
    this.counters.generations++;
    this.generationReason = reason;
    options.logger.info(`sqlite ${options.name}: new generation ${generation} (${reason}): snapshot of ${pageCount} pages`, { event: 'sqlite-generation', db: options.name, generation, pages: pageCount, seq: this.counters.lastCommitSeq, reason });
  }

  /**
   * The write barrier's checkpoint. First a passive checkpoint without it, up to the read transaction's mark
   * (the bulk of the pages, while the application writes on; all of it when the application paused, and then
   * enough: checkpointUnbarriered). Then, under the barrier (nothing commits meanwhile): copy to the WAL's end,
   * end the read transaction, checkpoint the rest, and take the read transaction again, on read lock 0 when
   * the checkpoint was complete (read-pin.ts), so the application's next write resets the WAL. The barrier is only tried, never waited for inside SQLite (a writer holding
   * it: the next step tries again). The reset is expected only when the checkpoint saw exactly the frames
   * copied; any other reset starts a new generation. `behind`: the most spin (BARRIER_HOLD_MAX_MS).
   */
  private async checkpoint(behind = false, again = LONG_TAIL_ROUNDS): Promise<boolean> {
    const checkpointer = this.checkpointer!;
    if (this.barrierTries++ === 0 && (await this.checkpointUnbarriered())) return true;
    // A log nearly full could not take what the copy under the barrier reads, and the checkpoint would not run
    // (pendingFits): the writers are not held for nothing.
    if ((this.options.appendRoom?.() ?? Number.POSITIVE_INFINITY) < CAPTURE_READ_BYTES_MIN) return false;
    if (!checkpointer.tryBarrier(barrierSpinMs(this.barrierTries, behind))) {
      this.counters.barrierBusy++;
      return false;
    }
    this.barrierTries = 0;
    this.counters.barrierTakes++;
    const takenMs = this.options.clock.nowMs();
    const generations = this.counters.generations;
    const markedAt = this.position?.cursor.frameIndex ?? 0;
    let result: CheckpointResult | undefined;
    let longTail = false;
    // Behind, the appends are made under the barrier (holding the writers back); otherwise they wait in memory.
    this.pending = behind ? undefined : [];
    // Let go on time, mid-append if need be (the writers give up after their busy_timeout); no checkpoint then.
    const release = () => {
      if (checkpointer.held) this.counters.barrierMsMax = Math.max(this.counters.barrierMsMax, this.options.clock.nowMs() - takenMs);
      checkpointer.releaseBarrier();
    };
    const letGo = this.options.clock.setTimeout(release, BARRIER_HOLD_MAX_MS);
    this.barrierCopy = true;
    try {
      try {
        const atEnd = await this.copy();
        // Not after a new generation, nor with a long tail (backfilled first without the barrier, then again).
        const tail = (this.position?.cursor.frameIndex ?? 0) - markedAt;
        const complete = atEnd && checkpointer.held && this.counters.generations === generations;
        longTail = complete && tail > BARRIER_TAIL_FRAMES_MAX;
        if (complete && !longTail && this.pendingFits()) {
          this.reader!.release();
          result = checkpointer.passive();
          this.reader!.retake();
        }
      } finally {
        letGo.cancel();
        this.barrierCopy = false;
        release();
      }
      await this.appendPending();
    } catch (error) {
      // Transactions read under the barrier and not appended (the read failed after them): the position goes
      // back to the first, read again at the next step. A refused append has put it after the last one the
      // log took whole already (appendTransactions) and left none pending.
      const first = this.pending?.[0];
      if (first) this.position = { header: first.header, cursor: first.start };
      throw error;
    } finally {
      this.pending = undefined;
    }
    if (result) this.checkpointed(result);
    this.persist();
    // A long tail was copied under the barrier and not backfilled there: backfill it now without the barrier
    // (the next round's first passive checkpoint, up to the read transaction just taken at the tail's end) and
    // take the barrier again for what came meanwhile. Waiting for the next step instead let the application
    // write on, a VACUUM's worth at a time, and the WAL grew to several times its bound (bench:sqlite's
    // maintenance mix).
    if (longTail && again > 0) await this.checkpoint(false, again - 1);
    return true;
  }

  /**
   * The first try, without the barrier (up to the read transaction's mark): enough when it backfilled exactly
   * the frames copied and the application has not written since. The read transaction is then taken again
   * on lock 0 (read-pin.ts), the application's next write starts the WAL over, and that reset is expected,
   * as after the barrier's checkpoint, with the writers never held. Written since, the read transaction is
   * at the new end (past the position, which only keeps more frames from a reset) and the barrier's
   * checkpoint follows: one counted here would leave the WAL growing until the next.
   */
  private async checkpointUnbarriered(): Promise<boolean> {
    const result = this.checkpointer!.passive();
    if (!completeAt(result, this.position)) return false;
    // Every frame copied is in the database file: a reset from here on loses nothing, whoever's write makes it.
    this.expectReset = true;
    this.reader!.retake();
    if ((await this.wal?.read(this.position, 0))?.more !== false) return false;
    this.barrierTries = 0;
    this.checkpointed(result);
    this.persist();
    return true;
  }

  /** Count a checkpoint; a complete one (completeAt) makes the application's next WAL reset expected. */
  private checkpointed(result: CheckpointResult): void {
    const complete = completeAt(result, this.position);
    this.counters.checkpoints++;
    this.lastCheckpoint = { salt1: this.position?.header?.salt1, frameIndex: this.position?.cursor.frameIndex ?? 0 };
    if (complete) {
      this.counters.fullCheckpoints++;
      this.expectReset = true;
    }
  }

  /** Whether the log has room now for the transactions read under the barrier (appendRoom; bytes at most). */
  private pendingFits(): boolean {
    const room = this.options.appendRoom?.();
    if (room === undefined || !this.pending) return true;
    const bytes = this.pending.reduce((sum, read) => sum + read.scan.frames.length * (read.header.pageBytes + FRAME_ENTRY_BYTES_MAX), 0);
    return bytes <= room;
  }

  /** Append the transactions read under the barrier, in order; those after a refused one are read again. */
  private async appendPending(): Promise<void> {
    for (const next of this.pending?.splice(0) ?? []) await this.appendTransactions(next.header, next.start, next.scan, next.mtimeMs);
  }
}

/** Transactions read under the barrier: their WAL, the position they were read from, the scan. */
interface PendingRead {
  header: WalHeader;
  start: WalCursor;
  scan: WalScan;
  mtimeMs: number;
}

interface Snapshotting {
  generation: string;
  reason: string;
  payloads: Uint8Array[];
  pageCount: number;
  /** Where the capture goes on once the snapshot is in: the WAL's end it was taken at. */
  position: Position | undefined;
  /** Entries the log has taken, and the seq of the first. */
  appended: number;
  firstSeq: number;
}

/** Whether a checkpoint backfilled every frame of the WAL and those were exactly the frames copied. */
function completeAt(result: CheckpointResult, position: Position | undefined): boolean {
  return result.full && position?.header !== undefined && result.walFrames === position.cursor.frameIndex;
}

/** A message with its numbers blanked: what stays the same from one step to the next of one failure. */
function withoutFigures(message: string): string {
  return message.replace(/\d[\d,.]*/g, '#');
}
