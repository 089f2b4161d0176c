/**
 * The prepared tail: batches of the unreplicated tail made ahead of time (read, encoded, compressed where it
 * pays, signed) while the publisher cannot send them (operator pause, a full window, a broker slow or gone),
 * so that the brownout flush, or the pump once the window opens, only hands bytes to the links. Without it
 * the flush spent most of its time on that work: 50,000 entries took 6 to 10 times what raw MQTT.js takes to
 * publish the same bytes (bench:replication).
 *
 * What it owns: the queue of prepared batches, the cursor after them, and the memory budget they may hold.
 * What it never does: send, or decide the order; the publisher takes the head only when it is exactly the
 * batch it would make itself at its next seq, in this epoch, with this key, within the brokers' limit, and
 * for entries read since the log last cut its suffix. Anything that moves the publisher's next seq other than sending the head
 * (a sibling's resend request, a failed batch sent again, retention, a restart) clears the queue, and a
 * batch whose preparation was under way when it was cleared is dropped when it finishes.
 *
 * Preparation runs one batch per turn of the event loop (setImmediate between batches), never while the
 * publisher reads, and only when the publisher could not send: for full batches, and for the rest once the
 * writers have been quiet for PREPARE_QUIET_MS. While replication keeps up nothing waits, so nothing is
 * prepared.
 */
import { setImmediate } from 'node:timers';
import type { FlashLog } from '../log/index.ts';
import type { Clock, TimerHandle } from '../util/index.ts';
import type { BatchPlan, BatchSource, MadeBatch } from './batch-source.ts';
import type { WireAuth } from './wire-auth.ts';

/**
 * Default memory the prepared batches may hold: 16 MiB, 32 batches of the default 512 KiB, which covers the
 * 50,000-entry tail of bench:replication (27 batches, 13.5 MB) and, on a link that sizes batches smaller,
 * far more than the flush sends before preparation catches up again. What it costs is up to that much RSS
 * while a tail waits (bench:replication's drain: about 10 MB more at its peak than without, as the flush
 * used to allocate most of those buffers anyway), nothing while replication keeps up.
 */
const PREPARED_BYTES_MAX = 16 * 1024 * 1024;
/** Most batches held, whatever their size: a bound on the queue for a link that makes 4 KiB batches. */
const PREPARED_BATCHES_MAX = 1024;
/**
 * What is left after the full batches (less than one) is prepared once no entry was committed for this
 * long: the writers paused or stopped (a brownout fences the log before it flushes), so the batch would not
 * grow any more. A steady trickle of commits keeps it unprepared: it is one batch of work at most.
 */
const PREPARE_QUIET_MS = 100;
/** A prepared batch may be at most this many times the size the publisher now plans, else it is made anew. */
const RESIZE_SLACK = 2;

/**
 * A batch made ahead, with what the log had set aside before its entries were read: a demotion cuts the log
 * before the publisher stops (takeover/roles.ts), and appends in the same epoch may then put other entries at
 * the cut seqs, so a batch read before a cut is never sent after it.
 */
interface PreparedBatch extends MadeBatch {
  readonly setAside: number;
}

/** What the publisher must be sure of before it sends the head. */
export interface TakeCheck {
  readonly nextSeq: number;
  readonly epoch: number;
  readonly auth: WireAuth;
  readonly committed: number;
  readonly plan: BatchPlan;
}

export interface PreparedTailHost {
  /** Preparing may run now: the publisher is running and not reading the log itself. */
  mayPrepare(): boolean;
  /** Where the publisher sends next (the cursor when nothing is prepared). */
  nextSeq(): number;
  /** The plan the publisher would make its next batch with now. */
  plan(): BatchPlan;
}

export interface PreparedTailOptions {
  log: FlashLog;
  source: BatchSource;
  host: PreparedTailHost;
  clock: Clock;
  /** Memory budget (bytes of buffers held); PREPARED_BYTES_MAX by default. */
  bytesMax?: number;
  batchEntriesMax: number;
  /** A batch dropped unsent: its buffer back to the pool. */
  release(batch: MadeBatch): void;
}

export class PreparedTail {
  private readonly queue: PreparedBatch[] = [];
  private bytesHeld = 0;
  private generation = 0;
  private sliceQueued = false;
  private pending: Promise<void> | undefined;
  /** Wire bytes per entry of the batches made lately: whether a full batch waits, without reading. */
  private wireBytesPerEntry: number | undefined;
  /** The committed seq last seen, and since when (monotonic ms): whether the tail has gone quiet. */
  private committedSeen = 0;
  private committedSeenAtMs = 0;
  private quietTimer: TimerHandle | undefined;
  private readonly bytesMax: number;
  readonly counters = { preparedBatches: 0, preparedSent: 0, preparedDropped: 0, prepareMs: 0, prepareErrors: 0 };

  constructor(private readonly options: PreparedTailOptions) {
    this.bytesMax = options.bytesMax ?? PREPARED_BYTES_MAX;
  }

  /** Bytes of memory the prepared batches hold now. */
  get bytes(): number {
    return this.bytesHeld;
  }

  get batches(): number {
    return this.queue.length;
  }

  /** The last seq prepared (0: none): the tail up to it goes out as soon as the publisher may send. */
  get throughSeq(): number {
    return this.queue[this.queue.length - 1]?.last ?? 0;
  }

  /** The publisher could not send: prepare what waits, from the next turn of the event loop on. */
  schedule(): void {
    if (this.sliceQueued || this.pending || this.bytesMax <= 0) return;
    this.sliceQueued = true;
    setImmediate(() => {
      this.sliceQueued = false;
      void this.slice();
    });
  }

  /** Waits for a batch under preparation; true if there was one (the caller then looks again). */
  async idle(): Promise<boolean> {
    if (!this.pending) return false;
    await this.pending;
    return true;
  }

  /**
   * The head if it is the publisher's next batch as `check` says (entries read since the last cut of the
   * log among them); any mismatch clears the queue.
   */
  take(check: TakeCheck): MadeBatch | undefined {
    const head = this.queue[0];
    if (!head) return undefined;
    // A demotion's cut (records set aside since the batch was read) may have put other entries at its seqs.
    if (!fits(head, check) || head.setAside !== this.options.log.setAsideRecords()) {
      this.clear();
      return undefined;
    }
    this.queue.shift();
    this.bytesHeld -= heldBytes(head);
    this.counters.preparedSent++;
    return head;
  }

  /** Drop every prepared batch, and the one under preparation when it finishes. */
  clear(): void {
    this.generation++;
    this.counters.preparedDropped += this.queue.length;
    for (const batch of this.queue.splice(0)) this.options.release(batch);
    this.bytesHeld = 0;
    this.quietTimer?.cancel();
    this.quietTimer = undefined;
  }

  /** A batch the publisher made itself: its size per entry teaches when a full batch waits. */
  learn(batch: MadeBatch): void {
    this.wireBytesPerEntry = batch.payload.length / batch.entries;
  }

  private async slice(): Promise<void> {
    const host = this.options.host;
    if (!host.mayPrepare() || this.queue.length >= PREPARED_BATCHES_MAX) return;
    const from = this.queue.length > 0 ? this.queue[this.queue.length - 1]!.last + 1 : host.nextSeq();
    const plan = host.plan();
    if (this.bytesHeld + plan.batchBytes > this.bytesMax || !this.worthPreparing(from, plan.batchBytes)) return;
    const generation = this.generation;
    const startedMs = this.options.clock.monotonicMs();
    let done!: () => void;
    this.pending = new Promise((resolve) => (done = resolve));
    try {
      // Before the read: a cut while it runs must count as after it.
      const setAside = this.options.log.setAsideRecords();
      const made = await this.options.source.make(from, plan);
      if (!made.ok) return;
      if (generation !== this.generation) return void this.options.release(made.batch);
      this.queue.push({ ...made.batch, setAside });
      this.bytesHeld += heldBytes(made.batch);
      this.learn(made.batch);
      this.counters.preparedBatches++;
      this.counters.prepareMs += this.options.clock.monotonicMs() - startedMs;
    } catch {
      // The publisher reads the same entries when it gets to them, and reports what fails then.
      this.counters.prepareErrors++;
      return;
    } finally {
      this.pending = undefined;
      done();
    }
    this.schedule();
  }

  /**
   * At least a full batch is committed after `from` (estimated from the last batches, read when unknown),
   * or less, but nothing was committed for PREPARE_QUIET_MS; until then a timer looks again.
   */
  private worthPreparing(from: number, batchBytes: number): boolean {
    const committed = this.options.log.watermarks().committed;
    const nowMs = this.options.clock.monotonicMs();
    // Noted on every look, not only when a short batch waits: the quiet time runs from when the commit was
    // first seen, so a look that happens to come late does not restart it.
    if (committed !== this.committedSeen) {
      this.committedSeen = committed;
      this.committedSeenAtMs = nowMs;
    }
    const waiting = committed - from + 1;
    if (waiting <= 0) return false;
    if (waiting >= this.options.batchEntriesMax || this.wireBytesPerEntry === undefined) return true;
    // More than a batch holds: the read then stops at the batch's size, not at what happened to be committed.
    if (waiting * this.wireBytesPerEntry > batchBytes) return true;
    const quietMs = nowMs - this.committedSeenAtMs;
    if (quietMs >= PREPARE_QUIET_MS) return true;
    this.quietTimer ??= this.options.clock.setTimeout(() => {
      this.quietTimer = undefined;
      this.schedule();
    }, PREPARE_QUIET_MS - quietMs);
    return false;
  }
}

function fits(batch: MadeBatch, check: TakeCheck): boolean {
  return (
    batch.first === check.nextSeq &&
    batch.last <= check.committed &&
    batch.epoch === check.epoch &&
    batch.auth === check.auth &&
    batch.payload.length <= check.plan.payloadBytesMax &&
    batch.payload.length <= check.plan.batchBytes * RESIZE_SLACK
  );
}

function heldBytes(batch: MadeBatch): number {
  return batch.buffer?.length ?? batch.payload.length;
}

