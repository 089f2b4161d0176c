/**
 * Writing CBOR (RFC 8949) by hand into a buffer sized beforehand, for the hot paths where going through
 * cbor-x copied the bulk of a message several times (the batch envelope, replication/batch-encoder.ts; the
 * SQLite page entry, sqlite/entry.ts). What it writes decodes to what cbor-x wrote for the same values, and
 * byte for byte equals it where the tests compare: heads in their shortest form (preferred serialization,
 * RFC 8949 §4.1), unsigned integers up to 2^32 - 1, larger ones as float64 with an integral value (as cbor-x
 * writes them and as its default decoder reads them back into a number; a uint64 would come back as a bigint).
 */

/** RFC 8949 §3.1 major types. */
export const MAJOR_UINT = 0;
export const MAJOR_BYTES = 2;
export const MAJOR_TEXT = 3;
export const MAJOR_ARRAY = 4;
export const MAJOR_MAP = 5;
/** RFC 8949 §3.3: major type 7, additional information 27 = IEEE 754 double. */
const FLOAT64_HEAD = 0xfb;
const UINT32_LIMIT = 2 ** 32;

/** Bytes of a head (major type + argument) for `value` < 2^32. */
export function headBytes(value: number): number {
  return value < 24 ? 1 : value < 0x100 ? 2 : value < 0x1_0000 ? 3 : 5;
}

/** Bytes of an unsigned integer as cbor-x writes it. */
export function uintBytes(value: number): number {
  return value < UINT32_LIMIT ? headBytes(value) : 9;
}

/** Bytes of a text string already UTF-8 encoded. */
export function textBytes(encoded: Uint8Array): number {
  return headBytes(encoded.length) + encoded.length;
}

export class CborWriter {
  offset = 0;
  private readonly view: DataView;

  constructor(readonly bytes: Uint8Array) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  head(major: number, value: number): void {
    const type = major << 5;
    const bytes = this.bytes;
    if (value < 24) bytes[this.offset++] = type | value;
    else if (value < 0x100) {
      bytes[this.offset++] = type | 24;
      bytes[this.offset++] = value;
    } else if (value < 0x1_0000) {
      bytes[this.offset++] = type | 25;
      this.view.setUint16(this.offset, value);
      this.offset += 2;
    } else {
      bytes[this.offset++] = type | 26;
      this.view.setUint32(this.offset, value);
      this.offset += 4;
    }
  }

  uint(value: number): void {
    if (value < UINT32_LIMIT) {
      this.head(MAJOR_UINT, value);
      return;
    }
    this.bytes[this.offset++] = FLOAT64_HEAD;
    this.view.setFloat64(this.offset, value);
    this.offset += 8;
  }

  text(encoded: Uint8Array): void {
    this.head(MAJOR_TEXT, encoded.length);
    this.raw(encoded);
  }

  byteString(value: Uint8Array): void {
    this.head(MAJOR_BYTES, value.length);
    this.raw(value);
  }

  raw(value: Uint8Array): void {
    this.bytes.set(value, this.offset);
    this.offset += value.length;
  }
}
