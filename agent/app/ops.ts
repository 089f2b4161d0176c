/**
 * What an entry's payload means to the application layer. Every payload is a CBOR array whose first
 * element is the op code, so that any subscriber can decode entries with a stock CBOR library:
 *
 *   [1, data]        an opaque application entry (POST /v1/entries)
 *   [2, key, value]  key-value put (PUT /v1/kv/{key})
 *   [3, key]         key-value delete (DELETE /v1/kv/{key})
 *   [4, topic, data]         an MQTT message journaled by the local MQTT listener (mqtt-ingest.ts)
 *   [4, topic, data, props]  the same with the message's properties worth keeping (MqttProps): a map,
 *                            present only when there is something in it, so readers that know only
 *                            three elements still read the message
 *   [5, db, ...]             pages of an application's SQLite database (agent/sqlite/entry.ts); not a
 *                            key-value op
 *
 * Keys are UTF-8 strings; values and data are byte strings.
 */
import { decodeCbor, encodeCbor } from '../util/index.ts';

export const OP_ENTRY = 1;
export const OP_PUT = 2;
export const OP_DELETE = 3;
export const OP_MQTT = 4;
/** Decoded by agent/sqlite/entry.ts; decodeOp answers `sqlite-pages` for it. */
export const OP_SQLITE = 5;

/** Keys travel in URLs and topics' payloads; 512 bytes covers hierarchical names with room to spare. */
export const KV_KEY_BYTES_MAX = 512;

export type Op =
  | { readonly op: typeof OP_ENTRY; readonly data: Uint8Array }
  | { readonly op: typeof OP_PUT; readonly key: string; readonly value: Uint8Array }
  | { readonly op: typeof OP_DELETE; readonly key: string }
  | { readonly op: typeof OP_MQTT; readonly topic: string; readonly data: Uint8Array; readonly props?: MqttProps };

/**
 * What of an MQTT message is kept with it and forwarded upstream (forwarder.ts): the retain flag, and the
 * MQTT 5 properties that belong to the message rather than to the hop (MQTT 5.0 §3.3.2.3: topic alias and
 * subscription identifiers are per connection and are not kept). Names as in MQTT.js's publish options.
 */
export interface MqttProps {
  readonly retain?: boolean;
  readonly payloadFormatIndicator?: boolean;
  /** Seconds the message may live from the moment it was journaled (§3.3.2.3.3). */
  readonly messageExpiryInterval?: number;
  readonly contentType?: string;
  readonly responseTopic?: string;
  readonly correlationData?: Uint8Array;
  readonly userProperties?: Readonly<Record<string, string | readonly string[]>>;
}

export type OpDecodeResult = { ok: true; op: Op } | { ok: false; reason: string };


export function encodeOp(op: Op): Uint8Array {
  switch (op.op) {
    case OP_ENTRY:
      return encodeEntry(op.data);
    case OP_PUT:
      return encodeCbor([OP_PUT, op.key, op.value]);
    case OP_DELETE:
      return encodeCbor([OP_DELETE, op.key]);
    case OP_MQTT:
      return op.props && Object.keys(op.props).length > 0 ? encodeCbor([OP_MQTT, op.topic, op.data, op.props]) : encodeCbor([OP_MQTT, op.topic, op.data]);
  }
}

/**
 * [1, data] written out by hand, byte for byte what the CBOR encoder writes (array of 2, the code, a byte
 * string with the shortest length head): the op of every single-entry write, where going through the
 * general encoder (and copying its output out of its reused buffer) cost more than the write's own framing.
 */
function encodeEntry(data: Uint8Array): Uint8Array {
  const length = data.length;
  const head = length < 24 ? 1 : length < 0x100 ? 2 : length < 0x10000 ? 3 : 5;
  const out = new Uint8Array(2 + head + length);
  out[0] = 0x82;
  out[1] = OP_ENTRY;
  // Major type 2 (0x40): the length itself below 24, else 0x58/0x59/0x5a and a 1/2/4-byte big-endian length.
  out[2] = head === 1 ? 0x40 + length : head === 2 ? 0x58 : head === 3 ? 0x59 : 0x5a;
  for (let index = head - 1, rest = length; index >= 1; index--, rest = Math.floor(rest / 256)) out[2 + index] = rest & 0xff;
  out.set(data, 2 + head);
  return out;
}

export function decodeOp(payload: Uint8Array): OpDecodeResult {
  let value: unknown;
  try {
    value = decodeCbor(payload);
  } catch {
    return { ok: false, reason: 'not-cbor' };
  }
  if (!Array.isArray(value) || typeof value[0] !== 'number') return { ok: false, reason: 'not-an-op' };
  const [code, first, second, third] = value as [number, unknown, unknown, unknown];
  if (code === OP_ENTRY && first instanceof Uint8Array) return { ok: true, op: { op: OP_ENTRY, data: first } };
  if (code === OP_PUT && typeof first === 'string' && second instanceof Uint8Array) return { ok: true, op: { op: OP_PUT, key: first, value: second } };
  if (code === OP_DELETE && typeof first === 'string') return { ok: true, op: { op: OP_DELETE, key: first } };
  if (code === OP_MQTT && typeof first === 'string' && second instanceof Uint8Array) {
    if (third === undefined) return { ok: true, op: { op: OP_MQTT, topic: first, data: second } };
    const props = mqttProps(third);
    return props ? { ok: true, op: { op: OP_MQTT, topic: first, data: second, props } } : { ok: false, reason: 'bad-mqtt-props' };
  }
  if (code === OP_SQLITE) return { ok: false, reason: 'sqlite-pages' };
  return { ok: false, reason: `bad-op-${code}` };
}

/**
 * The op code as a payload's first two bytes spell it: every op is written as a CBOR array of fewer than 24
 * elements (head 0x81..0x97; SQLite pages have 8) whose first element is the code as a one-byte unsigned
 * integer (0x00..0x17); -1 for any other start. Lets a reader that wants only some ops pass the others
 * over without decoding them (the key-value state, which sees every entry the gateway writes).
 */
export function peekOpCode(payload: Uint8Array): number {
  if (payload.length < 2) return -1;
  const head = payload[0]!;
  const code = payload[1]!;
  return head >= 0x81 && head <= 0x97 && code <= 0x17 ? code : -1;
}

/** A seq kept as a key's value (decimal text, readable through GET /v1/kv/{key}). */
export function seqValue(seq: number): Uint8Array {
  return new TextEncoder().encode(String(seq));
}

/** The seq a key's value holds; 0 for none or a value that is not a seq. */
export function seqFromValue(value: Uint8Array | undefined): number {
  const seq = value ? Number(new TextDecoder().decode(value)) : 0;
  return Number.isSafeInteger(seq) && seq > 0 ? seq : 0;
}

/** An MQTT topic name one may publish to (MQTT 5.0 §4.7.3): no wildcards, no NUL, 1..65535 bytes. */
export function validTopic(topic: string): boolean {
  return topic.length > 0 && !/[+#\u0000]/.test(topic) && new TextEncoder().encode(topic).length <= 0xffff;
}

export function validKey(key: string): boolean {
  return key.length > 0 && new TextEncoder().encode(key).length <= KV_KEY_BYTES_MAX;
}

/** The props element checked field by field: a wrong type anywhere refuses the whole entry's props. */
function mqttProps(value: unknown): MqttProps | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value) || value instanceof Uint8Array) return undefined;
  const props = value as Record<string, unknown>;
  const checks: Record<string, (field: unknown) => boolean> = {
    retain: (field) => typeof field === 'boolean',
    payloadFormatIndicator: (field) => typeof field === 'boolean',
    messageExpiryInterval: (field) => Number.isInteger(field) && (field as number) >= 0 && (field as number) <= 0xffff_ffff,
    contentType: (field) => typeof field === 'string',
    responseTopic: (field) => typeof field === 'string' && field.length > 0 && !/[+#]/.test(field),
    correlationData: (field) => field instanceof Uint8Array,
    userProperties: (field) =>
      typeof field === 'object' && field !== null && !Array.isArray(field) && Object.values(field).every((item) => typeof item === 'string' || (Array.isArray(item) && item.every((each) => typeof each === 'string'))),
  };
  for (const [name, field] of Object.entries(props)) if (!checks[name]?.(field)) return undefined;
  return props as MqttProps;
}
