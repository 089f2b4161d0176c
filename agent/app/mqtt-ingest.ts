/**
 * The local MQTT listener (config `mqttIngest:`): applications that already publish to a local broker
 * (collectors, Node-RED, zigbee2mqtt, Telegraf) connect here instead, unchanged, and get the log's
 * guarantee. The agent's own small MQTT server (mqtt-listener/, on mqtt-packet), MQTT 3.1.1 and 5, on
 * loopback or a Unix socket; this facade is what the agent starts and stops.
 *
 * - A QoS 1 or 2 PUBLISH on a topic that matches a `journal` filter becomes a log entry
 *   `[4, topic, payload, props?]` (props: retain and the MQTT 5 properties worth keeping, ops.ts MqttProps)
 *   and its PUBACK (PUBREC) is sent only after the entry's fdatasync. Every PUBLISH of one turn of the event
 *   loop, from every connection, goes to the log in one batch append (journal.ts): a client's in-flight
 *   window becomes one group commit, answered by one socket write.
 * - QoS 2 is exactly once within a connection: a PUBLISH again with an id not yet released is answered and
 *   not journaled again. No session is kept across connections (see README "MQTT applications unchanged").
 * - A publish the agent cannot take (this node is a standby, handing off, the log is full) is never
 *   acknowledged: the connection closes (MQTT 5: DISCONNECT with the reason) and the client sends it again
 *   after it reconnects, as it would to a broker that went away (codes.ts refusalReason says why).
 * - `ackAfter` may hold the acknowledgement of some topics until the message is replicated (copy-wait.ts);
 *   one whose copy does not come in time is not acknowledged, and the client's resend is journaled again.
 * - QoS 0 and topics outside the filters are not journaled. Every message is still delivered to local
 *   subscribers, as by any broker; a journaled one once it is on flash.
 * - On TCP the client must give the API token as its MQTT password (any user name), as HTTP clients do.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer, type Server } from 'node:net';
import { chmod, unlink } from 'node:fs/promises';
import { splitHostPort, type Logger } from '../util/index.ts';
import type { AckAfter, CopyOptions } from './copy-wait.ts';
import { Journal, MqttListener, type MqttCounters } from './mqtt-listener/index.ts';

export { topicMatches } from './mqtt-listener/index.ts';

/**
 * Room in a packet besides the entry's bytes: the fixed header, a topic of up to 65,535 bytes and MQTT 5
 * properties. A packet larger than an entry can be is refused as it arrives, before it is buffered.
 */
const MQTT_PACKET_OVERHEAD_BYTES = 128 * 1024;

export interface MqttIngestOptions {
  /** "127.0.0.1:1883" or "unix:/run/lastgasp/mqtt.sock". */
  listen: string;
  /** Topic filters (MQTT wildcards) whose QoS 1/2 messages are journaled. */
  journal: readonly string[];
  /** Unix socket: its permission bits. */
  socketMode: string;
  /** Topic filter → the copy a message waits for before its PUBACK (copy-wait.ts); the first match wins. */
  ackAfter: Readonly<Record<string, AckAfter>>;
  /** log.entryBytesMax: larger messages are refused, and packets past it plus room for a topic are cut off. */
  entryBytesMax: number;
  /** The agent's batch append of encoded entries: all or nothing, one group commit. */
  appendMany(payloads: readonly Uint8Array[], copy?: CopyOptions): Promise<unknown>;
  logger: Logger;
}

export class MqttIngest {
  private server: Server | undefined;
  private readonly listener: MqttListener;
  private readonly journal: Journal;
  private socketPath: string | undefined;
  private token: string | undefined;

  constructor(private readonly options: MqttIngestOptions) {
    this.journal = new Journal(options);
    this.listener = new MqttListener({
      packetBytesMax: options.entryBytesMax + MQTT_PACKET_OVERHEAD_BYTES,
      journal: this.journal,
      authenticate: (password) => this.authenticate(password),
      logger: options.logger,
    });
  }

  get counters(): MqttCounters & Journal['counters'] {
    return { ...this.listener.counters, ...this.journal.counters };
  }

  /** Listen; `token` (TCP): the password clients must send. Returns the address clients use. */
  async start(token: string | undefined): Promise<string> {
    const { options } = this;
    this.token = options.listen.startsWith('unix:') ? undefined : token;
    const listener = this.listener;
    listener.start();
    const server = createServer((socket) => listener.accept(socket));
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
    this.listener.stop();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
    if (this.socketPath) await unlink(this.socketPath).catch(() => undefined);
  }

  private authenticate(password: Uint8Array | undefined): boolean {
    return this.token === undefined || (password !== undefined && sameSecret(password, this.token));
  }
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
