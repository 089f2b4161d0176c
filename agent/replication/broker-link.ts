/**
 * One MQTT session with one broker (or with one clustered broker through its list of node addresses).
 *
 * - MQTT 5 is tried first and 3.1.1 used when the broker refuses it (Aedes 1.2 and NATS answer a v5 CONNECT
 *   with CONNACK return code 1, "unacceptable protocol version"); nothing the agent needs depends on v5.
 * - The session is persistent (clean: false, a fixed client id), so that a standby's subscription keeps
 *   queueing batches at the broker while it is offline.
 * - Incoming messages go through MQTT.js's `handleMessage`, which holds the PUBACK and the next packet until
 *   the handler finished: the receiver stores an entry on flash before the broker may forget it.
 * - Publishing happens only while connected; MQTT.js resends its in-flight QoS 1 packets first on reconnect
 *   and queues new publishes behind them, so order holds across a reconnect (cf. MQTT.js#450, which is about
 *   packets queued while offline).
 */
import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import mqtt, { type IClientOptions, type IClientPublishOptions, type MqttClient } from 'mqtt';
import { LastgaspError, type Logger } from '../util/index.ts';

/** MQTT 3.1.1 §3.2.2.3: CONNACK return code 1 = unacceptable protocol version. */
const CONNACK_UNACCEPTABLE_PROTOCOL = 1;
/** MQTT 5 §3.4.2.1: PUBACK reason codes below 0x80 are successes (0x10 = no matching subscribers). */
const REASON_CODE_FAILURE_MIN = 0x80;
/** How long a standby's session (and its queued batches) survives at the broker while it is offline. */
const SESSION_EXPIRY_S = 7 * 24 * 3600;
const RECONNECT_PERIOD_MS = 1000;
const CONNECT_TIMEOUT_MS = 5000;

const PUBACK_REASONS: Record<number, string> = {
  0x80: 'unspecified error',
  0x83: 'implementation specific error',
  0x87: 'not authorized',
  0x90: 'topic name invalid',
  0x91: 'packet identifier in use',
  0x97: 'quota exceeded',
  0x99: 'payload format invalid',
};

export interface BrokerLinkOptions {
  /** Addresses of one broker, or of the nodes of one clustered broker (failover in order). */
  urls: readonly string[];
  clientId: string;
  protocol: 'auto' | '5' | '3.1.1';
  keepaliveS: number;
  will?: { topic: string; payload: Uint8Array; retain: boolean };
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
  readonly server: string;
}

export interface BrokerLinkEvents {
  up: [LinkUp];
  down: [string];
}

export class BrokerLink extends EventEmitter<BrokerLinkEvents> {
  private client: MqttClient | undefined;
  private protocolVersion: 4 | 5;
  private stopped = false;
  private inflight = 0;
  private readonly subscriptions = new Map<string, 0 | 1>();
  private upInfo: LinkUp | undefined;
  private readonly counters = { connects: 0, disconnects: 0, publishes: 0, pubackFailures: 0, received: 0 };

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

  stats(): Record<string, number | string | boolean> {
    return { ...this.counters, inflight: this.inflight, connected: this.connected, protocolVersion: this.protocolVersion };
  }

  start(): void {
    this.stopped = false;
    this.connect();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    const client = this.client;
    this.client = undefined;
    if (client) await client.endAsync(false).catch(() => undefined);
  }

  /** Drop the connection without a DISCONNECT, so that the broker publishes the Will (power loss). */
  async abort(): Promise<void> {
    this.stopped = true;
    const client = this.client;
    this.client = undefined;
    if (client) {
      (client as unknown as { stream?: { destroy(): void } }).stream?.destroy();
      await client.endAsync(true).catch(() => undefined);
    }
  }

  /** Resolves on PUBACK (QoS 1); rejects with BROKER_REFUSED on an MQTT 5 failure reason code. */
  publish(topic: string, payload: Uint8Array, options: { qos: 0 | 1; retain: boolean }): Promise<void> {
    const client = this.client;
    if (!client) return Promise.reject(new LastgaspError('BROKER_UNAVAILABLE', `broker ${this.name}: link stopped`));
    this.counters.publishes++;
    if (options.qos === 1) this.inflight++;
    const publishOptions: IClientPublishOptions = { qos: options.qos, retain: options.retain };
    return new Promise((resolve, reject) => {
      client.publish(topic, toBuffer(payload), publishOptions, (error) => {
        if (options.qos === 1) this.inflight--;
        if (!error) return resolve();
        const code = (error as { code?: number }).code;
        if (typeof code === 'number' && code >= REASON_CODE_FAILURE_MIN) {
          this.counters.pubackFailures++;
          const reason = PUBACK_REASONS[code] ?? `reason code 0x${code.toString(16)}`;
          reject(new LastgaspError('BROKER_REFUSED', `broker ${this.name} refused a publish to ${topic}: ${reason} (0x${code.toString(16)})`, { reasonCode: code, topic }));
          return;
        }
        reject(new LastgaspError('BROKER_UNAVAILABLE', `broker ${this.name}: publish to ${topic} failed: ${error.message}`, { topic }, { cause: error }));
      });
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

  private connect(): void {
    const client = mqtt.connect(this.clientOptions());
    this.client = client;
    client.handleMessage = (packet, done) => {
      this.counters.received++;
      const payload = packet.payload;
      const bytes = typeof payload === 'string' ? new TextEncoder().encode(payload) : new Uint8Array(payload.buffer, payload.byteOffset, payload.byteLength);
      this.options.onMessage(packet.topic, bytes, packet.retain === true).then(
        () => done(),
        (error: unknown) => {
          this.options.logger.error('message handler failed; acknowledging anyway (the replica protocol recovers by seq)', { topic: packet.topic, error });
          done();
        },
      );
    };
    client.on('connect', (connack) => {
      if (client !== this.client) return;
      this.counters.connects++;
      const properties = connack.properties as { receiveMaximum?: number } | undefined;
      const server = `${(client.options.host as string) ?? ''}:${client.options.port ?? ''}`;
      this.upInfo = {
        protocolVersion: this.protocolVersion,
        sessionPresent: connack.sessionPresent,
        receiveMaximum: properties?.receiveMaximum ?? 65_535,
        server,
      };
      this.options.logger.info('broker connected', { broker: server, mqtt: this.protocolVersion === 5 ? '5' : '3.1.1', sessionPresent: connack.sessionPresent });
      void this.resubscribe(client, connack.sessionPresent);
      this.emit('up', this.upInfo);
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
      this.options.logger.warn('broker error', { broker: this.name, error: error.message, code });
    });
    client.on('close', () => {
      if (client !== this.client) return;
      if (this.upInfo) {
        this.counters.disconnects++;
        this.options.logger.warn('broker connection lost; reconnecting', { broker: this.upInfo.server });
        this.upInfo = undefined;
        this.emit('down', 'closed');
      }
    });
  }

  private async resubscribe(client: MqttClient, sessionPresent: boolean): Promise<void> {
    // With a resumed session the broker still has the subscriptions; subscribing again is harmless and
    // also covers brokers (NATS, MQTT 3.1.1) whose sessionPresent the agent cannot rely on.
    void sessionPresent;
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
      options.will = { topic: this.options.will.topic, payload: toBuffer(this.options.will.payload), qos: 1, retain: this.options.will.retain };
    }
    return options;
  }
}

function toBuffer(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
