/**
 * CRC-32C (Castagnoli, reflected polynomial 0x82F63B78, RFC 3720 appendix B.4), the checksum that
 * RocksDB, Kafka (RecordBatch v2) and etcd put on their log records. Table-driven slicing-by-16 over a
 * Uint8Array, in pure TypeScript so that it needs neither a native addon nor WASM and runs unchanged on
 * Node and Deno.
 *
 * Sixteen 256-entry tables (16 KiB, within a core's L1 cache) fold sixteen bytes per step. On little-endian
 * hosts (x86, and ARM as Linux runs it) the sixteen bytes are fetched as four 32-bit words through an
 * Int32Array over the same memory instead of sixteen byte loads; measured on this project's x86_64 VM
 * (Node 20, CPU time): about 1.3 GB/s on 276-byte records and 1.8 GB/s on 64 KiB, against 0.85 GB/s for
 * the byte-loading slicing-by-8 it replaces. The flash log checksums every byte it writes on the event
 * loop, so this is a direct share of the group commit's cost.
 */

/** Reflected Castagnoli polynomial (RFC 3720 B.4). */
const CRC32C_POLYNOMIAL = 0x82f63b78;
/** CRC-32C of the ASCII string "123456789", the catalogue check value (RFC 3720 B.4, CRC RevEng "CRC-32/ISCSI"). */
export const CRC32C_CHECK_VALUE = 0xe3069283;
/** Bytes folded per step of the main loop; the tables are one per byte position. */
const SLICE_BYTES = 16;

const TABLES = buildTables();
const LITTLE_ENDIAN = new Uint8Array(Uint32Array.of(1).buffer)[0] === 1;

function buildTables(): Uint32Array {
  const tables = new Uint32Array(256 * SLICE_BYTES);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ CRC32C_POLYNOMIAL : c >>> 1;
    tables[n] = c >>> 0;
  }
  for (let n = 0; n < 256; n++) {
    let c = tables[n]!;
    for (let slice = 1; slice < SLICE_BYTES; slice++) {
      c = (tables[c & 0xff]! ^ (c >>> 8)) >>> 0;
      tables[slice * 256 + n] = c;
    }
  }
  return tables;
}

/**
 * The word view of the last buffer checksummed. Callers checksum many records of one buffer in a row (a
 * batch, a read chunk), so one cached view saves creating a typed array per call.
 */
let wordsBuffer: ArrayBufferLike | undefined;
let words: Int32Array<ArrayBufferLike> = new Int32Array(0);

function wordsOf(buffer: ArrayBufferLike, endByte: number): Int32Array<ArrayBufferLike> {
  // Also rebuilt when the range lies past the cached view (a resizable buffer that grew since).
  if (buffer !== wordsBuffer || endByte > words.byteLength) {
    wordsBuffer = buffer;
    words = new Int32Array(buffer, 0, buffer.byteLength >>> 2);
  }
  return words;
}

/** Fold whole 16-byte steps starting at the 4-aligned absolute byte offset `at`; returns the new state. */
function foldWords(state: number, w: Int32Array<ArrayBufferLike>, at: number, steps: number): number {
  const t = TABLES;
  let c = state;
  let i = at >>> 2;
  for (let k = 0; k < steps; k++) {
    const a = c ^ w[i]!;
    const b = w[i + 1]!;
    const d = w[i + 2]!;
    const e = w[i + 3]!;
    i += 4;
    c =
      t[3840 + (a & 0xff)]! ^
      t[3584 + ((a >>> 8) & 0xff)]! ^
      t[3328 + ((a >>> 16) & 0xff)]! ^
      t[3072 + (a >>> 24)]! ^
      t[2816 + (b & 0xff)]! ^
      t[2560 + ((b >>> 8) & 0xff)]! ^
      t[2304 + ((b >>> 16) & 0xff)]! ^
      t[2048 + (b >>> 24)]! ^
      t[1792 + (d & 0xff)]! ^
      t[1536 + ((d >>> 8) & 0xff)]! ^
      t[1280 + ((d >>> 16) & 0xff)]! ^
      t[1024 + (d >>> 24)]! ^
      t[768 + (e & 0xff)]! ^
      t[512 + ((e >>> 8) & 0xff)]! ^
      t[256 + ((e >>> 16) & 0xff)]! ^
      t[e >>> 24]!;
  }
  return c;
}

/** Fold whole 16-byte steps from byte loads (big-endian hosts). */
function foldBytes(state: number, bytes: Uint8Array, at: number, steps: number): number {
  const t = TABLES;
  let c = state;
  let i = at;
  for (let k = 0; k < steps; k++) {
    const a = c ^ (bytes[i]! | (bytes[i + 1]! << 8) | (bytes[i + 2]! << 16) | (bytes[i + 3]! << 24));
    c =
      t[3840 + (a & 0xff)]! ^
      t[3584 + ((a >>> 8) & 0xff)]! ^
      t[3328 + ((a >>> 16) & 0xff)]! ^
      t[3072 + (a >>> 24)]! ^
      t[2816 + bytes[i + 4]!]! ^
      t[2560 + bytes[i + 5]!]! ^
      t[2304 + bytes[i + 6]!]! ^
      t[2048 + bytes[i + 7]!]! ^
      t[1792 + bytes[i + 8]!]! ^
      t[1536 + bytes[i + 9]!]! ^
      t[1280 + bytes[i + 10]!]! ^
      t[1024 + bytes[i + 11]!]! ^
      t[768 + bytes[i + 12]!]! ^
      t[512 + bytes[i + 13]!]! ^
      t[256 + bytes[i + 14]!]! ^
      t[bytes[i + 15]!]!;
    i += SLICE_BYTES;
  }
  return c;
}

/**
 * Continue a CRC-32C over `bytes[start, end)`. Chaining holds: `crc32c(a ++ b) === crc32cUpdate(crc32c(a), b)`,
 * which is how the log seeds every record's checksum with its segment's salt.
 */
export function crc32cUpdate(crc: number, bytes: Uint8Array, start = 0, end = bytes.length): number {
  const t = TABLES;
  let c = ~crc;
  let i = start;
  // Bytes one at a time up to a 4-byte boundary of the underlying memory, so that words can be loaded.
  while (i < end && ((bytes.byteOffset + i) & 3) !== 0) c = t[(c ^ bytes[i++]!) & 0xff]! ^ (c >>> 8);
  const steps = (end - i) >>> 4;
  if (steps > 0) {
    const at = bytes.byteOffset + i;
    c = LITTLE_ENDIAN ? foldWords(c, wordsOf(bytes.buffer, at + steps * SLICE_BYTES), at, steps) : foldBytes(c, bytes, i, steps);
    i += steps * SLICE_BYTES;
  }
  while (i < end) c = t[(c ^ bytes[i++]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}

/** CRC-32C of `bytes[start, end)`. */
export function crc32c(bytes: Uint8Array, start = 0, end = bytes.length): number {
  return crc32cUpdate(0, bytes, start, end);
}
