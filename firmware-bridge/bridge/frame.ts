/**
 * Bridge frames (PROTOCOL.md §2-§4): header ‖ CBOR body ‖ CRC-16, COBS-encoded and ended by 0x00.
 * Pure functions over Uint8Array; no I/O, no logging.
 */
import {
  BRIDGE_CRC_LEN,
  BRIDGE_DELIMITER,
  BRIDGE_ENCODED_LEN_MAX,
  BRIDGE_FRAME_LEN_MAX,
  BRIDGE_FRAME_LEN_MIN,
  BRIDGE_HEADER_LEN,
  BRIDGE_OFFSET_SEQ,
  BRIDGE_OFFSET_TYPE,
  BRIDGE_OFFSET_VERSION,
} from './constants.ts';
import { cobsEncodeInto, cobsEncodedLenMax } from './cobs.ts';
import { crc16, CRC16_INIT, CRC16_TABLE } from './crc16.ts';

export interface RawFrame {
  readonly version: number;
  readonly type: number;
  readonly seq: number;
  /** The CBOR body, still encoded. */
  readonly body: Uint8Array;
}

/** Why a frame was dropped at the framing layer; each is a counter name. */
export type FrameDropReason = 'cobs' | 'short' | 'long' | 'crc';

export type FrameDecodeResult = { ok: true; frame: RawFrame } | { ok: false; reason: FrameDropReason };

/** Encode one frame, delimiter included. Throws on a programmer error (oversized body, bad header field). */
export function encodeFrame(frame: RawFrame): Uint8Array {
  assertHeader(frame);
  const rawLength = BRIDGE_HEADER_LEN + frame.body.length + BRIDGE_CRC_LEN;
  if (rawLength > BRIDGE_FRAME_LEN_MAX) {
    throw new RangeError(`bridge frame of ${rawLength} bytes exceeds BRIDGE_FRAME_LEN_MAX (${BRIDGE_FRAME_LEN_MAX})`);
  }
  const raw = new Uint8Array(rawLength);
  raw[BRIDGE_OFFSET_VERSION] = frame.version;
  raw[BRIDGE_OFFSET_TYPE] = frame.type;
  raw[BRIDGE_OFFSET_SEQ] = frame.seq >> 8;
  raw[BRIDGE_OFFSET_SEQ + 1] = frame.seq & 0xff;
  raw.set(frame.body, BRIDGE_HEADER_LEN);
  const crc = crc16(raw, 0, rawLength - BRIDGE_CRC_LEN);
  raw[rawLength - 2] = crc >> 8;
  raw[rawLength - 1] = crc & 0xff;
  const encoded = new Uint8Array(cobsEncodedLenMax(rawLength) + 1);
  const length = cobsEncodeInto(raw, encoded, 0);
  encoded[length] = BRIDGE_DELIMITER;
  return encoded.subarray(0, length + 1);
}

/**
 * Decode one COBS-encoded frame given WITHOUT its delimiter. Never throws; every failure names the
 * counter it belongs to. The returned body is the caller's to keep.
 */
export function decodeFrame(encoded: Uint8Array): FrameDecodeResult {
  const header = decodeFrameToScratch(encoded);
  if (!header.ok) return header;
  const body = new Uint8Array(header.bodyLength);
  for (let index = 0; index < header.bodyLength; index++) body[index] = DECODE_SCRATCH[BRIDGE_HEADER_LEN + index]!;
  return { ok: true, frame: { version: header.version, type: header.type, seq: header.seq, body } };
}

export type ScratchDecodeResult =
  | { ok: true; version: number; type: number; seq: number; bodyLength: number }
  | { ok: false; reason: FrameDropReason };

/**
 * The hot path under decodeFrame: COBS decoding and the CRC in one pass, into a long-lived scratch buffer;
 * the body stays there (see scratchBody) until the next call. The CRC over the whole decoded frame, its own
 * CRC included, is zero when the frame is intact. Decoding into fresh small arrays and taking views of
 * them would make V8 move each one off its heap first, which costs more than the decoding.
 */
export function decodeFrameToScratch(encoded: Uint8Array): ScratchDecodeResult {
  const length = encoded.length;
  if (length > BRIDGE_ENCODED_LEN_MAX) return FAIL_LONG;
  const raw = DECODE_SCRATCH;
  let read = 0;
  let write = 0;
  let crc = CRC16_INIT;
  // The CRC step of crc16Byte, written out: a call per byte costs more than the rest of the loop.
  const table = CRC16_TABLE;
  while (read < length) {
    const code = encoded[read++]!;
    const end = read + code - 1;
    if (code === 0 || end > length) return FAIL_COBS;
    while (read < end) {
      const byte = encoded[read++]!;
      if (byte === 0) return FAIL_COBS;
      raw[write++] = byte;
      crc = ((crc << 8) & 0xff00) ^ table[((crc >> 8) ^ byte) & 0xff]!;
    }
    if (code !== COBS_CODE_FULL_BLOCK && read < length) {
      raw[write++] = 0;
      crc = ((crc << 8) & 0xff00) ^ table[(crc >> 8) & 0xff]!;
    }
  }
  if (write < BRIDGE_FRAME_LEN_MIN) return FAIL_SHORT;
  if (write > BRIDGE_FRAME_LEN_MAX) return FAIL_LONG;
  if (crc !== 0) return FAIL_CRC;
  return {
    ok: true,
    version: raw[BRIDGE_OFFSET_VERSION]!,
    type: raw[BRIDGE_OFFSET_TYPE]!,
    seq: (raw[BRIDGE_OFFSET_SEQ]! << 8) | raw[BRIDGE_OFFSET_SEQ + 1]!,
    bodyLength: write - BRIDGE_HEADER_LEN - BRIDGE_CRC_LEN,
  };
}

/**
 * Scratch for decoding; a COBS-encoded input never decodes to more bytes than it has, so the largest
 * accepted input fits. Decoding is synchronous, so one buffer serves every parser.
 */
const DECODE_SCRATCH = new Uint8Array(BRIDGE_ENCODED_LEN_MAX);
/** One long-lived view of the scratch body per length (see decodeMessage on why views are kept). */
const SCRATCH_BODIES: Uint8Array[] = [];

/** The body left in the scratch buffer by the last successful decodeFrameToScratch, valid until the next call. */
export function scratchBody(bodyLength: number): Uint8Array {
  return (SCRATCH_BODIES[bodyLength] ??= DECODE_SCRATCH.subarray(BRIDGE_HEADER_LEN, BRIDGE_HEADER_LEN + bodyLength));
}

/** A code byte of 0xFF: a full block of 254 bytes with no zero after it (Cheshire & Baker). */
const COBS_CODE_FULL_BLOCK = 0xff;
const FAIL_COBS = Object.freeze({ ok: false, reason: 'cobs' } as const);
const FAIL_SHORT = Object.freeze({ ok: false, reason: 'short' } as const);
const FAIL_LONG = Object.freeze({ ok: false, reason: 'long' } as const);
const FAIL_CRC = Object.freeze({ ok: false, reason: 'crc' } as const);

function assertHeader(frame: RawFrame): void {
  for (const [name, value, max] of [
    ['version', frame.version, 0xff],
    ['type', frame.type, 0xff],
    ['seq', frame.seq, 0xffff],
  ] as const) {
    if (!Number.isInteger(value) || value < 0 || value > max) throw new RangeError(`bridge frame ${name} ${value} is not an integer in 0..${max}`);
  }
}
