/**
 * The message catalogue of the bridge protocol (PROTOCOL.md §6): typed messages, and their CBOR bodies,
 * which are maps with small unsigned integer keys so that a controller can build them with a few lines of
 * C (tinycbor, nanocbor, QCBOR) and unknown keys can be added later without breaking older readers.
 */
import { Decoder, Encoder } from 'cbor-x';
import type { PowerEventKind } from '../types.ts';
import {
  BRIDGE_BODY_LEN_MAX,
  BRIDGE_VERSION_HANDSHAKE,
  BRIDGE_VERSION_MAX,
  BRIDGE_VERSION_MIN,
  MessageType,
  NakReason,
  PowerEventCode,
  type NakReasonName,
} from './constants.ts';
import { encodeFrame, type RawFrame } from './frame.ts';

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
const TEXT_LEN_MAX = 64;
/** Longest cell or temperature list: 32 series cells is beyond every pack the drivers know. */
const LIST_LEN_MAX = 32;
const U16_MAX = 0xffff;
const U32_MAX = 0xffffffff;
const I32_MIN = -0x80000000;
const I32_MAX = 0x7fffffff;

const encoder = new Encoder({ useRecords: false, mapsAsObjects: false, variableMapSize: true, tagUint8Array: false, pack: false });
const decoder = new Decoder({ useRecords: false, mapsAsObjects: false });

const EVENT_KIND_BY_CODE = new Map<number, PowerEventKind>(Object.entries(PowerEventCode).map(([name, code]) => [code, name as PowerEventKind]));
const NAK_NAME_BY_CODE = new Map<number, NakReasonName>(Object.entries(NakReason).map(([name, code]) => [code, name as NakReasonName]));

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

/** Thrown inside body parsing only, and caught below: it never leaves this module. */
class BodyError extends Error {}

/**
 * Decode the message in a frame whose CRC already passed. Never throws: a version this side does not
 * speak, an unknown type, or a body that is not the expected CBOR map each come back as a named reason.
 */
export function decodeMessage(frame: RawFrame): MessageDecodeResult {
  const fail = (reason: MessageDropReason): MessageDecodeResult => ({ ok: false, reason, type: frame.type, seq: frame.seq, version: frame.version });
  if (frame.version < BRIDGE_VERSION_MIN || frame.version > BRIDGE_VERSION_MAX) return fail('version');
  const parse = PARSERS.get(frame.type);
  if (!parse) return fail('type');
  let body: unknown;
  try {
    body = decoder.decode(frame.body);
  } catch {
    return fail('body');
  }
  if (!(body instanceof Map)) return fail('body');
  try {
    return { ok: true, frame: { version: frame.version, seq: frame.seq, message: parse(new Fields(body)) } };
  } catch (error) {
    if (error instanceof BodyError) return fail('body');
    throw error;
  }
}

/** Typed reads from a decoded CBOR map; a wrong type or range is a BodyError. */
class Fields {
  constructor(private readonly map: Map<unknown, unknown>) {}

  int(key: number, min: number, max: number): number | undefined {
    const value = this.map.get(key);
    if (value === undefined) return undefined;
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) throw new BodyError();
    return value;
  }
  requiredInt(key: number, min: number, max: number): number {
    const value = this.int(key, min, max);
    if (value === undefined) throw new BodyError();
    return value;
  }
  bool(key: number): boolean | undefined {
    const value = this.map.get(key);
    if (value === undefined) return undefined;
    if (typeof value !== 'boolean') throw new BodyError();
    return value;
  }
  text(key: number): string | undefined {
    const value = this.map.get(key);
    if (value === undefined) return undefined;
    if (typeof value !== 'string' || value.length > TEXT_LEN_MAX) throw new BodyError();
    return value;
  }
  ints(key: number, min: number, max: number): number[] | undefined {
    const value = this.map.get(key);
    if (value === undefined) return undefined;
    if (!Array.isArray(value) || value.length > LIST_LEN_MAX) throw new BodyError();
    for (const item of value) if (typeof item !== 'number' || !Number.isInteger(item) || item < min || item > max) throw new BodyError();
    return value as number[];
  }
  texts(key: number): string[] | undefined {
    const value = this.map.get(key);
    if (value === undefined) return undefined;
    if (!Array.isArray(value) || value.length > LIST_LEN_MAX) throw new BodyError();
    for (const item of value) if (typeof item !== 'string' || item.length > TEXT_LEN_MAX) throw new BodyError();
    return value as string[];
  }
}

/** Drop keys whose value is undefined, so that decoded messages compare equal to what was encoded. */
function compact<T extends object>(value: T): T {
  for (const key of Object.keys(value) as Array<keyof T>) if (value[key] === undefined) delete value[key];
  return value;
}

const PARSERS = new Map<number, (fields: Fields) => BridgeMessage>([
  [MessageType.HELLO, (f) => compact({ type: 'hello', versionMin: f.requiredInt(0, 0, 0xff), versionMax: f.requiredInt(1, 0, 0xff), heartbeatMs: f.requiredInt(2, 0, U32_MAX), agent: f.text(3) })],
  [
    MessageType.CAPABILITIES,
    (f) =>
      compact({
        type: 'capabilities', helloSeq: f.requiredInt(0, 0, U16_MAX), version: f.requiredInt(1, 0, 0xff), model: f.text(2), firmware: f.text(3),
        features: f.requiredInt(4, 0, 0xff), telemetryMs: f.requiredInt(5, 0, U32_MAX), heartbeatMs: f.requiredInt(6, 0, U32_MAX),
        watchdogMs: f.requiredInt(7, 0, U32_MAX), holdMsMax: f.requiredInt(8, 0, U32_MAX), frameLenMax: f.requiredInt(9, 0, U16_MAX),
      }),
  ],
  [
    MessageType.TELEMETRY,
    (f) =>
      compact({
        type: 'telemetry', acPresent: f.bool(0), socPermille: f.int(1, 0, 1000), runtimeS: f.int(2, 0, U32_MAX), packMv: f.int(3, 0, U32_MAX),
        currentMa: f.int(4, I32_MIN, I32_MAX), cellMv: f.ints(5, 0, U16_MAX), temperaturesDeciC: f.ints(6, I32_MIN, I32_MAX),
        lowBattery: f.bool(7), alarms: f.texts(8), uptimeMs: f.int(9, 0, U32_MAX),
      }),
  ],
  [
    MessageType.POWER_EVENT,
    (f) => {
      const kind = EVENT_KIND_BY_CODE.get(f.requiredInt(0, 0, 0xff));
      if (!kind) throw new BodyError();
      return compact({ type: 'power-event', kind, holdUpMs: f.int(1, 0, U32_MAX), detail: f.text(2) });
    },
  ],
  [MessageType.HEARTBEAT, (f) => compact({ type: 'heartbeat', uptimeMs: f.int(0, 0, U32_MAX) })],
  [MessageType.HOLD, (f) => ({ type: 'hold', durationMs: f.requiredInt(0, 0, U32_MAX) })],
  [MessageType.CUT, (f) => ({ type: 'cut', delayMs: f.requiredInt(0, 0, U32_MAX) })],
  [MessageType.CANCEL, () => ({ type: 'cancel' })],
  [MessageType.ACK, (f) => ({ type: 'ack', ackSeq: f.requiredInt(0, 0, U16_MAX), ackType: f.requiredInt(1, 0, 0xff) })],
  [
    MessageType.NAK,
    (f) => {
      const code = f.requiredInt(2, 0, 0xff);
      return compact({
        type: 'nak', nakSeq: f.requiredInt(0, 0, U16_MAX), nakType: f.requiredInt(1, 0, 0xff), reason: NAK_NAME_BY_CODE.get(code) ?? code,
        detail: f.text(3), versionMin: f.int(4, 0, 0xff), versionMax: f.int(5, 0, 0xff),
      });
    },
  ],
]);
