/**
 * (About 680 lines, one sequence: the window, its acks and its watermarks share every field; the batch sizing
 * for the link and the flush are the parts to move out with issue 13.)
 *
 * The primary's side: reads committed entries from the log in seq order and publishes them as batches,
 * QoS 1, with a bounded window of unacknowledged batches. It advances the log's watermarks:
 * - broker quorum: a batch counts once `quorum` brokers sent PUBACK (durability "broker"); a refusal by a
 *   minority of brokers is logged and counted, one that makes the quorum unreachable sends the batch again;
 * - replica: the siblings' acks (retained, so a restarted primary learns their position at once) say what
 *   they hold on flash; an entry is replicated once `replicaAcks` of them hold it (durability "replica").
 * The log's retention follows the `replicated` watermark, so it deletes only what the configured level has.
 * With a direct path to the siblings (`direct`), every batch is also handed to it; while it carries, the
 * publisher goes on with no broker connected, and a batch the siblings acknowledged is done either way.
 *
 * Batches adapt by themselves: each one takes what is committed and not yet sent, up to the size limits.
 * When the link is idle that is the one entry just committed (prompt); while the window is full, commits
 * pile up and the next batch carries all of them (large). A sibling that sees a gap asks for a resend from
 * its position (`want`); the publisher rewinds there (go-back-N) and the receiver drops what it already has.
 *
 * About 700 lines: ordering, windows, quorum and replica acks, resends, and now link-sized batches and the drain
 * meter's feed; splitting the resend and sizing rules out is part of issue 13's redesign.
 */
import { setImmediate } from 'node:timers';
import type { FlashLog, LogEntry } from '../log/index.ts';
import { LastgaspError, type Clock, type Logger, type TimerHandle } from '../util/index.ts';
import type { BrokerLink } from './broker-link.ts';
import { DrainMeter } from './drain-meter.ts';
import { ResendRule } from './resend-rule.ts';
import { BATCH_OVERHEAD_BYTES_PER_ENTRY, type AckMessage, type Topics, type WireCodec } from './wire.ts';

/**
 * A resend request for a seq published less than this long ago is not answered: the request and the batch
 * crossed on the way (a sibling's stall check firing just as a paused stream resumes). If the batch was
 * really lost, the sibling asks again after WANT_REPEAT_MS and is answered then.
 */
const REWIND_GRACE_MS = 1000;
/** Recently published batches remembered for that check: more than a window's worth. */
const RECENT_BATCHES_MAX = 64;
/** After a batch could not reach its quorum (refusals, a read error), wait this long before trying again. */
const REFUSED_RETRY_MS = 2000;
/**
 * Bytes reserved for the envelope (version, kind, CRC, a 32-byte MAC, map and string heads) and the batch
 * header (group, node, epoch, first, last): about 150 with names of 32 characters; 512 leaves room.
 */
const BATCH_HEADER_BYTES = 512;
/**
 * On battery, batches are sized to the link once its drain rate is measured with a full window (DrainMeter):
 * about this much time on the wire each.
 * A batch counts only when all of it is acknowledged, so on a slow link a half-megabyte batch would be
 * seconds of hold-up energy that save nothing if the power goes first (measured by bench:holdup). With the
 * window of 8 in flight this still fills any path whose round trip is under 8 × this.
 */
const BATCH_LINK_MS = 50;
/** Smallest link-sized batch: a few typical entries, so a latency-bound estimate cannot shrink batches to one. */
const BATCH_LINK_BYTES_MIN = 4 * 1024;
/**
 * During the brownout flush the bytes in flight are kept to this much time at the measured rate (and at
 * least two batches, so the link never waits for an acknowledgement): what is queued on the link when the
 * budget ends delays the handoff record behind it. A batch is acknowledged about a batch's time plus a
 * round trip after it left, so this covers round trips up to about 250 ms at full rate.
 */
const FLUSH_INFLIGHT_MS = 300;
/**
 * Batches at least this large are encoded into buffers reused from acknowledged batches. A fresh buffer of
 * half a MiB comes from the kernel page by page: its page faults cost about as much as encoding the batch
 * (20 of the brownout drain's ms for 27 batches here). Smaller buffers come from malloc's free lists.
 */
const BATCH_BUFFER_POOLED_BYTES_MIN = 64 * 1024;
/**
 * The pooled batch buffers are dropped once replication has been caught up for about this long: the burst
 * that needed them is over. Dropping them at every catch-up, as before, made a publisher that keeps up with
 * a steady stream (caught up between every two commits) allocate fresh half-MiB buffers for nearly every
 * batch: 3 % of its CPU in the end-to-end benchmark, in page faults.
 */
const BATCH_BUFFERS_IDLE_MS = 1000;

export interface PublisherOptions {
  log: FlashLog;
  links: readonly PublishLink[];
  codec: WireCodec;
  topics: Topics;
  group: string;
  node: string;
  durability: 'replica' | 'broker';
  /** PUBACKs needed per batch (1 in cluster mode). */
  quorum: number;
  siblings: readonly string[];
  /** Siblings that must hold an entry on flash before it counts as replicated (durability "replica"). */
  replicaAcks: number;
  batchEntriesMax: number;
  batchBytesMax: number;
  windowMax: number;
  /** Whether batches may be compressed where that pays (replication.compression; default true). */
  compress?: boolean;
  /** The direct path to the siblings (direct/direct-path.ts), when configured. */
  direct?: DirectSink;
  logger: Logger;
  clock: Clock;
}

/**
 * What the publisher uses of a broker link (BrokerLink): named here so the publisher's timing tests can
 * place each PUBACK at an exact instant of their clock.
 */
export type PublishLink = Pick<BrokerLink, 'connected' | 'info' | 'payloadBytesMax' | 'publish'>;

/** A second way out for batches, beside the brokers. */
export interface DirectSink {
  /** Batches go out this way now: while they do, the publisher runs with no broker connected. */
  carrying(): boolean;
  /** Every batch published, in publish order. */
  batch(first: number, last: number, payload: Uint8Array): void;
}

interface Batch {
  readonly first: number;
  readonly last: number;
  readonly bytes: number;
  /** Links it was handed to. */
  readonly sentTo: number;
  /** The pooled buffer its payload was encoded into, given back once every link settled the publish. */
  readonly buffer: Uint8Array | undefined;
  /** When it was handed to the links (monotonic ms): its acknowledgement measures the round trip. */
  readonly sentAtMs: number;
  /** Bytes in flight when it was handed over, itself included: what the link had to carry before its ack. */
  readonly bytesAhead: number;
  acks: number;
  failures: number;
  quorum: boolean;
  failed: boolean;
}

/**
 * Encode buffers for large batches, reused once every link settled (PUBACK or failure) the publish that
 * carried one: by then MQTT.js wrote the packet out (a broker acknowledges only a whole packet) and keeps
 * its own copy for resending. At most `keepMax` (the window) are kept, and none once replication is idle.
 */
class BatchBuffers {
  private readonly free: Uint8Array[] = [];
  private payloadBuffer: Uint8Array | undefined;
  /** Batches encoded into the buffer of an earlier, settled batch (stats: batchBuffersReused). */
  reused = 0;

  constructor(
    private readonly bytesMin: number,
    private readonly keepMax: number,
  ) {}

  /** A buffer of at least `bytes`: a pooled one for a large batch, an exact fresh one for a small one. */
  take(bytes: number): Uint8Array {
    if (bytes < BATCH_BUFFER_POOLED_BYTES_MIN) return new Uint8Array(bytes);
    const index = this.free.findIndex((buffer) => buffer.length >= bytes);
    if (index >= 0) {
      this.reused++;
      return this.free.splice(index, 1)[0]!;
    }
    return new Uint8Array(Math.max(bytes, this.bytesMin));
  }

  /**
   * The buffer that log reads copy payloads into (ReadLimits.payloadBuffer), for reads of up to `bytes`
   * payload bytes; the read's entries are valid until the next read. Reads of one entry (an idle link) need
   * none.
   */
  payloads(bytes: number): Uint8Array {
    if (!this.payloadBuffer || this.payloadBuffer.length < bytes) this.payloadBuffer = new Uint8Array(bytes);
    return this.payloadBuffer;
  }

  give(buffer: Uint8Array): void {
    if (buffer.length >= BATCH_BUFFER_POOLED_BYTES_MIN && this.free.length < this.keepMax) this.free.push(buffer);
  }

  /** Idle: drop the batch buffers. The payload buffer stays (its pages are only those reads touched). */
  trim(): void {
    this.free.length = 0;
  }

  /** Stopped: drop everything. */
  clear(): void {
    this.free.length = 0;
    this.payloadBuffer = undefined;
  }
}

export class Publisher {
  private nextSeq = 1;
  private brokerAcked = 0;
  private readonly inflight: Batch[] = [];
  private readonly replicaPositions = new Map<string, number>();
  private running = false;
  private again = false;
  private kickQueued = false;
  private stopped = true;
  private paused = false;
  private flushing = false;
  private blockedUntilMs = 0;
  private readonly resendRule = new ResendRule();
  private tooLargeSeq = 0;
  /** When the replicated watermark last moved (monotonic ms): with a tail, its age says replication stalled. */
  private replicatedMovedAtMs = 0;
  /** Nothing waited at the last watermark move: the next commit starts the stall count (not the idle time before it). */
  private stallCountsFromNextCommit = false;
  private readonly recent: Array<{ first: number; last: number; atMs: number }> = [];
  private unsubscribe: (() => void) | undefined;
  private readonly replicatedWaiters: Array<{ seq: number; resolve: (ok: boolean) => void }> = [];
  private readonly counters = {
    batches: 0,
    entriesPublished: 0,
    bytesPublished: 0,
    batchEntriesMaxSeen: 0,
    rewinds: 0,
    wantsInFlight: 0,
    refused: 0,
    /** Batches sent again because the connection that carried them was lost. */
    resent: 0,
    minorityRefusals: 0,
    acksReceived: 0,
    /** Acks dropped: from a node that is not a sibling, or naming seqs this primary never committed, or from a newer epoch. */
    acksFromStrangers: 0,
    acksBeyondCommitted: 0,
    acksFromNewerEpoch: 0,
    /** Resend requests refused by the once-per-position rule. */
    wantsRefused: 0,
    entryTooLarge: 0,
    readErrors: 0,
  };

  private readonly buffers: BatchBuffers;
  private trimTimer: TimerHandle | undefined;
  private readonly drain = new DrainMeter();

  constructor(private readonly options: PublisherOptions) {
    this.buffers = new BatchBuffers(options.batchBytesMax, options.windowMax);
  }

  /**
   * Start publishing at `fromSeq`, or after the replicated watermark. A node that just took over passes its
   * own committed + 1: what it holds came to it through the brokers and is in the old primary's log, and a
   * sibling that is behind asks for the rest (a starting receiver always does), so it need not republish its
   * whole log at the worst moment.
   */
  start(fromSeq?: number): void {
    const log = this.options.log;
    this.stopped = false;
    const replicated = log.watermarks().replicated;
    const from = Math.max(fromSeq ?? replicated + 1, log.firstSeq);
    this.nextSeq = from;
    this.replicatedMovedAtMs = this.options.clock.monotonicMs();
    this.stallCountsFromNextCommit = this.tail() === 0;
    this.brokerAcked = Math.max(replicated, from - 1);
    this.unsubscribe = log.onCommit(() => {
      if (this.stallCountsFromNextCommit) {
        this.stallCountsFromNextCommit = false;
        this.replicatedMovedAtMs = this.options.clock.monotonicMs();
      }
      this.kickAfterAcks();
    });
    this.kick();
  }

  stop(): void {
    this.stopped = true;
    this.unsubscribe?.();
    this.inflight.length = 0;
    this.trimTimer?.cancel();
    this.trimTimer = undefined;
    this.buffers.clear();
    for (const waiter of this.replicatedWaiters.splice(0)) waiter.resolve(false);
  }

  /** Operator pause (metered uplink); the brownout flush overrides it. */
  setPaused(paused: boolean): void {
    this.paused = paused;
    this.options.logger.info(paused ? 'replication paused by the operator' : 'replication resumed');
    this.kick();
  }

  /** Brownout: publish regardless of the operator pause, in the largest batches. */
  setFlushing(flushing: boolean): void {
    this.flushing = flushing;
    this.kick();
  }

  get isPaused(): boolean {
    return this.paused && !this.flushing;
  }

  /** Wire bytes per second this link drained while busy (see DrainMeter); undefined until measured. */
  drainBytesPerS(): number | undefined {
    return this.drain.bytesPerS();
  }

  /** Entries committed locally but not yet replicated at the configured level. */
  tail(): number {
    const marks = this.options.log.watermarks();
    return marks.committed - marks.replicated;
  }

  /**
   * How long before the hold-up budget ends the flush must stop waiting and publish the handoff record, so
   * that the record is on the brokers, and their acknowledgement back, by then: it waits behind the bytes not
   * yet acknowledged, drained at the measured rate (those already across stand for its own trip there), and
   * its acknowledgement comes back half a round trip later. Undefined until the link is measured.
   */
  handoffLeadMs(): number | undefined {
    const rate = this.linkBytesPerS();
    const roundTripMs = this.drain.roundTripMs();
    if (rate === undefined || roundTripMs === undefined) return undefined;
    return (this.inflightBytes() * 1000) / rate + roundTripMs / 2;
  }

  stats(): Record<string, number | boolean | Record<string, number>> {
    return {
      ...this.counters,
      batchBuffersReused: this.buffers.reused,
      siblings: Object.fromEntries(this.options.siblings.map((sibling) => [sibling, this.replicaPositions.get(sibling) ?? 0])),
      nextSeq: this.nextSeq,
      brokerAcked: this.brokerAcked,
      replicaAcked: this.replicaAcked(),
      inflightBatches: this.inflight.length,
      windowMax: this.windowMax(),
      paused: this.paused,
      flushing: this.flushing,
      drainBytesPerS: Math.round(this.drain.bytesPerS() ?? 0),
      roundTripMs: Math.round(this.drain.roundTripMs() ?? 0),
      compression: { ...this.options.codec.compression },
      watermarkStalledMs: this.watermarkStalledMs(),
    };
  }

  /** How long the replicated watermark has not moved while entries wait to be replicated (0: no tail). */
  watermarkStalledMs(): number {
    if (this.stopped || this.tail() === 0) return 0;
    return Math.round(this.options.clock.monotonicMs() - this.replicatedMovedAtMs);
  }

  /** Resolves true once the replicated watermark reaches `seq`; false at the deadline or when aborted. */
  waitReplicated(seq: number, timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    if (this.options.log.watermarks().replicated >= seq) return Promise.resolve(true);
    if (signal?.aborted) return Promise.resolve(false);
    return new Promise((resolve) => {
      const finish = (ok: boolean) => {
        timer.cancel();
        signal?.removeEventListener('abort', onAbort);
        const index = this.replicatedWaiters.indexOf(waiter);
        if (index >= 0) this.replicatedWaiters.splice(index, 1);
        resolve(ok);
      };
      const onAbort = () => finish(false);
      const waiter = { seq, resolve: finish };
      const timer = this.options.clock.setTimeout(() => finish(false), timeoutMs);
      signal?.addEventListener('abort', onAbort, { once: true });
      this.replicatedWaiters.push(waiter);
    });
  }

  /**
   * A sibling's ack (its durable position, and maybe a resend request). It moves the watermarks only when
   * it is believable: from a configured sibling, of this epoch or an older one (a sibling that follows a
   * newer leader counts seqs of another history), and for seqs this primary has committed: the sibling
   * cannot hold what was never written here, so such an ack is forged or from another history.
   */
  onAck(ack: AckMessage): void {
    const log = this.options.log;
    const committed = log.watermarks().committed;
    if (!this.options.siblings.includes(ack.node)) return void this.counters.acksFromStrangers++;
    if (ack.epoch > log.epoch) return void this.counters.acksFromNewerEpoch++;
    if (ack.seq > committed || (ack.want !== undefined && ack.want > committed + 1)) {
      const count = ++this.counters.acksBeyondCommitted;
      // Logged the 1st, 2nd, 4th, 8th... time: a flood of them must not flood the journal.
      if ((count & (count - 1)) === 0) this.options.logger.warn('dropped an ack for seqs this primary never committed', { sibling: ack.node, seq: ack.seq, want: ack.want, committed, count });
      return;
    }
    this.counters.acksReceived++;
    if (ack.seq > (this.replicaPositions.get(ack.node) ?? 0)) this.replicaPositions.set(ack.node, ack.seq);
    const acked = this.replicaAcked();
    if (acked > log.watermarks().replicaAcked) log.markReplicaAcked(acked);
    if (this.options.durability === 'replica') this.advanceReplicated(acked);
    // With a direct path, a batch the siblings hold on flash is done, with or without the brokers' PUBACKs.
    if (this.options.direct) this.retire(acked);
    if (ack.want !== undefined) this.rewind(ack.want, ack.node, ack.epoch);
    else this.skipAhead(committed);
    this.kick();
  }

  /** Called by the hub when a link comes (back) up. */
  onLinkUp(): void {
    this.kick();
  }

  /** The seq that `replicaAcks` siblings hold: the N-th highest of their positions. */
  private replicaAcked(): number {
    const positions = this.options.siblings.map((sibling) => this.replicaPositions.get(sibling) ?? 0).sort((a, b) => b - a);
    return positions[this.options.replicaAcks - 1] ?? 0;
  }

  /**
   * A restarted primary starts after its durable `replicated` mark, which lags the siblings' retained acks
   * by up to a checkpoint. When every sibling already holds more, skip what they have. Only in replica mode:
   * in broker mode the broker quorum must see every batch for the watermark to move.
   */
  private skipAhead(committed: number): void {
    if (this.options.durability !== 'replica' || this.inflight.length > 0) return;
    let lowest = Infinity;
    for (const sibling of this.options.siblings) lowest = Math.min(lowest, this.replicaPositions.get(sibling) ?? 0);
    if (lowest === Infinity || lowest + 1 <= this.nextSeq || lowest > committed) return;
    this.nextSeq = lowest + 1;
    this.brokerAcked = Math.max(this.brokerAcked, lowest);
  }

  private rewind(want: number, from: string, epoch: number): void {
    const now = this.options.clock.monotonicMs();
    // At or past the next seq to publish: what it asks for is being sent anyway.
    if (want >= this.nextSeq) return void this.counters.wantsInFlight++;
    if (this.recent.some((batch) => batch.first <= want && want <= batch.last && now - batch.atMs < REWIND_GRACE_MS)) {
      this.counters.wantsInFlight++;
      return;
    }
    if (!this.resendRule.mayAnswer(`${from}/${epoch}/${want}`, this.replicaPositions.get(from) ?? 0, now)) {
      this.counters.wantsRefused++;
      return;
    }
    this.counters.rewinds++;
    const firstSeq = this.options.log.firstSeq;
    if (want < firstSeq) {
      this.options.logger.error(`sibling ${from} asked for seq ${want}, but retention already removed everything below ${firstSeq}; it needs a fresh copy of the log`, { sibling: from, want, firstSeq });
    }
    const target = Math.max(want, firstSeq);
    this.options.logger.info('sibling asked for a resend', { sibling: from, from: target, was: this.nextSeq });
    this.nextSeq = target;
  }

  private advanceReplicated(seq: number): void {
    const log = this.options.log;
    if (seq <= log.watermarks().replicated) return;
    log.markReplicated(seq);
    this.replicatedMovedAtMs = this.options.clock.monotonicMs();
    this.stallCountsFromNextCommit = this.tail() === 0;
    const replicated = log.watermarks().replicated;
    for (let index = this.replicatedWaiters.length - 1; index >= 0; index--) {
      const waiter = this.replicatedWaiters[index]!;
      if (waiter.seq <= replicated) {
        this.replicatedWaiters.splice(index, 1);
        waiter.resolve(true);
      }
    }
  }

  /**
   * A commit wakes the pump from a fresh turn of the event loop, not from inside the log's settle: the
   * commit's acknowledgements (PUBACKs, HTTP responses) are written by the promise reactions that settle
   * queued, and a pump run synchronously here (read, encode, sign, send a batch) would hold them back.
   */
  private kickAfterAcks(): void {
    if (this.kickQueued) return;
    this.kickQueued = true;
    setImmediate(() => {
      this.kickQueued = false;
      this.kick();
    });
  }

  private kick(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = true;
    void this.pump()
      .catch((error: unknown) => this.onPumpError(error))
      .finally(() => {
        this.running = false;
        if (this.again) {
          this.again = false;
          this.kick();
        }
      });
  }

  private async pump(): Promise<void> {
    const options = this.options;
    const log = options.log;
    const topic = options.topics.log(options.node);
    for (;;) {
      if (this.stopped || this.isPaused || this.nextSeq > log.watermarks().committed) return;
      if (this.inflight.length >= this.windowMax()) {
        this.drain.saturated();
        return;
      }
      if (options.clock.monotonicMs() < this.blockedUntilMs) return;
      const links = options.links.filter((link) => link.connected);
      if (links.length < options.quorum && !options.direct?.carrying()) return;
      if (this.nextSeq < log.firstSeq) this.skipRetained(log.firstSeq);
      const payloadBytesMax = this.payloadBytesMax(links, topic);
      const batchBytes = this.linkBatchBytes(payloadBytesMax);
      if (this.flushing && this.inflight.length > 0 && this.inflightBytes() + batchBytes > this.flushInflightBytesMax(batchBytes)) {
        this.drain.saturated();
        return;
      }
      // A batch the codec will compress holds more entries for the same time on the wire (never more than the
      // broker takes uncompressed, so that one the codec then sends as it is still fits).
      const link = options.compress === false ? undefined : { bytesPerS: this.linkBytesPerS(), flushing: this.flushing };
      const plainBytes = Math.min(payloadBytesMax, Math.round(batchBytes / (link ? options.codec.expectedRatio(batchBytes, link) : 1)));
      const bytesMax = readBytesMax(plainBytes, options.batchEntriesMax);
      // The entries are encoded at once and dropped, so one buffer serves every read.
      const entries = fitBatch(await log.read(this.nextSeq, { entriesMax: options.batchEntriesMax, bytesMax, payloadBuffer: this.buffers.payloads(bytesMax) }), plainBytes);
      const first = entries[0];
      if (!first || first.seq !== this.nextSeq || this.stopped) return;
      let buffer: Uint8Array | undefined;
      const payload = options.codec.encodeBatch({ group: options.group, node: options.node, epoch: log.epoch, entries }, (bytes) => (buffer = this.buffers.take(bytes)), link);
      if (payload.length > payloadBytesMax) {
        if (buffer) this.buffers.give(buffer);
        this.refuseTooLarge(first.seq, first.payload.length, payloadBytesMax);
        return;
      }
      const sentAtMs = options.clock.monotonicMs();
      const batch: Batch = { first: first.seq, last: first.seq + entries.length - 1, bytes: payload.length, sentTo: links.length, buffer, sentAtMs, bytesAhead: this.inflightBytes() + payload.length, acks: 0, failures: 0, quorum: false, failed: false };
      this.drain.sent(sentAtMs);
      this.inflight.push(batch);
      this.recent.push({ first: batch.first, last: batch.last, atMs: options.clock.monotonicMs() });
      if (this.recent.length > RECENT_BATCHES_MAX) this.recent.shift();
      this.nextSeq = batch.last + 1;
      this.counters.batches++;
      this.counters.entriesPublished += entries.length;
      this.counters.bytesPublished += payload.length;
      if (entries.length > this.counters.batchEntriesMaxSeen) this.counters.batchEntriesMaxSeen = entries.length;
      for (const link of links) {
        link.publish(topic, payload, { qos: 1, retain: false }).then(
          () => this.onPuback(batch),
          (error: unknown) => this.onPublishFailed(batch, error),
        );
      }
      options.direct?.batch(batch.first, batch.last, payload);
    }
  }

  /**
   * Retention removed entries a rewind asked for while the publisher was getting to them. Retention frees
   * only what is replicated at the configured level, so the entries are safe elsewhere; a sibling that still
   * lacks them needs a fresh copy, which the log line says.
   */
  private skipRetained(firstSeq: number): void {
    this.options.logger.error(`seqs ${this.nextSeq}..${firstSeq - 1} were removed by retention before they could be sent again; a sibling that lacks them needs a fresh copy of the log`, { from: this.nextSeq, firstSeq });
    this.nextSeq = firstSeq;
  }

  /** The largest batch every link takes: the configured limit, or less where a broker announced less. */
  private payloadBytesMax(links: readonly PublishLink[], topic: string): number {
    let bytes = this.options.batchBytesMax;
    for (const link of links) bytes = Math.min(bytes, link.payloadBytesMax(topic) ?? Infinity);
    return bytes;
  }

  /**
   * The batch size for this link: on battery (flushing), BATCH_LINK_MS at the measured rate, within the
   * broker's limit. On mains the largest batches: a rate measured while a path was down would shrink them,
   * and many small batches overflow a broker's queue for a sibling that is away (max_queued_messages), which
   * then costs resends.
   */
  private linkBatchBytes(payloadBytesMax: number): number {
    if (!this.flushing) return payloadBytesMax;
    const rate = this.linkBytesPerS();
    if (rate === undefined) return payloadBytesMax;
    return Math.min(payloadBytesMax, Math.max(BATCH_LINK_BYTES_MIN, Math.round((rate * BATCH_LINK_MS) / 1000)));
  }

  /**
   * The rate that sizes batches: measured with a full window; in the brownout flush, before any such
   * measurement, whatever was measured (a lower bound: smaller batches than the link takes, but none that
   * the cut voids whole).
   */
  private linkBytesPerS(): number | undefined {
    return this.drain.bytesPerS(true) ?? (this.flushing ? this.drain.bytesPerS() : undefined);
  }

  private flushInflightBytesMax(batchBytes: number): number {
    const rate = this.linkBytesPerS();
    return rate === undefined ? Infinity : Math.max(2 * batchBytes, (rate * FLUSH_INFLIGHT_MS) / 1000);
  }

  private inflightBytes(): number {
    let bytes = 0;
    for (const batch of this.inflight) bytes += batch.bytes;
    return bytes;
  }

  /** The window never exceeds what the brokers said they can take (MQTT 5 Receive Maximum). */
  private windowMax(): number {
    let window = this.options.windowMax;
    for (const link of this.options.links) if (link.info) window = Math.min(window, link.info.receiveMaximum);
    return window;
  }

  /** One entry is larger than a broker takes: nothing after it can be replicated until the limit is raised. */
  private refuseTooLarge(seq: number, entryBytes: number, payloadBytesMax: number): void {
    this.counters.entryTooLarge++;
    if (this.tooLargeSeq !== seq) {
      this.tooLargeSeq = seq;
      const error = new LastgaspError(
        'BROKER_REFUSED',
        `entry ${seq} (${entryBytes} bytes) does not fit in one MQTT packet of at most ${payloadBytesMax} bytes that the broker takes; replication is stuck at it until the broker's max_packet_size is raised`,
        { seq, entryBytes, payloadBytesMax, reason: 'packet too large', reasonCode: 0x95 },
      );
      this.options.logger.error(error.message, error.detail);
    }
    this.retryLater();
  }

  /** Every link answered the publish (PUBACK or failure): its buffer may be reused. */
  private settled(batch: Batch): void {
    if (batch.buffer && !this.stopped && batch.acks + batch.failures === batch.sentTo) this.buffers.give(batch.buffer);
  }

  private onPuback(batch: Batch): void {
    batch.acks++;
    this.settled(batch);
    if (batch.quorum || batch.failed || batch.acks < this.options.quorum) return;
    batch.quorum = true;
    this.drain.roundTrip(this.options.clock.monotonicMs() - batch.sentAtMs, batch.bytesAhead);
    this.advanceBrokerAcked();
  }

  /** Batches that `seq` covers, acknowledged by the siblings (direct path): done as if their quorum answered. */
  private retire(seq: number): void {
    let any = false;
    for (const batch of this.inflight) {
      if (batch.last > seq || batch.quorum || batch.failed) continue;
      batch.quorum = true;
      any = true;
    }
    if (any) this.advanceBrokerAcked();
  }

  /** Take the acknowledged batches off the front of the window and move brokerAcked past them. */
  private advanceBrokerAcked(): void {
    let advanced = true;
    let bytesAcked = 0;
    while (advanced) {
      advanced = false;
      for (let index = 0; index < this.inflight.length; index++) {
        const candidate = this.inflight[index]!;
        if (candidate.quorum && candidate.first <= this.brokerAcked + 1) {
          this.brokerAcked = Math.max(this.brokerAcked, candidate.last);
          this.inflight.splice(index, 1);
          bytesAcked += candidate.bytes;
          advanced = true;
          break;
        }
      }
    }
    if (bytesAcked > 0) this.drain.acked(bytesAcked, this.options.clock.monotonicMs(), this.inflight.length === 0);
    if (this.options.durability === 'broker') this.advanceReplicated(this.brokerAcked);
    if (this.caughtUp()) this.trimWhenIdle();
    this.kick();
  }

  private caughtUp(): boolean {
    return this.inflight.length === 0 && this.nextSeq > this.options.log.watermarks().committed;
  }

  /** Caught up: the pooled buffers (a window of half-MiB batches) need not outlive the burst. */
  private trimWhenIdle(): void {
    if (this.trimTimer) return;
    this.trimTimer = this.options.clock.setTimeout(() => {
      this.trimTimer = undefined;
      // Busy again: the next catch-up arms the timer anew.
      if (this.caughtUp()) this.buffers.trim();
    }, BATCH_BUFFERS_IDLE_MS);
  }

  /**
   * A broker refused the batch (or the link stopped). While the others can still make the quorum this is
   * a counted minority refusal; once they cannot, the batch failed and is sent again after a pause.
   */
  private onPublishFailed(batch: Batch, error: unknown): void {
    batch.failures++;
    this.settled(batch);
    if (batch.quorum || batch.failed) return;
    const stillPossible = batch.sentTo - batch.failures;
    if (stillPossible >= this.options.quorum) {
      this.counters.minorityRefusals++;
      return;
    }
    batch.failed = true;
    this.drain.reset();
    const index = this.inflight.indexOf(batch);
    if (index >= 0) this.inflight.splice(index, 1);
    if (batch.first < this.nextSeq) this.nextSeq = Math.max(batch.first, this.brokerAcked + 1);
    // A lost connection (or a switch to another node) fails what was in flight on it: expected, and sent
    // again as soon as a link is up. A broker's refusal is not, and waits before the next try.
    if (error instanceof LastgaspError && error.code === 'BROKER_UNAVAILABLE') {
      this.counters.resent++;
      this.options.logger.info('batch did not reach its broker quorum (connection lost); sending it again', { first: batch.first, last: batch.last, quorum: this.options.quorum, error: error.message });
      this.kick();
      return;
    }
    this.counters.refused++;
    this.options.logger.error('batch did not reach its broker quorum; sending it again', { first: batch.first, last: batch.last, quorum: this.options.quorum, error });
    this.retryLater();
  }

  private onPumpError(error: unknown): void {
    this.counters.readErrors++;
    this.options.logger.error('publisher could not read the log; retrying', { nextSeq: this.nextSeq, error });
    this.retryLater();
  }

  private retryLater(): void {
    this.blockedUntilMs = this.options.clock.monotonicMs() + REFUSED_RETRY_MS;
    this.options.clock.setTimeout(() => this.kick(), REFUSED_RETRY_MS);
  }
}

/**
 * Payload bytes to read for a batch of at most `batchBytes` on the wire: leave room for the header and the
 * per-entry CBOR overhead of a full batch, unless that would halve the batch (a small broker limit); then
 * read more and let `fitBatch` trim.
 */
function readBytesMax(batchBytes: number, entriesMax: number): number {
  const room = batchBytes - BATCH_HEADER_BYTES;
  const reserved = entriesMax * BATCH_OVERHEAD_BYTES_PER_ENTRY;
  return reserved <= room / 2 ? room - reserved : room;
}

/** Drop entries from the end until the batch surely fits in `batchBytes` (at least one entry stays). */
function fitBatch(entries: LogEntry[], batchBytes: number): LogEntry[] {
  let bytes = BATCH_HEADER_BYTES;
  for (let count = 0; count < entries.length; count++) {
    bytes += entries[count]!.payload.length + BATCH_OVERHEAD_BYTES_PER_ENTRY;
    if (bytes > batchBytes) return entries.slice(0, Math.max(1, count));
  }
  return entries;
}
