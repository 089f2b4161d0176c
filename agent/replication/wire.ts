/**
 * The MQTT wire contract: topics and payloads. Payloads are plain CBOR (RFC 8949) so that subscribers in any
 * language can read them. Every message is an envelope
 *
 *   { v: 1, k: <kind>, b: <body: CBOR bytes>, crc: <CRC-32C of b>, mac?: <HMAC-SHA256(group key, k || b)> }
 *
 * The integrity check covers exactly the bytes received (the body is carried as a byte string), so a
 * receiver verifies before it decodes. With a group key, a client that can reach the broker but lacks the
 * key cannot inject or alter entries; replays are harmless because receivers de-duplicate by (epoch, seq)
 * and ignore records of older epochs.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { Decoder } from 'cbor-x';
import { crc32c, encodeCbor } from '../util/index.ts';
import type { LogEntry } from '../log/index.ts';
import { encodeBatchEnvelope } from './batch-encoder.ts';

export const WIRE_VERSION = 1;
const HMAC_BYTES = 32;
/** Group and node names as the config allows them (they are topic levels): agent/config/schema.ts NAME. */
const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
const ROLES: ReadonlySet<unknown> = new Set(['primary', 'standby', 'unknown']);
const STATES: ReadonlySet<unknown> = new Set(['online', 'on-battery', 'flushing', 'handed-off', 'offline']);
const UINT32_MAX = 0xffff_ffff;
/**
 * Plain CBOR as agent/util's decoder reads it, except that a uint64 (how another language's encoder writes a
 * millisecond timestamp) becomes a number rather than a bigint; values past 2^53 then fail the seq checks.
 */
const decoderOptions = { useRecords: false, mapsAsObjects: true, int64AsNumber: true };
const decoder = new Decoder(decoderOptions);

export type MessageKind = 'batch' | 'ack' | 'state' | 'leader';

/** A run of consecutive entries from the log of `node`: seqs first..last. */
export interface BatchMessage {
  readonly group: string;
  readonly node: string;
  /** The sender's current epoch: receivers fence senders older than the leader they know. */
  readonly epoch: number;
  readonly entries: readonly LogEntry[];
}

/** A replica's durable position; `want` asks the primary to resend from that seq (a gap was seen). */
export interface AckMessage {
  readonly group: string;
  readonly node: string;
  readonly epoch: number;
  readonly seq: number;
  readonly want?: number;
  readonly atMs: number;
}

export type NodeStateName = 'online' | 'on-battery' | 'flushing' | 'handed-off' | 'offline';

export interface StateMessage {
  readonly group: string;
  readonly node: string;
  readonly role: 'primary' | 'standby' | 'unknown';
  readonly state: NodeStateName;
  readonly epoch: number;
  readonly committed: number;
  readonly atMs: number;
}

/**
 * The retained record of who leads the group. `kind: 'leader'` is published by a node that (re)claims the
 * lead; `kind: 'handoff'` by a primary about to lose power, naming the last seq the successor holds.
 */
export interface LeaderMessage {
  readonly group: string;
  readonly kind: 'leader' | 'handoff';
  readonly epoch: number;
  /** leader: the primary. handoff: the primary handing off. */
  readonly node: string;
  /** handoff: the sibling expected to take over. */
  readonly to?: string;
  /** leader: first seq written in this epoch. */
  readonly since?: number;
  /**
   * leader, when the record claims a new epoch: the epoch the claimer knew as the newest. Receivers take a
   * claim only if they know nothing newer (the first of two racing claims wins, in the brokers' order).
   */
  readonly prev?: number;
  /** handoff: highest seq the successor acknowledged (the last entry it can rely on). */
  readonly lastSeq?: number;
  /** handoff: highest seq the primary had committed. complete === (lastSeq === committed). */
  readonly committed?: number;
  readonly complete?: boolean;
  readonly reason?: string;
  readonly atMs: number;
}

export interface Topics {
  log(node: string): string;
  logAll: string;
  ack(node: string): string;
  ackAll: string;
  state(node: string): string;
  stateAll: string;
  leader: string;
  power(node: string): string;
  /** The node named by a topic under log/, ack/ or state/, or undefined. */
  nodeOf(topic: string): { kind: 'log' | 'ack' | 'state'; node: string } | undefined;
}

export function topics(prefix: string, group: string): Topics {
  const base = `${prefix}/v1/${group}`;
  return {
    log: (node) => `${base}/log/${node}`,
    logAll: `${base}/log/+`,
    ack: (node) => `${base}/ack/${node}`,
    ackAll: `${base}/ack/+`,
    state: (node) => `${base}/state/${node}`,
    stateAll: `${base}/state/+`,
    leader: `${base}/leader`,
    power: (node) => `${prefix}/v1/${node}/power`,
    nodeOf(topic) {
      if (!topic.startsWith(base + '/')) return undefined;
      const [kind, node, extra] = topic.slice(base.length + 1).split('/');
      if ((kind !== 'log' && kind !== 'ack' && kind !== 'state') || !node || extra !== undefined) return undefined;
      return { kind, node };
    },
  };
}

const textEncoder = new TextEncoder();

export class WireCodec {
  private readonly key: Uint8Array | undefined;

  /** `key`: the group's HMAC key; when set, every message is signed and unsigned ones are rejected. */
  constructor(key?: Uint8Array) {
    this.key = key && key.length > 0 ? key : undefined;
  }

  get signed(): boolean {
    return this.key !== undefined;
  }

  /**
   * `allocate(size)`: a buffer of at least `size` bytes to write the batch into (the result is a view of its
   * start), so that a publisher can reuse the buffers of acknowledged batches; a fresh one by default.
   */
  encodeBatch(message: BatchMessage, allocate?: (bytes: number) => Uint8Array): Uint8Array {
    const first = message.entries[0]?.seq ?? 0;
    const sign = this.key ? (kind: string, body: Uint8Array) => this.mac(kind, body) : undefined;
    return encodeBatchEnvelope({ group: message.group, node: message.node, epoch: message.epoch, first, entries: message.entries }, WIRE_VERSION, sign, allocate);
  }

  encodeAck(message: AckMessage): Uint8Array {
    return this.seal('ack', message);
  }

  encodeState(message: StateMessage): Uint8Array {
    return this.seal('state', message);
  }

  encodeLeader(message: LeaderMessage): Uint8Array {
    return this.seal('leader', message);
  }

  /** Verify and decode any message; never throws. */
  decode(bytes: Uint8Array): DecodeResult {
    let envelope: unknown;
    try {
      envelope = decoder.decode(bytes);
    } catch {
      return { ok: false, reason: 'not-cbor' };
    }
    if (!isRecord(envelope)) return { ok: false, reason: 'not-an-envelope' };
    const { v, k, b, crc, mac } = envelope;
    if (v !== WIRE_VERSION) return { ok: false, reason: `version-${String(v)}` };
    if (k !== 'batch' && k !== 'ack' && k !== 'state' && k !== 'leader') return { ok: false, reason: 'unknown-kind' };
    if (!(b instanceof Uint8Array) || !isSeq(crc) || crc > UINT32_MAX) return { ok: false, reason: 'malformed-envelope' };
    if (crc32c(b) !== crc) return { ok: false, reason: 'crc' };
    if (this.key) {
      if (!(mac instanceof Uint8Array) || mac.length !== HMAC_BYTES) return { ok: false, reason: 'unsigned' };
      if (!timingSafeEqual(mac, this.mac(k, b))) return { ok: false, reason: 'bad-signature' };
    }
    let body: unknown;
    try {
      body = decoder.decode(b);
    } catch {
      return { ok: false, reason: 'body-not-cbor' };
    }
    if (!isRecord(body)) return { ok: false, reason: 'body-not-a-map' };
    switch (k) {
      case 'batch':
        return decodeBatchBody(body);
      case 'ack':
        return isName(body.group) && isName(body.node) && isSeq(body.epoch) && isSeq(body.seq) && isSeq(body.atMs) && optional(body.want, isSeq)
          ? { ok: true, kind: 'ack', message: body as unknown as AckMessage }
          : { ok: false, reason: 'bad-ack' };
      case 'state':
        return isName(body.group) && isName(body.node) && ROLES.has(body.role) && STATES.has(body.state) && isSeq(body.epoch) && isSeq(body.committed) && isSeq(body.atMs)
          ? { ok: true, kind: 'state', message: body as unknown as StateMessage }
          : { ok: false, reason: 'bad-state' };
      case 'leader':
        return isLeaderBody(body) ? { ok: true, kind: 'leader', message: body as unknown as LeaderMessage } : { ok: false, reason: 'bad-leader' };
    }
  }

  private seal(kind: MessageKind, body: object): Uint8Array {
    const bytes = encodeCbor(body);
    const envelope: Record<string, unknown> = { v: WIRE_VERSION, k: kind, b: bytes, crc: crc32c(bytes) };
    if (this.key) envelope.mac = this.mac(kind, bytes);
    return encodeCbor(envelope);
  }

  private mac(kind: string, body: Uint8Array): Uint8Array {
    const hmac = createHmac('sha256', this.key!);
    hmac.update(textEncoder.encode(kind));
    hmac.update(body);
    return new Uint8Array(hmac.digest());
  }
}

export type DecodeResult =
  | { ok: true; kind: 'batch'; message: BatchMessage }
  | { ok: true; kind: 'ack'; message: AckMessage }
  | { ok: true; kind: 'state'; message: StateMessage }
  | { ok: true; kind: 'leader'; message: LeaderMessage }
  | { ok: false; reason: string };

function decodeBatchBody(body: Record<string, unknown>): DecodeResult {
  const { group, node, epoch, first, last, entries } = body;
  if (!isName(group) || !isName(node) || !isSeq(epoch) || !isSeq(first) || !isSeq(last) || !Array.isArray(entries)) {
    return { ok: false, reason: 'bad-batch' };
  }
  if (first < 1 || last - first + 1 !== entries.length) return { ok: false, reason: 'bad-batch-range' };
  const out: LogEntry[] = new Array(entries.length);
  for (let index = 0; index < entries.length; index++) {
    const row = entries[index] as unknown;
    if (!Array.isArray(row) || row.length !== 3 || !isSeq(row[0]) || !isSeq(row[1]) || !(row[2] instanceof Uint8Array)) return { ok: false, reason: 'bad-batch-entry' };
    out[index] = { seq: first + index, epoch: row[0], timestampMs: row[1], payload: row[2] };
  }
  return { ok: true, kind: 'batch', message: { group, node, epoch, entries: out } };
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Uint8Array);
}

function isSeq(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

function isName(value: unknown): value is string {
  return typeof value === 'string' && NAME.test(value);
}

function optional(value: unknown, check: (value: unknown) => boolean): boolean {
  return value === undefined || check(value);
}

function isLeaderBody(body: Record<string, unknown>): boolean {
  return (
    isName(body.group) &&
    (body.kind === 'leader' || body.kind === 'handoff') &&
    isName(body.node) &&
    isSeq(body.epoch) &&
    isSeq(body.atMs) &&
    optional(body.to, isName) &&
    optional(body.since, isSeq) &&
    optional(body.prev, isSeq) &&
    optional(body.lastSeq, isSeq) &&
    optional(body.committed, isSeq) &&
    optional(body.complete, (value) => typeof value === 'boolean') &&
    optional(body.reason, (value) => typeof value === 'string')
  );
}

/**
 * Most CBOR bytes a batch adds per entry beyond its payload: array header (1) + epoch (up to 5) +
 * timestamp (9) + byte-string header (up to 5). Used to keep a batch under the broker's packet limit.
 */
export const BATCH_OVERHEAD_BYTES_PER_ENTRY = 20;
