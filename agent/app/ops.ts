/**
 * What an entry's payload means to the application layer. Every payload is a CBOR array whose first
 * element is the op code, so that any subscriber can decode entries with a stock CBOR library:
 *
 *   [1, data]        an opaque application entry (POST /v1/entries)
 *   [2, key, value]  key-value put (PUT /v1/kv/{key})
 *   [3, key]         key-value delete (DELETE /v1/kv/{key})
 *   [4, topic, data] an MQTT message journaled by the local MQTT listener (mqtt-ingest.ts)
 *   [5, db, ...]     pages of an application's SQLite database (agent/sqlite/entry.ts); not a key-value op
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
  | { readonly op: typeof OP_MQTT; readonly topic: string; readonly data: Uint8Array };

export type OpDecodeResult = { ok: true; op: Op } | { ok: false; reason: string };


export function encodeOp(op: Op): Uint8Array {
  switch (op.op) {
    case OP_ENTRY:
      return encodeCbor([OP_ENTRY, op.data]);
    case OP_PUT:
      return encodeCbor([OP_PUT, op.key, op.value]);
    case OP_DELETE:
      return encodeCbor([OP_DELETE, op.key]);
    case OP_MQTT:
      return encodeCbor([OP_MQTT, op.topic, op.data]);
  }
}

export function decodeOp(payload: Uint8Array): OpDecodeResult {
  let value: unknown;
  try {
    value = decodeCbor(payload);
  } catch {
    return { ok: false, reason: 'not-cbor' };
  }
  if (!Array.isArray(value) || typeof value[0] !== 'number') return { ok: false, reason: 'not-an-op' };
  const [code, first, second] = value as [number, unknown, unknown];
  if (code === OP_ENTRY && first instanceof Uint8Array) return { ok: true, op: { op: OP_ENTRY, data: first } };
  if (code === OP_PUT && typeof first === 'string' && second instanceof Uint8Array) return { ok: true, op: { op: OP_PUT, key: first, value: second } };
  if (code === OP_DELETE && typeof first === 'string') return { ok: true, op: { op: OP_DELETE, key: first } };
  if (code === OP_MQTT && typeof first === 'string' && second instanceof Uint8Array) return { ok: true, op: { op: OP_MQTT, topic: first, data: second } };
  if (code === OP_SQLITE) return { ok: false, reason: 'sqlite-pages' };
  return { ok: false, reason: `bad-op-${code}` };
}

export function validKey(key: string): boolean {
  return key.length > 0 && new TextEncoder().encode(key).length <= KV_KEY_BYTES_MAX;
}
