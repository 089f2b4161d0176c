// Where an encoded wire envelope (agent/replication/wire.ts) keeps its CRC value, for tests that change it
// alone: the signature covers the body, not the CRC, so such a change tells what a receiver checks.
import assert from 'node:assert/strict';

/** The CBOR text "crc" as the envelope's key. */
const CRC_KEY = [0x63, 0x63, 0x72, 0x63];

/** Positions of the bytes of the envelope's CRC value (after its key and its unsigned-integer head). */
export function crcValueBytes(bytes: Uint8Array): number[] {
  const key = Buffer.from(bytes).indexOf(Buffer.from(CRC_KEY));
  assert.ok(key > 0, 'the envelope has its "crc" key');
  const head = bytes[key + CRC_KEY.length]!;
  const length = head === 0x1a ? 4 : head === 0x19 ? 2 : head === 0x18 ? 1 : 0;
  return Array.from({ length }, (_, index) => key + CRC_KEY.length + 1 + index);
}
