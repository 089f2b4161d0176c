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
import { cobsDecodeInto, cobsEncodeInto, cobsEncodedLenMax } from './cobs.ts';
import { crc16 } from './crc16.ts';

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
 * counter it belongs to.
 */
export function decodeFrame(encoded: Uint8Array): FrameDecodeResult {
  if (encoded.length > BRIDGE_ENCODED_LEN_MAX) return { ok: false, reason: 'long' };
  const raw = new Uint8Array(encoded.length);
  const cobs = cobsDecodeInto(encoded, raw);
  if (!cobs.ok) return cobs;
  const length = cobs.length;
  if (length < BRIDGE_FRAME_LEN_MIN) return { ok: false, reason: 'short' };
  if (length > BRIDGE_FRAME_LEN_MAX) return { ok: false, reason: 'long' };
  const expected = (raw[length - 2]! << 8) | raw[length - 1]!;
  if (crc16(raw, 0, length - BRIDGE_CRC_LEN) !== expected) return { ok: false, reason: 'crc' };
  return {
    ok: true,
    frame: {
      version: raw[BRIDGE_OFFSET_VERSION]!,
      type: raw[BRIDGE_OFFSET_TYPE]!,
      seq: (raw[BRIDGE_OFFSET_SEQ]! << 8) | raw[BRIDGE_OFFSET_SEQ + 1]!,
      body: raw.subarray(BRIDGE_HEADER_LEN, length - BRIDGE_CRC_LEN),
    },
  };
}

function assertHeader(frame: RawFrame): void {
  for (const [name, value, max] of [
    ['version', frame.version, 0xff],
    ['type', frame.type, 0xff],
    ['seq', frame.seq, 0xffff],
  ] as const) {
    if (!Number.isInteger(value) || value < 0 || value > max) throw new RangeError(`bridge frame ${name} ${value} is not an integer in 0..${max}`);
  }
}
