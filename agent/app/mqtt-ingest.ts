/**
 * The local MQTT listener (config `mqttIngest:`): applications that already publish to a local broker
 * (collectors, Node-RED, zigbee2mqtt, Telegraf) connect here instead, unchanged, and get the log's
 * guarantee. An embedded Aedes broker (loaded only when configured) on loopback or a Unix socket:
 *
 * - A QoS 1 or 2 PUBLISH on a topic that matches a `journal` filter becomes a log entry `[4, topic, payload]`
 *   before the broker answers it: the PUBACK (PUBREC) is sent only after the entry's fdatasync, by holding
 *   Aedes's authorizePublish hook until the append resolves. Aedes handles the packets of one socket read
 *   concurrently, so a client's in-flight window becomes one group commit.
 * - A retained message is kept as `[4, topic, payload, {retain: true}]`. Aedes 1.x speaks MQTT 3.1.1 only
 *   (it refuses an MQTT 5 CONNECT), so no MQTT 5 properties arrive here; entries that carry them come
 *   through the embedded API (`Agent.append`, ops.ts MqttProps).
 * - A publish the agent cannot take (this node is a standby, handing off, the log is full) fails the hook:
 *   Aedes closes the connection without an acknowledgement, and the client sends it again after it
 *   reconnects, as it would to a broker that went away.
 * - `ackAfter` may hold the PUBACK of some topics until the message is replicated (copy-wait.ts); one whose
 *   copy does not come in time is not acknowledged, and the client's resend is journaled again (at least once).
 * - QoS 0 and topics outside the filters are not journaled. Every message is still delivered to local
 *   subscribers, as by any broker.
 * - On TCP the client must give the API token as its MQTT password (any user name), as HTTP clients do.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer, type Server } from 'node:net';
import { chmod, unlink } from 'node:fs/promises';
import { LastgaspError, splitHostPort, type Logger } from '../util/index.ts';
import type { AppendResult } from '../log/index.ts';
import type { AckAfter, CopyOptions } from './copy-wait.ts';
import { OP_MQTT, type Op } from './ops.ts';

export interface MqttIngestOptions {
  /** "127.0.0.1:1883" or "unix:/run/lastgasp/mqtt.sock". */
  listen: string;
  /** Topic filters (MQTT wildcards) whose QoS 1/2 messages are journaled. */
  journal: readonly string[];
  /** Unix socket: its permission bits. */
  socketMode: string;
  /** Topic filter → the copy a message waits for before its PUBACK (copy-wait.ts); the first match wins. */
  ackAfter: Readonly<Record<string, AckAfter>>;
  append(op: Op, copy?: CopyOptions): Promise<AppendResult>;
  logger: Logger;
}

/** What the hook reads of Aedes's PUBLISH packet (MQTT 3.1.1: Aedes 1.x refuses MQTT 5 connections). */
type PublishPacket = { topic: string; payload: Buffer | string; qos: number; retain?: boolean };

type AedesLike = { handle: (socket: unknown) => void; close(callback: () => void): void };

export class MqttIngest {
  private server: Server | undefined;
  private broker: AedesLike | undefined;
  private socketPath: string | undefined;
  private token: string | undefined;
  readonly counters = { mqttJournaled: 0, mqttPassedThrough: 0, mqttRefused: 0, mqttAuthFailures: 0 };

  constructor(private readonly options: MqttIngestOptions) {}

  /** Listen; `token` (TCP): the password clients must send. Returns the address clients use. */
  async start(token: string | undefined): Promise<string> {
    const { options } = this;
    this.token = options.listen.startsWith('unix:') ? undefined : token;
    let Aedes: { createBroker(options: Record<string, unknown>): Promise<AedesLike> };
    try {
      ({ Aedes } = (await import('aedes')) as unknown as { Aedes: typeof Aedes });
    } catch (error) {
      throw new LastgaspError('DEPENDENCY_MISSING', `mqttIngest needs the "aedes" package (${(error as Error).message}); install the agent's dependencies or remove mqttIngest.listen`);
    }
    this.broker = await Aedes.createBroker({
      authenticate: (_client: unknown, _user: string | undefined, password: Buffer | undefined, done: (error: Error | null, ok: boolean) => void) => this.authenticate(password, done),
      authorizePublish: (client: unknown, packet: PublishPacket, done: (error?: Error | null) => void) => this.authorize(client, packet, done),
    });
    const server = createServer((socket) => this.broker!.handle(socket));
    this.server = server;
    if (options.listen.startsWith('unix:')) {
      const path = options.listen.slice('unix:'.length);
      await unlink(path).catch(() => undefined);
      await listen(server, { path });
      await chmod(path, parseInt(options.socketMode, 8));
      this.socketPath = path;
      return options.listen;
    }
    const { host, port } = splitHostPort(options.listen);
    await listen(server, { host, port });
    const address = server.address();
    return typeof address === 'object' && address ? `${host}:${address.port}` : options.listen;
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
    const broker = this.broker;
    if (broker) await new Promise<void>((resolve) => broker.close(() => resolve()));
    if (this.socketPath) await unlink(this.socketPath).catch(() => undefined);
  }

  private copyFor(topic: string): CopyOptions | undefined {
    for (const filter in this.options.ackAfter) if (topicMatches(filter, topic)) return { ackAfter: this.options.ackAfter[filter]! };
    return undefined;
  }

  private authenticate(password: Buffer | undefined, done: (error: Error | null, ok: boolean) => void): void {
    if (this.token === undefined || (password !== undefined && sameSecret(password, this.token))) return done(null, true);
    this.counters.mqttAuthFailures++;
    const error = Object.assign(new Error('bad password: send the API token (api.tokenFile) as the MQTT password'), { returnCode: 4 });
    done(error, false);
  }

  private authorize(client: unknown, packet: PublishPacket, done: (error?: Error | null) => void): void {
    // client is null for the broker's own publishes (a Will is the client's, and journaled like its PUBLISH).
    if (client === null || packet.qos === 0 || !this.options.journal.some((filter) => topicMatches(filter, packet.topic))) {
      this.counters.mqttPassedThrough++;
      return done(null);
    }
    const payload = typeof packet.payload === 'string' ? new TextEncoder().encode(packet.payload) : new Uint8Array(packet.payload.buffer, packet.payload.byteOffset, packet.payload.byteLength);
    // The retain flag is kept so that forwarding upstream keeps it (forwarder.ts).
    const op: Op = packet.retain ? { op: OP_MQTT, topic: packet.topic, data: payload, props: { retain: true } } : { op: OP_MQTT, topic: packet.topic, data: payload };
    this.options.append(op, this.copyFor(packet.topic)).then(
      () => {
        this.counters.mqttJournaled++;
        done(null);
      },
      (error: unknown) => {
        this.counters.mqttRefused++;
        this.options.logger.debug('mqtt publish not journaled: the connection is closed without PUBACK', { topic: packet.topic, error });
        done(error instanceof Error ? error : new Error(String(error)));
      },
    );
  }
}

/** MQTT topic filter matching (MQTT 3.1.1 §4.7): "+" one level, "#" the rest; "$" topics only by name. */
export function topicMatches(filter: string, topic: string): boolean {
  if (topic.startsWith('$') && !filter.startsWith('$')) return false;
  const filterLevels = filter.split('/');
  const topicLevels = topic.split('/');
  for (let i = 0; i < filterLevels.length; i++) {
    const level = filterLevels[i];
    if (level === '#') return true;
    if (i >= topicLevels.length) return false;
    if (level !== '+' && level !== topicLevels[i]) return false;
  }
  return filterLevels.length === topicLevels.length;
}

/** Compared as SHA-256 digests: equal lengths, no early exit (as the HTTP token, api-access.ts). */
function sameSecret(presented: Uint8Array, expected: string): boolean {
  return timingSafeEqual(createHash('sha256').update(presented).digest(), createHash('sha256').update(expected).digest());
}

function listen(server: Server, target: { path: string } | { host: string; port: number }): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(target, () => {
      server.off('error', reject);
      resolve();
    });
  });
}
