/**
 * The message catalogue of the bridge protocol (PROTOCOL.md §6): typed messages, and their encoding as CBOR
 * bodies (decoding is in message-decode.ts),
 * which are maps with small unsigned integer keys so that a controller can build them with a few lines of
 * C (tinycbor, nanocbor, QCBOR) and unknown keys can be added later without breaking older readers.
 */
import { Encoder } from 'cbor-x';
import type { PowerEventKind } from '../core/index.ts';
import {
  BRIDGE_BODY_LEN_MAX,
  BRIDGE_VERSION_HANDSHAKE,
  BRIDGE_VERSION_MIN,
  MessageType,
  NakReason,
  PowerEventCode,
  type NakReasonName,
} from './constants.ts';
import { encodeFrame } from './frame.ts';

export interface HelloMessage {
  readonly type: 'hello';
  readonly versionMin: number;
  readonly versionMax: number;
  /** How often the host will send HEARTBEAT; the device's watchdog expires after three missed ones. */
  readonly heartbeatMs: number;
  readonly agent?: string;
}
export interface CapabilitiesMessage {
  readonly type: 'capabilities';
  /** Seq of the HELLO this answers; it doubles as that HELLO's acknowledgement. */
  readonly helloSeq: number;
  /** The negotiated protocol version, used in every later header. */
  readonly version: number;
  readonly model?: string;
  readonly firmware?: string;
  /** `Feature` bits. */
  readonly features: number;
  readonly telemetryMs: number;
  readonly heartbeatMs: number;
  readonly watchdogMs: number;
  readonly holdMsMax: number;
  readonly frameLenMax: number;
}
export interface TelemetryMessage {
  readonly type: 'telemetry';
  readonly acPresent?: boolean;
  /** State of charge in tenths of a percent (0..1000), so that the body stays integer-only. */
  readonly socPermille?: number;
  readonly runtimeS?: number;
  readonly packMv?: number;
  /** Positive into the pack (charging), negative out of it, as PowerStatus.currentMa. */
  readonly currentMa?: number;
  readonly cellMv?: readonly number[];
  /** Temperatures in tenths of a degree Celsius. */
  readonly temperaturesDeciC?: readonly number[];
  readonly lowBattery?: boolean;
  readonly alarms?: readonly string[];
  readonly uptimeMs?: number;
}
export interface PowerEventMessage {
  readonly type: 'power-event';
  readonly kind: PowerEventKind;
  /** The controller's estimate of how long it can still keep the gateway powered. */
  readonly holdUpMs?: number;
  readonly detail?: string;
}
export interface HeartbeatMessage {
  readonly type: 'heartbeat';
  readonly uptimeMs?: number;
}
export interface HoldMessage {
  readonly type: 'hold';
  readonly durationMs: number;
}
export interface CutMessage {
  readonly type: 'cut';
  readonly delayMs: number;
}
export interface CancelMessage {
  readonly type: 'cancel';
}
export interface AckMessage {
  readonly type: 'ack';
  readonly ackSeq: number;
  readonly ackType: number;
}
export interface NakMessage {
  readonly type: 'nak';
  readonly nakSeq: number;
  readonly nakType: number;
  /** A reason name, or the raw code when it is one this implementation does not know. */
  readonly reason: NakReasonName | number;
  readonly detail?: string;
  readonly versionMin?: number;
  readonly versionMax?: number;
}

export type BridgeMessage =
  | HelloMessage
  | CapabilitiesMessage
  | TelemetryMessage
  | PowerEventMessage
  | HeartbeatMessage
  | HoldMessage
  | CutMessage
  | CancelMessage
  | AckMessage
  | NakMessage;

export type BridgeMessageName = BridgeMessage['type'];

export interface BridgeFrame {
  readonly version: number;
  readonly seq: number;
  readonly message: BridgeMessage;
}

/** Why a well-framed message was dropped; each is a counter name. */
export type MessageDropReason = 'version' | 'type' | 'body';

export type MessageDecodeResult =
  | { ok: true; frame: BridgeFrame }
  | { ok: false; reason: MessageDropReason; type: number; seq: number; version: number };

export const MESSAGE_TYPE_BY_NAME: Readonly<Record<BridgeMessageName, number>> = {
  hello: MessageType.HELLO,
  capabilities: MessageType.CAPABILITIES,
  telemetry: MessageType.TELEMETRY,
  'power-event': MessageType.POWER_EVENT,
  heartbeat: MessageType.HEARTBEAT,
  hold: MessageType.HOLD,
  cut: MessageType.CUT,
  cancel: MessageType.CANCEL,
  ack: MessageType.ACK,
  nak: MessageType.NAK,
};

/** Messages the receiver must acknowledge and the sender retransmits (§8). */
export const RELIABLE_TYPES: ReadonlySet<number> = new Set([
  MessageType.HELLO,
  MessageType.POWER_EVENT,
  MessageType.HOLD,
  MessageType.CUT,
  MessageType.CANCEL,
]);

/** Longest text field (model, firmware, detail, alarm name) accepted, in UTF-16 units. */
export const TEXT_LEN_MAX = 64;
/** Longest cell or temperature list: 32 series cells is beyond every pack the drivers know. */
export const LIST_LEN_MAX = 32;
export const U16_MAX = 0xffff;
export const U32_MAX = 0xffffffff;
export const I32_MIN = -0x80000000;
export const I32_MAX = 0x7fffffff;

const encoder = new Encoder({ useRecords: false, mapsAsObjects: false, variableMapSize: true, tagUint8Array: false, pack: false });

/** The version a message travels with: handshake messages always use version 1 (§7). */
export function headerVersionFor(message: BridgeMessage, negotiated: number): number {
  return message.type === 'hello' || message.type === 'capabilities' ? BRIDGE_VERSION_HANDSHAKE : negotiated;
}

/** Encode a message body as CBOR. Throws RangeError on a programmer error (value out of range). */
export function encodeBody(message: BridgeMessage): Uint8Array {
  const map = new Map<number, unknown>();
  for (const [key, value] of bodyEntries(message)) if (value !== undefined) map.set(key, value);
  const encoded = encoder.encode(map) as Uint8Array;
  if (encoded.length > BRIDGE_BODY_LEN_MAX) throw new RangeError(`bridge ${message.type} body of ${encoded.length} bytes exceeds ${BRIDGE_BODY_LEN_MAX}`);
  return new Uint8Array(encoded.buffer, encoded.byteOffset, encoded.length);
}

/** Encode a whole frame for the wire, delimiter included. */
export function encodeMessage(message: BridgeMessage, seq: number, negotiatedVersion = BRIDGE_VERSION_MIN): Uint8Array {
  return encodeFrame({
    version: headerVersionFor(message, negotiatedVersion),
    type: MESSAGE_TYPE_BY_NAME[message.type],
    seq,
    body: encodeBody(message),
  });
}

function bodyEntries(message: BridgeMessage): Array<[number, unknown]> {
  switch (message.type) {
    case 'hello':
      return [[0, u8(message.versionMin)], [1, u8(message.versionMax)], [2, u32(message.heartbeatMs)], [3, text(message.agent)]];
    case 'capabilities':
      return [
        [0, u16(message.helloSeq)], [1, u8(message.version)], [2, text(message.model)], [3, text(message.firmware)],
        [4, u8(message.features)], [5, u32(message.telemetryMs)], [6, u32(message.heartbeatMs)], [7, u32(message.watchdogMs)],
        [8, u32(message.holdMsMax)], [9, u16(message.frameLenMax)],
      ];
    case 'telemetry':
      return [
        [0, message.acPresent], [1, optional(message.socPermille, u16)], [2, optional(message.runtimeS, u32)],
        [3, optional(message.packMv, u32)], [4, optional(message.currentMa, i32)], [5, optional(message.cellMv, (list) => list.map(u16))],
        [6, optional(message.temperaturesDeciC, (list) => list.map(i32))], [7, message.lowBattery],
        [8, optional(message.alarms, (list) => list.map((name) => text(name)))], [9, optional(message.uptimeMs, u32)],
      ];
    case 'power-event':
      return [[0, PowerEventCode[message.kind]], [1, optional(message.holdUpMs, u32)], [2, text(message.detail)]];
    case 'heartbeat':
      return [[0, optional(message.uptimeMs, u32)]];
    case 'hold':
      return [[0, u32(message.durationMs)]];
    case 'cut':
      return [[0, u32(message.delayMs)]];
    case 'cancel':
      return [];
    case 'ack':
      return [[0, u16(message.ackSeq)], [1, u8(message.ackType)]];
    case 'nak':
      return [
        [0, u16(message.nakSeq)], [1, u8(message.nakType)],
        [2, typeof message.reason === 'number' ? u8(message.reason) : NakReason[message.reason]],
        [3, text(message.detail)], [4, optional(message.versionMin, u8)], [5, optional(message.versionMax, u8)],
      ];
  }
}

function optional<T, R>(value: T | undefined, encode: (value: T) => R): R | undefined {
  return value === undefined ? undefined : encode(value);
}
function ranged(value: number, min: number, max: number): number {
  if (!Number.isInteger(value) || value < min || value > max) throw new RangeError(`bridge field value ${value} is not an integer in ${min}..${max}`);
  return value;
}
const u8 = (value: number) => ranged(value, 0, 0xff);
const u16 = (value: number) => ranged(value, 0, U16_MAX);
const u32 = (value: number) => ranged(value, 0, U32_MAX);
const i32 = (value: number) => ranged(value, I32_MIN, I32_MAX);
function text(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  return value.length > TEXT_LEN_MAX ? value.slice(0, TEXT_LEN_MAX) : value;
}
