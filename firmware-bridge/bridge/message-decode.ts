/**
 * Decoding the bridge protocol's CBOR bodies into typed messages (PROTOCOL.md §6). It never throws on what
 * a device sends: a version this side does not speak, an unknown type, or a body that is not the expected
 * map comes back as a named reason, which the parser counts.
 */
import { Decoder } from 'cbor-x';
import type { PowerEventKind } from '../core/index.ts';
import { BRIDGE_BODY_LEN_MAX, BRIDGE_VERSION_MAX, BRIDGE_VERSION_MIN, MessageType, NakReason, PowerEventCode, type NakReasonName } from './constants.ts';
import type { RawFrame } from './frame.ts';
import {
  I32_MAX,
  I32_MIN,
  LIST_LEN_MAX,
  TEXT_LEN_MAX,
  U16_MAX,
  U32_MAX,
  type BridgeMessage,
  type CapabilitiesMessage,
  type HelloMessage,
  type MessageDecodeResult,
  type MessageDropReason,
  type NakMessage,
  type PowerEventMessage,
  type TelemetryMessage,
} from './messages.ts';

const decoder = new Decoder({ useRecords: false, mapsAsObjects: false });
const BODY_SCRATCH = new Uint8Array(BRIDGE_BODY_LEN_MAX);
const BODY_VIEWS: Uint8Array[] = [];

const EVENT_KIND_BY_CODE = new Map<number, PowerEventKind>(Object.entries(PowerEventCode).map(([name, code]) => [code, name as PowerEventKind]));
const NAK_NAME_BY_CODE = new Map<number, NakReasonName>(Object.entries(NakReason).map(([name, code]) => [code, name as NakReasonName]));

/** Thrown inside body parsing only, and caught below: it never leaves this module. */
class BodyError extends Error {}

/**
 * Decode the message in a frame whose CRC already passed. Never throws: a version this side does not
 * speak, an unknown type, or a body that is not the expected CBOR map each come back as a named reason.
 */
export function decodeMessage(frame: RawFrame): MessageDecodeResult {
  if (frame.body.length > BRIDGE_BODY_LEN_MAX) return failed(frame, 'body');
  // cbor-x caches a DataView as a property of the array it decodes; decoding from long-lived views of one
  // buffer (one view per length) saves creating both for every frame. Decoding is synchronous, so sharing
  // the buffer is safe.
  const length = frame.body.length;
  const view = (BODY_VIEWS[length] ??= BODY_SCRATCH.subarray(0, length));
  view.set(frame.body);
  return decodeMessageBody(frame, view);
}

/** Decode a message whose body is in `body`, a long-lived view (decodeMessage, or the parser's scratch). */
export function decodeMessageBody(frame: Omit<RawFrame, 'body'>, body: Uint8Array): MessageDecodeResult {
  if (frame.version < BRIDGE_VERSION_MIN || frame.version > BRIDGE_VERSION_MAX) return failed(frame, 'version');
  const parse = PARSERS.get(frame.type);
  if (!parse) return failed(frame, 'type');
  let map: unknown;
  try {
    map = decoder.decode(body);
  } catch {
    return failed(frame, 'body');
  }
  if (!(map instanceof Map)) return failed(frame, 'body');
  try {
    return { ok: true, frame: { version: frame.version, seq: frame.seq, message: parse(map) } };
  } catch (error) {
    if (error instanceof BodyError) return failed(frame, 'body');
    throw error;
  }
}

function failed(frame: Omit<RawFrame, 'body'>, reason: MessageDropReason): MessageDecodeResult {
  return { ok: false, reason, type: frame.type, seq: frame.seq, version: frame.version };
}

type Body = Map<unknown, unknown>;

/*
 * Typed reads from a decoded CBOR map: absent gives undefined, a wrong type or range is a BodyError.
 * Plain functions and objects built key by key (no `delete`): this is the bridge's hot path.
 */
function int(map: Body, key: number, min: number, max: number): number | undefined {
  const value = map.get(key);
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) throw new BodyError();
  return value;
}
function required(map: Body, key: number, min: number, max: number): number {
  const value = int(map, key, min, max);
  if (value === undefined) throw new BodyError();
  return value;
}
function bool(map: Body, key: number): boolean | undefined {
  const value = map.get(key);
  if (value === undefined) return undefined;
  if (typeof value !== 'boolean') throw new BodyError();
  return value;
}
function textField(map: Body, key: number): string | undefined {
  const value = map.get(key);
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || value.length > TEXT_LEN_MAX) throw new BodyError();
  return value;
}
function ints(map: Body, key: number, min: number, max: number): number[] | undefined {
  const value = map.get(key);
  if (value === undefined) return undefined;
  if (!Array.isArray(value) || value.length > LIST_LEN_MAX) throw new BodyError();
  for (let index = 0; index < value.length; index++) {
    const item: unknown = value[index];
    if (typeof item !== 'number' || !Number.isInteger(item) || item < min || item > max) throw new BodyError();
  }
  return value as number[];
}
function texts(map: Body, key: number): string[] | undefined {
  const value = map.get(key);
  if (value === undefined) return undefined;
  if (!Array.isArray(value) || value.length > LIST_LEN_MAX) throw new BodyError();
  for (const item of value) if (typeof item !== 'string' || item.length > TEXT_LEN_MAX) throw new BodyError();
  return value as string[];
}

/** Set `target[name]` only when the value is present, so that decoded messages equal what was encoded. */
function put(target: Record<string, unknown>, name: string, value: unknown): void {
  if (value !== undefined) target[name] = value;
}

function parseTelemetry(map: Body): BridgeMessage {
  // Written out rather than through put(): telemetry is most of the bridge's traffic.
  const message: Record<string, unknown> = { type: 'telemetry' };
  const acPresent = bool(map, 0);
  if (acPresent !== undefined) message.acPresent = acPresent;
  const socPermille = int(map, 1, 0, 1000);
  if (socPermille !== undefined) message.socPermille = socPermille;
  const runtimeS = int(map, 2, 0, U32_MAX);
  if (runtimeS !== undefined) message.runtimeS = runtimeS;
  const packMv = int(map, 3, 0, U32_MAX);
  if (packMv !== undefined) message.packMv = packMv;
  const currentMa = int(map, 4, I32_MIN, I32_MAX);
  if (currentMa !== undefined) message.currentMa = currentMa;
  const cellMv = ints(map, 5, 0, U16_MAX);
  if (cellMv !== undefined) message.cellMv = cellMv;
  const temperaturesDeciC = ints(map, 6, I32_MIN, I32_MAX);
  if (temperaturesDeciC !== undefined) message.temperaturesDeciC = temperaturesDeciC;
  const lowBattery = bool(map, 7);
  if (lowBattery !== undefined) message.lowBattery = lowBattery;
  const alarms = texts(map, 8);
  if (alarms !== undefined) message.alarms = alarms;
  const uptimeMs = int(map, 9, 0, U32_MAX);
  if (uptimeMs !== undefined) message.uptimeMs = uptimeMs;
  return message as unknown as TelemetryMessage;
}

function parseCapabilities(map: Body): BridgeMessage {
  const message: Record<string, unknown> = { type: 'capabilities', helloSeq: required(map, 0, 0, U16_MAX), version: required(map, 1, 0, 0xff) };
  put(message, 'model', textField(map, 2));
  put(message, 'firmware', textField(map, 3));
  message.features = required(map, 4, 0, 0xff);
  message.telemetryMs = required(map, 5, 0, U32_MAX);
  message.heartbeatMs = required(map, 6, 0, U32_MAX);
  message.watchdogMs = required(map, 7, 0, U32_MAX);
  message.holdMsMax = required(map, 8, 0, U32_MAX);
  message.frameLenMax = required(map, 9, 0, U16_MAX);
  return message as unknown as CapabilitiesMessage;
}

function parseNak(map: Body): BridgeMessage {
  const code = required(map, 2, 0, 0xff);
  const message: Record<string, unknown> = { type: 'nak', nakSeq: required(map, 0, 0, U16_MAX), nakType: required(map, 1, 0, 0xff), reason: NAK_NAME_BY_CODE.get(code) ?? code };
  put(message, 'detail', textField(map, 3));
  put(message, 'versionMin', int(map, 4, 0, 0xff));
  put(message, 'versionMax', int(map, 5, 0, 0xff));
  return message as unknown as NakMessage;
}

function parsePowerEvent(map: Body): BridgeMessage {
  const kind = EVENT_KIND_BY_CODE.get(required(map, 0, 0, 0xff));
  if (!kind) throw new BodyError();
  const message: Record<string, unknown> = { type: 'power-event', kind };
  put(message, 'holdUpMs', int(map, 1, 0, U32_MAX));
  put(message, 'detail', textField(map, 2));
  return message as unknown as PowerEventMessage;
}

function parseHello(map: Body): BridgeMessage {
  const message: Record<string, unknown> = { type: 'hello', versionMin: required(map, 0, 0, 0xff), versionMax: required(map, 1, 0, 0xff), heartbeatMs: required(map, 2, 0, U32_MAX) };
  put(message, 'agent', textField(map, 3));
  return message as unknown as HelloMessage;
}

function parseHeartbeat(map: Body): BridgeMessage {
  const uptimeMs = int(map, 0, 0, U32_MAX);
  return uptimeMs === undefined ? { type: 'heartbeat' } : { type: 'heartbeat', uptimeMs };
}

function parseHold(map: Body): BridgeMessage {
  return { type: 'hold', durationMs: required(map, 0, 0, U32_MAX) };
}
function parseCut(map: Body): BridgeMessage {
  return { type: 'cut', delayMs: required(map, 0, 0, U32_MAX) };
}
function parseCancel(): BridgeMessage {
  return { type: 'cancel' };
}
function parseAck(map: Body): BridgeMessage {
  return { type: 'ack', ackSeq: required(map, 0, 0, U16_MAX), ackType: required(map, 1, 0, 0xff) };
}

const PARSERS = new Map<number, (map: Body) => BridgeMessage>([
  [MessageType.HELLO, parseHello],
  [MessageType.CAPABILITIES, parseCapabilities],
  [MessageType.TELEMETRY, parseTelemetry],
  [MessageType.POWER_EVENT, parsePowerEvent],
  [MessageType.HEARTBEAT, parseHeartbeat],
  [MessageType.HOLD, parseHold],
  [MessageType.CUT, parseCut],
  [MessageType.CANCEL, parseCancel],
  [MessageType.ACK, parseAck],
  [MessageType.NAK, parseNak],
]);
