/**
 * A bounded accumulator for delimiter-ended frames (the bridge's COBS frames, Megatec's CR-ended lines).
 * It only finds boundaries: bytes go in, complete frames (without the delimiter) come out through the
 * callback, as a view that is valid only during the call (it may point into the caller's chunk or into the
 * accumulator's buffer): a consumer that keeps bytes copies them. Its buffer is allocated once at `frameLenMax`; a run of bytes longer than that without a
 * delimiter is dropped and counted as `oversize`, and the accumulator resyncs at the next delimiter.
 */
import type { Counters } from './counters.ts';

export interface DelimitedOptions {
  readonly delimiter: number;
  /** Longest frame accepted, delimiter excluded. */
  readonly frameLenMax: number;
  /**
   * A partial frame older than this (no byte for this long) is dropped as `stalled` when the next byte
   * arrives: a device that stopped mid-frame must not glue its fragment onto the next good frame.
   */
  readonly stallMs?: number;
}

export class DelimitedAccumulator {
  private readonly buffer: Uint8Array;
  private length = 0;
  /** Bytes dropped since the buffer overflowed; nonzero means "skip until the next delimiter". */
  private discarding = 0;
  private lastByteMs = 0;

  constructor(
    private readonly options: DelimitedOptions,
    private readonly counters: Counters,
    private readonly onFrame: (frame: Uint8Array) => void,
  ) {
    this.buffer = new Uint8Array(options.frameLenMax);
  }

  /** Feed a chunk as it came off the line. `nowMs` (monotonic) is only needed for stall detection. */
  push(chunk: Uint8Array, nowMs = 0): void {
    this.counters.add('rx.bytes', chunk.length);
    if (this.options.stallMs !== undefined && this.length > 0 && nowMs - this.lastByteMs > this.options.stallMs) {
      this.counters.drop('stalled', this.length);
      this.length = 0;
    }
    this.lastByteMs = nowMs;
    let start = 0;
    while (start < chunk.length) {
      const end = chunk.indexOf(this.options.delimiter, start);
      if (end === -1) {
        this.append(chunk, start, chunk.length);
        return;
      }
      if (this.length === 0 && this.discarding === 0) {
        // Fast path: the whole frame is inside this chunk, so it is handed on without a copy.
        this.completeInPlace(chunk, start, end);
      } else {
        this.append(chunk, start, end);
        this.complete();
      }
      start = end + 1;
    }
  }

  /** End of stream (link closed): a partial frame left behind is dropped as `truncated`. */
  flush(): void {
    if (this.length > 0) this.counters.drop('truncated', this.length);
    if (this.discarding > 0) this.counters.drop('oversize', this.discarding);
    this.length = 0;
    this.discarding = 0;
  }

  /** Bytes currently held; never more than `frameLenMax`. */
  get buffered(): number {
    return this.length;
  }

  /** Bytes not yet counted anywhere: those held, plus an oversize run being skipped until its delimiter. */
  get pending(): number {
    return this.length + this.discarding;
  }

  private append(chunk: Uint8Array, start: number, end: number): void {
    const count = end - start;
    if (count === 0) return;
    if (this.discarding > 0 || this.length + count > this.buffer.length) {
      this.discarding += this.length + count;
      this.length = 0;
      return;
    }
    this.buffer.set(chunk.subarray(start, end), this.length);
    this.length += count;
  }

  private complete(): void {
    // The delimiter itself belongs to the frame it ends; an oversize run counts it among the dropped bytes.
    if (this.discarding > 0) {
      this.counters.drop('oversize', this.discarding + 1);
      this.discarding = 0;
      return;
    }
    if (this.length === 0) {
      this.counters.add('rx.idle-delimiters');
      return;
    }
    const frame = this.buffer.subarray(0, this.length);
    this.length = 0;
    this.onFrame(frame);
  }

  private completeInPlace(chunk: Uint8Array, start: number, end: number): void {
    const length = end - start;
    if (length === 0) {
      this.counters.add('rx.idle-delimiters');
      return;
    }
    if (length > this.buffer.length) {
      this.counters.drop('oversize', length + 1);
      return;
    }
    this.onFrame(chunk.subarray(start, end));
  }
}
