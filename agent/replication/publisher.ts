/**
 * The primary's side, as one sequence: reads committed entries in seq order and publishes them as batches,
 * QoS 1, with a bounded window of unacknowledged batches, and moves the log's watermarks: `replicated` once a
 * broker quorum sent PUBACK (durability "broker") or once `replicaAcks` siblings hold the entries on flash,
 * as their retained acks say (durability "replica"); retention follows it. With a direct path to the
 * siblings (`direct`) every batch also goes that way, and a batch the siblings acknowledged is done.
 *
 * Batches adapt by themselves: each takes what is committed and not yet sent, within the sizes of
 * batch-sizing.ts: one entry on an idle link (prompt), everything that piled up while the window was full
 * (large). While the publisher cannot send, the prepared tail makes those batches ahead (batch-supply.ts,
 * prepared-tail.ts), so the brownout flush only hands bytes to the links. A sibling that sees a gap asks for
 * a resend (`want`, resend-requests.ts); the publisher rewinds there (go-back-N), and the receiver drops what
 * it already has.
 *
 * This file owns the next seq, the pump, the window's acknowledgements and what each outcome does; the
 * window's bookkeeping, the sibling positions and the replicated watermark's waiters sit beside it. It is a
 * little over 400 lines because those outcomes all move the same next seq: split further, each part would
 * need the others' state back.
 */
import { setImmediate } from 'node:timers';
import { LastgaspError } from '../util/index.ts';
import { flushInflightBytesMax, fullEnoughToSend, handoffLeadMs, linkBatchBytes, linksPayloadBytesMax, linksWindowMax } from './batch-sizing.ts';
import type { BatchPlan, MadeBatch } from './batch-source.ts';
import { BatchSupply } from './batch-supply.ts';
import { DrainMeter } from './drain-meter.ts';
import { PublishWindow, type InflightBatch } from './publish-window.ts';
import { ReplicatedWatermark } from './replicated-watermark.ts';
import { ResendRequests } from './resend-requests.ts';
import { SiblingPositions } from './sibling-positions.ts';
import type { PublisherOptions, PublishLink } from './publisher-options.ts';
import type { AckMessage } from './wire.ts';

/** After a batch could not reach its quorum (refusals, a read error), wait this long before trying again. */
const REFUSED_RETRY_MS = 2000;

export class Publisher {
  private nextSeq = 1;
  private brokerAcked = 0;
  private running = false;
  private again = false;
  private kickQueued = false;
  private stopped = true;
  private paused = false;
  private flushing = false;
  private blockedUntilMs = 0;
  private readonly resends: ResendRequests;
  private unsubscribe: (() => void) | undefined;
  private readonly counters = {
    batches: 0,
    entriesPublished: 0,
    bytesPublished: 0,
    batchEntriesMaxSeen: 0,
    refused: 0,
    /** Batches sent again because the connection that carried them was lost. */
    resent: 0,
    minorityRefusals: 0,
    entryTooLarge: 0,
    readErrors: 0,
    /** Times a small batch waited for the one in flight (replication.coalesce). */
    coalesced: 0,
  };

  private readonly supply: BatchSupply;
  private readonly drain = new DrainMeter();
  private readonly window: PublishWindow;
  private readonly replicated: ReplicatedWatermark;
  private readonly siblings: SiblingPositions;

  constructor(private readonly options: PublisherOptions) {
    this.window = new PublishWindow(options.quorum);
    this.resends = new ResendRequests(options.logger);
    this.replicated = new ReplicatedWatermark(options.log, options.clock);
    this.siblings = new SiblingPositions(options.siblings, options.replicaAcks, options.logger);
    this.supply = new BatchSupply({
      ...options,
      host: {
        mayPrepare: () => !this.stopped && !this.running,
        nextSeq: () => this.nextSeq,
        plan: () => this.plan(options.links.some((link) => link.connected) ? options.links.filter((link) => link.connected) : options.links),
      },
    });
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
    this.supply.dropPrepared();
    this.replicated.start();
    this.brokerAcked = Math.max(replicated, from - 1);
    this.unsubscribe = log.onCommit(() => {
      this.replicated.committed();
      this.kickAfterAcks();
    });
    this.kick();
  }

  stop(): void {
    this.stopped = true;
    this.unsubscribe?.();
    this.window.clear();
    this.supply.stop();
    this.replicated.stop();
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
    return this.replicated.tail();
  }

  /** How long before the hold-up budget ends the flush must publish the handoff record (batch-sizing.ts handoffLeadMs). */
  handoffLeadMs(): number | undefined {
    return handoffLeadMs(this.window.bytes(), this.linkBytesPerS(), this.drain.roundTripMs());
  }

  stats(): Record<string, number | boolean | Record<string, number>> {
    return {
      ...this.counters,
      ...this.siblings.counters,
      ...this.resends.counters,
      ...this.supply.stats(),
      siblings: this.siblings.snapshot(),
      nextSeq: this.nextSeq,
      brokerAcked: this.brokerAcked,
      replicaAcked: this.siblings.acked(),
      inflightBatches: this.window.size,
      windowMax: this.windowMax(),
      paused: this.paused,
      flushing: this.flushing,
      drainBytesPerS: Math.round(this.drain.bytesPerS() ?? 0),
      linkBytesPerS: Math.round(this.linkBytesPerS() ?? 0),
      roundTripMs: Math.round(this.drain.roundTripMs() ?? 0),
      compression: { ...this.options.codec.compression },
      watermarkStalledMs: this.watermarkStalledMs(),
    };
  }

  /** How long the replicated watermark has not moved while entries wait to be replicated (0: no tail). */
  watermarkStalledMs(): number {
    return this.stopped ? 0 : this.replicated.stalledMs();
  }

  /** Resolves true once the replicated watermark reaches `seq`; false at the deadline or when aborted. */
  waitReplicated(seq: number, timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    return this.replicated.wait(seq, timeoutMs, signal);
  }

  /** A sibling's ack (its durable position, and maybe a resend request); dropped unless believable (SiblingPositions). */
  onAck(ack: AckMessage): void {
    const log = this.options.log;
    const committed = log.watermarks().committed;
    if (!this.siblings.admit(ack, log.epoch, committed)) return;
    const acked = this.siblings.acked();
    if (acked > log.watermarks().replicaAcked) log.markReplicaAcked(acked);
    if (this.options.durability === 'replica') this.replicated.advance(acked);
    // With a direct path, a batch the siblings hold on flash is done, with or without the brokers' PUBACKs.
    if (this.options.direct && this.window.retire(acked)) this.advanceBrokerAcked();
    if (ack.want === undefined) this.skipAhead(committed);
    else {
      const request = { want: ack.want, from: ack.node, epoch: ack.epoch, position: this.siblings.position(ack.node) };
      const target = this.resends.answer(request, this.nextSeq, log.firstSeq, this.options.clock.monotonicMs());
      if (target !== undefined) this.moveNextSeq(target);
    }
    this.kick();
  }

  /** Called by the hub when a link comes (back) up. */
  onLinkUp(): void {
    this.kick();
  }

  /**
   * A restarted primary starts after its durable `replicated` mark, which lags the siblings' retained acks
   * by up to a checkpoint. When every sibling already holds more, skip what they have. Only in replica mode:
   * in broker mode the broker quorum must see every batch for the watermark to move.
   */
  private skipAhead(committed: number): void {
    if (this.options.durability !== 'replica' || this.window.size > 0) return;
    const lowest = this.siblings.lowest();
    if (lowest === Infinity || lowest + 1 <= this.nextSeq || lowest > committed) return;
    this.moveNextSeq(lowest + 1);
    this.brokerAcked = Math.max(this.brokerAcked, lowest);
  }

  /**
   * The next seq moves other than by sending a batch (a rewind, a failed batch, retention, a skip): the
   * prepared batches no longer follow it.
   */
  private moveNextSeq(seq: number): void {
    if (seq === this.nextSeq) return;
    this.nextSeq = seq;
    this.supply.dropPrepared();
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
    for (;;) {
      if (this.stopped || this.nextSeq > log.watermarks().committed) return;
      const links = this.sendableLinks();
      if (!links) return this.supply.prepareAhead();
      if (this.nextSeq < log.firstSeq) this.skipRetained(log.firstSeq);
      const plan = this.plan(links);
      if (this.holdsSmallBatch(plan.batchBytes)) {
        this.counters.coalesced++;
        return;
      }
      if (this.flushing && this.window.size > 0 && this.window.bytes() + plan.batchBytes > flushInflightBytesMax(plan.batchBytes, this.linkBytesPerS())) {
        this.drain.saturated();
        return this.supply.prepareAhead();
      }
      if (await this.supply.waitPreparing()) continue;
      const result = await this.supply.next({ nextSeq: this.nextSeq, epoch: log.epoch, auth: options.codec.auth, committed: log.watermarks().committed, plan });
      if (!result.ok) {
        // One entry is larger than a broker takes (reported by the supply): nothing after it goes until the limit is raised.
        if (result.reason === 'too-large') {
          this.counters.entryTooLarge++;
          this.retryLater();
        }
        return;
      }
      if (this.stopped || result.batch.first !== this.nextSeq) {
        // Stopped, or a rewind or a failure moved the next seq while the batch was read: look again.
        this.supply.give(result.batch.buffer);
        continue;
      }
      this.send(result.batch, links);
    }
  }

  /**
   * Nagle's rule for batches (replication.coalesce): while a batch awaits its quorum, what was committed
   * since waits for that acknowledgement (which kicks the pump again) unless it is already a batch worth its
   * fixed costs (batch-sizing.ts fullEnoughToSend). Under load each batch then carries what piled up during a
   * broker round trip rather than one commit, so both nodes pay a batch's costs (encoding, signing and
   * checking it, the replica's write, fdatasync and signed ack) once per round trip instead of once per
   * commit. An idle link still sends a commit at once, and the brownout flush never holds.
   */
  private holdsSmallBatch(batchBytes: number): boolean {
    const { options } = this;
    if (options.coalesce === false || this.flushing || this.window.size === 0) return false;
    const entries = options.log.watermarks().committed - this.nextSeq + 1;
    return !fullEnoughToSend(entries, options.log.committedBytesFrom(this.nextSeq), batchBytes, options.batchEntriesMax);
  }

  /** The links to publish on now, or undefined while the publisher may not send (the reason is its own to wait out). */
  private sendableLinks(): readonly PublishLink[] | undefined {
    const options = this.options;
    if (this.isPaused) return undefined;
    if (this.window.size >= this.windowMax()) {
      this.drain.saturated();
      return undefined;
    }
    if (options.clock.monotonicMs() < this.blockedUntilMs) return undefined;
    const links = options.links.filter((link) => link.connected);
    if (links.length < options.quorum && !options.direct?.carrying()) return undefined;
    return links;
  }

  /** Hand `made` to every link (and the direct path) and put it in the window. */
  private send(made: MadeBatch, links: readonly PublishLink[]): void {
    const options = this.options;
    const topic = options.topics.log(options.node);
    const payload = made.payload;
    const sentAtMs = options.clock.monotonicMs();
    const batch = this.window.open(made, links.length, sentAtMs, this.drain.mark(sentAtMs, this.window.size > 0));
    this.drain.sent(sentAtMs);
    this.resends.published(batch.first, batch.last, sentAtMs);
    this.nextSeq = batch.last + 1;
    this.counters.batches++;
    this.counters.entriesPublished += made.entries;
    this.counters.bytesPublished += payload.length;
    if (made.entries > this.counters.batchEntriesMaxSeen) this.counters.batchEntriesMaxSeen = made.entries;
    for (const link of links) {
      link.publish(topic, payload, { qos: 1, retain: false }).then(
        () => this.onPuback(batch),
        (error: unknown) => this.onPublishFailed(batch, error),
      );
    }
    options.direct?.batch(batch.first, batch.last, payload);
  }

  /**
   * How the next batch is made for `links`: sized for the link (batch-sizing.ts), with what the codec needs
   * for its compression decision.
   */
  private plan(links: readonly PublishLink[]): BatchPlan {
    const options = this.options;
    const payloadBytesMax = linksPayloadBytesMax(links, options.topics.log(options.node), options.batchBytesMax);
    const bytesPerS = this.linkBytesPerS();
    const batchBytes = linkBatchBytes(payloadBytesMax, bytesPerS, this.flushing);
    const link = options.compress === false ? undefined : { bytesPerS, flushing: this.flushing };
    return { payloadBytesMax, batchBytes, link };
  }

  /**
   * Retention removed entries a rewind asked for while the publisher was getting to them. Retention frees
   * only what is replicated at the configured level, so the entries are safe elsewhere; a sibling that still
   * lacks them needs a fresh copy, which the log line says.
   */
  private skipRetained(firstSeq: number): void {
    this.options.logger.error(`seqs ${this.nextSeq}..${firstSeq - 1} were removed by retention before they could be sent again; a sibling that lacks them needs a fresh copy of the log`, { from: this.nextSeq, firstSeq });
    this.moveNextSeq(firstSeq);
  }

  /**
   * The rate that sizes batches, bounds the flush's bytes in flight and times its handoff record: measured
   * with a full window; in the brownout flush, before any such measurement, whatever was measured (a lower
   * bound: smaller batches than the link takes, but none that the cut voids whole). Either reads low on a
   * long round trip, so once measured it is raised to the batches' delivery rate where that is higher
   * (drain-meter.ts).
   */
  private linkBytesPerS(): number | undefined {
    const measured = this.drain.bytesPerS(true) ?? (this.flushing ? this.drain.bytesPerS() : undefined);
    return measured === undefined ? undefined : Math.max(measured, this.drain.deliveryBytesPerS() ?? 0);
  }

  private windowMax(): number {
    return linksWindowMax(this.options.links, this.options.windowMax);
  }

  /**
   * Every link answered the publish: its buffer may be reused if they all PUBACKed it. After a failure MQTT.js
   * may still hold the packet, sharing the buffer, to send it again on reconnect (broker-protocol.ts,
   * storePublishesUncopied), so that buffer is not reused.
   */
  private settled(batch: InflightBatch): void {
    if (!this.stopped && PublishWindow.settled(batch) && batch.failures === 0) this.supply.give(batch.buffer);
  }

  private onPuback(batch: InflightBatch): void {
    const quorum = this.window.puback(batch);
    this.settled(batch);
    if (!quorum) return;
    // The round trip first: at a rate that this batch's own delivery set, its wire time would be all of its latency.
    const nowMs = this.options.clock.monotonicMs();
    this.drain.roundTrip(nowMs - batch.sentAtMs, batch.bytesAhead);
    this.drain.delivered(batch.bytes, nowMs, batch.sentAtMs, batch.delivery);
    this.advanceBrokerAcked();
  }

  /** Take the acknowledged batches off the front of the window and move brokerAcked past them. */
  private advanceBrokerAcked(): void {
    const { acked, bytes } = this.window.advance(this.brokerAcked);
    this.brokerAcked = acked;
    if (bytes > 0) this.drain.acked(bytes, this.options.clock.monotonicMs(), this.window.size === 0);
    if (this.options.durability === 'broker') this.replicated.advance(this.brokerAcked);
    if (this.caughtUp()) this.supply.caughtUp(() => this.caughtUp());
    this.kick();
  }

  private caughtUp(): boolean {
    return this.window.size === 0 && this.nextSeq > this.options.log.watermarks().committed;
  }

  /**
   * A broker refused the batch (or the link stopped). While the others can still make the quorum this is
   * a counted minority refusal; once they cannot, the batch failed and is sent again after a pause.
   */
  private onPublishFailed(batch: InflightBatch, error: unknown): void {
    const verdict = this.window.failure(batch);
    this.settled(batch);
    if (verdict === 'already-done') return;
    if (verdict === 'minority') return void this.counters.minorityRefusals++;
    this.drain.reset();
    if (batch.first < this.nextSeq) this.moveNextSeq(Math.max(batch.first, this.brokerAcked + 1));
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
