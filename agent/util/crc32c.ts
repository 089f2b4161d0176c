/**
 * CRC-32C (Castagnoli, reflected polynomial 0x82F63B78, init and xor-out 0xFFFFFFFF), the checksum of
 * iSCSI, ext4 metadata, Kafka and RocksDB. Check value: crc32c("123456789") = 0xE3069283.
 * Slicing-by-8: eight 256-entry tables let the loop consume 8 bytes per step.
 */
const POLY = 0x82f63b78;
const TABLES = buildTables();

function buildTables(): Uint32Array[] {
  const tables = Array.from({ length: 8 }, () => new Uint32Array(256));
  const first = tables[0]!;
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ POLY : c >>> 1;
    first[n] = c >>> 0;
  }
  for (let n = 0; n < 256; n++) {
    let c = first[n]!;
    for (let t = 1; t < 8; t++) {
      c = first[c & 0xff]! ^ (c >>> 8);
      tables[t]![n] = c >>> 0;
    }
  }
  return tables;
}

/** CRC-32C of `bytes[start, end)`, continuing from `previous` (the CRC of what came before, or 0). */
export function crc32c(bytes: Uint8Array, previous = 0, start = 0, end = bytes.length): number {
  const [t0, t1, t2, t3, t4, t5, t6, t7] = TABLES as [Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array];
  let crc = ~previous >>> 0;
  let index = start;
  while (end - index >= 8) {
    const low = (crc ^ (bytes[index]! | (bytes[index + 1]! << 8) | (bytes[index + 2]! << 16) | (bytes[index + 3]! << 24))) >>> 0;
    crc =
      t7[low & 0xff]! ^
      t6[(low >>> 8) & 0xff]! ^
      t5[(low >>> 16) & 0xff]! ^
      t4[low >>> 24]! ^
      t3[bytes[index + 4]!]! ^
      t2[bytes[index + 5]!]! ^
      t1[bytes[index + 6]!]! ^
      t0[bytes[index + 7]!]!;
    index += 8;
  }
  while (index < end) crc = t0[(crc ^ bytes[index++]!) & 0xff]! ^ (crc >>> 8);
  return ~crc >>> 0;
}
