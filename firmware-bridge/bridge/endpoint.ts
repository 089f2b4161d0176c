/**
 * One end of a bridge link, used by the host (the agent) and by the device (the simulator) alike: sequence
 * numbers, reliable sends with retransmission, acknowledgement of received reliable frames, and recognition
 * of retransmitted frames so that a command is never acted on twice (PROTOCOL.md §8).
 */
import { Counters, systemBridgeClock, type BridgeClock } from '../core/index.ts';
import {
  BRIDGE_ACK_TIMEOUT_MS,
  BRIDGE_DEDUP_ENTRIES_MAX,
  BRIDGE_DEDUP_WINDOW_MS,
  BRIDGE_INFLIGHT_MAX,
  BRIDGE_SEND_ATTEMPTS_MAX,
  BRIDGE_VERSION_MIN,
  MessageType,
  type NakReasonName,
} from './constants.ts';
import { encodeMessage, MESSAGE_TYPE_BY_NAME, RELIABLE_TYPES, type BridgeFrame, type BridgeMessage, type MessageDecodeResult } from './messages.ts';
import { BridgeParser } from './parser.ts';

export type ReliableResult =
  | { ok: true; reply: BridgeMessage }
  | { ok: false; reason: 'timeout' | 'link-down' | 'busy' | NakReasonName | string; reply?: BridgeMessage };

export interface EndpointOptions {
  readonly clock?: BridgeClock;
  readonly ackTimeoutMs?: number;
  readonly sendAttemptsMax?: number;
  /** Hands bytes to the transport; false when the link is down. */
  readonly write: (bytes: Uint8Array) => boolean;
}

export interface EndpointHandlers {
  /**
   * A frame that is new (a retransmission of a reliable frame already answered is answered again by the
   * endpoint from its memory and not delivered). Reliable frames must be answered with `ack` or `nak`.
   */
  message(frame: BridgeFrame): void;
}

interface Pending {
  readonly type: number;
  readonly bytes: Uint8Array;
  attempts: number;
  timer: { cancel(): void };
  readonly resolve: (result: ReliableResult) => void;
}

interface Remembered {
  readonly type: number;
  readonly seq: number;
  readonly atMs: number;
  reply: Uint8Array | undefined;
}

export class BridgeEndpoint {
  readonly counters: Counters;
  /** Header version for everything but the handshake; set once CAPABILITIES settles it. */
  version = BRIDGE_VERSION_MIN;
  private readonly parser: BridgeParser;
  private readonly clock: BridgeClock;
  private readonly ackTimeoutMs: number;
  private readonly attemptsMax: number;
  private readonly pending = new Map<number, Pending>();
  private readonly remembered: Remembered[] = [];
  private nextSeq = 0;

  constructor(private readonly options: EndpointOptions, private readonly handlers: EndpointHandlers) {
    this.clock = options.clock ?? systemBridgeClock;
    this.ackTimeoutMs = options.ackTimeoutMs ?? BRIDGE_ACK_TIMEOUT_MS;
    this.attemptsMax = options.sendAttemptsMax ?? BRIDGE_SEND_ATTEMPTS_MAX;
    this.counters = new Counters(['rx.bytes', 'rx.frames', 'tx.frames', 'tx.retransmits', 'rx.duplicates', 'tx.timeouts']);
    this.parser = new BridgeParser({ frame: (frame) => this.onFrame(frame), rejected: (result) => this.onRejected(result) }, this.counters);
  }

  receive(chunk: Uint8Array): void {
    this.parser.push(chunk, this.clock.monotonicMs());
  }

  /** Send a frame that needs no answer (telemetry, heartbeat). */
  send(message: BridgeMessage): boolean {
    return this.write(encodeMessage(message, this.takeSeq(), this.version));
  }

  /** Send a reliable frame and wait for its ACK, NAK (or CAPABILITIES for HELLO), retransmitting on silence. */
  sendReliable(message: BridgeMessage): Promise<ReliableResult> {
    const type = MESSAGE_TYPE_BY_NAME[message.type];
    if (!RELIABLE_TYPES.has(type)) throw new Error(`bridge ${message.type} is not a reliable message`);
    if (this.pending.size >= BRIDGE_INFLIGHT_MAX) return Promise.resolve({ ok: false, reason: 'busy' });
    const seq = this.takeSeq();
    const bytes = encodeMessage(message, seq, this.version);
    return new Promise<ReliableResult>((resolve) => {
      const entry: Pending = { type, bytes, attempts: 1, timer: this.clock.setTimeout(() => this.onAckTimeout(seq), this.ackTimeoutMs), resolve };
      this.pending.set(seq, entry);
      this.write(bytes);
    });
  }

  ack(frame: BridgeFrame): void {
    this.reply(frame, { type: 'ack', ackSeq: frame.seq, ackType: MESSAGE_TYPE_BY_NAME[frame.message.type] });
  }

  nak(frame: BridgeFrame | { seq: number; type: number }, reason: NakReasonName, extra: { detail?: string; versionMin?: number; versionMax?: number } = {}): void {
    const nakType = 'message' in frame ? MESSAGE_TYPE_BY_NAME[frame.message.type] : frame.type;
    this.reply(frame, { type: 'nak', nakSeq: frame.seq, nakType, reason, ...extra });
  }

  /** Answer a reliable frame (ACK, NAK, or CAPABILITIES for a HELLO) and remember the answer for retransmissions. */
  reply(frame: BridgeFrame | { seq: number; type: number }, message: BridgeMessage): void {
    const bytes = encodeMessage(message, this.takeSeq(), this.version);
    const type = 'message' in frame ? MESSAGE_TYPE_BY_NAME[frame.message.type] : frame.type;
    const memory = this.remembered.find((entry) => entry.type === type && entry.seq === frame.seq);
    if (memory) memory.reply = bytes;
    this.write(bytes);
  }

  /** The link went away: fail every pending send, forget partial input and remembered frames. */
  reset(reason = 'link-down'): void {
    for (const [seq, entry] of this.pending) {
      entry.timer.cancel();
      this.pending.delete(seq);
      entry.resolve({ ok: false, reason });
    }
    this.parser.flush();
    this.remembered.length = 0;
  }

  get inflight(): number {
    return this.pending.size;
  }

  private write(bytes: Uint8Array): boolean {
    const written = this.options.write(bytes);
    if (written) this.counters.add('tx.frames');
    return written;
  }

  private takeSeq(): number {
    const seq = this.nextSeq;
    this.nextSeq = (this.nextSeq + 1) & 0xffff;
    return seq;
  }

  private onAckTimeout(seq: number): void {
    const entry = this.pending.get(seq);
    if (!entry) return;
    if (entry.attempts >= this.attemptsMax) {
      this.pending.delete(seq);
      this.counters.add('tx.timeouts');
      entry.resolve({ ok: false, reason: 'timeout' });
      return;
    }
    entry.attempts++;
    this.counters.add('tx.retransmits');
    entry.timer = this.clock.setTimeout(() => this.onAckTimeout(seq), this.ackTimeoutMs);
    this.write(entry.bytes);
  }

  private settle(seq: number, type: number, result: ReliableResult): void {
    const entry = this.pending.get(seq);
    if (!entry || entry.type !== type) {
      this.counters.add('rx.unmatched-replies');
      return;
    }
    entry.timer.cancel();
    this.pending.delete(seq);
    entry.resolve(result);
  }

  private onFrame(frame: BridgeFrame): void {
    const message = frame.message;
    if (message.type === 'ack') return this.settle(message.ackSeq, message.ackType, { ok: true, reply: message });
    if (message.type === 'nak') return this.settle(message.nakSeq, message.nakType, { ok: false, reason: String(message.reason), reply: message });
    if (message.type === 'capabilities') {
      this.settle(message.helloSeq, MessageType.HELLO, { ok: true, reply: message });
      return this.handlers.message(frame);
    }
    const type = MESSAGE_TYPE_BY_NAME[message.type];
    if (RELIABLE_TYPES.has(type) && message.type !== 'hello' && this.isRetransmission(type, frame.seq)) return;
    this.handlers.message(frame);
  }

  /** True when (type, seq) was seen within the dedup window; then the remembered answer is sent again. */
  private isRetransmission(type: number, seq: number): boolean {
    const nowMs = this.clock.monotonicMs();
    while (this.remembered.length > 0 && nowMs - this.remembered[0]!.atMs > BRIDGE_DEDUP_WINDOW_MS) this.remembered.shift();
    const memory = this.remembered.find((entry) => entry.type === type && entry.seq === seq);
    if (memory) {
      this.counters.add('rx.duplicates');
      if (memory.reply) this.write(memory.reply);
      return true;
    }
    if (this.remembered.length >= BRIDGE_DEDUP_ENTRIES_MAX) this.remembered.shift();
    this.remembered.push({ type, seq, atMs: nowMs, reply: undefined });
    return false;
  }

  /** A well-framed frame this side cannot use: answer with NAK so that the sender stops retransmitting. */
  private onRejected(result: Extract<MessageDecodeResult, { ok: false }>): void {
    if (result.reason === 'version') return;
    if (result.type === MessageType.ACK || result.type === MessageType.NAK) return;
    if (result.reason === 'type') return this.nak({ seq: result.seq, type: result.type }, 'unknown-type');
    if (RELIABLE_TYPES.has(result.type)) this.nak({ seq: result.seq, type: result.type }, 'malformed');
  }
}
