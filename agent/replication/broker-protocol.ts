/**
 * What the broker link needs from MQTT itself: the reason codes a broker may send and what an operator can
 * do about them, the size of a PUBLISH packet, the addresses of a broker's nodes, and how MQTT.js stores a
 * publish for a resend.
 */
import type { MqttClient, Packet } from 'mqtt';
import { LastgaspError } from '../util/index.ts';

/** MQTT 3.1.1 §3.2.2.3: CONNACK return code 1 = unacceptable protocol version. */
export const CONNACK_UNACCEPTABLE_PROTOCOL = 1;
/** MQTT 5 §3.4.2.1: PUBACK reason codes below 0x80 are successes (0x10 = no matching subscribers). */
export const REASON_CODE_FAILURE_MIN = 0x80;
/** MQTT 5 §3.2.2.3.3: a CONNACK without Receive Maximum means 65,535. */
export const RECEIVE_MAXIMUM_DEFAULT = 65_535;

/** MQTT 5 §3.4.2.1 (PUBACK) and §3.14.2.1 (DISCONNECT): the failure reason codes a broker may send. */
export const REASONS: Record<number, string> = {
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
export const REASON_HINTS: Record<number, string> = {
  0x87: 'the broker\'s ACL does not let this gateway write the topic (see broker-config/mosquitto/acl.conf)',
  0x95: 'raise the broker\'s max_packet_size or lower replication.batchBytesMax / log.entryBytesMax',
  0x97: 'the broker\'s per-client quota is exhausted; raise its limits or slow the writers',
};

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

export function serverOptions(text: string): { host: string; port: number; protocol: 'mqtts' | 'mqtt' } {
  const url = new URL(text);
  const secure = url.protocol === 'mqtts:' || url.protocol === 'ssl:';
  return { host: url.hostname, port: Number(url.port || (secure ? 8883 : 1883)), protocol: secure ? 'mqtts' : 'mqtt' };
}

/** `host:port` of a broker URL, as the link reports the server it is on. */
export function hostPort(text: string): string {
  const { host, port } = serverOptions(text);
  return `${host}:${port}`;
}

/** The server a client is connected or connecting to (MQTT.js sets host and port per attempt). */
export function serverOf(client: MqttClient): string {
  return `${(client.options.host as string) ?? ''}:${client.options.port ?? ''}`;
}

export function toBuffer(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** The part of MQTT.js's client that stores a QoS 1 publish for resending before writing it (client.js 5.x). */
interface PublishStore {
  _storeAndSend(packet: Packet, callback: ((error?: Error) => void) | undefined, stored: () => void): void;
  _writePacket(packet: Packet, callback: ((error?: Error) => void) | undefined): void;
  outgoingStore: { put(packet: Packet, callback: (error?: Error) => void): void };
}

/**
 * MQTT.js deep-copies every QoS 1 publish before storing it for a resend (rfdc, payload included), so that
 * rewriting a topic alias in the stored copy cannot touch the packet being written. A half-MiB batch is then
 * copied into fresh pages, page fault by page fault: about half of the primary's CPU in the brownout drain
 * (18.6 of 39 ms for 27 batches). The link never sets topic aliases, so here the stored packet is a shallow
 * copy that shares the payload. Whoever passes a payload must then leave it untouched while MQTT.js may still
 * resend it: the publisher gives a batch's buffer back to its pool only once every broker PUBACKed it (a
 * publish that failed may still be in MQTT.js's store, and its buffer is left to the garbage collector).
 * A client without these internals (another MQTT.js) keeps its copying; a test checks that this one shares.
 */
export function storePublishesUncopied(client: MqttClient): void {
  const target = client as unknown as PublishStore;
  const copying = target._storeAndSend;
  if (typeof copying !== 'function' || typeof target._writePacket !== 'function') return;
  target._storeAndSend = function (this: PublishStore, packet, callback, stored) {
    if (packet.cmd !== 'publish' || packet.properties?.topicAlias !== undefined) return copying.call(this, packet, callback, stored);
    this.outgoingStore.put({ ...packet }, (error) => {
      if (error) return callback?.(error);
      stored();
      this._writePacket(packet, callback);
    });
  };
}
