/**
 * Replication hub: the broker links, the publisher (primary), the receiver (standby), and the control
 * records every node publishes (state with its Will, acks, the leader record, power telemetry). Incoming
 * messages are verified and dispatched here; anything malformed, unsigned, forged or addressed wrongly is
 * counted by reason and dropped. With `direct`, the direct path to the siblings (direct/) is a second way
 * for batches, acks and the handoff record, and what it delivers takes the same checks (inbound-gate.ts).
 *
 * What is left here is the hub's own surface: its options and events, the wiring of its parts, the dispatch
 * of what arrives, and the narrow interface the brownout and the agent use instead of the publisher. Each
 * part that owns state has its file: the gate, the links, the control records it publishes on every link and
 * the direct path (control-records.ts), the publisher, the receiver, availability. A little over 400 lines:
 * the dispatch and the brownout's interface are each a few lines per message kind or step, kept together so
 * that what the hub accepts and what it offers read in one place.
 */
import { EventEmitter } from 'node:events';
import type { FlashLog } from '../log/index.ts';
import { LastgaspError, type Clock, type Logger } from '../util/index.ts';
import { Availability } from './availability.ts';
import { BrokerLink } from './broker-link.ts';
import { Publisher } from './publisher.ts';
import { Receiver } from './receiver.ts';
import { CounterSource } from './freshness.ts';
import { ControlRecords } from './control-records.ts';
import { InboundGate } from './inbound-gate.ts';
import { DirectPath, DIRECT_KIND_ACK, DIRECT_KIND_BATCH, type DirectKind, type DirectPathConfig } from './direct/index.ts';
import type { WireAuth } from './wire-auth.ts';
import { BATCH_INFLATED_BYTES_MAX } from './compression.ts';
import { WireCodec, topics, type Freshness, type LeaderMessage, type StateMessage, type Topics } from './wire.ts';

/** A direct-path frame may exceed batchBytesMax by the envelope and the frame header (1 KiB is ample). */
const DIRECT_FRAME_SLACK_BYTES = 1024;

export interface ReplicationOptions {
  log: FlashLog;
  group: string;
  node: string;
  siblings: readonly string[];
  brokers: readonly string[];
  mode: 'cluster' | 'independent';
  quorum?: number;
  durability: 'replica' | 'broker';
  /** durability replica: siblings that must hold an entry on flash (default: every sibling). */
  replicaAcks?: number;
  topicPrefix: string;
  protocol: 'auto' | '5' | '3.1.1';
  batchEntriesMax: number;
  batchBytesMax: number;
  /** 'off': batches always go out as they are (replication.compression). */
  compression?: 'auto' | 'off';
  windowMax: number;
  /** Hold small batches while one is in flight (replication.coalesce; default true). */
  coalesce?: boolean;
  /** Memory for batches prepared ahead for the brownout flush (prepared-tail.ts; 0: none). */
  prepareAheadBytes?: number;
  keepaliveS: number;
  username?: string;
  password?: string;
  tls?: { ca?: string; cert?: string; key?: string };
  /** How messages are signed and verified (wire-auth.ts); `hmacKey` is the shorthand for a group key. */
  auth?: WireAuth;
  hmacKey?: Uint8Array;
  /** The direct path to the group's peers (direct/direct-path.ts); needs ed25519 `auth`. */
  direct?: DirectPathConfig;
  /** Where this node's control-message counter reservation lives (freshness.ts): in its data directory. */
  counterFile: string;
  logger: Logger;
  clock: Clock;
}

export interface ReplicationEvents {
  /** Fresh records only: signed by their node, and newer than what this node took from it (freshness.ts). */
  leader: [LeaderMessage & Freshness, { retained: boolean }];
  state: [StateMessage & Freshness];
  /** This node's own state record, back through broker `link` (heartbeat echoes: see takeover/heartbeats.ts). */
  ownState: [StateMessage, number];
  /**
   * What the group was told about this node's log: its own retained state record (from an earlier life) and
   * every sibling's ack. A node whose flash went backwards learns it from these (takeover/roles.ts).
   */
  evidence: [{ node: string; epoch: number; seq: number; what: 'own state' | 'ack' }];
  /** Something on the leader topic that is not a valid record (junk, a forgery, a deletion): the primary restores its own. */
  leaderNoise: [];
  up: [];
}

export class Replication extends EventEmitter<ReplicationEvents> {
  readonly topics: Topics;
  readonly codec: WireCodec;
  readonly publisher: Publisher;
  readonly receiver: Receiver;
  private readonly links: BrokerLink[];
  private readonly quorum: number;
  private role: 'primary' | 'standby' | undefined;
  private readonly counters: CounterSource;
  /** The leader, state, ack, Will and power records this node publishes (control-records.ts). */
  private readonly control: ControlRecords;
  /** Every message that arrives passes it: decoded, verified, addressed right, fresh (inbound-gate.ts). */
  private readonly gate: InboundGate;
  private readonly availability: Availability;
  private readonly direct: DirectPath | undefined;

  constructor(private readonly options: ReplicationOptions) {
    super();
    this.topics = topics(options.topicPrefix, options.group);
    // A compressed batch inflates to at most what a publisher of this group may build (batchBytesMax).
    this.codec = new WireCodec(options.auth ?? options.hmacKey, { inflatedBytesMax: Math.max(BATCH_INFLATED_BYTES_MAX, options.batchBytesMax) });
    this.counters = new CounterSource(options.counterFile, () => options.clock.nowMs());
    this.gate = new InboundGate({ codec: this.codec, topics: this.topics, group: options.group, node: options.node, clock: options.clock, logger: options.logger });
    const logger = options.logger;
    this.links = options.mode === 'cluster' ? [this.brokerLink(options.brokers, 0)] : options.brokers.map((url, index) => this.brokerLink([url], index));
    this.availability = this.makeAvailability();
    this.quorum = options.mode === 'cluster' ? 1 : (options.quorum ?? Math.floor(options.brokers.length / 2) + 1);
    if (this.quorum > this.links.length) {
      throw new LastgaspError('CONFIG_INVALID', `config: replication.quorum: ${this.quorum} brokers cannot acknowledge when only ${this.links.length} are listed`);
    }
    const replicaAcks = options.replicaAcks ?? options.siblings.length;
    if (replicaAcks > options.siblings.length) {
      throw new LastgaspError('CONFIG_INVALID', `config: replication.replicaAcks: ${replicaAcks} siblings cannot acknowledge when only ${options.siblings.length} are listed in siblings`);
    }
    this.direct = this.directPath(logger);
    const { group, node, log, clock } = options;
    this.control = new ControlRecords({ links: this.links, quorum: this.quorum, codec: this.codec, topics: this.topics, direct: this.direct, counters: this.counters, group, node, log, clock });
    this.publisher = new Publisher({
      log: options.log,
      links: this.links,
      codec: this.codec,
      topics: this.topics,
      group: options.group,
      node: options.node,
      durability: options.durability,
      quorum: this.quorum,
      siblings: options.siblings,
      replicaAcks,
      batchEntriesMax: options.batchEntriesMax,
      batchBytesMax: options.batchBytesMax,
      compress: options.compression !== 'off',
      windowMax: options.windowMax,
      coalesce: options.coalesce ?? true,
      preparedBytesMax: options.prepareAheadBytes,
      direct: this.direct,
      logger: logger.child('agent:replication:publisher'),
      clock: options.clock,
    });
    this.receiver = new Receiver({
      log: options.log,
      group: options.group,
      node: options.node,
      sources: this.links.length,
      keepaliveS: options.keepaliveS,
      sendAck: (ack) => this.control.ack(ack),
      receiving: () => this.links.some((link) => link.connected) || (this.direct?.receiving() ?? false),
      logger: logger.child('agent:replication:receiver'),
      clock: options.clock,
    });
    for (const link of this.links) {
      link.on('up', (info) => {
        this.publisher.onLinkUp();
        // A resumed session delivers what the broker queued; a fresh one (a failover's) lost it.
        if (this.role === 'standby' && !info.sessionPresent) this.receiver.onLinkUp();
        this.emit('up');
      });
    }
  }

  /** The link to one broker (or to the nodes of one clustered broker), `index` in the list. */
  private brokerLink(urls: readonly string[], index: number): BrokerLink {
    const options = this.options;
    return new BrokerLink({
      urls,
      clientId: `lastgasp-${options.group}-${options.node}`,
      protocol: options.protocol,
      keepaliveS: options.keepaliveS,
      will: { topic: this.topics.state(options.node), payload: () => this.control.will(), retain: true },
      username: options.username,
      password: options.password,
      tls: options.tls,
      onMessage: (topic, payload, retained) => this.onMessage(topic, payload, retained, index),
      logger: options.logger.child(`agent:replication:broker${index}`),
      clock: options.clock,
    });
  }

  /** The plain availability topic (availability.ts), on sessions of its own or, authenticated, on the links. */
  private makeAvailability(): Availability {
    const options = this.options;
    return new Availability({
      brokers: options.mode === 'cluster' ? [options.brokers] : options.brokers.map((url) => [url]),
      topic: this.topics.availability(options.node),
      clientId: `lastgasp-${options.group}-${options.node}-availability`,
      protocol: options.protocol,
      keepaliveS: options.keepaliveS,
      username: options.username,
      password: options.password,
      tls: options.tls,
      logger: options.logger.child('agent:replication:availability'),
      clock: options.clock,
      // An authenticated agent has one session per broker (the client id is its username there): see availability.ts.
      shared: options.username !== undefined || options.tls?.cert !== undefined ? this.links : undefined,
    });
  }

  /** Connect and subscribe to the control topics; the role decides whether batches flow in or out. */
  async start(): Promise<void> {
    await this.counters.open();
    this.availability.start();
    await this.direct?.start();
    for (const link of this.links) {
      link.start();
      await link.subscribe([this.topics.leader, this.topics.stateAll, this.topics.ackAll], 1);
    }
  }

  /** `fromSeq`: where a new primary starts publishing (see Publisher.start). */
  async setRole(role: 'primary' | 'standby', options: { fromSeq?: number } = {}): Promise<void> {
    if (role === this.role) return;
    this.role = role;
    if (role === 'primary') {
      // A batch being applied finishes first: a new primary's position must not move under it.
      this.receiver.stop();
      await this.receiver.idle();
      // Not awaited: a broker that holds its answer (stopped, or a node in a JetStream timeout) must not hold a
      // takeover that came by the direct path; batches reaching a primary are dropped on arrival anyway.
      for (const link of this.links) void link.unsubscribe([this.topics.logAll]).catch((error: unknown) => this.options.logger.info('unsubscribe from the log topics failed; batches still arriving are dropped', { error }));
      this.publisher.start(options.fromSeq);
    } else {
      this.publisher.stop();
      for (const link of this.links) await link.subscribe([this.topics.logAll], 1);
      await this.receiver.start();
    }
  }

  /** The newest leader epoch the role manager accepted: batches from senders below it are fenced off. */
  followEpoch(epoch: number, since?: number): void {
    this.receiver.setLeaderEpoch(epoch, since);
  }

  /** Brokers whose echo makes a quorum (1 in cluster mode). */
  get brokerQuorum(): number {
    return this.quorum;
  }

  async stop(): Promise<void> {
    this.publisher.stop();
    this.receiver.stop();
    await this.direct?.stop();
    await Promise.all([this.availability.stop(), ...this.links.map((link) => link.stop())]);
  }

  /** Power is going: drop the connections without DISCONNECT so that the brokers publish the Will. */
  async abort(): Promise<void> {
    this.publisher.stop();
    this.receiver.stop();
    await this.direct?.stop();
    await Promise.all([this.availability.abort(), ...this.links.map((link) => link.abort())]);
  }

  get connected(): boolean {
    return this.links.filter((link) => link.connected).length >= this.quorum;
  }

  /**
   * The brownout flush has `budgetMs` left (undefined: it ended). The links derive their deadlines from it:
   * a node that does not acknowledge within a slice of it counts as down, and in cluster mode the other
   * nodes are raced (broker-link.ts).
   */
  setFlushBudget(budgetMs: number | undefined): void {
    const deadline = budgetMs === undefined ? undefined : performance.now() + budgetMs;
    for (const link of this.links) link.setFailoverDeadline(deadline);
    this.direct?.setFlushing(budgetMs !== undefined);
  }

  /** During the brownout flush nothing but batches and the handoff goes out. */
  setControlPaused(paused: boolean): void {
    this.control.setPaused(paused);
  }

  stats(): Record<string, unknown> {
    return {
      connected: this.connected,
      /** How this node signs and verifies: ed25519, hmac, or unsigned. */
      auth: this.codec.mode,
      quorum: this.quorum,
      links: this.links.map((link) => ({ broker: link.name, ...link.stats() })),
      publisher: this.publisher.stats(),
      receiver: this.receiver.stats(),
      ...this.gate.stats(),
      ...(this.direct ? { direct: this.direct.stats() } : {}),
    };
  }

  /** Publish to a quorum of brokers and wait for their PUBACKs. */
  publishLeader(message: LeaderMessage): Promise<void> {
    return this.control.leader(message);
  }

  publishState(message: StateMessage): Promise<void> {
    return this.control.state(message);
  }

  /** The state record outside the control pause: the flush announces itself. */
  publishStateNow(message: StateMessage): Promise<void> {
    return this.control.stateNow(message);
  }

  /** Telemetry for dashboards, rate-limited except a new power state (`changed`), silent during a flush. */
  publishPower(status: object, changed = false): void {
    this.control.power(status, changed);
  }

  /** The last power record before the power goes (QoS 1, awaited, during the flush's pause too). */
  publishPowerNow(status: object): Promise<void> {
    return this.control.powerNow(status);
  }

  /** The direct path, when configured; it authenticates peers with the node keys, so it needs ed25519 signing. */
  private directPath(logger: Logger): DirectPath | undefined {
    const { direct, auth } = this.options;
    if (!direct) return undefined;
    if (auth?.mode !== 'ed25519') {
      throw new LastgaspError('CONFIG_INVALID', 'config: replication.direct: needs replication.signing (the peers authenticate each other with their node keys)');
    }
    return new DirectPath({
      ...direct,
      keyring: auth.keyring,
      frameBytesMax: this.options.batchBytesMax + DIRECT_FRAME_SLACK_BYTES,
      deliver: (node, kind, envelope) => this.onMessage(this.directTopic(node, kind), envelope, false, this.links.length),
      onCarrying: () => this.publisher.onLinkUp(),
      logger: logger.child('agent:replication:direct'),
    });
  }

  /** The topic a broker would have delivered this kind from `node` on: the checks that follow are the same. */
  private directTopic(node: string, kind: DirectKind): string {
    if (kind === DIRECT_KIND_BATCH) return this.topics.log(node);
    return kind === DIRECT_KIND_ACK ? this.topics.ack(node) : this.topics.leader;
  }

  /** Checked by the gate (inbound-gate.ts), then handed to the part it is for. */
  private async onMessage(topic: string, payload: Uint8Array, retained: boolean, link: number): Promise<void> {
    const admission = this.gate.admit(topic, payload);
    if (admission.verdict === 'dropped') {
      if (admission.leaderNoise) this.emit('leaderNoise');
      return;
    }
    if (admission.verdict === 'own-state') {
      const own = admission.message;
      if (!retained) this.emit('ownState', own, link);
      else this.emit('evidence', { node: own.node, epoch: own.epoch, seq: own.committed, what: 'own state' });
      return;
    }
    const decoded = admission.decoded;
    switch (decoded.kind) {
      case 'batch':
        if (decoded.message.node === this.options.node || this.role !== 'standby') return;
        return this.receiver.onBatch(decoded.message);
      case 'ack':
        this.direct?.noteAck(decoded.message.node, decoded.message.seq);
        this.emit('evidence', { node: decoded.message.node, epoch: decoded.message.epoch, seq: decoded.message.seq, what: 'ack' });
        if (this.role === 'primary') this.publisher.onAck(decoded.message);
        return;
      case 'state':
        if (this.role === 'standby' && decoded.message.role === 'primary') this.receiver.notePrimary(decoded.message.committed, decoded.message.epoch);
        this.emit('state', decoded.message);
        return;
      case 'leader':
        this.emit('leader', decoded.message, { retained });
        return;
    }
  }

  // ---- what the brownout (power/brownout.ts) and the agent ask of the publisher, so none reaches into it ----

  /** The brownout flush begins with `budgetMs`: only batches and the handoff go out, each batch at once. */
  beginFlush(budgetMs: number): void {
    this.setControlPaused(true);
    this.publisher.setFlushing(true);
    this.setFlushBudget(budgetMs);
  }

  /** Mains came back before the handoff: control records, batching and the links' own deadlines resume. */
  endFlush(): void {
    this.setControlPaused(false);
    this.publisher.setFlushing(false);
    this.setFlushBudget(undefined);
  }

  /** On battery (true) batches go out whatever the operator's pause, in the largest batches; back on mains as before. */
  setOnBattery(onBattery: boolean): void {
    this.publisher.setFlushing(onBattery);
  }

  /** The operator's pause (a metered uplink): batches wait until resumed; being on battery overrides it. */
  setOperatorPaused(paused: boolean): void {
    this.publisher.setPaused(paused);
  }

  /**
   * Resolves once every batch received so far is stored (or refused). A takeover stops the receiver, and a
   * batch still queued then is dropped: a successor that follows a handoff's tail waits for this first.
   */
  batchesSettled(): Promise<void> {
    return this.receiver.idle();
  }

  /** True once `seq` is replicated at the configured durability, false at the timeout, the abort or a stop. */
  waitReplicated(seq: number, timeoutMs: number, signal: AbortSignal): Promise<boolean> {
    return this.publisher.waitReplicated(seq, timeoutMs, signal);
  }

  /** How long before its deadline the handoff record must leave to get out behind what is in flight. */
  handoffLeadMs(): number | undefined {
    return this.publisher.handoffLeadMs();
  }

  /** The drain rate measured on the link (undefined until there is a measure). */
  drainBytesPerS(): number | undefined {
    return this.publisher.drainBytesPerS();
  }

  /** The highest seq each sibling acknowledged, by node. */
  siblingPositions(): Readonly<Record<string, number>> {
    return (this.publisher.stats().siblings ?? {}) as Record<string, number>;
  }

  /** The handoff record, to the brokers and the direct path alike. */
  publishHandoff(record: LeaderMessage & { kind: 'handoff' }): Promise<void> {
    return this.publishLeader(record);
  }
}
