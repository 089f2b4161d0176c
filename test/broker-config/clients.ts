// MQTT.js clients for the broker-config tests: connect once (no automatic reconnect, so a test sees every
// refusal), record what arrives from the first packet on, and wait for conditions instead of sleeping.
import mqtt, { type IClientOptions, type IConnackPacket, type MqttClient } from 'mqtt';
import { waitFor } from '../support/ports.ts';

/** How long a CONNECT may take before the test calls it refused; brokers here answer in milliseconds. */
const CONNECT_TIMEOUT_MS = 8_000;

export interface Received {
  readonly topic: string;
  readonly text: string;
  readonly dup: boolean;
}

export interface TestClient {
  readonly client: MqttClient;
  /** The CONNACK that accepted the connection (sessionPresent, MQTT 5 properties). */
  readonly connack: IConnackPacket;
  /** Every PUBLISH delivered to this client, in arrival order. */
  readonly received: Received[];
  /** The texts received on `topic` (all topics when omitted), in arrival order. */
  texts(topic?: string): string[];
  /** Wait until at least `count` messages (on `topic`, when given) have arrived. */
  waitForCount(count: number, topic?: string, timeoutMs?: number): Promise<void>;
  end(): Promise<void>;
}

/**
 * Connect one MQTT.js client and resolve on CONNACK, or reject with the broker's refusal (MQTT.js error,
 * with its `code` = the CONNACK return or reason code), a close before CONNACK, or a timeout.
 *
 * The message listener is attached before CONNECT is sent. A broker resuming a persistent session sends
 * the queued messages right behind CONNACK, often in the same TCP segment; MQTT.js emits them in the same
 * tick as `connect` and acknowledges them, so a listener attached after `await connectAsync()` would miss
 * them for good (found while writing these tests: the messages were acked and gone).
 */
export function connectClient(url: string, options: IClientOptions): Promise<TestClient> {
  const client = mqtt.connect(url, { reconnectPeriod: 0, connectTimeout: CONNECT_TIMEOUT_MS, ...options });
  const received: Received[] = [];
  client.on('message', (topic, payload, packet) => received.push({ topic, text: payload.toString('utf8'), dup: packet.dup }));
  const texts = (topic?: string) => received.filter((m) => topic === undefined || m.topic === topic).map((m) => m.text);
  let connack: IConnackPacket | undefined;
  const handle: TestClient = {
    client,
    get connack() {
      if (!connack) throw new Error('no CONNACK yet');
      return connack;
    },
    received,
    texts,
    waitForCount: (count, topic, timeoutMs = 15_000) =>
      waitFor(`${count} messages${topic ? ` on ${topic}` : ''} at ${options.clientId ?? 'client'} (have ${texts(topic).length})`, () =>
        texts(topic).length >= count ? true : undefined, timeoutMs).then(() => undefined),
    end: () => endClient(client),
  };
  return new Promise((resolve, reject) => {
    let settled = false;
    const fail = (error: Error) => {
      if (settled) return;
      settled = true;
      client.removeAllListeners('connect');
      client.on('error', () => {});
      client.end(true, () => reject(error));
    };
    client.once('connect', (packet) => {
      connack = packet;
      settled = true;
      client.removeListener('error', fail);
      client.removeListener('close', onClose);
      // Later errors (a refused publish, a dropped link) are the test's to observe, not a crash.
      client.on('error', () => {});
      resolve(handle);
    });
    const onClose = () => fail(new Error(`connection to ${url} closed before CONNACK`));
    client.once('error', fail);
    client.once('close', onClose);
  });
}

/** Keep trying `connectClient` until it succeeds (a cluster electing new leaders refuses for a while). */
export async function connectWithRetry(url: string, options: IClientOptions, timeoutMs = 60_000): Promise<TestClient> {
  let last: unknown;
  return waitFor(
    `a connection to ${url}`,
    () =>
      connectClient(url, options).then(
        (handle) => handle,
        (error: unknown) => {
          last = error;
          return undefined;
        },
      ),
    timeoutMs,
    250,
  ).catch((error: unknown) => {
    throw new Error(`${(error as Error).message}; last refusal: ${String(last)}`);
  });
}

/** Close a client at once (no DISCONNECT wait) and stop its reconnect timer. */
export function endClient(client: MqttClient): Promise<void> {
  return new Promise((resolve) => client.end(true, () => resolve()));
}

/** Resolve with the reason why `client`'s connection closed: the server's DISCONNECT reason code if any. */
export function closedWith(client: MqttClient, timeoutMs = 10_000): Promise<{ disconnectReason: number | undefined }> {
  let reason: number | undefined;
  client.on('disconnect', (packet) => (reason = packet.reasonCode));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`connection still open after ${timeoutMs} ms`)), timeoutMs);
    client.once('close', () => {
      clearTimeout(timer);
      resolve({ disconnectReason: reason });
    });
  });
}
