/**
 * The control records this node publishes on every broker link (and, where one goes, on the direct path):
 * the leader record, the state record and the Will composed from it, the acks of a standby, and the power
 * telemetry. It owns what they share: the freshness counter every signed record carries (freshness.ts), the
 * pause of everything but batches during the brownout flush, the power telemetry's rate limit, and the
 * quorum a record must reach. The hub (replication.ts) makes it and hands its callers here.
 */
import assert from 'node:assert/strict';
import { setImmediate } from 'node:timers';
import type { FlashLog } from '../log/index.ts';
import type { Clock } from '../util/index.ts';
import type { BrokerLink } from './broker-link.ts';
import type { DirectPath } from './direct/index.ts';
import type { CounterSource } from './freshness.ts';
import type { AckMessage, LeaderMessage, StateMessage, Topics, WireCodec } from './wire.ts';

/** Power telemetry is for dashboards: at most one message per this interval. */
const POWER_PUBLISH_INTERVAL_MS = 1000;

export interface ControlRecordsOptions {
  links: readonly BrokerLink[];
  /** Brokers whose PUBACK completes a record (1 in cluster mode). */
  quorum: number;
  codec: WireCodec;
  topics: Topics;
  direct: DirectPath | undefined;
  counters: CounterSource;
  group: string;
  node: string;
  log: FlashLog;
  clock: Clock;
}

export class ControlRecords {
  private lastPowerAtMs = -Infinity;
  /** The power record waiting for the end of this turn (see power). */
  private pendingPower: object | undefined;
  private paused = false;
  private lastWill: Uint8Array | undefined;

  constructor(private readonly options: ControlRecordsOptions) {}

  /** During the brownout flush nothing but batches and the handoff goes out. */
  setPaused(paused: boolean): void {
    this.paused = paused;
  }

  /** Publish to a quorum of brokers and wait for their PUBACKs. */
  async leader(message: LeaderMessage): Promise<void> {
    const { codec, counters, topics, direct } = this.options;
    const payload = codec.encodeLeader({ ...message, counter: await counters.take() });
    // Only the handoff goes direct too: a claim must reach every node in the one order the brokers give it.
    await this.publish(topics.leader, payload, true, message.kind === 'handoff' ? direct?.sendLeader(payload) : undefined);
  }

  async state(message: StateMessage): Promise<void> {
    if (this.paused) return;
    await this.stateNow(message);
  }

  /** The state record outside the control pause: the flush announces itself. */
  async stateNow(message: StateMessage): Promise<void> {
    const { codec, counters, topics, node } = this.options;
    await this.publish(topics.state(node), codec.encodeState({ ...message, counter: await counters.take() }), true);
  }

  /**
   * Telemetry for dashboards: plain JSON, QoS 0, retained, rate-limited (except `changed`: a new power
   * state goes out at once), silent during a flush.
   */
  power(status: object, changed = false): void {
    const now = this.options.clock.monotonicMs();
    if (this.paused || (!changed && now - this.lastPowerAtMs < POWER_PUBLISH_INTERVAL_MS)) return;
    this.lastPowerAtMs = now;
    // Records of one turn go as one, the last: a brownout passes ON_BATTERY, BROWNOUT and FLUSHING at once,
    // and on a 256 kbit/s uplink each record is 10 ms of the tail's hold-up time.
    const pending = this.pendingPower === undefined;
    this.pendingPower = status;
    if (pending) setImmediate(() => this.sendPower());
  }

  private sendPower(): void {
    const status = this.pendingPower;
    this.pendingPower = undefined;
    if (status === undefined) return;
    const payload = new TextEncoder().encode(JSON.stringify(status));
    for (const link of this.options.links) {
      if (link.connected) void link.publish(this.options.topics.power(this.options.node), payload, { qos: 0, retain: true }).catch(() => undefined);
    }
  }

  /** The last power record before the power goes (QoS 1, awaited, during the flush's pause too). */
  async powerNow(status: object): Promise<void> {
    this.pendingPower = undefined;
    const payload = new TextEncoder().encode(JSON.stringify(status));
    const topic = this.options.topics.power(this.options.node);
    await Promise.all(this.options.links.filter((link) => link.connected).map((link) => link.publish(topic, payload, { qos: 1, retain: true }).catch(() => undefined)));
  }

  /** A standby's durable position, to the brokers and the direct path alike. */
  async ack(ack: AckMessage): Promise<void> {
    const { codec, counters, topics, node, direct } = this.options;
    const payload = codec.encodeAck({ ...ack, counter: await counters.take() });
    await this.publish(topics.ack(node), payload, true, direct?.sendAck(payload));
  }

  /**
   * The Will, composed at each connect with a fresh counter and the node's position then. When no counter
   * can be had without waiting (a block just ran out), the previous Will serves: the broker publishes a Will
   * only once, when the session ends.
   */
  will(): Uint8Array {
    const counter = this.options.counters.takeNow();
    if (counter === undefined && this.lastWill) return this.lastWill;
    assert.ok(counter !== undefined, 'replication: a link connected before the counter reservation was read (start() opens it first)');
    const { group, node, log, clock, codec } = this.options;
    this.lastWill = codec.encodeState({ group, node, role: 'unknown', state: 'offline', epoch: log.epoch, committed: log.watermarks().committed, atMs: clock.nowMs(), counter });
    return this.lastWill;
  }

  /** `direct`: the same message sent on the direct path too; either way out completes the publish. */
  private async publish(topic: string, payload: Uint8Array, retain: boolean, direct?: Promise<void>): Promise<void> {
    const { links: all, quorum } = this.options;
    const links = all.filter((link) => link.connected);
    const sends = (links.length > 0 ? links : all).map((link) => link.publish(topic, payload, { qos: 1, retain }));
    const brokers = quorumOf(sends, Math.min(quorum, sends.length));
    if (!direct) return brokers;
    await Promise.any([brokers, direct]).catch((error: AggregateError) => {
      throw error.errors[0];
    });
  }
}

/** Resolve when `needed` of the promises resolved; reject when that became impossible. */
function quorumOf(promises: readonly Promise<void>[], needed: number): Promise<void> {
  if (needed <= 0) return Promise.resolve();
  return new Promise((resolve, reject) => {
    let ok = 0;
    let failed = 0;
    for (const promise of promises) {
      promise.then(
        () => {
          if (++ok === needed) resolve();
        },
        (error: unknown) => {
          if (++failed > promises.length - needed) reject(error);
        },
      );
    }
  });
}
