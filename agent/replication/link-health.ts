/**
 * Whether a connected broker link is acknowledging (broker-link.ts): the QoS 1 PUBLISHes written to the wire
 * of the current connection and not yet PUBACKed, and when the broker last acknowledged anything. A link with
 * a publish waiting past a deadline, and no acknowledgement of anything meanwhile, is stalled: connected, but
 * counted as down until the broker acknowledges again. Measured on the packets themselves, independently of
 * the link's own quota.
 */
import type { Packet } from 'mqtt';

export interface Stall {
  /** Since the broker last acknowledged anything. */
  readonly sinceAckMs: number;
  readonly unacknowledged: number;
  readonly oldestMs: number;
}

export class LinkHealth {
  /** QoS 1 PUBLISHes on the wire of the current connection: packet id → sent at (performance.now()). */
  private readonly onWire = new Map<number, number>();
  private lastAckAtMs = 0;
  private stalledSinceMs: number | undefined;
  /** Most QoS 1 PUBLISHes ever unacknowledged on the wire at once. */
  inflightPeak = 0;

  get stalled(): boolean {
    return this.stalledSinceMs !== undefined;
  }

  lastAckAgeMs(now: number): number {
    return Math.round(now - this.lastAckAtMs);
  }

  oldestUnackedMs(now: number): number {
    const oldest = this.onWire.values().next().value;
    return oldest === undefined ? 0 : Math.round(now - oldest);
  }

  /** A connection came up: nothing of it on the wire yet, and it counts as acknowledging from now. */
  connected(now: number): void {
    this.lastAckAtMs = now;
    this.stalledSinceMs = undefined;
  }

  /** The connection closed: what was on its wire is MQTT.js's to resend, and a closed link is down, not stalled. */
  closed(): void {
    this.onWire.clear();
    this.stalledSinceMs = undefined;
  }

  /** The link switched to another client (a race's winner): the old wire's packets are not on the new one. */
  switched(): void {
    this.onWire.clear();
  }

  /** A packet went out (`sent`) or came in; true when a stalled link just acknowledged again. */
  onPacket(packet: Packet, sent: boolean, now: number): boolean {
    if (sent && packet.cmd === 'publish' && packet.qos > 0 && packet.messageId !== undefined) {
      this.onWire.set(packet.messageId, now);
      if (this.onWire.size > this.inflightPeak) this.inflightPeak = this.onWire.size;
      return false;
    }
    if (sent || (packet.cmd !== 'puback' && packet.cmd !== 'suback' && packet.cmd !== 'unsuback')) return false;
    if (packet.cmd === 'puback' && packet.messageId !== undefined) this.onWire.delete(packet.messageId);
    this.lastAckAtMs = now;
    if (this.stalledSinceMs === undefined) return false;
    this.stalledSinceMs = undefined;
    return true;
  }

  /** Connected, with a publish unacknowledged past `deadlineMs` and no acknowledgement meanwhile: it stalls now. */
  check(now: number, deadlineMs: number): Stall | undefined {
    if (this.stalledSinceMs !== undefined) return undefined;
    const oldest = this.onWire.values().next().value;
    if (oldest === undefined || now - oldest < deadlineMs || now - this.lastAckAtMs < deadlineMs) return undefined;
    this.stalledSinceMs = now;
    return { sinceAckMs: Math.round(now - this.lastAckAtMs), unacknowledged: this.onWire.size, oldestMs: Math.round(now - oldest) };
  }
}
