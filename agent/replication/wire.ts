/**
 * The MQTT wire contract: topics and payloads. Payloads are plain CBOR (RFC 8949) so that subscribers in any
 * language can read them. Every message is an envelope
 *
 *   { v: 1, k: <kind>, b: <body: CBOR bytes>, crc: <CRC-32C of b>, <signature fields> }
 *
 * with the signature fields of the group's mode (wire-auth.ts): `s` (signer) and `sig` (its Ed25519
 * signature), or `mac` (group HMAC), or none in a group configured to run unsigned. The body is carried as
 * a byte string, so a receiver checks the CRC and the signature over exactly the bytes received before it
 * decodes them; both the envelope and the body are read by a strict decoder (strict-cbor.ts).
 *
 * A batch's body may be compressed (compression.ts): then the envelope's `z` names the algorithm (`br`), the
 * CRC and the signature cover the compressed bytes, the signature also covers the flag (batch-encoder.ts
 * signedKind), and a receiver decompresses only after both checked out, to at most a cap.
 *
 * Control messages (ack, state, leader/handoff) carry the sender's epoch and a `counter` that never
 * repeats for that node (freshness.ts), so that receivers can drop replays; batches need none: receivers
 * de-duplicate them by (epoch, seq). Epochs are 32-bit everywhere (the log stores 32 bits); seqs and
 * times are integers a number holds exactly.
 */
import type { LogEntry } from '../log/index.ts';
import { crc32c, encodeCbor } from '../util/index.ts';
import { encodeBatchEnvelope, signedKind, type BodyCompression } from './batch-encoder.ts';
import { BATCH_COMPRESSION_BROTLI, BATCH_INFLATED_BYTES_MAX, BatchCompressor, inflateBatchBody, type CompressorCounters, type LinkHint } from './compression.ts';
import { decodeStrictCbor, STRICT_CBOR_LIMITS, type StrictCborLimits } from './strict-cbor.ts';
import { validateBody } from './wire-validate.ts';
import { WireAuthenticator, type WireAuth } from './wire-auth.ts';

export const WIRE_VERSION = 1;
/** The envelope is one flat map: nothing in it nests. */
const ENVELOPE_LIMITS: StrictCborLimits = { depthMax: 1, textBytesMax: 64 };
const UINT32_MAX = 0xffff_ffff;
const KINDS: ReadonlySet<unknown> = new Set(['batch', 'ack', 'state', 'leader']);

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
  /**
   * handoff, when the flush budget ran out (complete false): how much longer, in ms from the record's
   * publication, the old primary goes on flushing its tail behind it. The successor keeps applying those
   * batches and takes over once the tail has ended (takeover/handoff-tail.ts).
   */
  readonly tailMs?: number;
  /**
   * handoff, when the application's SQLite databases are captured (app.sqlite): per database name, the log
   * seq of its last commit before the flush. The successor's database is as of that commit when it holds
   * the log up to that seq (lastSeq ≥ it).
   */
  readonly sqlite?: Readonly<Record<string, number>>;
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
  /** Plain `online`/`offline`, retained (availability.ts). */
  availability(node: string): string;
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
    availability: (node) => `${base}/${node}/availability`,
    nodeOf(topic) {
      if (!topic.startsWith(base + '/')) return undefined;
      const [kind, node, extra] = topic.slice(base.length + 1).split('/');
      if ((kind !== 'log' && kind !== 'ack' && kind !== 'state') || !node || extra !== undefined) return undefined;
      return { kind, node };
    },
  };
}

/** What makes a control message fresh: a number its sender never used before (freshness.ts). */
export interface Freshness {
  readonly counter: number;
}

export type DecodeResult =
  | { ok: true; kind: 'batch'; message: BatchMessage }
  | { ok: true; kind: 'ack'; message: AckMessage & Freshness }
  | { ok: true; kind: 'state'; message: StateMessage & Freshness }
  | { ok: true; kind: 'leader'; message: LeaderMessage & Freshness }
  | { ok: false; reason: string };

export interface WireCodecOptions {
  /** Largest body a compressed batch may inflate to; beyond it the batch is refused (a zip bomb). */
  readonly inflatedBytesMax?: number;
}

export class WireCodec {
  private readonly authenticator: WireAuthenticator;
  private readonly compressor = new BatchCompressor();
  private readonly inflatedBytesMax: number;

  /** `auth`: the group's mode; a bare Uint8Array is an HMAC group key. Unsigned when left out. */
  constructor(auth?: Uint8Array | WireAuth, options: WireCodecOptions = {}) {
    const mode: WireAuth = auth instanceof Uint8Array ? (auth.length > 0 ? { mode: 'hmac', key: auth } : { mode: 'unsigned' }) : (auth ?? { mode: 'unsigned' });
    this.authenticator = new WireAuthenticator(mode);
    this.inflatedBytesMax = options.inflatedBytesMax ?? BATCH_INFLATED_BYTES_MAX;
  }

  /** Batches compressed by this codec so far, and their bytes before and after. */
  get compression(): Readonly<CompressorCounters> {
    return this.compressor.counters;
  }

  get signed(): boolean {
    return this.authenticator.signed;
  }

  /** The signing mode and key in use: a batch prepared ahead is sent only while it is still this one. */
  get auth(): WireAuth {
    return this.authenticator.auth;
  }

  get mode(): WireAuth['mode'] {
    return this.authenticator.auth.mode;
  }

  /**
   * `allocate(size)`: a buffer of at least `size` bytes to write the batch into (the result is a view of its
   * start), so that a publisher can reuse the buffers of acknowledged batches; a fresh one by default.
   * `link`: the link the batch goes out on; the body is compressed when that makes it leave sooner there
   * (compression.ts). Without it, never.
   */
  encodeBatch(message: BatchMessage, allocate?: (bytes: number) => Uint8Array, link?: LinkHint): Uint8Array {
    const first = message.entries[0]?.seq ?? 0;
    const compressor = this.compressor;
    const compression: BodyCompression | undefined = link && {
      flag: BATCH_COMPRESSION_BROTLI,
      choose: (bodyBytes) => compressor.choose(bodyBytes, link),
      compress: (body, quality) => compressor.compress(body, quality),
    };
    return encodeBatchEnvelope({ group: message.group, node: message.node, epoch: message.epoch, first, entries: message.entries }, WIRE_VERSION, this.authenticator.envelopeAuth(), allocate, compression);
  }

  /** The ratio a batch body of `bodyBytes` is expected to shrink to when encoded for `link` (1: not compressed). */
  expectedRatio(bodyBytes: number, link: LinkHint): number {
    return this.compressor.expectedRatio(bodyBytes, link);
  }

  encodeAck(message: AckMessage & Freshness): Uint8Array {
    return this.seal('ack', message);
  }

  encodeState(message: StateMessage & Freshness): Uint8Array {
    return this.seal('state', message);
  }

  encodeLeader(message: LeaderMessage & Freshness): Uint8Array {
    return this.seal('leader', message);
  }

  /** Verify, then decode any message; never throws. `limits`: for the body (tests). */
  decode(bytes: Uint8Array, limits: StrictCborLimits = STRICT_CBOR_LIMITS): DecodeResult {
    const outer = decodeStrictCbor(bytes, ENVELOPE_LIMITS);
    if (!outer.ok) return { ok: false, reason: `envelope-${outer.reason}` };
    const envelope = outer.value;
    if (!isRecord(envelope)) return { ok: false, reason: 'not-an-envelope' };
    const { v, k, b, crc, z } = envelope;
    if (v !== WIRE_VERSION) return { ok: false, reason: `version-${typeof v === 'number' ? v : 'bad'}` };
    if (!KINDS.has(k)) return { ok: false, reason: 'unknown-kind' };
    const kind = k as MessageKind;
    if (!(b instanceof Uint8Array) || typeof crc !== 'number' || !Number.isInteger(crc) || crc < 0 || crc > UINT32_MAX) return { ok: false, reason: 'malformed-envelope' };
    // Only batches are compressed: a flag on anything else, or one that names no known algorithm, is refused.
    if (z !== undefined && (kind !== 'batch' || z !== BATCH_COMPRESSION_BROTLI)) return { ok: false, reason: 'compression-unknown' };
    // A signature (HMAC-SHA256, or Ed25519 over SHA-256) covers every byte of the body: the CRC of a signed
    // message is computed only when the signature fails, to tell damage on the way ('crc') from a forgery.
    // Unsigned, the CRC is all there is. (A standby went over each batch's bytes twice, CRC then SHA-256.)
    const verified = this.authenticator.verify(signedKind(kind, z), envelope, b);
    if (!verified.ok || !this.authenticator.signed) {
      if (crc32c(b) !== crc) return { ok: false, reason: 'crc' };
      if (!verified.ok) return verified;
    }
    let body = b;
    if (z !== undefined) {
      const inflated = inflateBatchBody(z, b, this.inflatedBytesMax);
      if (!inflated.ok) return inflated;
      body = inflated.body;
    }
    const inner = decodeStrictCbor(body, limits);
    if (!inner.ok) return { ok: false, reason: `body-${inner.reason}` };
    if (!isRecord(inner.value)) return { ok: false, reason: 'body-not-a-map' };
    const decoded = validateBody(kind, inner.value);
    if (decoded.ok && verified.signer !== undefined && decoded.message.node !== verified.signer) return { ok: false, reason: 'signer-mismatch' };
    return decoded;
  }

  private seal(kind: MessageKind, body: object): Uint8Array {
    const bytes = encodeCbor(body);
    return encodeCbor({ v: WIRE_VERSION, k: kind, b: bytes, crc: crc32c(bytes), ...this.authenticator.fields(kind, bytes) });
  }
}

/**
 * Most CBOR bytes a batch adds per entry beyond its payload: array header (1) + epoch (up to 5) +
 * timestamp (9) + byte-string header (up to 5). Used to keep a batch under the broker's packet limit.
 */
export const BATCH_OVERHEAD_BYTES_PER_ENTRY = 20;

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Uint8Array);
}
