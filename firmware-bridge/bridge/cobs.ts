/**
 * Consistent Overhead Byte Stuffing (Cheshire & Baker, "Consistent Overhead Byte Stuffing", IEEE/ACM
 * Transactions on Networking, 1999). The encoded form contains no zero byte, so a single 0x00 can end a
 * frame and a receiver that joins mid-stream resynchronises at the next zero.
 */

/** Largest run of non-zero bytes one code byte can describe. */
const COBS_BLOCK_LEN_MAX = 254;

/** Upper bound of the encoded length of `length` input bytes: one code byte per full block, plus one. */
export function cobsEncodedLenMax(length: number): number {
  return length + Math.floor(length / COBS_BLOCK_LEN_MAX) + 1;
}

/** Encode `input` into `output` starting at `offset`; returns the number of bytes written. */
export function cobsEncodeInto(input: Uint8Array, output: Uint8Array, offset: number): number {
  let write = offset + 1;
  let codeAt = offset;
  let code = 1;
  for (let read = 0; read < input.length; read++) {
    const byte = input[read]!;
    if (byte === 0) {
      output[codeAt] = code;
      codeAt = write++;
      code = 1;
      continue;
    }
    output[write++] = byte;
    code++;
    if (code === COBS_BLOCK_LEN_MAX + 1) {
      output[codeAt] = code;
      codeAt = write++;
      code = 1;
    }
  }
  output[codeAt] = code;
  return write - offset;
}

export function cobsEncode(input: Uint8Array): Uint8Array {
  const output = new Uint8Array(cobsEncodedLenMax(input.length));
  const length = cobsEncodeInto(input, output, 0);
  return output.subarray(0, length);
}

export type CobsDecodeResult = { ok: true; length: number } | { ok: false; reason: 'cobs' };

/**
 * Decode `input` (without its delimiter) into `output`, which must hold at least `input.length` bytes.
 * Fails on a zero byte inside the input or on a code byte that points past its end: both mean the frame
 * was cut or corrupted on the line.
 */
export function cobsDecodeInto(input: Uint8Array, output: Uint8Array): CobsDecodeResult {
  let read = 0;
  let write = 0;
  while (read < input.length) {
    const code = input[read++]!;
    if (code === 0) return { ok: false, reason: 'cobs' };
    const end = read + code - 1;
    if (end > input.length) return { ok: false, reason: 'cobs' };
    while (read < end) {
      const byte = input[read++]!;
      if (byte === 0) return { ok: false, reason: 'cobs' };
      output[write++] = byte;
    }
    if (code !== COBS_BLOCK_LEN_MAX + 1 && read < input.length) output[write++] = 0;
  }
  return { ok: true, length: write };
}
