/**
 * The body of a batch append (POST /v1/batch), in either of two framings:
 *
 * - `application/cbor-seq` (RFC 8742): CBOR items one after the other, each an op exactly as the log stores
 *   it (ops.ts): `[1, data]`, `[2, key, value]`, `[3, key]`, `[4, topic, data]`, `[4, topic, data, props]`.
 *   The items are checked in place and handed to the log as views of the request body: no decoding into
 *   objects, no re-encoding, one view per entry (only an MQTT message's props map is decoded, to check it).
 * - `application/x-ndjson` (JSON lines): one object per line, `{"op":"entry","data":B64}`,
 *   `{"op":"put","key":K,"value":B64}`, `{"op":"delete","key":K}`,
 *   `{"op":"mqtt","topic":T,"data":B64,"props":{...}}` (props as ops.ts MqttProps, correlationData in
 *   base64), where `text` (a UTF-8 string) may stand for `data` or `value`. Convenient from a shell; each line is decoded and encoded, so it costs more.
 *
 * Pure functions over bytes: a malformed item gives `{ ok: false }` with its index, never a throw.
 */
import { Buffer } from 'node:buffer';
import { KV_KEY_BYTES_MAX, OP_DELETE, OP_ENTRY, OP_MQTT, OP_PUT, decodeOp, encodeOp, validTopic, type Op } from './ops.ts';

export type BatchBody = { ok: true; payloads: Uint8Array[]; kv: boolean } | { ok: false; index: number; reason: string };

/** CBOR major types (RFC 8949 §3.1). */
const MAJOR_UINT = 0;
const MAJOR_BYTES = 2;
const MAJOR_TEXT = 3;
const MAJOR_ARRAY = 4;
/** Additional information 24..27: the argument follows in 1, 2, 4 or 8 bytes (§3); 28..31 are not definite. */
const AI_ONE_BYTE = 24;
const AI_EIGHT_BYTES = 27;
const MAJOR_NEGATIVE = 1;
const MAJOR_MAP = 5;
const MAJOR_TAG = 6;
/** Nesting allowed inside an MQTT message's props (a map of user properties holding arrays of strings). */
const PROPS_DEPTH_MAX = 4;

const utf8 = new TextDecoder('utf-8', { fatal: true });
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** Split a CBOR sequence into op payloads, each a view of `body`. */
export function splitCborSeq(body: Uint8Array): BatchBody {
  const payloads: Uint8Array[] = [];
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
  let kv = false;
  let at = 0;
  while (at < body.length) {
    const end = scanOp(body, view, at);
    if (end < 0) return { ok: false, index: payloads.length, reason: OP_ERRORS[-end - 1]! };
    if (body[at + 1] === OP_PUT || body[at + 1] === OP_DELETE) kv = true;
    payloads.push(body.subarray(at, end));
    at = end;
  }
  if (payloads.length === 0) return { ok: false, index: 0, reason: 'the batch holds no entry' };
  return { ok: true, payloads, kv };
}

const OP_ERRORS = [
  'truncated or not definite-length CBOR',
  'not an op: expected [1, bytes], [2, key, bytes], [3, key] or [4, topic, bytes, props?]',
  `key is not 1..${KV_KEY_BYTES_MAX} bytes of UTF-8`,
  'topic is not an MQTT topic name (1..65535 bytes of UTF-8, no "+", "#" or NUL)',
  'props is not a map of MQTT message properties (retain, payloadFormatIndicator, messageExpiryInterval, contentType, responseTopic, correlationData, userProperties)',
];
const TRUNCATED = -1;
const NOT_AN_OP = -2;
const BAD_KEY = -3;
const BAD_TOPIC = -4;
const BAD_PROPS = -5;

/** One op from `at`: its end, or a negative error (OP_ERRORS[-result - 1]). */
function scanOp(body: Uint8Array, view: DataView, at: number): number {
  const array = head(body, view, at);
  if (array === undefined) return TRUNCATED;
  if (array.major !== MAJOR_ARRAY) return NOT_AN_OP;
  const code = head(body, view, array.end);
  if (code === undefined) return TRUNCATED;
  if (code.major !== MAJOR_UINT) return NOT_AN_OP;
  // The array head and the op code must be one byte each (what every encoder writes for them), so that the
  // caller can read the op code at at + 1.
  if (array.end !== at + 1 || code.end !== at + 2) return NOT_AN_OP;
  if (code.value === OP_ENTRY && array.value === 2) return stringEnd(body, view, code.end, MAJOR_BYTES);
  if (code.value === OP_DELETE && array.value === 2) return keyEnd(body, view, code.end);
  if (code.value === OP_PUT && array.value === 3) {
    const end = keyEnd(body, view, code.end);
    return end < 0 ? end : stringEnd(body, view, end, MAJOR_BYTES);
  }
  if (code.value === OP_MQTT && (array.value === 3 || array.value === 4)) return mqttEnd(body, view, at, code.end, array.value === 4);
  return NOT_AN_OP;
}

/** `[4, topic, data, props?]` from its topic at `at`: the topic checked, and the props decoded and checked. */
function mqttEnd(body: Uint8Array, view: DataView, start: number, at: number, withProps: boolean): number {
  const topicEnd = stringEnd(body, view, at, MAJOR_TEXT);
  if (topicEnd < 0) return topicEnd;
  let topic: string;
  try {
    topic = utf8.decode(body.subarray(head(body, view, at)!.end, topicEnd));
  } catch {
    return BAD_TOPIC;
  }
  if (!validTopic(topic)) return BAD_TOPIC;
  const dataEnd = stringEnd(body, view, topicEnd, MAJOR_BYTES);
  if (dataEnd < 0 || !withProps) return dataEnd;
  if (head(body, view, dataEnd)?.major !== MAJOR_MAP) return BAD_PROPS;
  const end = itemEnd(body, view, dataEnd, 0);
  if (end < 0) return end;
  return decodeOp(body.subarray(start, end)).ok ? end : BAD_PROPS;
}

/** Where the CBOR item at `at` ends (definite lengths only), or a negative error. */
function itemEnd(body: Uint8Array, view: DataView, at: number, depth: number): number {
  if (depth > PROPS_DEPTH_MAX) return BAD_PROPS;
  const item = head(body, view, at);
  if (item === undefined) return TRUNCATED;
  if (item.major === MAJOR_UINT || item.major === MAJOR_NEGATIVE || item.major > MAJOR_TAG) return item.end;
  if (item.major === MAJOR_BYTES || item.major === MAJOR_TEXT) return item.end + item.value > body.length ? TRUNCATED : item.end + item.value;
  if (item.major === MAJOR_TAG) return itemEnd(body, view, item.end, depth + 1);
  // Every item takes at least a byte, so a count past the body ends in TRUNCATED, not a long loop.
  const count = item.major === MAJOR_MAP ? item.value * 2 : item.value;
  let end = item.end;
  for (let index = 0; index < count; index++) {
    end = itemEnd(body, view, end, depth + 1);
    if (end < 0) return end;
  }
  return end;
}

function keyEnd(body: Uint8Array, view: DataView, at: number): number {
  const end = stringEnd(body, view, at, MAJOR_TEXT);
  if (end < 0) return end;
  const key = head(body, view, at)!;
  if (key.value < 1 || key.value > KV_KEY_BYTES_MAX) return BAD_KEY;
  try {
    utf8.decode(body.subarray(key.end, end));
  } catch {
    return BAD_KEY;
  }
  return end;
}

function stringEnd(body: Uint8Array, view: DataView, at: number, major: number): number {
  const string = head(body, view, at);
  if (string === undefined) return TRUNCATED;
  if (string.major !== major) return NOT_AN_OP;
  const end = string.end + string.value;
  return end > body.length ? TRUNCATED : end;
}

/** A CBOR head at `at`: major type, argument and where the head ends; undefined when truncated or indefinite. */
function head(body: Uint8Array, view: DataView, at: number): { major: number; value: number; end: number } | undefined {
  if (at >= body.length) return undefined;
  const initial = body[at]!;
  const major = initial >> 5;
  const info = initial & 0x1f;
  if (info < AI_ONE_BYTE) return { major, value: info, end: at + 1 };
  if (info > AI_EIGHT_BYTES) return undefined;
  const size = 1 << (info - AI_ONE_BYTE);
  if (at + 1 + size > body.length) return undefined;
  let value: number;
  if (size === 1) value = view.getUint8(at + 1);
  else if (size === 2) value = view.getUint16(at + 1);
  else if (size === 4) value = view.getUint32(at + 1);
  else {
    const big = view.getBigUint64(at + 1);
    // Nothing in a request can be that long: a length past the body is reported as truncated.
    value = big > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(big);
  }
  return { major, value, end: at + 1 + size };
}

/** Parse JSON lines into op payloads (blank lines are skipped). */
export function parseJsonLines(body: Uint8Array): BatchBody {
  let text: string;
  try {
    text = utf8.decode(body);
  } catch {
    return { ok: false, index: 0, reason: 'the body is not UTF-8' };
  }
  const payloads: Uint8Array[] = [];
  let kv = false;
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    const op = lineOp(line);
    if (typeof op === 'string') return { ok: false, index: payloads.length, reason: op };
    if (op.op === OP_PUT || op.op === OP_DELETE) kv = true;
    payloads.push(encodeOp(op));
  }
  if (payloads.length === 0) return { ok: false, index: 0, reason: 'the batch holds no entry' };
  return { ok: true, payloads, kv };
}

/** One JSON line to an op, or why not. */
function lineOp(line: string): Op | string {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return 'not JSON';
  }
  if (typeof value !== 'object' || value === null) return 'not a JSON object';
  const item = value as Record<string, unknown>;
  if (item.op === 'delete') return validKeyText(item.key) ? { op: OP_DELETE, key: item.key } : OP_ERRORS[2]!;
  if (item.op === 'put') {
    if (!validKeyText(item.key)) return OP_ERRORS[2]!;
    const bytes = lineBytes(item, 'value');
    return typeof bytes === 'string' ? bytes : { op: OP_PUT, key: item.key, value: bytes };
  }
  if (item.op === 'entry') {
    const bytes = lineBytes(item, 'data');
    return typeof bytes === 'string' ? bytes : { op: OP_ENTRY, data: bytes };
  }
  if (item.op === 'mqtt') return lineMqtt(item);
  return '"op" must be "entry", "put", "delete" or "mqtt"';
}

/** An MQTT message line: encoded, then checked by the same decoder that reads it back from the log. */
function lineMqtt(item: Record<string, unknown>): Op | string {
  if (typeof item.topic !== 'string' || !validTopic(item.topic)) return OP_ERRORS[3]!;
  const bytes = lineBytes(item, 'data');
  if (typeof bytes === 'string') return bytes;
  if (item.props === undefined) return { op: OP_MQTT, topic: item.topic, data: bytes };
  if (typeof item.props !== 'object' || item.props === null) return OP_ERRORS[4]!;
  const props = { ...(item.props as Record<string, unknown>) };
  if (props.correlationData !== undefined) {
    const correlation = lineBytes({ data: props.correlationData }, 'data');
    if (typeof correlation === 'string') return '"props.correlationData" must be base64';
    props.correlationData = correlation;
  }
  const decoded = decodeOp(encodeOp({ op: OP_MQTT, topic: item.topic, data: bytes, props }));
  return decoded.ok ? decoded.op : OP_ERRORS[4]!;
}

function lineBytes(item: Record<string, unknown>, field: 'data' | 'value'): Uint8Array | string {
  if (typeof item.text === 'string') return new TextEncoder().encode(item.text);
  const encoded = item[field];
  if (typeof encoded !== 'string' || encoded.length % 4 !== 0 || !BASE64.test(encoded)) return `"${field}" must be base64 (or give "text")`;
  const bytes = Buffer.from(encoded, 'base64');
  return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function validKeyText(key: unknown): key is string {
  return typeof key === 'string' && key.length > 0 && Buffer.byteLength(key) <= KV_KEY_BYTES_MAX;
}
