/**
 * The primary's side: reads committed entries from the log in seq order and publishes them as batches,
 * QoS 1, with a bounded window of unacknowledged batches. It advances the log's watermarks:
 * - broker quorum: a batch counts once `quorum` brokers sent PUBACK (durability "broker");
 * - replica: the siblings' acks (retained, so a restarted primary learns their position at once) say what
 *   they hold on flash (durability "replica").
 * A sibling that sees a gap asks for a resend from its position (`want`); the publisher rewinds there
 * (go-back-N) and the receiver drops what it already has.
 */
import type { FlashLog } from '../log/index.ts';
import type { Clock, Logger } from '../util/index.ts';
import type { BrokerLink } from './broker-link.ts';
import { BATCH_OVERHEAD_BYTES_PER_ENTRY, type AckMessage, type Topics, type WireCodec } from './wire.ts';

/** A sibling repeating the same resend request within this time is answered once (its batches are in flight). */
const REWIND_REPEAT_MS = 1000;
/** After a broker refused a batch (quota, authorization), wait this long before trying again. */
const REFUSED_RETRY_MS = 2000;
/** Bytes reserved for the envelope, the batch header and the MQTT fixed header. */
const BATCH_HEADER_BYTES = 512;

export interface PublisherOptions {
  log: FlashLog;
  links: readonly BrokerLink[];
  codec: WireCodec;
  topics: Topics;
  group: string;
  node: string;
  durability: 'replica' | 'broker';
  /** PUBACKs needed per batch (1 in cluster mode). */
  quorum: number;
  siblings: readonly string[];
  batchEntriesMax: number;
  batchBytesMax: number;
  windowMax: number;
  logger: Logger;
  clock: Clock;
}

interface Batch {
  readonly first: number;
  readonly last: number;
  readonly bytes: number;
  acks: number;
  quorum: boolean;
}

export class Publisher {
  private nextSeq = 1;
  private brokerAcked = 0;
  private readonly inflight: Batch[] = [];
  private readonly replicaPositions = new Map<string, number>();
  private running = false;
  private again = false;
  private stopped = true;
  private paused = false;
  private flushing = false;
  private blockedUntilMs = 0;
  private lastWant = 0;
  private lastWantAtMs = -Infinity;
  private unsubscribe: (() => void) | undefined;
  private readonly replicatedWaiters: Array<{ seq: number; resolve: (ok: boolean) => void }> = [];
  private readonly counters = { batches: 0, entriesPublished: 0, bytesPublished: 0, rewinds: 0, refused: 0, acksReceived: 0 };

  constructor(private readonly options: PublisherOptions) {}

  start(): void {
    const log = this.options.log;
    this.stopped = false;
    this.nextSeq = Math.max(log.watermarks().replicated + 1, log.firstSeq);
    this.brokerAcked = log.watermarks().replicated;
    this.unsubscribe = log.onCommit(() => this.kick());
    this.kick();
  }

  stop(): void {
    this.stopped = true;
    this.unsubscribe?.();
    this.inflight.length = 0;
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

  /** Entries committed locally but not yet replicated at the configured level. */
  tail(): number {
    const marks = this.options.log.watermarks();
    return marks.committed - marks.replicated;
  }

  stats(): Record<string, number | boolean> {
    return { ...this.counters, nextSeq: this.nextSeq, brokerAcked: this.brokerAcked, inflightBatches: this.inflight.length, paused: this.paused, flushing: this.flushing };
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

  /** A sibling's ack (its durable position, and maybe a resend request). */
  onAck(ack: AckMessage): void {
    if (!this.options.siblings.includes(ack.node)) return;
    this.counters.acksReceived++;
    const log = this.options.log;
    const committed = log.watermarks().committed;
    const position = Math.min(ack.seq, committed);
    if (position > (this.replicaPositions.get(ack.node) ?? 0)) this.replicaPositions.set(ack.node, position);
    const acked = this.replicaAcked();
    if (acked > log.watermarks().replicaAcked) log.markReplicaAcked(acked);
    if (this.options.durability === 'replica') this.advanceReplicated(acked);
    if (ack.want !== undefined) this.rewind(ack.want, ack.node);
    else if (this.inflight.length === 0 && ack.seq + 1 > this.nextSeq && ack.seq <= committed) this.nextSeq = ack.seq + 1;
    this.kick();
  }

  /** Called by the hub when a link comes (back) up. */
  onLinkUp(): void {
    this.kick();
  }

  private replicaAcked(): number {
    // Every sibling named in the config must hold an entry before it counts as replica-acked.
    let lowest = Infinity;
    for (const sibling of this.options.siblings) lowest = Math.min(lowest, this.replicaPositions.get(sibling) ?? 0);
    return lowest === Infinity ? 0 : lowest;
  }

  private rewind(want: number, from: string): void {
    const now = this.options.clock.monotonicMs();
    if (want >= this.nextSeq) return;
    if (want === this.lastWant && now - this.lastWantAtMs < REWIND_REPEAT_MS) return;
    this.lastWant = want;
    this.lastWantAtMs = now;
    this.counters.rewinds++;
    const target = Math.max(want, this.options.log.firstSeq);
    this.options.logger.info('sibling asked for a resend', { sibling: from, from: target, was: this.nextSeq });
    this.nextSeq = target;
  }

  private advanceReplicated(seq: number): void {
    const log = this.options.log;
    if (seq <= log.watermarks().replicated) return;
    log.markReplicated(seq);
    for (let index = this.replicatedWaiters.length - 1; index >= 0; index--) {
      const waiter = this.replicatedWaiters[index]!;
      if (waiter.seq <= seq) {
        this.replicatedWaiters.splice(index, 1);
        waiter.resolve(true);
      }
    }
  }

  private kick(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = true;
    void this.pump()
      .catch((error: unknown) => this.options.logger.error('publisher stopped on an error; retrying', { error }))
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
      if (this.stopped || this.isPaused || this.nextSeq > log.watermarks().committed) return;
      if (this.inflight.length >= this.windowMax()) return;
      if (options.clock.monotonicMs() < this.blockedUntilMs) return;
      const links = options.links.filter((link) => link.connected);
      if (links.length < options.quorum) return;
      const entries = await log.read(this.nextSeq, {
        entriesMax: options.batchEntriesMax,
        bytesMax: options.batchBytesMax - BATCH_HEADER_BYTES - options.batchEntriesMax * BATCH_OVERHEAD_BYTES_PER_ENTRY,
      });
      const first = entries[0];
      if (!first || first.seq !== this.nextSeq) return;
      const payload = options.codec.encodeBatch({ group: options.group, node: options.node, epoch: log.epoch, entries });
      const batch: Batch = { first: first.seq, last: first.seq + entries.length - 1, bytes: payload.length, acks: 0, quorum: false };
      this.inflight.push(batch);
      this.nextSeq = batch.last + 1;
      this.counters.batches++;
      this.counters.entriesPublished += entries.length;
      this.counters.bytesPublished += payload.length;
      const topic = options.topics.log(options.node);
      for (const link of links) {
        link.publish(topic, payload, { qos: 1, retain: false }).then(
          () => this.onPuback(batch),
          (error: unknown) => this.onPublishFailed(batch, error),
        );
      }
    }
  }

  /** The window never exceeds what the brokers said they can take (MQTT 5 Receive Maximum). */
  private windowMax(): number {
    let window = this.options.windowMax;
    for (const link of this.options.links) if (link.info) window = Math.min(window, link.info.receiveMaximum);
    return window;
  }

  private onPuback(batch: Batch): void {
    batch.acks++;
    if (batch.quorum || batch.acks < this.options.quorum) return;
    batch.quorum = true;
    let advanced = true;
    while (advanced) {
      advanced = false;
      for (let index = 0; index < this.inflight.length; index++) {
        const candidate = this.inflight[index]!;
        if (candidate.quorum && candidate.first <= this.brokerAcked + 1) {
          this.brokerAcked = Math.max(this.brokerAcked, candidate.last);
          this.inflight.splice(index, 1);
          advanced = true;
          break;
        }
      }
    }
    if (this.options.durability === 'broker') this.advanceReplicated(this.brokerAcked);
    this.kick();
  }

  private onPublishFailed(batch: Batch, error: unknown): void {
    const index = this.inflight.indexOf(batch);
    if (index >= 0) this.inflight.splice(index, 1);
    this.counters.refused++;
    this.options.logger.error('batch not accepted; will resend', { first: batch.first, last: batch.last, error });
    this.blockedUntilMs = this.options.clock.monotonicMs() + REFUSED_RETRY_MS;
    if (batch.first < this.nextSeq) this.nextSeq = Math.max(batch.first, this.brokerAcked + 1);
    this.options.clock.setTimeout(() => this.kick(), REFUSED_RETRY_MS);
  }
}
