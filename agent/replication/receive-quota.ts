/**
 * Flow control for one broker link (broker-link.ts), enforced here because MQTT.js 5 does not: it reads the
 * server's Receive Maximum from CONNACK nowhere and writes every QoS 1 PUBLISH at once (test/replication/
 * link.test.ts counts them on the wire). MQTT 5 §4.9 says the client MUST NOT have more unacknowledged QoS 1
 * PUBLISHes than that; publishes beyond it wait here, in order, and go as acknowledgements make room.
 */
import { RECEIVE_MAXIMUM_DEFAULT } from './broker-protocol.ts';

/**
 * Publishes waiting for a slot under the Receive Maximum. The publisher's window and the few control
 * records bound what is asked of a link; this bound only turns a runaway caller into a typed error.
 */
export const WAITING_MAX = 4096;

interface Waiting {
  readonly send: () => void;
  readonly reject: (error: Error) => void;
}

export class ReceiveQuota {
  /** QoS 1 publishes handed to MQTT.js whose PUBACK (or failure) has not come back. */
  private inflightCount = 0;
  private readonly queue: Waiting[] = [];
  /** The last Receive Maximum the broker announced; it stays the quota while the link is down. */
  private maximum = RECEIVE_MAXIMUM_DEFAULT;

  get inflight(): number {
    return this.inflightCount;
  }

  get waiting(): number {
    return this.queue.length;
  }

  get receiveMaximum(): number {
    return this.maximum;
  }

  /** A QoS 1 publish may go now: a slot is free and nothing waits before it. */
  get open(): boolean {
    return this.inflightCount < this.maximum && this.queue.length === 0;
  }

  get full(): boolean {
    return this.queue.length >= WAITING_MAX;
  }

  /** A CONNACK announced the broker's Receive Maximum (65535 when absent, per the spec). */
  announced(receiveMaximum: number | undefined): void {
    this.maximum = receiveMaximum ?? RECEIVE_MAXIMUM_DEFAULT;
  }

  /** Queue `send` until a slot is free (`release`); `reject` if the link gives up first (`failAll`). */
  wait(send: () => void, reject: (error: Error) => void): void {
    this.queue.push({ send, reject });
  }

  /** A QoS 1 publish was handed to MQTT.js. */
  taken(): void {
    this.inflightCount++;
  }

  /** A QoS 1 publish was acknowledged or failed: its slot goes to the next waiting one. */
  freed(): void {
    this.inflightCount--;
    this.release();
  }

  /** Hand waiting publishes to MQTT.js while the broker's Receive Maximum leaves room. */
  release(): void {
    while (this.queue.length > 0 && this.inflightCount < this.maximum) this.queue.shift()!.send();
  }

  failAll(error: () => Error): void {
    for (const waiting of this.queue.splice(0)) waiting.reject(error());
  }
}
