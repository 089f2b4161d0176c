/**
 * A strict decoder for the subset of CBOR (RFC 8949) the wire contract uses, for bytes that arrive from a
 * broker anyone on it may have written to. A general decoder (cbor-x) understands far more than the
 * contract needs: tags (dates, typed arrays, its own record and structure extensions that keep state
 * between messages), bigints, undefined, indefinite lengths. Each is a way for a forged message to reach
 * code that never expected it, so this one accepts only:
 *
 * - unsigned integers up to 2^53 - 1 (a larger one would turn into a bigint or lose precision);
 * - floats (other languages' encoders, and ours, write millisecond timestamps as float64); the message
 *   schema then demands an integral value where it wants a number;
 * - byte strings (returned as views of the input, not copied) and UTF-8 text strings (invalid UTF-8 is
 *   refused, not replaced);
 * - definite-length arrays and maps whose keys are text, each key once;
 * - false, true and null.
 *
 * Everything else (negative integers, tags, undefined, other simple values, indefinite lengths, nesting
 * deeper than `depthMax`, a text longer than `textBytesMax`, bytes after the item) is refused with a
 * reason. Every length is checked against the bytes left before anything is allocated, so a header
 * claiming 2^32 items costs nothing. Maps come back as objects without a prototype: a key "__proto__" is
 * an ordinary key.
 */

export type CborValue = number | string | boolean | null | Uint8Array | CborValue[] | { [key: string]: CborValue };

export type StrictDecodeResult = { ok: true; value: CborValue } | { ok: false; reason: string };

export interface StrictCborLimits {
  /** Arrays and maps nested deeper than this are refused (the contract nests 3 deep: body.entries[i]). */
  readonly depthMax: number;
  /** Longest text string, in bytes (names are 64, a handoff's reason a sentence). */
  readonly textBytesMax: number;
}

export const STRICT_CBOR_LIMITS: StrictCborLimits = { depthMax: 4, textBytesMax: 1024 };

/** RFC 8949 §3.1 major types. */
const MAJOR_UINT = 0;
const MAJOR_NEGATIVE = 1;
const MAJOR_BYTES = 2;
const MAJOR_TEXT = 3;
const MAJOR_ARRAY = 4;
const MAJOR_MAP = 5;
const MAJOR_TAG = 6;
/** RFC 8949 §3.3: simple values and floats under major type 7. */
const SIMPLE_FALSE = 20;
const SIMPLE_TRUE = 21;
const SIMPLE_NULL = 22;
const FLOAT16 = 25;
const FLOAT32 = 26;
const FLOAT64 = 27;
/** Additional information 31: indefinite length (RFC 8949 §3.2). */
const INDEFINITE = 31;

class Refused {
  constructor(readonly reason: string) {}
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

class Reader {
  private offset = 0;
  private readonly view: DataView;

  constructor(
    private readonly bytes: Uint8Array,
    private readonly limits: StrictCborLimits,
  ) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  get done(): boolean {
    return this.offset === this.bytes.length;
  }

  item(depth: number): CborValue {
    const initial = this.byte();
    const major = initial >> 5;
    const info = initial & 0x1f;
    if (major === 7) return this.simple(info);
    if (major === MAJOR_TAG) throw new Refused('cbor-tag');
    if (major === MAJOR_NEGATIVE) throw new Refused('cbor-negative');
    if (info === INDEFINITE) throw new Refused('cbor-indefinite');
    const argument = this.argument(info);
    switch (major) {
      case MAJOR_UINT:
        return argument;
      case MAJOR_BYTES:
        return this.take(argument);
      case MAJOR_TEXT:
        return this.text(argument);
      case MAJOR_ARRAY:
        return this.array(argument, depth + 1);
      case MAJOR_MAP:
        return this.map(argument, depth + 1);
    }
    throw new Refused('cbor-major');
  }

  private simple(info: number): CborValue {
    switch (info) {
      case SIMPLE_FALSE:
        return false;
      case SIMPLE_TRUE:
        return true;
      case SIMPLE_NULL:
        return null;
      case FLOAT16:
        return this.float16();
      case FLOAT32:
        return this.view.getFloat32(this.advance(4));
      case FLOAT64:
        return this.view.getFloat64(this.advance(8));
    }
    throw new Refused('cbor-simple');
  }

  /** The argument of a head (RFC 8949 §3): in the initial byte, or in the next 1, 2, 4 or 8 bytes. */
  private argument(info: number): number {
    if (info < 24) return info;
    if (info === 24) return this.byte();
    if (info === 25) return this.view.getUint16(this.advance(2));
    if (info === 26) return this.view.getUint32(this.advance(4));
    if (info === 27) {
      const at = this.advance(8);
      const high = this.view.getUint32(at);
      // 2^53 - 1 is the largest integer a number holds exactly: the high word may use 21 bits.
      if (high >= 0x20_0000) throw new Refused('cbor-integer-too-large');
      return high * 0x1_0000_0000 + this.view.getUint32(at + 4);
    }
    throw new Refused('cbor-reserved');
  }

  private array(count: number, depth: number): CborValue[] {
    if (depth > this.limits.depthMax) throw new Refused('cbor-too-deep');
    // Every item takes at least one byte: a count beyond what is left is a lie, refused before allocating.
    if (count > this.bytes.length - this.offset) throw new Refused('cbor-truncated');
    const out: CborValue[] = new Array(count);
    for (let index = 0; index < count; index++) out[index] = this.item(depth);
    return out;
  }

  private map(count: number, depth: number): { [key: string]: CborValue } {
    if (depth > this.limits.depthMax) throw new Refused('cbor-too-deep');
    if (count * 2 > this.bytes.length - this.offset) throw new Refused('cbor-truncated');
    const out = Object.create(null) as { [key: string]: CborValue };
    for (let index = 0; index < count; index++) {
      const initial = this.byte();
      if (initial >> 5 !== MAJOR_TEXT || (initial & 0x1f) === INDEFINITE) throw new Refused('cbor-key-not-text');
      const key = this.text(this.argument(initial & 0x1f));
      if (Object.prototype.hasOwnProperty.call(out, key)) throw new Refused('cbor-duplicate-key');
      out[key] = this.item(depth);
    }
    return out;
  }

  private text(length: number): string {
    if (length > this.limits.textBytesMax) throw new Refused('cbor-text-too-long');
    try {
      return utf8.decode(this.take(length));
    } catch {
      throw new Refused('cbor-bad-utf8');
    }
  }

  /** IEEE 754 half precision (RFC 8949 Appendix D). */
  private float16(): number {
    const half = this.view.getUint16(this.advance(2));
    const exponent = (half >> 10) & 0x1f;
    const mantissa = half & 0x3ff;
    const sign = half & 0x8000 ? -1 : 1;
    if (exponent === 0) return sign * mantissa * 2 ** -24;
    if (exponent === 31) return mantissa === 0 ? sign * Infinity : NaN;
    return sign * (mantissa + 1024) * 2 ** (exponent - 25);
  }

  private byte(): number {
    return this.bytes[this.advance(1)]!;
  }

  private take(length: number): Uint8Array {
    const at = this.advance(length);
    return this.bytes.subarray(at, at + length);
  }

  private advance(length: number): number {
    const at = this.offset;
    if (length > this.bytes.length - at) throw new Refused('cbor-truncated');
    this.offset = at + length;
    return at;
  }
}

/** Decode exactly one item that fills `bytes`; never throws. */
export function decodeStrictCbor(bytes: Uint8Array, limits: StrictCborLimits = STRICT_CBOR_LIMITS): StrictDecodeResult {
  const reader = new Reader(bytes, limits);
  try {
    const value = reader.item(0);
    if (!reader.done) return { ok: false, reason: 'cbor-trailing-bytes' };
    return { ok: true, value };
  } catch (error) {
    if (error instanceof Refused) return { ok: false, reason: error.reason };
    throw error;
  }
}
