/**
 * The standby's side: applies batches from the primary to its own flash log, exactly once and in order,
 * and acknowledges its durable position.
 *
 * - Batches are applied one at a time, whatever link they came through (with independent brokers the same
 *   batch arrives once per broker, concurrently).
 * - De-duplication is by `(epoch, seq)` against the local log: a batch wholly at or below `committed` is a
 *   duplicate; one that overlaps the end of the log must agree with the epoch of the last local entry, or it
 *   belongs to another history and is refused (counted as a conflict), never merged.
 * - A batch starting past `committed + 1` is a gap. With several brokers it first waits a moment, holding
 *   its broker's PUBACK, for another broker to deliver what is missing (brokers deliver at their own pace);
 *   otherwise, or if the gap stays, it asks the primary for a resend (`want`) and drops the batch.
 * - A gap with nothing behind it (the broker dropped the end of a stream: a full queue, a crash before its
 *   autosave) is seen from the primary's state heartbeat: it says how far the primary has committed; no
 *   progress towards that for a while also asks for a resend, with back-off.
 * - Fencing is by epoch: a sender older than the leader this node knows is ignored, and an entry may not
 *   carry an epoch older than the one before it.
 */
import type { FlashLog, LogEntry } from '../log/index.ts';
import type { Clock, Logger, TimerHandle } from '../util/index.ts';
import type { AckMessage, BatchMessage } from './wire.ts';

/** Do not repeat the same resend request more often than this (its batches are on their way). */
const WANT_REPEAT_MS = 1000;
/**
 * How long a batch that arrived ahead of the log waits for another broker to fill the gap. Independent
 * brokers on one LAN deliver the same batch within milliseconds of each other; after a broker restart the
 * lagging one may be a window of batches behind. 2 s covers that without stalling a real loss for long.
 */
const REORDER_WAIT_MS = 2000;
/** How often the stall check runs, and how long without progress behind the primary counts as a stall. */
const STALL_CHECK_MS = 1000;
const STALL_MS = 2000;
/** Repeated stall requests back off up to 2^5 × STALL_MS (64 s): an operator pause stalls on purpose. */
const STALL_BACKOFF_STEPS_MAX = 5;

export interface ReceiverOptions {
  log: FlashLog;
  group: string;
  node: string;
  /** Brokers the batches arrive through (independent brokers: more than one). */
  sources: number;
  /**
   * The MQTT keepalive: a batch waiting for a gap to fill holds its broker's stream, so the wait stays under
   * half of it (MQTT.js drops a link that shows no sign of life for 1.5 × keepalive).
   */
  keepaliveS: number;
  /** Publishes an ack to every broker (retained, QoS 1). */
  sendAck: (ack: AckMessage) => Promise<void>;
  logger: Logger;
  clock: Clock;
  /**
   * Whether any path can deliver batches now (a broker link or the direct path connected). While none can,
   * quiet is not a stall: the broker queues for the session, and asking for a resend then only makes the
   * primary send again what is already queued.
   */
  receiving?: () => boolean;
}

export class Receiver {
  private active = false;
  private leaderEpoch = 0;
  /** The first seq of the leader's epoch, from its leader record; undefined when not known. */
  private leaderSince: number | undefined;
  private lastEntryEpoch = 0;
  private lastWant = 0;
  private lastWantAtMs = -Infinity;
  private acking = false;
  private ackAgain = false;
  /** Applies run one after another on this chain. */
  private applying: Promise<void> = Promise.resolve();
  private readonly committedWaiters: Array<{ seq: number; resolve: () => void }> = [];
  private primaryCommitted = 0;
  private lastProgressMs = 0;
  private stallRequests = 0;
  private stallTimer: TimerHandle | undefined;
  private readonly counters = {
    batchesApplied: 0,
    entriesApplied: 0,
    duplicateBatches: 0,
    gaps: 0,
    reorderWaits: 0,
    reorderFilled: 0,
    stalls: 0,
    resendRequests: 0,
    fenced: 0,
    conflicts: 0,
    epochRegressions: 0,
    /** Batches refused because an epoch would begin elsewhere than its leader record says (or before it came). */
    epochBoundaries: 0,
    appendFailures: 0,
  };

  constructor(private readonly options: ReceiverOptions) {}

  async start(): Promise<void> {
    this.active = true;
    this.lastEntryEpoch = await this.lastLocalEpoch();
    this.lastProgressMs = this.options.clock.monotonicMs();
    this.scheduleStallCheck();
    // A standby that (re)starts cannot know what it missed while away (a broker drops messages for a
    // subscription its session did not have yet), so its first ack asks for everything after its position.
    void this.sendAck(this.options.log.watermarks().committed + 1);
  }

  /**
   * A link came up on a fresh session (a failover lands on one): what was sent while it was down is not
   * queued for it, and an ack or resend request may have died with the old connection. Ask again at once
   * rather than at the next stall check: during the primary's flush, that wait is budget.
   */
  onLinkUp(): void {
    if (!this.active) return;
    this.lastWantAtMs = -Infinity;
    void this.sendAck(this.options.log.watermarks().committed + 1);
  }

  stop(): void {
    this.active = false;
    this.stallTimer?.cancel();
    this.stallTimer = undefined;
    for (const waiter of this.committedWaiters.splice(0)) waiter.resolve();
  }

  /** Resolves once the batch being applied (if any) is stored. */
  idle(): Promise<void> {
    return this.applying;
  }

  /**
   * The newest leader epoch this node knows, and (from a leader record) the seq it begins at; batches from
   * older senders are fenced off, and the leader's entries are stored only where its epoch begins.
   */
  setLeaderEpoch(epoch: number, since?: number): void {
    if (epoch > this.leaderEpoch) {
      this.leaderEpoch = epoch;
      this.leaderSince = since;
    } else if (epoch === this.leaderEpoch && since !== undefined) this.leaderSince = since;
  }

  /** The primary's heartbeat: how far it has committed (the receiver's yardstick for a silent gap). */
  notePrimary(committed: number, epoch: number): void {
    if (epoch < this.leaderEpoch) return;
    this.primaryCommitted = Math.max(this.primaryCommitted, committed);
  }

  stats(): Record<string, number> {
    return { ...this.counters };
  }

  async onBatch(batch: BatchMessage): Promise<void> {
    if (!this.active) return;
    if (batch.epoch < this.leaderEpoch) {
      this.counters.fenced++;
      this.options.logger.warn('ignored a batch from a fenced-off primary', { from: batch.node, epoch: batch.epoch, leaderEpoch: this.leaderEpoch });
      return;
    }
    const first = batch.entries[0]!.seq;
    if (this.options.sources > 1 && first > this.options.log.watermarks().committed + 1) {
      this.counters.reorderWaits++;
      await this.waitCommitted(first - 1, Math.min(REORDER_WAIT_MS, (this.options.keepaliveS * 1000) / 2));
      if (this.options.log.watermarks().committed >= first - 1) this.counters.reorderFilled++;
    }
    const turn = this.applying.then(() => this.apply(batch));
    this.applying = turn.catch(() => undefined);
    return turn;
  }

  private async apply(batch: BatchMessage): Promise<void> {
    if (!this.active) return;
    const log = this.options.log;
    const entries = batch.entries;
    const first = entries[0]!.seq;
    const last = entries[entries.length - 1]!.seq;
    const committed = log.watermarks().committed;
    if (first <= committed && committed >= log.firstSeq && committed <= last && entries[committed - first]!.epoch !== this.lastEntryEpoch) {
      this.counters.conflicts++;
      this.options.logger.error('refused a batch whose history differs from this replica (same seq, another epoch)', {
        from: batch.node,
        seq: committed,
        theirEpoch: entries[committed - first]!.epoch,
        ourEpoch: this.lastEntryEpoch,
      });
      return;
    }
    if (last <= committed) {
      this.counters.duplicateBatches++;
      return;
    }
    if (first > committed + 1) {
      this.counters.gaps++;
      this.requestResend(committed + 1, first);
      return;
    }
    const fresh = entries.slice(committed + 1 - first);
    const epochs = this.checkEpochs(fresh, committed);
    if (epochs === 'regression') {
      this.counters.epochRegressions++;
      this.options.logger.error('rejected a batch whose epochs go backwards', { from: batch.node, first, last });
      return;
    }
    if (epochs) {
      // Stored, these would follow entries of an older epoch that the new leader never had (this node's own,
      // written before it stood down): the roles cut them when the leader record is handled, and the gap
      // that leaves asks for these again.
      this.counters.epochBoundaries++;
      this.options.logger.warn(`held back a batch: ${epochs}`, { from: batch.node, first: fresh[0]!.seq, last });
      return;
    }
    // What a standby holds is a copy: the primary keeps its own until the configured level has the entries. So
    // it counts as "replicated" here once stored, which lets retention release it once the state no longer needs
    // it (the retention floor) and keeps it out of this node's unreplicated tail. Without this a standby kept
    // everything until log.quotaBytes was full, then refused every batch. Marked as the next batch goes in, so
    // that the watermark rides that batch's write instead of costing a checkpoint write and sync of its own.
    if (committed > log.watermarks().replicated) log.markReplicated(committed);
    try {
      await log.appendReplicated(fresh);
    } catch (error) {
      this.counters.appendFailures++;
      this.options.logger.error('could not store replicated entries; the primary will resend them', { first: fresh[0]!.seq, error });
      return;
    }
    this.lastEntryEpoch = fresh[fresh.length - 1]!.epoch;
    this.counters.batchesApplied++;
    this.counters.entriesApplied += fresh.length;
    this.lastProgressMs = this.options.clock.monotonicMs();
    this.stallRequests = 0;
    this.wakeCommittedWaiters();
    this.ack();
  }

  /**
   * The fresh entries' epochs, in one pass: they never go backwards ('regression'), and where they step into
   * a newer epoch after history of an older one (in the log or earlier in the batch), that epoch must be the
   * leader's as its record gave it and must begin at its `since`; a batch of an epoch whose record has not
   * come yet, or one that would begin it at another seq, is said why. Undefined when all is in order.
   */
  private checkEpochs(fresh: readonly LogEntry[], committed: number): 'regression' | string | undefined {
    let previous = this.lastEntryEpoch;
    for (let index = 0; index < fresh.length; index++) {
      const entry = fresh[index]!;
      if (entry.epoch < previous) return 'regression';
      if (entry.epoch > previous && (committed > 0 || index > 0)) {
        if (entry.epoch > this.leaderEpoch) return `entries of epoch ${entry.epoch} came before its leader record (this node follows epoch ${this.leaderEpoch})`;
        if (entry.epoch === this.leaderEpoch && this.leaderSince !== undefined && entry.seq !== this.leaderSince) {
          return `epoch ${entry.epoch} begins at seq ${this.leaderSince}, and this batch would begin it at ${entry.seq}`;
        }
      }
      previous = entry.epoch;
    }
    return undefined;
  }

  /** Resolve once the log holds `seq`, after `timeoutMs`, or when the receiver stops. */
  private waitCommitted(seq: number, timeoutMs: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = this.options.clock.setTimeout(() => finish(), timeoutMs);
      const finish = () => {
        timer.cancel();
        const index = this.committedWaiters.indexOf(waiter);
        if (index >= 0) this.committedWaiters.splice(index, 1);
        resolve();
      };
      const waiter = { seq, resolve: finish };
      this.committedWaiters.push(waiter);
    });
  }

  private wakeCommittedWaiters(): void {
    const committed = this.options.log.watermarks().committed;
    for (const waiter of this.committedWaiters.filter((candidate) => candidate.seq <= committed)) waiter.resolve();
  }

  private scheduleStallCheck(): void {
    this.stallTimer = this.options.clock.setTimeout(() => {
      if (!this.active) return;
      this.checkStall();
      this.scheduleStallCheck();
    }, STALL_CHECK_MS);
  }

  private checkStall(): void {
    const committed = this.options.log.watermarks().committed;
    if (this.primaryCommitted <= committed) return;
    if (this.options.receiving && !this.options.receiving()) {
      // Disconnected: the quiet is counted from when a path is back.
      this.lastProgressMs = this.options.clock.monotonicMs();
      return;
    }
    const quietMs = this.options.clock.monotonicMs() - this.lastProgressMs;
    if (quietMs < STALL_MS * 2 ** Math.min(this.stallRequests, STALL_BACKOFF_STEPS_MAX)) return;
    this.counters.stalls++;
    this.stallRequests++;
    this.lastProgressMs = this.options.clock.monotonicMs();
    this.options.logger.info('no progress while the primary is ahead; asking for a resend', { committed, primaryCommitted: this.primaryCommitted });
    this.lastWantAtMs = -Infinity;
    this.requestResend(committed + 1, this.primaryCommitted);
  }

  private requestResend(want: number, seen: number): void {
    const now = this.options.clock.monotonicMs();
    if (want === this.lastWant && now - this.lastWantAtMs < WANT_REPEAT_MS) return;
    this.lastWant = want;
    this.lastWantAtMs = now;
    this.counters.resendRequests++;
    this.options.logger.info('gap in the replicated stream; asking for a resend', { want, seen });
    void this.sendAck(want);
  }

  /** One ack in flight at a time; the latest position wins (acks are cumulative). */
  private ack(): void {
    if (this.acking) {
      this.ackAgain = true;
      return;
    }
    this.acking = true;
    void this.sendAck(undefined).finally(() => {
      this.acking = false;
      if (this.ackAgain && this.active) {
        this.ackAgain = false;
        this.ack();
      }
    });
  }

  private async sendAck(want: number | undefined): Promise<void> {
    const log = this.options.log;
    const ack: AckMessage = {
      group: this.options.group,
      node: this.options.node,
      epoch: log.epoch,
      seq: log.watermarks().committed,
      ...(want !== undefined ? { want } : {}),
      atMs: this.options.clock.nowMs(),
    };
    await this.options.sendAck(ack).catch((error: unknown) => this.options.logger.warn('ack not delivered; the next one carries the position', { error }));
  }

  private async lastLocalEpoch(): Promise<number> {
    const log = this.options.log;
    const committed = log.watermarks().committed;
    if (committed < log.firstSeq) return 0;
    const [last] = await log.read(committed, { entriesMax: 1, bytesMax: 1 });
    return last?.epoch ?? 0;
  }
}
