/**
 * Frames of the direct path: the signed wire messages (wire.ts envelopes, unchanged) one after another on
 * a TLS stream, each behind a 4-byte big-endian length and a 1-byte kind. TLS already authenticates the
 * peer and protects the bytes; the envelope's own signature is still checked on arrival, exactly as for a
 * copy from a broker, so that the direct path adds a route and no second way to be believed.
 *
 *   offset 0  u32 BE  length of what follows (kind byte + envelope), 1..frameBytesMax
 *   offset 4  u8      kind: 1 batch, 2 ack, 3 leader record
 *   offset 5  ...     the envelope, as published on the broker topic of that kind
 */

export const DIRECT_FRAME_HEADER_BYTES = 5;
/** The length field covers the kind byte and the envelope. */
const LENGTH_BYTES = 4;
export const DIRECT_KIND_BATCH = 1;
export const DIRECT_KIND_ACK = 2;
export const DIRECT_KIND_LEADER = 3;
export type DirectKind = typeof DIRECT_KIND_BATCH | typeof DIRECT_KIND_ACK | typeof DIRECT_KIND_LEADER;

export function encodeFrame(kind: DirectKind, envelope: Uint8Array): Uint8Array {
  const frame = new Uint8Array(DIRECT_FRAME_HEADER_BYTES + envelope.length);
  new DataView(frame.buffer).setUint32(0, envelope.length + 1);
  frame[LENGTH_BYTES] = kind;
  frame.set(envelope, DIRECT_FRAME_HEADER_BYTES);
  return frame;
}

export type FrameResult = { ok: true; kind: DirectKind; envelope: Uint8Array } | { ok: false; reason: 'unknown-kind' | 'empty' };
/** A length past the cap cannot be skipped safely (the stream may be anything): the connection is closed. */
export type FramePushResult = { frames: FrameResult[]; fatal?: 'too-large' };

function isKind(value: number): value is DirectKind {
  return value === DIRECT_KIND_BATCH || value === DIRECT_KIND_ACK || value === DIRECT_KIND_LEADER;
}

/**
 * Finds frame boundaries in a byte stream. It holds at most one frame (≤ frameBytesMax plus a header) and
 * what has arrived of the next; a declared length over the cap is fatal for the stream.
 */
export class FrameAccumulator {
  private buffer = new Uint8Array(0);
  private fill = 0;

  constructor(private readonly frameBytesMax: number) {}

  /** Bytes held waiting for the rest of a frame. */
  get pendingBytes(): number {
    return this.fill;
  }

  push(chunk: Uint8Array): FramePushResult {
    this.append(chunk);
    const frames: FrameResult[] = [];
    let offset = 0;
    while (this.fill - offset >= LENGTH_BYTES) {
      const declared = new DataView(this.buffer.buffer, this.buffer.byteOffset + offset, LENGTH_BYTES).getUint32(0);
      if (declared > this.frameBytesMax) {
        this.fill = 0;
        return { frames, fatal: 'too-large' };
      }
      if (this.fill - offset < LENGTH_BYTES + declared) break;
      const body = this.buffer.slice(offset + LENGTH_BYTES, offset + LENGTH_BYTES + declared);
      offset += LENGTH_BYTES + declared;
      if (declared === 0) frames.push({ ok: false, reason: 'empty' });
      else if (!isKind(body[0]!)) frames.push({ ok: false, reason: 'unknown-kind' });
      else frames.push({ ok: true, kind: body[0]!, envelope: body.subarray(1) });
    }
    this.buffer.copyWithin(0, offset, this.fill);
    this.fill -= offset;
    return { frames };
  }

  private append(chunk: Uint8Array): void {
    if (this.fill + chunk.length > this.buffer.length) {
      // Grows to what one frame needs (the cap bounds it), doubling so that a large frame in small chunks costs linear time.
      const grown = new Uint8Array(Math.max(this.fill + chunk.length, this.buffer.length * 2, 4096));
      grown.set(this.buffer.subarray(0, this.fill));
      this.buffer = grown;
    }
    this.buffer.set(chunk, this.fill);
    this.fill += chunk.length;
  }
}
