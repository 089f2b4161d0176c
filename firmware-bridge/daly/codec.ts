/**
 * Daly BMS legacy UART/RS485 protocol (9600 8N1), from the research notes (`research/power-anchors.md`
 * §2.2: dbus-serialbattery `daly.py`, batmon-ha `daly.py`, esphome/esphome#12445 captures). Every frame is
 * 13 bytes: A5 addr cmd 08 data[8] checksum, where checksum = sum of the first 12 bytes mod 256.
 */
import type { Counters } from '../core/index.ts';

export const DALY_START = 0xa5;
export const DALY_FRAME_LEN = 13;
export const DALY_DATA_LEN = 8;
export const DALY_OFFSET_ADDRESS = 1;
export const DALY_OFFSET_COMMAND = 2;
export const DALY_OFFSET_LENGTH = 3;
export const DALY_OFFSET_DATA = 4;
/** Host address for UART/RS485 is 0x40 for board 1 (0x41 for board 2, batmon-ha#398). */
export const DALY_HOST_ADDRESS = 0x40;
/** The BMS answers from address 0x01. */
export const DALY_BMS_ADDRESS = 0x01;
/**
 * Fill byte of a request's unused data: Daly's UART resyncs on edges and an all-zero payload gives it none,
 * so 0xAA is answered more reliably on a wire (dbus-serialbattery and batmon-ha both switched to it).
 */
export const DALY_FILL = 0xaa;
/** Current is sent with a 30000 offset in 0.1 A (`daly.py`). */
const DALY_CURRENT_OFFSET = 30000;
/** Temperatures are sent with a +40 °C offset. */
const DALY_TEMPERATURE_OFFSET_C = 40;

export const DalyCommand = {
  SOC: 0x90,
  CELL_MINMAX: 0x91,
  TEMP_MINMAX: 0x92,
  MOS: 0x93,
  STATUS: 0x94,
  CELLS: 0x95,
  TEMPERATURES: 0x96,
  BALANCE: 0x97,
  FAILURES: 0x98,
} as const;

/**
 * Names of the first three bytes of the 0x98 failure bitmap (cell and pack voltage, temperature, current and
 * charge levels, two severity levels each), as tabled in Daly's UART protocol sheet; later bytes are
 * reported by position.
 */
const DALY_FAILURE_NAMES: readonly (readonly string[])[] = [
  ['cell-ov-1', 'cell-ov-2', 'cell-uv-1', 'cell-uv-2', 'pack-ov-1', 'pack-ov-2', 'pack-uv-1', 'pack-uv-2'],
  ['charge-ot-1', 'charge-ot-2', 'charge-ut-1', 'charge-ut-2', 'discharge-ot-1', 'discharge-ot-2', 'discharge-ut-1', 'discharge-ut-2'],
  ['charge-oc-1', 'charge-oc-2', 'discharge-oc-1', 'discharge-oc-2', 'soc-high-1', 'soc-high-2', 'soc-low-1', 'soc-low-2'],
];

export function dalyChecksum(bytes: Uint8Array, end = DALY_FRAME_LEN - 1): number {
  let sum = 0;
  for (let index = 0; index < end; index++) sum += bytes[index]!;
  return sum & 0xff;
}

/** A read request: A5 40 cmd 08, eight fill bytes, checksum. */
export function dalyRequest(command: number, options: { address?: number; fill?: number } = {}): Uint8Array {
  const frame = new Uint8Array(DALY_FRAME_LEN).fill(options.fill ?? DALY_FILL);
  frame[0] = DALY_START;
  frame[DALY_OFFSET_ADDRESS] = options.address ?? DALY_HOST_ADDRESS;
  frame[DALY_OFFSET_COMMAND] = command;
  frame[DALY_OFFSET_LENGTH] = DALY_DATA_LEN;
  frame[DALY_FRAME_LEN - 1] = dalyChecksum(frame);
  return frame;
}

export interface DalyFrame {
  readonly address: number;
  readonly command: number;
  readonly data: Uint8Array;
}

export type DalyDropReason = 'length' | 'checksum';
export type DalyFrameResult = { ok: true; frame: DalyFrame } | { ok: false; reason: DalyDropReason };

export function decodeDalyFrame(bytes: Uint8Array): DalyFrameResult {
  if (bytes[DALY_OFFSET_LENGTH] !== DALY_DATA_LEN) return { ok: false, reason: 'length' };
  if (dalyChecksum(bytes) !== bytes[DALY_FRAME_LEN - 1]) return { ok: false, reason: 'checksum' };
  return {
    ok: true,
    frame: { address: bytes[DALY_OFFSET_ADDRESS]!, command: bytes[DALY_OFFSET_COMMAND]!, data: bytes.slice(DALY_OFFSET_DATA, DALY_OFFSET_DATA + DALY_DATA_LEN) },
  };
}

/** A big-endian u16 at `offset`. */
function u16(data: Uint8Array, offset: number): number {
  return (data[offset]! << 8) | data[offset + 1]!;
}

function view(data: Uint8Array): DataView {
  return new DataView(data.buffer, data.byteOffset, data.byteLength);
}

export interface DalySoc {
  readonly packMv: number;
  /** (raw − 30000) × 100 mA: positive = charging as Daly's sheet and batmon-ha read it; dbus-serialbattery flips it. */
  readonly currentMa: number;
  readonly socPercent: number;
}

/** 0x90: total voltage ×0.1 V, acquisition voltage, current (30000 offset, 0.1 A), SOC ×0.1 %. */
export function decodeDalySoc(data: Uint8Array): DalySoc {
  return { packMv: u16(data, 0) * 100, currentMa: (u16(data, 4) - DALY_CURRENT_OFFSET) * 100, socPercent: u16(data, 6) / 10 };
}

/** 0x91: highest cell mV and its number, lowest cell mV and its number. */
export function decodeDalyCellMinMax(data: Uint8Array): { maxMv: number; maxCell: number; minMv: number; minCell: number } {
  const v = view(data);
  return { maxMv: v.getUint16(0), maxCell: v.getUint8(2), minMv: v.getUint16(3), minCell: v.getUint8(5) };
}

/** 0x92: highest temperature and its sensor, lowest and its sensor (°C with +40 offset). */
export function decodeDalyTemperatureMinMax(data: Uint8Array): { maxC: number; maxSensor: number; minC: number; minSensor: number } {
  return { maxC: data[0]! - DALY_TEMPERATURE_OFFSET_C, maxSensor: data[1]!, minC: data[2]! - DALY_TEMPERATURE_OFFSET_C, minSensor: data[3]! };
}

/** 0x93: state (0 stationary, 1 charging, 2 discharging), charge MOS, discharge MOS, life, remaining mAh. */
export function decodeDalyMos(data: Uint8Array): { state: 'stationary' | 'charging' | 'discharging' | 'unknown'; chargeMos: boolean; dischargeMos: boolean; life: number; remainingMah: number } {
  const v = view(data);
  const states = ['stationary', 'charging', 'discharging'] as const;
  return { state: states[v.getUint8(0)] ?? 'unknown', chargeMos: v.getUint8(1) !== 0, dischargeMos: v.getUint8(2) !== 0, life: v.getUint8(3), remainingMah: v.getInt32(4) };
}

/** 0x94: number of cells, of temperature sensors, charger and load flags, DIO bits, cycles. */
export function decodeDalyStatus(data: Uint8Array): { cells: number; sensors: number; charger: boolean; load: boolean; dio: number; cycles: number } {
  const v = view(data);
  return { cells: v.getUint8(0), sensors: v.getUint8(1), charger: v.getUint8(2) !== 0, load: v.getUint8(3) !== 0, dio: v.getUint8(4), cycles: v.getUint16(5) };
}

/** 0x95: one frame per three cells: frame number (from 1), three cell voltages in mV. */
export function decodeDalyCells(data: Uint8Array): { frameNumber: number; cellMv: [number, number, number] } {
  const v = view(data);
  return { frameNumber: v.getUint8(0), cellMv: [v.getUint16(1), v.getUint16(3), v.getUint16(5)] };
}

/** 0x96: one frame per seven sensors: frame number, seven temperatures (°C, +40 offset). */
export function decodeDalyTemperatures(data: Uint8Array): { frameNumber: number; temperaturesC: number[] } {
  return { frameNumber: data[0]!, temperaturesC: Array.from(data.subarray(1, 8), (raw) => raw - DALY_TEMPERATURE_OFFSET_C) };
}

/** 0x98: failure bitmap; named for bytes 0-2, by position for the rest. */
export function decodeDalyFailures(data: Uint8Array): string[] {
  const alarms: string[] = [];
  for (let byte = 0; byte < 7; byte++) {
    for (let bit = 0; bit < 8; bit++) {
      if ((data[byte]! & (1 << bit)) === 0) continue;
      alarms.push(DALY_FAILURE_NAMES[byte]?.[bit] ?? `fault-${byte}.${bit}`);
    }
  }
  return alarms;
}

/**
 * Finds 13-byte Daly frames in a byte stream: resync on 0xA5, check the length byte and the checksum; a
 * failed candidate drops one byte so that a frame starting inside it is still found (research notes: "resync
 * on A5"). Memory is bounded by one frame.
 */
export class DalyAccumulator {
  private readonly buffer = new Uint8Array(DALY_FRAME_LEN);
  private length = 0;

  constructor(private readonly counters: Counters, private readonly onFrame: (frame: DalyFrame) => void) {}

  get buffered(): number {
    return this.length;
  }

  push(chunk: Uint8Array): void {
    this.counters.add('rx.bytes', chunk.length);
    this.feed(chunk);
  }

  private feed(chunk: Uint8Array): void {
    for (let offset = 0; offset < chunk.length; ) {
      if (this.length === 0) {
        const start = chunk.indexOf(DALY_START, offset);
        const skip = (start === -1 ? chunk.length : start) - offset;
        if (skip > 0) this.counters.drop('resync', skip);
        if (start === -1) return;
        offset = start;
        if (chunk.length - start >= DALY_FRAME_LEN) {
          // Fast path: a whole frame inside the chunk is checked where it lies, without a copy.
          offset = this.complete(chunk.subarray(start, start + DALY_FRAME_LEN), start);
          continue;
        }
      }
      const take = Math.min(DALY_FRAME_LEN - this.length, chunk.length - offset);
      this.buffer.set(chunk.subarray(offset, offset + take), this.length);
      this.length += take;
      offset += take;
      if (this.length === DALY_FRAME_LEN) {
        this.length = 0;
        this.complete(this.buffer, 0);
      }
    }
  }

  /**
   * Check a 13-byte candidate at `at`; returns where scanning continues in the chunk. A failed candidate
   * drops its start byte: in the chunk, scanning resumes one byte later; from the buffer, its other twelve
   * bytes are scanned again for the next start marker.
   */
  private complete(candidate: Uint8Array, at: number): number {
    const result = decodeDalyFrame(candidate);
    if (result.ok) {
      this.counters.add('rx.frames');
      this.counters.add('rx.frame-bytes', DALY_FRAME_LEN);
      this.onFrame(result.frame);
      return at + DALY_FRAME_LEN;
    }
    this.counters.drop(result.reason, 1);
    if (candidate === this.buffer) this.feed(this.buffer.slice(1, DALY_FRAME_LEN));
    return at + 1;
  }

  flush(): void {
    if (this.length > 0) this.counters.drop('truncated', this.length);
    this.length = 0;
  }
}
