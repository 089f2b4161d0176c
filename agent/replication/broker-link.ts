/**
 * One MQTT session with one broker (or with one clustered broker through its list of node addresses).
 *
 * - MQTT 5 is tried first and 3.1.1 used when the broker refuses it (Aedes 1.2 and NATS answer a v5 CONNECT
 *   with CONNACK return code 1, "unacceptable protocol version"); nothing the agent needs depends on v5.
 * - The session is persistent (clean: false, a fixed client id), so that a standby's subscription keeps
 *   queueing batches at the broker while it is offline.
 * - Incoming messages go through MQTT.js's `handleMessage`, which holds the PUBACK and the next packet until
 *   the handler finished: the receiver stores an entry on flash before the broker may forget it.
 * - Flow control is enforced by the link, because MQTT.js 5 does not: publishes beyond the broker's Receive
 *   Maximum wait in order (receive-quota.ts).
 * - A packet larger than the server's Maximum Packet Size (MQTT 5 CONNACK) is refused here with a typed
 *   error: sent anyway, mosquitto would disconnect with 0x95 and MQTT.js would resend the same packet after
 *   every reconnect, for ever.
 * - On reconnect MQTT.js first resends its stored, unacknowledged QoS 1 packets, one at a time, and queues
 *   every new publish behind them until the last one is acknowledged (client.js `_onConnect`, store
 *   processing); only then does it emit `connect`. So the stored backlog goes before anything new.
 *
 * Its parts that own state of their own live beside it: the stall tracking (link-health.ts), the Receive
 * Maximum quota (receive-quota.ts), the race of a cluster's other nodes (node-race.ts), the client options
 * (client-options.ts). What stays here (about 620 lines) is longer than the project's usual few hundred on
 * purpose: the client's handlers, the watch and the adoption of a race's winner all act on one current
 * client, which the adoption swaps under them (each handler first checks that its client is still the
 * link's), and on the session state that goes with it (up, down since, causes, counters). Apart, they would
 * pass that state back and forth through an interface as wide as the class.
 */
import { EventEmitter } from 'node:events';
import mqtt, { type IClientPublishOptions, type IConnackPacket, type MqttClient, type Packet } from 'mqtt';
import { LastgaspError, type Clock, type Logger, type TimerHandle } from '../util/index.ts';
import { CONNECT_TIMEOUT_MS, clientOptions } from './client-options.ts';
import { LinkHealth } from './link-health.ts';
import { ReceiveQuota, WAITING_MAX } from './receive-quota.ts';
import { closeQuietly, NodeRace, type RaceWinner } from './node-race.ts';
import {
  brokerRefusal,
  CONNACK_UNACCEPTABLE_PROTOCOL,
  hostPort,
  publishPacketBytes,
  REASON_CODE_FAILURE_MIN,
  REASON_HINTS,
  REASONS,
  serverOf,
  storePublishesUncopied,
  toBuffer,
} from './broker-protocol.ts';

export { brokerRefusal, publishPacketBytes } from './broker-protocol.ts';

/**
 * A clean stop waits this long for PUBACKs of what is in flight (MQTT.js `end(false)`), then closes anyway:
 * a hung broker never answers, and a gateway asked to stop must stop (the session keeps the rest).
 */
const STOP_GRACE_MS = 2000;
/** How often the link checks for a stall and, in cluster mode, whether to race the other nodes. */
const WATCH_INTERVAL_MS = 100;
/**
 * Outside a flush, a link whose oldest unacknowledged publish waited this long, with no acknowledgement at
 * all meanwhile, counts as down. Above a NATS node's 4 s JetStream timeout, which it may spend once on a
 * publish after a stream leader was lost, and far below anything a lease or an operator waits for.
 */
const STALL_MS = 5000;
/**
 * During a flush, one node gets at most this fraction of the remaining budget (for a connect with its
 * first acknowledgement, or to acknowledge a publish), within the bounds below: with the default 10 s
 * budget, 1.25 s, so that a node that holds the link costs an eighth of the budget and not all of it.
 */
const FLUSH_SLICE = 1 / 8;
const FLUSH_SLICE_MIN_MS = 250;
const FLUSH_SLICE_MAX_MS = 2000;
/** Pause before a node whose attempt failed is tried again in a race (at most one attempt per slice). */
const RACE_RETRY_MS = 100;
/** Reconnect causes remembered for status. */
const CAUSES_MAX = 8;

export interface BrokerLinkOptions {
  /** Addresses of one broker, or of the nodes of one clustered broker (failover in order). */
  urls: readonly string[];
  clientId: string;
  protocol: 'auto' | '5' | '3.1.1';
  keepaliveS: number;
  /** The Will; a function is called at each connect (the hub gives every session's Will a fresh counter). */
  will?: { topic: string; payload: Uint8Array | (() => Uint8Array); retain: boolean };
  username?: string;
  password?: string;
  tls?: { ca?: string; cert?: string; key?: string };
  /** Awaited before the message is acknowledged to the broker; must not throw. */
  onMessage: (topic: string, payload: Uint8Array, retained: boolean) => Promise<void>;
  logger: Logger;
  /** Every deadline of the link (watch, stall, flush slices, races, stop grace) and the time of each cause. */
  clock: Clock;
}

export interface LinkUp {
  readonly protocolVersion: 4 | 5;
  readonly sessionPresent: boolean;
  /** The broker's Receive Maximum (MQTT 5 CONNACK); 65535 when absent, per the spec. */
  readonly receiveMaximum: number;
  /** The broker's Maximum Packet Size (MQTT 5 CONNACK); undefined when it announced none. */
  readonly maximumPacketSize: number | undefined;
  readonly server: string;
}

export interface BrokerLinkEvents {
  up: [LinkUp];
  down: [string];
}

/** A QoS 1 publish handed to a client, failed by the link when it leaves that client for another node. */
interface Pending {
  readonly client: MqttClient;
  readonly fail: (error: Error) => void;
}

/** Why the link connected again, or why an attempt failed (status: `causes`). */
export interface LinkCause {
  readonly atMs: number;
  readonly server: string;
  readonly cause: string;
}

const textEncoder = new TextEncoder();

export class BrokerLink extends EventEmitter<BrokerLinkEvents> {
  private client: MqttClient | undefined;
  private protocolVersion: 4 | 5;
  private stopped = false;
  /** The broker's Receive Maximum, kept to here because MQTT.js does not (receive-quota.ts). */
  private readonly quota = new ReceiveQuota();
  private maximumPacketSize: number | undefined;
  private readonly pending = new Set<Pending>();
  /** Whether the current connection acknowledges: stalled past its deadline, it counts as down. */
  private readonly health = new LinkHealth();
  /** The end of the brownout flush's budget (monotonic ms): while it lasts, deadlines come from it. */
  private failoverDeadlineMs: number | undefined;
  private race: NodeRace | undefined;
  private watch: TimerHandle | undefined;
  private attemptStartedAtMs = 0;
  /**
   * When the link lost its connection (monotonic ms); undefined while connected and before the first
   * connection (the first one settles the protocol version, and the persistent session is made there).
   */
  private downSinceMs: number | undefined;
  private readonly causes: LinkCause[] = [];
  private readonly subscriptions = new Map<string, 0 | 1>();
  private upInfo: LinkUp | undefined;
  private readonly counters = {
    connects: 0,
    disconnects: 0,
    publishes: 0,
    pubackFailures: 0,
    tooLarge: 0,
    serverDisconnects: 0,
    protocolErrors: 0,
    received: 0,
    waitedForQuota: 0,
    /** Times the link was connected but not acknowledging past its deadline. */
    stalls: 0,
    /** Connection attempts a broker held and closed without a CONNACK (NATS: its 4 s JetStream timeout). */
    attemptsClosed: 0,
    /** Races of the other nodes started, attempts in them that failed, and races won (the link switched). */
    races: 0,
    raceAttemptsFailed: 0,
    failovers: 0,
  };

  constructor(private readonly options: BrokerLinkOptions) {
    super();
    this.protocolVersion = options.protocol === '3.1.1' ? 4 : 5;
  }

  get name(): string {
    return this.options.urls.join(',');
  }

  /** Connected and acknowledging: a link that stalled past its deadline counts as down. */
  get connected(): boolean {
    return this.client?.connected === true && !this.health.stalled;
  }

  get info(): LinkUp | undefined {
    return this.upInfo;
  }

  get inflightCount(): number {
    return this.quota.inflight;
  }

  /** The largest payload a PUBLISH to `topic` may carry on this link, or undefined when unlimited. */
  payloadBytesMax(topic: string): number | undefined {
    const limit = this.maximumPacketSize;
    if (limit === undefined) return undefined;
    return limit - publishPacketBytes(textEncoder.encode(topic).length, 0, this.protocolVersion, 1) - 3;
  }

  stats(): Record<string, unknown> {
    const now = this.options.clock.monotonicMs();
    return {
      ...this.counters,
      /** Most QoS 1 PUBLISHes ever unacknowledged on the wire at once (measured from the packets sent). */
      inflightPeak: this.health.inflightPeak,
      state: this.state(),
      inflight: this.quota.inflight,
      waiting: this.quota.waiting,
      receiveMaximum: this.quota.receiveMaximum,
      connected: this.connected,
      stalled: this.health.stalled,
      server: this.upInfo?.server ?? '',
      protocolVersion: this.protocolVersion,
      /** Since the broker last acknowledged anything on this connection; -1 when not connected. */
      lastAckAgeMs: this.upInfo ? this.health.lastAckAgeMs(now) : -1,
      oldestUnackedMs: this.health.oldestUnackedMs(now),
      racing: this.race?.running === true,
      /** How long MQTT.js now gives a node to answer a CONNECT (set by the watch in cluster mode). */
      connectTimeoutMs: this.client?.options.connectTimeout ?? CONNECT_TIMEOUT_MS,
      causes: [...this.causes],
    };
  }

  /** up, stalled (connected, not acknowledging), racing (trying every node at once) or down. */
  private state(): 'up' | 'stalled' | 'racing' | 'down' {
    if (this.race?.running) return 'racing';
    if (this.health.stalled) return 'stalled';
    return this.client?.connected ? 'up' : 'down';
  }

  /**
   * The brownout flush runs until `deadlineMs` (the clock's monotonic ms); undefined when it ended.
   * Until then a stall counts after a slice of what remains, and in cluster mode a link that is down or
   * stalled races every other node with attempts bounded by that slice.
   */
  setFailoverDeadline(deadlineMs: number | undefined): void {
    this.failoverDeadlineMs = deadlineMs;
    if (deadlineMs !== undefined) this.tick();
  }

  start(): void {
    this.stopped = false;
    this.connect();
    this.watchNext();
  }

  async stop(): Promise<void> {
    this.halt();
    const client = this.client;
    this.client = undefined;
    this.failWaiting('link stopped');
    if (!client) return;
    let timer: TimerHandle | undefined;
    const graceful = client.endAsync(false).then(() => true, () => true);
    const late = new Promise<boolean>((resolve) => (timer = this.options.clock.setTimeout(() => resolve(false), STOP_GRACE_MS)));
    const ended = await Promise.race([graceful, late]);
    timer?.cancel();
    if (!ended) await client.endAsync(true).catch(() => undefined);
  }

  /** Drop the connection without a DISCONNECT, so that the broker publishes the Will (power loss). */
  async abort(): Promise<void> {
    this.halt();
    const client = this.client;
    this.client = undefined;
    this.failWaiting('link aborted');
    if (client) {
      (client as unknown as { stream?: { destroy(): void } }).stream?.destroy();
      await client.endAsync(true).catch(() => undefined);
    }
  }

  /**
   * Resolves on PUBACK (QoS 1) or once written (QoS 0). Rejects with BROKER_REFUSED on an MQTT 5 failure
   * reason code or when the packet exceeds the broker's Maximum Packet Size, and with BROKER_UNAVAILABLE
   * when the link is stopped.
   */
  publish(topic: string, payload: Uint8Array, options: { qos: 0 | 1; retain: boolean }): Promise<void> {
    if (!this.client) return Promise.reject(new LastgaspError('BROKER_UNAVAILABLE', `broker ${this.name}: link stopped`));
    const limit = this.maximumPacketSize;
    if (limit !== undefined) {
      const packetBytes = publishPacketBytes(textEncoder.encode(topic).length, payload.length, this.protocolVersion, options.qos);
      if (packetBytes > limit) {
        this.counters.tooLarge++;
        const error = brokerRefusal(this.name, topic, 0x95);
        return Promise.reject(new LastgaspError('BROKER_REFUSED', `${error.message} (a ${packetBytes}-byte packet; the broker announced a limit of ${limit})`, { ...error.detail, packetBytes, limitBytes: limit }));
      }
    }
    if (options.qos === 0) return this.send(topic, payload, options);
    if (this.quota.open) return this.send(topic, payload, options);
    if (this.quota.full) {
      return Promise.reject(new LastgaspError('BROKER_UNAVAILABLE', `broker ${this.name}: ${WAITING_MAX} publishes already wait for the broker's Receive Maximum (${this.quota.receiveMaximum})`));
    }
    this.counters.waitedForQuota++;
    return new Promise((resolve, reject) => this.quota.wait(() => void this.send(topic, payload, options).then(resolve, reject), reject));
  }

  /** Subscribe now and after every reconnect that lost the session. */
  /**
   * Recorded first, so that every (re)connection subscribes again (resubscribe). A SUBSCRIBE cut short by the
   * connection dropping is not an error: the next connection makes it; one the broker refused is.
   */
  async subscribe(filters: readonly string[], qos: 0 | 1 = 1): Promise<void> {
    for (const filter of filters) this.subscriptions.set(filter, qos);
    const client = this.client;
    if (!client?.connected) return;
    try {
      await client.subscribeAsync(filters.map((topic) => topic), { qos });
    } catch (error) {
      if (client.connected && client === this.client) throw error;
      this.options.logger.info('subscribe cut short by a lost connection; the next connection subscribes again', { filters, error: (error as Error).message });
    }
  }

  async unsubscribe(filters: readonly string[]): Promise<void> {
    for (const filter of filters) this.subscriptions.delete(filter);
    if (this.client?.connected) await this.client.unsubscribeAsync([...filters]);
  }

  private send(topic: string, payload: Uint8Array, options: { qos: 0 | 1; retain: boolean }): Promise<void> {
    const client = this.client;
    if (!client) return Promise.reject(new LastgaspError('BROKER_UNAVAILABLE', `broker ${this.name}: link stopped`));
    this.counters.publishes++;
    if (options.qos === 1) this.quota.taken();
    const publishOptions: IClientPublishOptions = { qos: options.qos, retain: options.retain };
    return new Promise((resolve, reject) => {
      let settled = false;
      const pending: Pending = { client, fail: (error) => settle(error) };
      const settle = (error: Error | undefined) => {
        if (settled) return;
        settled = true;
        this.pending.delete(pending);
        if (options.qos === 1) this.quota.freed();
        if (!error) return resolve();
        const code = (error as { code?: number }).code;
        if (typeof code === 'number' && code >= REASON_CODE_FAILURE_MIN) {
          this.counters.pubackFailures++;
          const refusal = brokerRefusal(this.name, topic, code);
          this.options.logger.error(refusal.message, refusal.detail);
          reject(refusal);
          return;
        }
        if (error instanceof LastgaspError) return reject(error);
        reject(new LastgaspError('BROKER_UNAVAILABLE', `broker ${this.name}: publish to ${topic} failed: ${error.message}`, { topic }, { cause: error }));
      };
      if (options.qos === 1) this.pending.add(pending);
      client.publish(topic, toBuffer(payload), publishOptions, (error) => settle(error));
    });
  }

  private failWaiting(why: string): void {
    this.quota.failAll(() => new LastgaspError('BROKER_UNAVAILABLE', `broker ${this.name}: ${why}`));
  }

  private connect(): void {
    const client = mqtt.connect(clientOptions(this.options, this.protocolVersion));
    storePublishesUncopied(client);
    this.client = client;
    this.attemptStartedAtMs = this.options.clock.monotonicMs();
    client.on('reconnect', () => {
      if (client === this.client) this.attemptStartedAtMs = this.options.clock.monotonicMs();
    });
    this.attach(client);
  }

  /** The handlers of a client: the link's own, or a race's attempt (which act only once it is adopted). */
  private attach(client: MqttClient): void {
    client.handleMessage = (packet, done) => {
      this.counters.received++;
      const payload = packet.payload;
      const bytes = typeof payload === 'string' ? textEncoder.encode(payload) : new Uint8Array(payload.buffer, payload.byteOffset, payload.byteLength);
      this.options.onMessage(packet.topic, bytes, packet.retain === true).then(
        () => done(),
        (error: unknown) => {
          this.options.logger.error('message handler failed; acknowledging anyway (the replica protocol recovers by seq)', { topic: packet.topic, error });
          done();
        },
      );
    };
    client.on('packetsend', (packet: Packet) => {
      if (client === this.client) this.countOnWire(packet, true);
    });
    client.on('packetreceive', (packet: Packet) => {
      if (client !== this.client) return;
      this.countOnWire(packet, false);
      // MQTT.js counts only acks and PINGRESP as signs of life. A broker resuming a session sends its queued
      // batches first; each is written to flash before the next packet is read, so the PINGRESP can sit behind
      // many of them for longer than 1.5 × keepalive, and the link would be dropped and resumed for ever (seen
      // with a 1 s keepalive after a 3 s outage). Any packet from the broker proves the connection alive.
      client.reschedulePing(true);
    });
    client.on('connect', (connack) => {
      if (client === this.client) this.onConnected(client, connack, false);
    });
    client.on('disconnect', (packet) => {
      if (client === this.client) this.onServerDisconnect(packet.reasonCode ?? 0);
    });
    client.on('error', (error) => {
      if (client === this.client) this.onClientError(client, error);
    });
    client.on('close', () => {
      if (client === this.client) this.onClosed(client);
    });
  }

  /** A DISCONNECT from the broker (MQTT 5): a failure reason is counted, remembered and said loudly. */
  private onServerDisconnect(code: number): void {
    if (code < REASON_CODE_FAILURE_MIN) return;
    this.counters.serverDisconnects++;
    const hint = REASON_HINTS[code];
    this.noteCause(this.upInfo?.server ?? this.name, `disconnected by the broker: ${REASONS[code] ?? 'unknown reason'}`);
    this.options.logger.error(`broker ${this.name} disconnected this gateway: ${REASONS[code] ?? 'unknown reason'} (0x${code.toString(16)})${hint ? `; ${hint}` : ''}`, { reasonCode: code });
  }

  /** An error of the current client: MQTT 5 refused (fall back to 3.1.1), an unparsable packet, or a cause. */
  private onClientError(client: MqttClient, error: Error): void {
    const code = (error as { code?: number }).code;
    if (code === CONNACK_UNACCEPTABLE_PROTOCOL && this.protocolVersion === 5 && this.options.protocol === 'auto') {
      this.options.logger.info('broker refused MQTT 5; using MQTT 3.1.1', { broker: this.name });
      this.protocolVersion = 4;
      void client.endAsync(true).then(() => {
        if (!this.stopped && client === this.client) this.connect();
      });
      return;
    }
    if (/^Invalid \w+ reason code$/.test(error.message)) {
      // mqtt-packet refuses reason codes MQTT 5 does not allow in that packet; mosquitto 2.0 sends 0x95 in
      // a PUBACK when `message_size_limit` is exceeded. The packet id is lost with the packet, so the
      // publish stays unacknowledged: say so loudly rather than stall in silence.
      this.counters.protocolErrors++;
      this.options.logger.error(`broker ${this.name} sent a packet MQTT.js cannot parse (${error.message}); a publish will stay unacknowledged. With mosquitto, replace message_size_limit by max_packet_size`);
      return;
    }
    this.noteCause(serverOf(client), error.message);
    this.options.logger.warn('broker error', { broker: this.name, error: error.message, code });
  }

  /** The current client's connection closed: a lost connection, or an attempt the broker never answered. */
  private onClosed(client: MqttClient): void {
    this.health.closed();
    if (this.upInfo) {
      this.downSinceMs = this.options.clock.monotonicMs();
      this.counters.disconnects++;
      this.noteCause(this.upInfo.server, 'connection lost');
      this.options.logger.warn('broker connection lost; reconnecting', { broker: this.upInfo.server });
      this.upInfo = undefined;
      this.emit('down', 'closed');
    } else if (!this.stopped) {
      // A CONNECT the broker held and then closed without a CONNACK: a NATS node does that when its
      // JetStream cannot load the session within its 4 s API timeout.
      this.counters.attemptsClosed++;
      const heldMs = Math.round(this.options.clock.monotonicMs() - this.attemptStartedAtMs);
      this.noteCause(serverOf(client), `connection attempt closed after ${heldMs} ms without a CONNACK`);
      this.options.logger.info('broker closed a connection attempt without answering it', { broker: serverOf(client), heldMs });
    }
    // A client adopted from a race does not reconnect by itself: the link's own client takes over again.
    if (!this.stopped && client.options.reconnectPeriod === 0) this.connect();
  }

  /** CONNACK on the link's client, or a race's winner adopted: the link is up. */
  private onConnected(client: MqttClient, connack: IConnackPacket, subscribed: boolean): void {
    this.counters.connects++;
    this.race?.cancel();
    const properties = connack.properties as { receiveMaximum?: number; maximumPacketSize?: number } | undefined;
    const server = serverOf(client);
    this.quota.announced(properties?.receiveMaximum);
    this.maximumPacketSize = properties?.maximumPacketSize;
    this.health.connected(this.options.clock.monotonicMs());
    this.downSinceMs = undefined;
    this.upInfo = {
      protocolVersion: this.protocolVersion,
      sessionPresent: connack.sessionPresent,
      receiveMaximum: this.quota.receiveMaximum,
      maximumPacketSize: this.maximumPacketSize,
      server,
    };
    this.options.logger.info('broker connected', {
      broker: server,
      mqtt: this.protocolVersion === 5 ? '5' : '3.1.1',
      sessionPresent: connack.sessionPresent,
      receiveMaximum: this.quota.receiveMaximum,
      maximumPacketSize: this.maximumPacketSize,
    });
    this.quota.release();
    if (!subscribed) void this.resubscribe(client);
    this.emit('up', this.upInfo);
  }

  private noteCause(server: string, cause: string): void {
    this.causes.push({ atMs: this.options.clock.nowMs(), server, cause });
    if (this.causes.length > CAUSES_MAX) this.causes.shift();
  }

  /** Stopped or aborted: no more watching, racing or reconnecting. */
  private halt(): void {
    this.stopped = true;
    this.watch?.cancel();
    this.watch = undefined;
    this.race?.cancel();
  }

  /** How long the broker may leave a publish unacknowledged, and one race attempt may take. */
  private sliceMs(now: number): number | undefined {
    const deadline = this.failoverDeadlineMs;
    if (deadline === undefined || deadline <= now) return undefined;
    return Math.min(FLUSH_SLICE_MAX_MS, Math.max(FLUSH_SLICE_MIN_MS, (deadline - now) * FLUSH_SLICE));
  }

  /** The watch: a tick every WATCH_INTERVAL_MS of the clock until the link halts. */
  private watchNext(): void {
    this.watch = this.options.clock.setTimeout(() => {
      if (this.stopped) return;
      this.tick();
      this.watchNext();
    }, WATCH_INTERVAL_MS);
  }

  private tick(): void {
    const client = this.client;
    if (this.stopped || !client) return;
    const now = this.options.clock.monotonicMs();
    const slice = this.sliceMs(now);
    this.checkStall(client, now, slice ?? STALL_MS);
    const race = this.race;
    const down = !client.connected && slice !== undefined;
    // The link's own client resumes the persistent session, which a recovering NATS cluster serves first
    // (a race's fresh session needs new JetStream consumers). A node holding its CONNECT for 4 s must not
    // cost 4 s: once the link was up, its attempts are bounded like a race's (MQTT.js reads the option at
    // each connect). A standby that lost its node is thus back soon after the cluster, on its own session:
    // outside a flush only a stalled link races, so a standby keeps the session its batches queue in.
    if (this.options.urls.length > 1 && client.options.reconnectPeriod !== 0) {
      client.options.connectTimeout = slice !== undefined || this.downSinceMs !== undefined ? (slice ?? FLUSH_SLICE_MAX_MS) : CONNECT_TIMEOUT_MS;
    }
    const wanted = this.health.stalled || down;
    if (race?.running) {
      if (!wanted) race.cancel();
      return;
    }
    if (wanted && this.options.urls.length > 1 && this.counters.connects > 0) this.startRace(client, slice ?? FLUSH_SLICE_MAX_MS);
  }

  /** Connected, with a publish unacknowledged past `deadlineMs` and no acknowledgement meanwhile: down. */
  private checkStall(client: MqttClient, now: number, deadlineMs: number): void {
    if (!client.connected) return;
    const stall = this.health.check(now, deadlineMs);
    if (!stall) return;
    this.counters.stalls++;
    const server = this.upInfo?.server ?? serverOf(client);
    this.noteCause(server, `connected but no acknowledgement for ${stall.sinceAckMs} ms`);
    this.options.logger.warn('broker connected but not acknowledging; counted as down', {
      broker: server,
      unacknowledged: stall.unacknowledged,
      oldestMs: stall.oldestMs,
      deadlineMs: Math.round(deadlineMs),
    });
    this.emit('down', 'stalled');
  }

  /** Try every other node at once; the first that answers CONNECT and SUBSCRIBE replaces the client. */
  private startRace(client: MqttClient, attemptMs: number): void {
    const current = client.connected ? serverOf(client) : undefined;
    const urls = this.options.urls.filter((url) => hostPort(url) !== current);
    this.counters.races++;
    this.options.logger.info('trying every other broker node at once', { from: current ?? '', nodes: urls, attemptMs: Math.round(attemptMs), cause: client.connected ? 'stalled' : 'down' });
    const race = new NodeRace({
      urls,
      clientOptions: (url, attempt) => clientOptions(this.options, this.protocolVersion, { url, attempt, attemptMs }),
      subscriptions: this.subscriptions,
      attemptMs,
      retryMs: RACE_RETRY_MS,
      clock: this.options.clock,
      onAttemptFailed: (url, cause) => {
        this.counters.raceAttemptsFailed++;
        this.noteCause(hostPort(url), cause);
      },
      onClient: (candidate) => this.attach(candidate),
    });
    this.race = race;
    void race.result.then((winner) => {
      if (this.race === race) this.race = undefined;
      if (winner) this.adopt(winner);
    });
  }

  /** A race's winner becomes the link's client; what was unacknowledged on the old one is sent again. */
  private adopt(winner: RaceWinner): void {
    if (this.stopped) return closeQuietly(winner.client);
    const old = this.client;
    this.client = winner.client;
    this.health.switched();
    this.counters.failovers++;
    const from = this.upInfo?.server ?? (old ? serverOf(old) : '');
    this.upInfo = undefined;
    if (old) {
      for (const pending of [...this.pending]) if (pending.client === old) pending.fail(new LastgaspError('BROKER_UNAVAILABLE', `broker ${this.name}: left node ${from} for ${hostPort(winner.url)}; sending it again there`));
      closeQuietly(old);
    }
    this.options.logger.info('switched to another broker node', { event: 'broker-failover', from, to: hostPort(winner.url) });
    // The failed publishes are settled first (their handlers run as microtasks), so that the publisher
    // has rewound before the link announces itself up and it sends again.
    setImmediate(() => {
      if (this.client === winner.client && winner.client.connected) this.onConnected(winner.client, winner.connack, true);
    });
  }

  /** Measure the window on the wire itself, independently of the quota above. */
  private countOnWire(packet: Packet, sent: boolean): void {
    if (!this.health.onPacket(packet, sent, this.options.clock.monotonicMs())) return;
    this.options.logger.info('broker acknowledging again', { broker: this.upInfo?.server ?? this.name });
    // The same connection, so the same session: nothing the broker queued for it was lost, whatever the
    // CONNACK said when it opened (a first connection is always a fresh session). A standby told
    // "fresh session" here would ask the primary to send everything again for nothing.
    if (this.upInfo) this.emit('up', { ...this.upInfo, sessionPresent: true });
  }

  /**
   * With a resumed session the broker still has the subscriptions; subscribing again is harmless and also
   * covers brokers (NATS, MQTT 3.1.1) whose sessionPresent the agent cannot rely on.
   */
  private async resubscribe(client: MqttClient): Promise<void> {
    if (this.subscriptions.size === 0) return;
    const byQos = new Map<0 | 1, string[]>();
    for (const [topic, qos] of this.subscriptions) byQos.set(qos, [...(byQos.get(qos) ?? []), topic]);
    for (const [qos, filters] of byQos) {
      await client.subscribeAsync(filters, { qos }).catch((error: Error) => this.options.logger.warn('subscribe failed', { filters, error: error.message }));
    }
  }
}
