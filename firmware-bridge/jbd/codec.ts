/**
 * JBD / Xiaoxiang "Smart BMS" UART protocol (9600 8N1), as documented in the research notes
 * (`research/power-anchors.md` §2.1, read from dbus-serialbattery `lltjbd.py` and batmon-ha `jbd.py`).
 * Pure codec: requests, a resyncing bounded accumulator, and decoders for registers 0x03, 0x04, 0x05.
 */
import type { Counters } from '../core/index.ts';

/** Start and end markers of every JBD frame. */
export const JBD_START = 0xdd;
export const JBD_END = 0x77;
/** Operation byte of a read request (a write uses 0x5A). */
export const JBD_OP_READ = 0xa5;
/** Registers: basic info, cell voltages, hardware (model string). */
export const JBD_REG_BASIC = 0x03;
export const JBD_REG_CELLS = 0x04;
export const JBD_REG_HARDWARE = 0x05;
/** Response layout: DD reg status len data[len] chk_hi chk_lo 77. */
export const JBD_OFFSET_REGISTER = 1;
export const JBD_OFFSET_STATUS = 2;
export const JBD_OFFSET_LENGTH = 3;
export const JBD_HEADER_LEN = 4;
/** Checksum (2) and end marker (1) after the data. */
export const JBD_TRAILER_LEN = 3;
export const JBD_FRAME_LEN_MIN = JBD_HEADER_LEN + JBD_TRAILER_LEN;
/**
 * Longest data a JBD register carries: 32 cells × 2 bytes in register 0x04 (the largest JBD boards have 32
 * series cells); basic info with 8 NTCs is 39 bytes and the model string about 30. A length byte above this is
 * garbage, rejected at once instead of waiting for up to 255 bytes that would hide the next real frame.
 */
export const JBD_DATA_LEN_MAX = 64;
export const JBD_FRAME_LEN_MAX = JBD_DATA_LEN_MAX + JBD_FRAME_LEN_MIN;
/** Status byte 0x00 means the read succeeded; anything else is an error answer. */
export const JBD_STATUS_OK = 0x00;
/** Basic info payload: fixed part before the NTC values (offset of the first NTC, `unpack_from(">HhHHHHhHHBBBBB")`). */
export const JBD_BASIC_FIXED_LEN = 23;
/** NTC temperatures are in 0.1 K; 2731 is 0 °C (dbus-serialbattery `lltjbd.py`). */
const JBD_NTC_ZERO_DECI_K = 2731;

/**
 * Protection bits of basic info offset 16. Bits 2..7 are confirmed by dbus-serialbattery's
 * `to_protection_bits`; the others follow the JBD protocol sheet those drivers were written from.
 */
export const JBD_PROTECTION_ALARMS = [
  'cell-ov', 'cell-uv', 'pack-ov', 'pack-uv', 'charge-ot', 'charge-ut', 'discharge-ot', 'discharge-ut',
  'charge-oc', 'discharge-oc', 'short-circuit', 'ic-error', 'mos-lock',
] as const;

/** Checksum: 0x10000 minus the byte sum, big-endian (`lltjbd.py: checksum()`). */
export function jbdChecksum(bytes: Uint8Array, start: number, end: number): number {
  let sum = 0;
  for (let index = start; index < end; index++) sum += bytes[index]!;
  return (0x10000 - sum) & 0xffff;
}

/** A read request: DD A5 reg 00 chk_hi chk_lo 77 (e.g. DD A5 03 00 FF FD 77). */
export function jbdReadRequest(register: number): Uint8Array {
  const frame = Uint8Array.of(JBD_START, JBD_OP_READ, register, 0x00, 0, 0, JBD_END);
  const checksum = jbdChecksum(frame, 2, 4);
  frame[4] = checksum >> 8;
  frame[5] = checksum & 0xff;
  return frame;
}

/**
 * One frame. A response and a request share the layout and the checksum rule (sum from byte 2 to the end
 * of the data), so the same accumulator reads both: in a response byte 1 is the register answered and byte
 * 2 the status; in a request byte 1 is the operation (A5 read, 5A write) and byte 2 the register.
 */
export interface JbdFrame {
  /** Byte 1: the register answered (some printed captures show A5 there; the checksum does not cover it). */
  readonly register: number;
  /** Byte 2: 0x00 when the read succeeded. */
  readonly status: number;
  readonly data: Uint8Array;
}

export type JbdDropReason = 'checksum' | 'end' | 'length';
export type JbdFrameResult = { ok: true; frame: JbdFrame } | { ok: false; reason: JbdDropReason };

/** Decode one complete frame (start to end marker). */
export function decodeJbdFrame(bytes: Uint8Array): JbdFrameResult {
  const length = bytes[JBD_OFFSET_LENGTH]!;
  if (length > JBD_DATA_LEN_MAX || bytes.length < length + JBD_FRAME_LEN_MIN) return { ok: false, reason: 'length' };
  const end = JBD_HEADER_LEN + length;
  if (bytes[end + 2] !== JBD_END) return { ok: false, reason: 'end' };
  const expected = (bytes[end]! << 8) | bytes[end + 1]!;
  if (jbdChecksum(bytes, JBD_OFFSET_STATUS, end) !== expected) return { ok: false, reason: 'checksum' };
  return { ok: true, frame: { register: bytes[JBD_OFFSET_REGISTER]!, status: bytes[JBD_OFFSET_STATUS]!, data: bytes.slice(JBD_HEADER_LEN, end) } };
}

export interface JbdBasicInfo {
  readonly packMv: number;
  /** Positive charging, negative discharging: JBD reports it so (dbus-serialbattery's Victron convention). */
  readonly currentMa: number;
  readonly remainingMah: number;
  readonly nominalMah: number;
  readonly cycles: number;
  readonly protectionBits: number;
  readonly alarms: readonly string[];
  readonly version: number;
  readonly socPercent: number;
  readonly chargeFetOn: boolean;
  readonly dischargeFetOn: boolean;
  readonly cellCount: number;
  readonly temperaturesC: readonly number[];
}

export type JbdDecodeResult<T> = { ok: true; value: T } | { ok: false; reason: 'length' };

/** A big-endian u16 at `offset`. */
function u16(data: Uint8Array, offset: number): number {
  return (data[offset]! << 8) | data[offset + 1]!;
}

/** Register 0x03. Every multi-byte value is big-endian; units as in the research notes §2.1. */
export function decodeJbdBasic(data: Uint8Array): JbdDecodeResult<JbdBasicInfo> {
  if (data.length < JBD_BASIC_FIXED_LEN) return { ok: false, reason: 'length' };
  const ntcCount = data[22]!;
  if (data.length < JBD_BASIC_FIXED_LEN + 2 * ntcCount) return { ok: false, reason: 'length' };
  const protectionBits = u16(data, 16);
  const alarms: string[] = [];
  for (let bit = 0; protectionBits !== 0 && bit < JBD_PROTECTION_ALARMS.length; bit++) if ((protectionBits & (1 << bit)) !== 0) alarms.push(JBD_PROTECTION_ALARMS[bit]!);
  const temperaturesC: number[] = [];
  for (let index = 0; index < ntcCount; index++) temperaturesC.push((u16(data, JBD_BASIC_FIXED_LEN + 2 * index) - JBD_NTC_ZERO_DECI_K) / 10);
  const fet = data[20]!;
  return {
    ok: true,
    value: {
      packMv: u16(data, 0) * 10,
      // Signed 16-bit: shift into the top of an int32 and back.
      currentMa: ((u16(data, 2) << 16) >> 16) * 10,
      remainingMah: u16(data, 4) * 10,
      nominalMah: u16(data, 6) * 10,
      cycles: u16(data, 8),
      protectionBits,
      alarms,
      version: data[18]!,
      socPercent: data[19]!,
      chargeFetOn: (fet & 0x01) !== 0,
      dischargeFetOn: (fet & 0x02) !== 0,
      cellCount: data[21]!,
      temperaturesC,
    },
  };
}

/** Register 0x04: N × u16 mV. */
export function decodeJbdCells(data: Uint8Array): JbdDecodeResult<number[]> {
  if (data.length % 2 !== 0) return { ok: false, reason: 'length' };
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  return { ok: true, value: Array.from({ length: data.length / 2 }, (_, index) => view.getUint16(2 * index)) };
}

/** Register 0x05: the model string, ASCII. */
export function decodeJbdHardware(data: Uint8Array): JbdDecodeResult<string> {
  return { ok: true, value: String.fromCharCode(...data) };
}

/**
 * Finds JBD frames in a byte stream: resync on 0xDD, read the length, wait for the whole frame, decode.
 * Bytes before a start marker are dropped as `resync`; a candidate that fails is dropped one byte at a time
 * so that a real frame starting inside it is still found. Memory is bounded by JBD_FRAME_LEN_MAX.
 */
export class JbdAccumulator {
  private readonly buffer = new Uint8Array(JBD_FRAME_LEN_MAX);
  private length = 0;

  constructor(private readonly counters: Counters, private readonly onFrame: (frame: JbdFrame) => void) {}

  get buffered(): number {
    return this.length;
  }

  push(chunk: Uint8Array): void {
    this.counters.add('rx.bytes', chunk.length);
    let offset = 0;
    while (offset < chunk.length) {
      if (this.length === 0) {
        offset = this.scanChunk(chunk, offset);
        continue;
      }
      const take = Math.min(this.buffer.length - this.length, chunk.length - offset);
      this.buffer.set(chunk.subarray(offset, offset + take), this.length);
      this.length += take;
      offset += take;
      this.scan();
    }
  }

  /**
   * Fast path while nothing is buffered: find and decode frames inside the chunk itself, without copying;
   * only a trailing partial frame is copied into the buffer. Returns the offset reached.
   */
  private scanChunk(chunk: Uint8Array, from: number): number {
    let offset = from;
    while (offset < chunk.length) {
      const start = chunk.indexOf(JBD_START, offset);
      if (start === -1) {
        this.counters.drop('resync', chunk.length - offset);
        return chunk.length;
      }
      if (start > offset) this.counters.drop('resync', start - offset);
      const available = chunk.length - start;
      if (available < JBD_HEADER_LEN) return this.keep(chunk, start);
      const dataLength = chunk[start + JBD_OFFSET_LENGTH]!;
      if (dataLength > JBD_DATA_LEN_MAX) {
        this.counters.drop('length', 1);
        offset = start + 1;
        continue;
      }
      const total = dataLength + JBD_FRAME_LEN_MIN;
      if (available < total) return this.keep(chunk, start);
      const result = decodeJbdFrame(chunk.subarray(start, start + total));
      if (result.ok) {
        this.counters.add('rx.frames');
        this.counters.add('rx.frame-bytes', total);
        this.onFrame(result.frame);
        offset = start + total;
      } else {
        this.counters.drop(result.reason, 1);
        offset = start + 1;
      }
    }
    return offset;
  }

  /** Copy the partial frame at the end of a chunk into the buffer (it is shorter than JBD_FRAME_LEN_MAX). */
  private keep(chunk: Uint8Array, start: number): number {
    this.buffer.set(chunk.subarray(start), 0);
    this.length = chunk.length - start;
    return chunk.length;
  }

  flush(): void {
    if (this.length > 0) this.counters.drop('truncated', this.length);
    this.length = 0;
  }

  private scan(): void {
    for (;;) {
      const start = this.buffer.subarray(0, this.length).indexOf(JBD_START);
      if (start === -1) return this.discard(this.length, 'resync');
      if (start > 0) this.discard(start, 'resync');
      if (this.length < JBD_HEADER_LEN) return;
      const dataLength = this.buffer[JBD_OFFSET_LENGTH]!;
      if (dataLength > JBD_DATA_LEN_MAX) {
        this.discard(1, 'length');
        continue;
      }
      const total = dataLength + JBD_FRAME_LEN_MIN;
      if (this.length < total) return;
      const result = decodeJbdFrame(this.buffer.subarray(0, total));
      if (result.ok) {
        this.counters.add('rx.frames');
        this.counters.add('rx.frame-bytes', total);
        this.discard(total);
        this.onFrame(result.frame);
      } else {
        this.discard(1, result.reason);
      }
    }
  }

  private discard(count: number, reason?: string): void {
    if (count === 0) return;
    if (reason) this.counters.drop(reason, count);
    this.buffer.copyWithin(0, count, this.length);
    this.length -= count;
  }
}
