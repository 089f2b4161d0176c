/**
 * The body schemas of broker-config/asyncapi.yaml, as checks over a strictly decoded map. A body that fails
 * is refused with the kind and the first field at fault (`bad-ack:epoch`), which the hub counts.
 *
 * One epoch width everywhere: the log stores an epoch in 32 bits (agent/log/format.ts), so an epoch on
 * the wire is a uint32; a larger one would be truncated or refused only later, after it had moved
 * something. Seqs and times are integers that a number holds exactly.
 */
import type { LogEntry } from '../log/index.ts';
import type { DecodeResult, MessageKind } from './wire.ts';

/** Group and node names as the config allows them (they are topic levels): agent/config/schema.ts NAME. */
const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
const ROLES: ReadonlySet<unknown> = new Set(['primary', 'standby', 'unknown']);
const STATES: ReadonlySet<unknown> = new Set(['online', 'on-battery', 'flushing', 'handed-off', 'offline']);
const LEADER_KINDS: ReadonlySet<unknown> = new Set(['leader', 'handoff']);
export const EPOCH_MAX = 0xffff_ffff;
/** The log stores an entry's timestamp in 48 bits (agent/log/format.ts). */
const TIMESTAMP_MS_MAX = 2 ** 48 - 1;

type Check = (value: unknown) => boolean;

export const isSeq: Check = (value) => typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
export const isEpoch: Check = (value) => isSeq(value) && (value as number) <= EPOCH_MAX;
/** Counters start at 1 (freshness.ts): 0 is what a missing one would read as. */
const isCounter: Check = (value) => isSeq(value) && (value as number) >= 1;
const isName: Check = (value) => typeof value === 'string' && NAME.test(value);
/** Databases a handoff may name (app.sqlite): more than any gateway application keeps. */
const SQLITE_DATABASES_MAX = 64;
/** A map of database name → seq, as a handoff names its SQLite commits. */
const isSeqMap: Check = (value) => {
  if (typeof value !== 'object' || value === null || Array.isArray(value) || value instanceof Uint8Array) return false;
  const entries = Object.entries(value);
  return entries.length <= SQLITE_DATABASES_MAX && entries.every(([name, seq]) => isName(name) && isSeq(seq));
};
/** The most a handoff's tail may announce: the longest flush budget a gateway would be given (an hour). */
const TAIL_MS_MAX = 3_600_000;
const isTailMs: Check = (value) => isSeq(value) && (value as number) <= TAIL_MS_MAX;
const isBoolean: Check = (value) => typeof value === 'boolean';
const isText: Check = (value) => typeof value === 'string';
const optional = (check: Check): Check => (value) => value === undefined || check(value);
const oneOf = (values: ReadonlySet<unknown>): Check => (value) => values.has(value);

const ACK: Record<string, Check> = { group: isName, node: isName, epoch: isEpoch, counter: isCounter, seq: isSeq, want: optional(isSeq), atMs: isSeq };
const STATE: Record<string, Check> = { group: isName, node: isName, role: oneOf(ROLES), state: oneOf(STATES), epoch: isEpoch, counter: isCounter, committed: isSeq, atMs: isSeq };
const LEADER: Record<string, Check> = {
  group: isName,
  kind: oneOf(LEADER_KINDS),
  node: isName,
  epoch: isEpoch,
  counter: isCounter,
  atMs: isSeq,
  to: optional(isName),
  since: optional(isSeq),
  prev: optional(isEpoch),
  lastSeq: optional(isSeq),
  committed: optional(isSeq),
  complete: optional(isBoolean),
  tailMs: optional(isTailMs),
  sqlite: optional(isSeqMap),
  reason: optional(isText),
};

/** The first field of `body` that fails its check, or undefined. */
function firstBad(body: Record<string, unknown>, checks: Record<string, Check>): string | undefined {
  for (const field in checks) if (!checks[field]!(body[field])) return field;
  return undefined;
}

/** Only the fields the schema names are kept: an unknown field of a forged body travels no further. */
function pick(body: Record<string, unknown>, checks: Record<string, Check>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const field in checks) if (body[field] !== undefined) out[field] = body[field];
  return out;
}

export function validateBody(kind: MessageKind, body: Record<string, unknown>): DecodeResult {
  if (kind === 'batch') return validateBatch(body);
  const checks = kind === 'ack' ? ACK : kind === 'state' ? STATE : LEADER;
  const bad = firstBad(body, checks);
  if (bad !== undefined) return { ok: false, reason: `bad-${kind}:${bad}` };
  return { ok: true, kind, message: pick(body, checks) } as unknown as DecodeResult;
}

function validateBatch(body: Record<string, unknown>): DecodeResult {
  const { group, node, epoch, first, last, entries } = body;
  if (!isName(group) || !isName(node) || !isSeq(first) || !isSeq(last) || !Array.isArray(entries)) return { ok: false, reason: 'bad-batch' };
  if (!isEpoch(epoch)) return { ok: false, reason: 'bad-batch:epoch' };
  const firstSeq = first as number;
  if (firstSeq < 1 || (last as number) - firstSeq + 1 !== entries.length) return { ok: false, reason: 'bad-batch-range' };
  const out: LogEntry[] = new Array(entries.length);
  for (let index = 0; index < entries.length; index++) {
    const row = entries[index] as unknown;
    if (!Array.isArray(row) || row.length !== 3 || !isSeq(row[1]) || !(row[2] instanceof Uint8Array)) return { ok: false, reason: 'bad-batch-entry' };
    if (!isEpoch(row[0])) return { ok: false, reason: 'bad-batch-entry:epoch' };
    if ((row[1] as number) > TIMESTAMP_MS_MAX) return { ok: false, reason: 'bad-batch-entry:timestamp' };
    out[index] = { seq: firstSeq + index, epoch: row[0] as number, timestampMs: row[1] as number, payload: row[2] };
  }
  return { ok: true, kind: 'batch', message: { group: group as string, node: node as string, epoch: epoch as number, entries: out } };
}
