/**
 * CRC-16/IBM-3740 (also known as CRC-16/CCITT-FALSE): width 16, polynomial 0x1021, initial value 0xFFFF,
 * no input or output reflection, no final XOR. Its check value over the ASCII bytes "123456789" is 0x29B1
 * (Greg Cook's "Catalogue of parametrised CRC algorithms"). Chosen because every microcontroller SDK and
 * most CRC peripherals (STM32, nRF, ESP-IDF `esp_crc16_be` with ~init) compute it, and its Hamming distance
 * of 4 holds far beyond our 256-byte frames.
 */
export const CRC16_POLY = 0x1021;
export const CRC16_INIT = 0xffff;
export const CRC16_CHECK = 0x29b1;

/** TABLE[b]: the CRC register after shifting byte `b` through it from zero (the classic byte-wise table). */
const TABLE = new Int32Array(256);
/** The byte-wise table, for a decoder that folds the CRC into its own loop (see crc16Byte for the step). */
export const CRC16_TABLE: Readonly<Int32Array> = TABLE;
/**
 * TABLE_HIGH[a]: the same for a byte followed by a zero byte. Because the CRC is linear (XOR-homomorphic),
 * two bytes can be folded in one step: crc' = TABLE_HIGH[(crc >> 8) ^ b0] ^ TABLE[(crc ^ b1) & 0xff]
 * ("slicing by two"), which halves the loop on the decoder's hot path.
 */
const TABLE_HIGH = new Int32Array(256);

for (let byte = 0; byte < 256; byte++) {
  let crc = byte << 8;
  for (let bit = 0; bit < 8; bit++) crc = crc & 0x8000 ? ((crc << 1) ^ CRC16_POLY) & 0xffff : (crc << 1) & 0xffff;
  TABLE[byte] = crc;
}
for (let byte = 0; byte < 256; byte++) {
  const crc = TABLE[byte]!;
  TABLE_HIGH[byte] = ((crc << 8) & 0xffff) ^ TABLE[crc >> 8]!;
}

/**
 * Fold one byte into a running CRC. Appending a frame's own CRC (big-endian) brings the register to 0, since
 * this variant has no final XOR and no reflection: a decoder can run the CRC over the whole frame as it
 * decodes it and compare with zero at the end.
 */
export function crc16Byte(crc: number, byte: number): number {
  return ((crc << 8) & 0xff00) ^ TABLE[((crc >> 8) ^ byte) & 0xff]!;
}

/** CRC of `bytes[start, end)`. */
export function crc16(bytes: Uint8Array, start = 0, end = bytes.length): number {
  let crc = CRC16_INIT;
  let index = start;
  for (; index + 1 < end; index += 2) crc = TABLE_HIGH[((crc >> 8) ^ bytes[index]!) & 0xff]! ^ TABLE[(crc ^ bytes[index + 1]!) & 0xff]!;
  if (index < end) crc = ((crc << 8) & 0xff00) ^ TABLE[((crc >> 8) ^ bytes[index]!) & 0xff]!;
  return crc;
}
