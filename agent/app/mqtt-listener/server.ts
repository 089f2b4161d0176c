/**
 * The listener's shared state: the connections by client id (a second CONNECT with an id closes the first,
 * MQTT 3.1.1 §3.1.4), the subscriptions and retained messages that route every message to local
 * subscribers, Wills, keepalive, and the counters. Sessions are not kept: every connection starts clean.
 */
import type { Socket } from 'node:net';
import type { LastgaspError, Logger } from '../../util/index.ts';
import { Connection, type ConnectionHost } from './connection.ts';
import { REASON, type BadInput } from './codes.ts';
import type { Journal } from './journal.ts';
import type { Message, QoS } from './message.ts';
import { RetainedStore, topicMatches } from './topics.ts';

/** A connection that has not sent CONNECT within this is closed (mosquitto waits as long by default). */
const MQTT_CONNECT_TIMEOUT_MS = 10_000;
/** How often keepalive and CONNECT deadlines are checked: one timer for all connections. */
const MQTT_SWEEP_INTERVAL_MS = 1000;

const BAD_COUNTERS: Record<BadInput, keyof MqttCounters> = {
  malformed: 'mqttBadMalformed',
  'before-connect': 'mqttBadBeforeConnect',
  oversize: 'mqttBadOversize',
  protocol: 'mqttBadProtocol',
  keepalive: 'mqttKeepaliveTimeouts',
  internal: 'mqttBadInternal',
};

export function newCounters() {
  return {
    mqttJournaled: 0,
    mqttPassedThrough: 0,
    mqttRefused: 0,
    mqttAuthFailures: 0,
    mqttConnections: 0,
    mqttTakeovers: 0,
    mqttWills: 0,
    mqttQos2Duplicates: 0,
    mqttSubscriberDrops: 0,
    mqttRetainedDropped: 0,
    mqttClosedByListener: 0,
    mqttBadMalformed: 0,
    mqttBadBeforeConnect: 0,
    mqttBadOversize: 0,
    mqttBadProtocol: 0,
    mqttBadInternal: 0,
    mqttKeepaliveTimeouts: 0,
  };
}
export type MqttCounters = ReturnType<typeof newCounters>;

export interface ListenerOptions {
  packetBytesMax: number;
  journal: Journal;
  authenticate(password: Uint8Array | undefined): boolean;
  logger: Logger;
}

export class MqttListener implements ConnectionHost {
  readonly counters = newCounters();
  readonly packetBytesMax: number;
  private readonly connections = new Set<Connection>();
  private readonly byClientId = new Map<string, Connection>();
  private readonly retained = new RetainedStore();
  private sweepTimer: ReturnType<typeof setInterval> | undefined;

  constructor(private readonly options: ListenerOptions) {
    this.packetBytesMax = options.packetBytesMax;
  }

  start(): void {
    this.sweepTimer = setInterval(() => this.sweep(Date.now()), MQTT_SWEEP_INTERVAL_MS);
  }

  accept(socket: Socket): void {
    socket.setNoDelay(true); // an acknowledgement is what the client waits for: no Nagle delay on it
    this.counters.mqttConnections++;
    this.connections.add(new Connection(socket, this));
  }

  /** Close every connection (the agent stops); Wills are not published for the listener's own going. */
  stop(): void {
    if (this.sweepTimer !== undefined) clearInterval(this.sweepTimer);
    this.sweepTimer = undefined;
    for (const connection of this.connections) connection.close(REASON.serverShuttingDown, 'the agent is stopping', false);
    this.connections.clear();
    this.byClientId.clear();
  }

  authenticate(password: Uint8Array | undefined): boolean {
    return this.options.authenticate(password);
  }

  register(connection: Connection): void {
    const older = this.byClientId.get(connection.clientId);
    if (older && older !== connection) {
      this.counters.mqttTakeovers++;
      // MQTT 3.1.1 §3.1.4 step 2; its Will is published, as for any close without DISCONNECT.
      older.close(REASON.sessionTakenOver, 'another connection took this client id', true);
    }
    this.byClientId.set(connection.clientId, connection);
  }

  publish(from: Connection | undefined, message: Message, done: (error: LastgaspError | undefined) => void): void {
    if (!this.options.journal.wants(message)) {
      this.counters.mqttPassedThrough++;
      this.route(from, message);
      return done(undefined);
    }
    this.options.journal.submit(message, (error) => {
      if (error) return done(error);
      this.counters.mqttJournaled++;
      this.route(from, message);
      done(undefined);
    });
  }

  subscribed(connection: Connection, filter: string, qos: QoS, fresh: boolean, retainHandling: number): void {
    // MQTT 5.0 §3.8.3.1 Retain Handling: 0 always, 1 only for a new subscription, 2 never.
    if (retainHandling === 2 || (retainHandling === 1 && !fresh)) return;
    for (const message of this.retained.matching(filter)) connection.deliver(message, Math.min(qos, message.qos) as QoS, true);
  }

  closed(connection: Connection, will: Message | undefined): void {
    this.connections.delete(connection);
    if (this.byClientId.get(connection.clientId) === connection) this.byClientId.delete(connection.clientId);
    if (!will) return;
    this.counters.mqttWills++;
    this.publish(undefined, will, (error) => {
      if (error) this.options.logger.warn(`the Will of MQTT client ${connection.clientId} on ${will.topic} was not journaled: ${error.message}`, { event: 'mqtt-will-refused', code: error.code });
    });
  }

  bad(reason: BadInput, detail: string): void {
    this.counters[BAD_COUNTERS[reason]]++;
    this.options.logger.debug(`mqtt connection closed: ${reason}`, { detail });
  }

  counter(name: 'mqttClosedByListener' | 'mqttAuthFailures' | 'mqttQos2Duplicates' | 'mqttSubscriberDrops' | 'mqttRefused'): void {
    this.counters[name]++;
  }

  /** Every subscriber whose subscriptions match gets the message once, at the highest QoS they grant (§3.3.5). */
  private route(from: Connection | undefined, message: Message): void {
    if (message.retain && !this.retained.put(message)) this.counters.mqttRetainedDropped++;
    for (const connection of this.connections) {
      if (!connection.connected || connection.subscriptions.size === 0) continue;
      let qos = -1;
      let retainAsPublished = false;
      for (const [filter, subscription] of connection.subscriptions) {
        if (!topicMatches(filter, message.topic) || (subscription.noLocal && connection === from)) continue;
        qos = Math.max(qos, subscription.qos);
        retainAsPublished ||= subscription.retainAsPublished;
      }
      // §3.3.1.3: a message routed to a live subscription goes with retain 0 unless it asked Retain As Published.
      if (qos >= 0) connection.deliver(message, Math.min(qos, message.qos) as QoS, retainAsPublished && message.retain);
    }
  }

  private sweep(nowMs: number): void {
    for (const connection of this.connections) {
      if (!connection.connected && nowMs - connection.openedMs > MQTT_CONNECT_TIMEOUT_MS) {
        this.bad('before-connect', `no CONNECT within ${MQTT_CONNECT_TIMEOUT_MS} ms`);
        connection.close(REASON.protocolError, 'no CONNECT', false);
      } else if (connection.keepaliveMs > 0 && nowMs - connection.lastSeenMs > connection.keepaliveMs * 1.5) {
        // MQTT 3.1.1 §3.1.2.10: nothing within one and a half keepalive periods; the Will goes out.
        this.bad('keepalive', `nothing for ${nowMs - connection.lastSeenMs} ms`);
        connection.close(REASON.keepAliveTimeout, 'keepalive timeout', true);
      }
    }
  }
}
