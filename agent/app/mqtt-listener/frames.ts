/**
 * Packet sizes on the way in, before mqtt-packet's parser buffers them: a client announces a packet's length
 * in its fixed header (MQTT 3.1.1 §2.2.3, a variable byte integer of at most 4 bytes), so a packet over the
 * cap is refused as soon as its header is read, not after megabytes were buffered. Pure: bytes in, a verdict
 * out; the scanner keeps its place across socket reads.
 */

/** A fixed header is the type byte and at most 4 length bytes (§2.2.3). */
const MQTT_FIXED_HEADER_BYTES_MAX = 5;
/** Bit 7 of a length byte says another follows (§2.2.3). */
const MQTT_LENGTH_CONTINUE = 0x80;

export type ScanResult = { ok: true } | { ok: false; reason: 'oversize' | 'malformed' };

export class FrameScanner {
  /** Body bytes of the current packet not yet seen. */
  private bodyLeft = 0;
  /** Bytes of the fixed header read so far (0 between packets). */
  private headerBytes = 0;
  private length = 0;
  private multiplier = 1;

  /** @param packetBytesMax the largest whole packet (fixed header included) accepted. */
  constructor(private readonly packetBytesMax: number) {}

  /** Account for one socket read; a verdict of not ok means the connection must be closed. */
  scan(chunk: Uint8Array): ScanResult {
    let i = 0;
    while (i < chunk.length) {
      if (this.bodyLeft > 0) {
        const take = Math.min(this.bodyLeft, chunk.length - i);
        this.bodyLeft -= take;
        i += take;
        continue;
      }
      const byte = chunk[i++]!;
      this.headerBytes++;
      if (this.headerBytes === 1) continue;
      this.length += (byte & 0x7f) * this.multiplier;
      this.multiplier *= 128;
      if (byte & MQTT_LENGTH_CONTINUE) {
        if (this.headerBytes === MQTT_FIXED_HEADER_BYTES_MAX) return { ok: false, reason: 'malformed' };
        continue;
      }
      if (this.length + this.headerBytes > this.packetBytesMax) return { ok: false, reason: 'oversize' };
      this.bodyLeft = this.length;
      this.headerBytes = this.length = 0;
      this.multiplier = 1;
    }
    return { ok: true };
  }
}
