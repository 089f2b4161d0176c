/**
 * Delivery to one local subscriber: QoS 0 at once; QoS 1 within an in-flight window of packet ids awaiting
 * their PUBACK (the client's Receive Maximum, MQTT 5.0 §3.1.2.11.3, at most OUTBOUND_INFLIGHT_MAX), the rest
 * queued up to OUTBOUND_QUEUE_MAX and dropped (counted) beyond: a subscriber that stops reading must not
 * grow the agent's memory. QoS 2 subscriptions are granted QoS 1 (§3.9.3: the server may grant less).
 * Sessions are not kept, so what is in flight when the connection goes is not sent again.
 */
import { Buffer } from 'node:buffer';
import { generate, type IPublishPacket } from 'mqtt-packet';
import { publishProperties, type Message, type QoS } from './message.ts';

/** PUBLISHes awaiting a subscriber's PUBACK: mosquitto's default max_inflight_messages is 20; 64 keeps a fast local reader busy. */
const OUTBOUND_INFLIGHT_MAX = 64;
/** Messages waiting for the window, per subscriber (mosquitto's max_queued_messages default is 1000). */
export const OUTBOUND_QUEUE_MAX = 1000;

interface Pending {
  readonly message: Message;
  readonly qos: QoS;
  readonly retain: boolean;
}

export class Outbound {
  private readonly inFlight = new Set<number>();
  private readonly queue: Pending[] = [];
  private nextId = 1;
  private inFlightMax = OUTBOUND_INFLIGHT_MAX;

  /** @param send writes one encoded packet; @param dropped counts a message that did not fit the queue. */
  constructor(
    private readonly version: 4 | 5,
    private readonly send: (bytes: Uint8Array) => void,
    private readonly dropped: () => void,
  ) {}

  /** The client's Receive Maximum (MQTT 5 CONNECT), when it asked for a smaller window. */
  limit(receiveMaximum: number | undefined): void {
    if (receiveMaximum !== undefined && receiveMaximum > 0) this.inFlightMax = Math.min(OUTBOUND_INFLIGHT_MAX, receiveMaximum);
  }

  deliver(message: Message, qos: QoS, retain: boolean): void {
    if (qos === 0) return this.write({ message, qos, retain }, undefined);
    if (this.inFlight.size < this.inFlightMax) return this.write({ message, qos, retain }, this.allocate());
    if (this.queue.length >= OUTBOUND_QUEUE_MAX) return this.dropped();
    this.queue.push({ message, qos, retain });
  }

  /** A subscriber's PUBACK: its id is free, and the next queued message takes the place. */
  acknowledged(id: number): void {
    if (!this.inFlight.delete(id)) return;
    const next = this.queue.shift();
    if (next) this.write(next, this.allocate());
  }

  private allocate(): number {
    // Ids 1..65535 (§2.3.1), skipping any still in flight; the window is far smaller than the id space.
    while (this.inFlight.has(this.nextId)) this.nextId = (this.nextId % 0xffff) + 1;
    const id = this.nextId;
    this.nextId = (this.nextId % 0xffff) + 1;
    this.inFlight.add(id);
    return id;
  }

  private write(pending: Pending, id: number | undefined): void {
    const { message, qos, retain } = pending;
    const properties = this.version === 5 ? publishProperties(message.props) : undefined;
    const packet: IPublishPacket = {
      cmd: 'publish',
      topic: message.topic,
      payload: Buffer.from(message.payload.buffer, message.payload.byteOffset, message.payload.byteLength),
      qos,
      retain,
      dup: false,
      ...(id !== undefined ? { messageId: id } : {}),
      ...(properties ? { properties } : {}),
    };
    this.send(generate(packet, { protocolVersion: this.version }));
  }
}
