/**
 * One MQTT session with one broker (or with one clustered broker through its list of node addresses).
 *
 * - MQTT 5 is tried first and 3.1.1 used when the broker refuses it (Aedes 1.2 and NATS answer a v5 CONNECT
 *   with CONNACK return code 1, "unacceptable protocol version"); nothing the agent needs depends on v5.
 * - The session is persistent (clean: false, a fixed client id), so that a standby's subscription keeps
 *   queueing batches at the broker while it is offline.
 * - Incoming messages go through MQTT.js's `handleMessage`, which holds the PUBACK and the next packet until
 *   the handler finished: the receiver stores an entry on flash before the broker may forget it.
 * - Flow control is enforced here, because MQTT.js 5 does not: it reads the server's Receive Maximum from
 *   CONNACK nowhere and writes every QoS 1 PUBLISH at once (a test counts them on the wire). MQTT 5
 *   §4.9 says the client MUST NOT have more unacknowledged QoS 1 PUBLISHes than that; publishes beyond it
 *   wait here, in order.
 * - A packet larger than the server's Maximum Packet Size (MQTT 5 CONNACK) is refused here with a typed
 *   error: sent anyway, mosquitto would disconnect with 0x95 and MQTT.js would resend the same packet after
 *   every reconnect, for ever.
 * - On reconnect MQTT.js first resends its stored, unacknowledged QoS 1 packets, one at a time, and queues
 *   every new publish behind them until the last one is acknowledged (client.js `_onConnect`, store
 *   processing); only then does it emit `connect`. So the stored backlog goes before anything new.
 */
import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import mqtt, { type IClientOptions, type IClientPublishOptions, type MqttClient, type Packet } from 'mqtt';
import { LastgaspError, type Logger } from '../util/index.ts';

/** MQTT 3.1.1 §3.2.2.3: CONNACK return code 1 = unacceptable protocol version. */
const CONNACK_UNACCEPTABLE_PROTOCOL = 1;
/** MQTT 5 §3.4.2.1: PUBACK reason codes below 0x80 are successes (0x10 = no matching subscribers). */
const REASON_CODE_FAILURE_MIN = 0x80;
/** MQTT 5 §3.2.2.3.3: a CONNACK without Receive Maximum means 65,535. */
const RECEIVE_MAXIMUM_DEFAULT = 65_535;
/** How long a standby's session (and its queued batches) survives at the broker while it is offline. */
const SESSION_EXPIRY_S = 7 * 24 * 3600;
const RECONNECT_PERIOD_MS = 1000;
const CONNECT_TIMEOUT_MS = 5000;
/**
 * A clean stop waits this long for PUBACKs of what is in flight (MQTT.js `end(false)`), then closes anyway:
 * a hung broker never answers, and a gateway asked to stop must stop (the session keeps the rest).
 */
const STOP_GRACE_MS = 2000;
/**
 * Publishes waiting for a slot under the Receive Maximum. The publisher's window and the few control
 * records bound what is asked of a link; this bound only turns a runaway caller into a typed error.
 */
const WAITING_MAX = 4096;

/** MQTT 5 §3.4.2.1 (PUBACK) and §3.14.2.1 (DISCONNECT): the failure reason codes a broker may send. */
const REASONS: Record<number, string> = {
  0x80: 'unspecified error',
  0x83: 'implementation specific error',
  0x87: 'not authorized',
  0x89: 'server busy',
  0x8b: 'server shutting down',
  0x8e: 'session taken over',
  0x90: 'topic name invalid',
  0x91: 'packet identifier in use',
  0x93: 'receive maximum exceeded',
  0x95: 'packet too large',
  0x96: 'message rate too high',
  0x97: 'quota exceeded',
  0x99: 'payload format invalid',
  0x9c: 'use another server',
  0x9d: 'server moved',
};

/** What an operator can do about each refusal; the log line says it. */
const REASON_HINTS: Record<number, string> = {
  0x87: 'the broker\'s ACL does not let this gateway write the topic (see broker-config/mosquitto/acl.conf)',
  0x95: 'raise the broker\'s max_packet_size or lower replication.batchBytesMax / log.entryBytesMax',
  0x97: 'the broker\'s per-client quota is exhausted; raise its limits or slow the writers',
};

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

interface Waiting {
  readonly send: () => void;
  readonly reject: (error: Error) => void;
}

/** The typed error for a failure reason code from a broker (PUBACK), with its name and what to do. */
export function brokerRefusal(broker: string, topic: string, reasonCode: number): LastgaspError {
  const reason = REASONS[reasonCode] ?? 'unknown reason';
  const hint = REASON_HINTS[reasonCode];
  const text = `broker ${broker} refused a publish to ${topic}: ${reason} (0x${reasonCode.toString(16)})${hint ? `; ${hint}` : ''}`;
  return new LastgaspError('BROKER_REFUSED', text, { reasonCode, reason, topic, broker });
}

/** Bytes of an MQTT PUBLISH packet: fixed header, topic, packet id, properties (empty) and payload. */
export function publishPacketBytes(topicBytes: number, payloadBytes: number, protocolVersion: 4 | 5, qos: 0 | 1): number {
  const remaining = 2 + topicBytes + (qos > 0 ? 2 : 0) + (protocolVersion === 5 ? 1 : 0) + payloadBytes;
  // MQTT §2.2.3: the Remaining Length is a variable byte integer of 1 to 4 bytes.
  const lengthBytes = remaining < 128 ? 1 : remaining < 16_384 ? 2 : remaining < 2_097_152 ? 3 : 4;
  return 1 + lengthBytes + remaining;
}

const textEncoder = new TextEncoder();

export class BrokerLink extends EventEmitter<BrokerLinkEvents> {
  private client: MqttClient | undefined;
  private protocolVersion: 4 | 5;
  private stopped = false;
  /** QoS 1 publishes handed to MQTT.js whose PUBACK (or failure) has not come back. */
  private inflight = 0;
  private readonly waiting: Waiting[] = [];
  /** The last Receive Maximum the broker announced; it stays the quota while the link is down. */
  private receiveMaximum = RECEIVE_MAXIMUM_DEFAULT;
  private maximumPacketSize: number | undefined;
  /** Packet ids of QoS 1 PUBLISHes written to the socket of the current connection and not yet PUBACKed. */
  private readonly onWire = new Set<number>();
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
    /** Most QoS 1 PUBLISHes ever unacknowledged on the wire at once (measured from the packets sent). */
    inflightPeak: 0,
  };

  constructor(private readonly options: BrokerLinkOptions) {
    super();
    this.protocolVersion = options.protocol === '3.1.1' ? 4 : 5;
  }

  get name(): string {
    return this.options.urls.join(',');
  }

  get connected(): boolean {
    return this.client?.connected === true;
  }

  get info(): LinkUp | undefined {
    return this.upInfo;
  }

  get inflightCount(): number {
    return this.inflight;
  }

  /** The largest payload a PUBLISH to `topic` may carry on this link, or undefined when unlimited. */
  payloadBytesMax(topic: string): number | undefined {
    const limit = this.maximumPacketSize;
    if (limit === undefined) return undefined;
    return limit - publishPacketBytes(textEncoder.encode(topic).length, 0, this.protocolVersion, 1) - 3;
  }

  stats(): Record<string, number | string | boolean> {
    return {
      ...this.counters,
      inflight: this.inflight,
      waiting: this.waiting.length,
      receiveMaximum: this.receiveMaximum,
      connected: this.connected,
      server: this.upInfo?.server ?? '',
      protocolVersion: this.protocolVersion,
    };
  }

  start(): void {
    this.stopped = false;
    this.connect();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    const client = this.client;
    this.client = undefined;
    this.failWaiting('link stopped');
    if (!client) return;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const graceful = client.endAsync(false).then(() => true, () => true);
    const late = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), STOP_GRACE_MS)));
    const ended = await Promise.race([graceful, late]);
    clearTimeout(timer);
    if (!ended) await client.endAsync(true).catch(() => undefined);
  }

  /** Drop the connection without a DISCONNECT, so that the broker publishes the Will (power loss). */
  async abort(): Promise<void> {
    this.stopped = true;
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
    if (this.inflight < this.receiveMaximum && this.waiting.length === 0) return this.send(topic, payload, options);
    if (this.waiting.length >= WAITING_MAX) {
      return Promise.reject(new LastgaspError('BROKER_UNAVAILABLE', `broker ${this.name}: ${WAITING_MAX} publishes already wait for the broker's Receive Maximum (${this.receiveMaximum})`));
    }
    this.counters.waitedForQuota++;
    return new Promise((resolve, reject) => {
      this.waiting.push({ send: () => void this.send(topic, payload, options).then(resolve, reject), reject });
    });
  }

  /** Subscribe now and after every reconnect that lost the session. */
  async subscribe(filters: readonly string[], qos: 0 | 1 = 1): Promise<void> {
    for (const filter of filters) this.subscriptions.set(filter, qos);
    if (this.client?.connected) await this.client.subscribeAsync(filters.map((topic) => topic), { qos });
  }

  async unsubscribe(filters: readonly string[]): Promise<void> {
    for (const filter of filters) this.subscriptions.delete(filter);
    if (this.client?.connected) await this.client.unsubscribeAsync([...filters]);
  }

  private send(topic: string, payload: Uint8Array, options: { qos: 0 | 1; retain: boolean }): Promise<void> {
    const client = this.client;
    if (!client) return Promise.reject(new LastgaspError('BROKER_UNAVAILABLE', `broker ${this.name}: link stopped`));
    this.counters.publishes++;
    if (options.qos === 1) this.inflight++;
    const publishOptions: IClientPublishOptions = { qos: options.qos, retain: options.retain };
    return new Promise((resolve, reject) => {
      client.publish(topic, toBuffer(payload), publishOptions, (error) => {
        if (options.qos === 1) {
          this.inflight--;
          this.release();
        }
        if (!error) return resolve();
        const code = (error as { code?: number }).code;
        if (typeof code === 'number' && code >= REASON_CODE_FAILURE_MIN) {
          this.counters.pubackFailures++;
          const refusal = brokerRefusal(this.name, topic, code);
          this.options.logger.error(refusal.message, refusal.detail);
          reject(refusal);
          return;
        }
        reject(new LastgaspError('BROKER_UNAVAILABLE', `broker ${this.name}: publish to ${topic} failed: ${error.message}`, { topic }, { cause: error }));
      });
    });
  }

  /** Hand waiting publishes to MQTT.js while the broker's Receive Maximum leaves room. */
  private release(): void {
    while (this.waiting.length > 0 && this.inflight < this.receiveMaximum) this.waiting.shift()!.send();
  }

  private failWaiting(why: string): void {
    for (const waiting of this.waiting.splice(0)) waiting.reject(new LastgaspError('BROKER_UNAVAILABLE', `broker ${this.name}: ${why}`));
  }

  private connect(): void {
    const client = mqtt.connect(this.clientOptions());
    this.client = client;
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
    client.on('packetsend', (packet: Packet) => this.countOnWire(packet, true));
    client.on('packetreceive', (packet: Packet) => {
      this.countOnWire(packet, false);
      // MQTT.js counts only acks and PINGRESP as signs of life. A broker resuming a session sends its queued
      // batches first; each is written to flash before the next packet is read, so the PINGRESP can sit behind
      // many of them for longer than 1.5 × keepalive, and the link would be dropped and resumed for ever (seen
      // with a 1 s keepalive after a 3 s outage). Any packet from the broker proves the connection alive.
      client.reschedulePing(true);
    });
    client.on('connect', (connack) => {
      if (client !== this.client) return;
      this.counters.connects++;
      const properties = connack.properties as { receiveMaximum?: number; maximumPacketSize?: number } | undefined;
      const server = `${(client.options.host as string) ?? ''}:${client.options.port ?? ''}`;
      this.receiveMaximum = properties?.receiveMaximum ?? RECEIVE_MAXIMUM_DEFAULT;
      this.maximumPacketSize = properties?.maximumPacketSize;
      this.upInfo = {
        protocolVersion: this.protocolVersion,
        sessionPresent: connack.sessionPresent,
        receiveMaximum: this.receiveMaximum,
        maximumPacketSize: this.maximumPacketSize,
        server,
      };
      this.options.logger.info('broker connected', {
        broker: server,
        mqtt: this.protocolVersion === 5 ? '5' : '3.1.1',
        sessionPresent: connack.sessionPresent,
        receiveMaximum: this.receiveMaximum,
        maximumPacketSize: this.maximumPacketSize,
      });
      this.release();
      void this.resubscribe(client);
      this.emit('up', this.upInfo);
    });
    client.on('disconnect', (packet) => {
      if (client !== this.client) return;
      const code = packet.reasonCode ?? 0;
      if (code < REASON_CODE_FAILURE_MIN) return;
      this.counters.serverDisconnects++;
      const hint = REASON_HINTS[code];
      this.options.logger.error(`broker ${this.name} disconnected this gateway: ${REASONS[code] ?? 'unknown reason'} (0x${code.toString(16)})${hint ? `; ${hint}` : ''}`, { reasonCode: code });
    });
    client.on('error', (error) => {
      if (client !== this.client) return;
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
      this.options.logger.warn('broker error', { broker: this.name, error: error.message, code });
    });
    client.on('close', () => {
      if (client !== this.client) return;
      this.onWire.clear();
      if (this.upInfo) {
        this.counters.disconnects++;
        this.options.logger.warn('broker connection lost; reconnecting', { broker: this.upInfo.server });
        this.upInfo = undefined;
        this.emit('down', 'closed');
      }
    });
  }

  /** Measure the window on the wire itself, independently of the quota above. */
  private countOnWire(packet: Packet, sent: boolean): void {
    if (sent && packet.cmd === 'publish' && packet.qos > 0 && packet.messageId !== undefined) {
      this.onWire.add(packet.messageId);
      if (this.onWire.size > this.counters.inflightPeak) this.counters.inflightPeak = this.onWire.size;
    } else if (!sent && packet.cmd === 'puback' && packet.messageId !== undefined) {
      this.onWire.delete(packet.messageId);
    }
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

  private clientOptions(): IClientOptions {
    const servers = this.options.urls.map((text) => {
      const url = new URL(text);
      const secure = url.protocol === 'mqtts:' || url.protocol === 'ssl:';
      return { host: url.hostname, port: Number(url.port || (secure ? 8883 : 1883)), protocol: (secure ? 'mqtts' : 'mqtt') as 'mqtts' | 'mqtt' };
    });
    const first = servers[0]!;
    const tls = this.options.tls;
    const options: IClientOptions = {
      host: first.host,
      port: first.port,
      protocol: first.protocol,
      servers: servers.length > 1 ? servers : undefined,
      clientId: this.options.clientId,
      clean: false,
      protocolVersion: this.protocolVersion,
      keepalive: this.options.keepaliveS,
      reconnectPeriod: RECONNECT_PERIOD_MS,
      connectTimeout: CONNECT_TIMEOUT_MS,
      queueQoSZero: false,
      resubscribe: false,
      username: this.options.username,
      password: this.options.password,
      ca: tls?.ca ? readFileSync(tls.ca) : undefined,
      cert: tls?.cert ? readFileSync(tls.cert) : undefined,
      key: tls?.key ? readFileSync(tls.key) : undefined,
      rejectUnauthorized: true,
    };
    if (this.protocolVersion === 5) options.properties = { sessionExpiryInterval: SESSION_EXPIRY_S };
    if (this.options.will) {
      const { topic, payload, retain } = this.options.will;
      options.will = { topic, payload: toBuffer(typeof payload === 'function' ? payload() : payload), qos: 1, retain };
    }
    return options;
  }
}

function toBuffer(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
