/**
 * The MQTT.js options of a broker link's clients (broker-link.ts): its own client, a persistent session that
 * tries every node of a cluster in turn, and each attempt of a race of the other nodes (node-race.ts), a
 * clean session under a client id of its own that does not reconnect.
 */
import { readFileSync } from 'node:fs';
import type { IClientOptions } from 'mqtt';
import { serverOptions, toBuffer } from './broker-protocol.ts';

/** How long a standby's session (and its queued batches) survives at the broker while it is offline. */
const SESSION_EXPIRY_S = 7 * 24 * 3600;
const RECONNECT_PERIOD_MS = 1000;
/** How long a node may take to answer a CONNECT while the link is up (the link's watch shortens it when down). */
export const CONNECT_TIMEOUT_MS = 5000;

export interface ClientSettings {
  urls: readonly string[];
  clientId: string;
  keepaliveS: number;
  will?: { topic: string; payload: Uint8Array | (() => Uint8Array); retain: boolean };
  username?: string;
  password?: string;
  tls?: { ca?: string; cert?: string; key?: string };
}

/** One attempt of a race: at this node, numbered, bounded by `attemptMs` to connect. */
export interface RaceAttempt {
  url: string;
  attempt: number;
  attemptMs: number;
}

/**
 * The link's own client: persistent session, every node in turn. With `race`, one attempt of a race at
 * that node: a clean session under a client id of its own, no reconnecting, `attemptMs` to connect.
 */
export function clientOptions(settings: ClientSettings, protocolVersion: 4 | 5, race?: RaceAttempt): IClientOptions {
  const servers = (race === undefined ? settings.urls : [race.url]).map(serverOptions);
  const first = servers[0]!;
  const tls = settings.tls;
  const options: IClientOptions = {
    host: first.host,
    port: first.port,
    protocol: first.protocol,
    servers: servers.length > 1 ? servers : undefined,
    clientId: settings.clientId,
    clean: false,
    protocolVersion,
    keepalive: settings.keepaliveS,
    reconnectPeriod: RECONNECT_PERIOD_MS,
    connectTimeout: CONNECT_TIMEOUT_MS,
    queueQoSZero: false,
    resubscribe: false,
    // mqtt-packet otherwise builds, at the first packet, a Buffer for each of the 65,536 packet ids: 6 MB of
    // heap that stays for the life of the process, a tenth of what the agent may take on a gateway (issue 11).
    writeCache: false,
    username: settings.username,
    password: settings.password,
    ca: tls?.ca ? readFileSync(tls.ca) : undefined,
    cert: tls?.cert ? readFileSync(tls.cert) : undefined,
    key: tls?.key ? readFileSync(tls.key) : undefined,
    rejectUnauthorized: true,
  };
  if (race !== undefined) {
    Object.assign(options, { clientId: `${settings.clientId}-r${race.attempt}`, clean: true, reconnectPeriod: 0, connectTimeout: race.attemptMs });
  } else if (protocolVersion === 5) {
    options.properties = { sessionExpiryInterval: SESSION_EXPIRY_S };
  }
  if (settings.will) {
    const { topic, payload, retain } = settings.will;
    options.will = { topic, payload: toBuffer(typeof payload === 'function' ? payload() : payload), qos: 1, retain };
  }
  return options;
}
