/**
 * CRC-32C (Castagnoli, reflected polynomial 0x82F63B78, RFC 3720 appendix B.4), the checksum that
 * RocksDB, Kafka (RecordBatch v2) and etcd put on their log records. Table-driven slicing-by-8 over a
 * Uint8Array: eight 256-entry tables let the loop fold eight bytes per step, which in pure TypeScript is
 * several times faster than the byte-at-a-time loop, and needs neither a native addon nor WASM, so it runs
 * unchanged on Node and Deno.
 */

/** Reflected Castagnoli polynomial (RFC 3720 B.4). */
const CRC32C_POLYNOMIAL = 0x82f63b78;
/** CRC-32C of the ASCII string "123456789", the catalogue check value (RFC 3720 B.4, CRC RevEng "CRC-32/ISCSI"). */
export const CRC32C_CHECK_VALUE = 0xe3069283;

const TABLES = buildTables();

function buildTables(): Uint32Array {
  const tables = new Uint32Array(256 * 8);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ CRC32C_POLYNOMIAL : c >>> 1;
    tables[n] = c >>> 0;
  }
  for (let n = 0; n < 256; n++) {
    let c = tables[n]!;
    for (let slice = 1; slice < 8; slice++) {
      c = (tables[c & 0xff]! ^ (c >>> 8)) >>> 0;
      tables[slice * 256 + n] = c;
    }
  }
  return tables;
}

/**
 * Continue a CRC-32C over `bytes[start, end)`. Chaining holds: `crc32c(a ++ b) === crc32cUpdate(crc32c(a), b)`,
 * which is how the log seeds every record's checksum with its segment's salt.
 */
export function crc32cUpdate(crc: number, bytes: Uint8Array, start = 0, end = bytes.length): number {
  const t = TABLES;
  let c = (crc ^ 0xffffffff) >>> 0;
  let i = start;
  const end8 = end - 8;
  while (i <= end8) {
    const lo = c ^ (bytes[i]! | (bytes[i + 1]! << 8) | (bytes[i + 2]! << 16) | (bytes[i + 3]! << 24));
    c =
      t[1792 + (lo & 0xff)]! ^
      t[1536 + ((lo >>> 8) & 0xff)]! ^
      t[1280 + ((lo >>> 16) & 0xff)]! ^
      t[1024 + (lo >>> 24)]! ^
      t[768 + bytes[i + 4]!]! ^
      t[512 + bytes[i + 5]!]! ^
      t[256 + bytes[i + 6]!]! ^
      t[bytes[i + 7]!]!;
    i += 8;
  }
  while (i < end) c = t[(c ^ bytes[i++]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** CRC-32C of `bytes[start, end)`. */
export function crc32c(bytes: Uint8Array, start = 0, end = bytes.length): number {
  return crc32cUpdate(0, bytes, start, end);
}
