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

const TABLE = buildTable();

function buildTable(): Uint16Array {
  const table = new Uint16Array(256);
  for (let byte = 0; byte < 256; byte++) {
    let crc = byte << 8;
    for (let bit = 0; bit < 8; bit++) crc = crc & 0x8000 ? ((crc << 1) ^ CRC16_POLY) & 0xffff : (crc << 1) & 0xffff;
    table[byte] = crc;
  }
  return table;
}

/** CRC of `bytes[start, end)`. */
export function crc16(bytes: Uint8Array, start = 0, end = bytes.length): number {
  let crc = CRC16_INIT;
  for (let index = start; index < end; index++) crc = ((crc << 8) & 0xff00) ^ TABLE[((crc >> 8) ^ bytes[index]!) & 0xff]!;
  return crc;
}
