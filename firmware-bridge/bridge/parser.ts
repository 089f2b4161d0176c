/**
 * The receive path of the bridge protocol: bytes → frames → messages, with every dropped byte counted by
 * reason. Pure apart from the callback; the session above it does the I/O.
 */
import { Counters, DelimitedAccumulator } from '../core/index.ts';
import { BRIDGE_DELIMITER, BRIDGE_ENCODED_LEN_MAX } from './constants.ts';
import { decodeFrameToScratch, scratchBody } from './frame.ts';
import type { BridgeFrame, MessageDecodeResult } from './messages.ts';
import { decodeMessageBody } from './message-decode.ts';

/**
 * A partial frame with no new byte for this long is a device that stopped mid-frame. At 9600 baud a byte
 * takes about 1 ms, so 100 ms of silence inside a frame is never a healthy sender.
 */
export const BRIDGE_STALL_MS = 100;

export interface BridgeParserHandlers {
  frame(frame: BridgeFrame): void;
  /** A frame that was well framed but carries a version, type or body this side cannot use; the session may NAK it. */
  rejected?(result: Extract<MessageDecodeResult, { ok: false }>): void;
}

export class BridgeParser {
  readonly counters: Counters;
  private readonly accumulator: DelimitedAccumulator;

  constructor(private readonly handlers: BridgeParserHandlers, counters = new Counters(['rx.bytes', 'rx.frames'])) {
    this.counters = counters;
    this.accumulator = new DelimitedAccumulator(
      { delimiter: BRIDGE_DELIMITER, frameLenMax: BRIDGE_ENCODED_LEN_MAX, stallMs: BRIDGE_STALL_MS },
      counters,
      (encoded) => this.onEncoded(encoded),
    );
  }

  push(chunk: Uint8Array, nowMs?: number): void {
    this.accumulator.push(chunk, nowMs);
  }

  flush(): void {
    this.accumulator.flush();
  }

  get buffered(): number {
    return this.accumulator.buffered;
  }

  /** Bytes not yet counted as a frame or a drop (held, or being skipped as oversize). */
  get pending(): number {
    return this.accumulator.pending;
  }

  private onEncoded(encoded: Uint8Array): void {
    const wireBytes = encoded.length + 1;
    const framed = decodeFrameToScratch(encoded);
    if (!framed.ok) {
      this.counters.drop(framed.reason, wireBytes);
      return;
    }
    const decoded = decodeMessageBody(framed, scratchBody(framed.bodyLength));
    if (!decoded.ok) {
      this.counters.drop(decoded.reason, wireBytes);
      this.handlers.rejected?.(decoded);
      return;
    }
    this.counters.add('rx.frames');
    this.counters.add('rx.frame-bytes', wireBytes);
    this.handlers.frame(decoded.frame);
  }
}
