/**
 * One batch made from the log: read from a seq, trimmed to the size planned for the link, encoded (and
 * compressed where it pays, and signed) into a buffer of the pool. The publisher makes its batches here at
 * send time, and the prepared tail (prepared-tail.ts) makes them ahead of time; both read through the one
 * payload buffer of the pool, so the two never read at once (the publisher waits for a slice of preparation
 * that is under way before it reads).
 */
import type { FlashLog } from '../log/index.ts';
import { LastgaspError } from '../util/index.ts';
import type { BatchBuffers } from './batch-buffers.ts';
import { fitBatch, readBytesMax } from './batch-sizing.ts';
import type { LinkHint } from './compression.ts';
import type { WireAuth } from './wire-auth.ts';
import type { WireCodec } from './wire.ts';

/** How a batch is to be made: the link's limits and what the codec knows of the link. */
export interface BatchPlan {
  /** The largest payload every link takes (the broker's packet limit, or batchBytesMax). */
  readonly payloadBytesMax: number;
  /** Bytes on the wire the batch should take (batch-sizing.ts linkBatchBytes). */
  readonly batchBytes: number;
  /** The link for the compression decision; undefined: never compressed (replication.compression off). */
  readonly link: LinkHint | undefined;
}

/** An encoded batch and what it was made under: it may be sent only while all of that still holds. */
export interface MadeBatch {
  readonly first: number;
  readonly last: number;
  readonly entries: number;
  readonly payload: Uint8Array;
  /** The pooled buffer the payload lives in, if it came from the pool. */
  readonly buffer: Uint8Array | undefined;
  /** The log's epoch the batch header carries. */
  readonly epoch: number;
  /** The signing mode and key it was signed with. */
  readonly auth: WireAuth;
}

export type MakeResult =
  | { ok: true; batch: MadeBatch }
  /** Nothing at that seq (retention or a cut moved the log). */
  | { ok: false; reason: 'empty' }
  /** Its first entry alone does not fit in a packet the brokers take. */
  | { ok: false; reason: 'too-large'; seq: number; entryBytes: number };

export interface BatchSourceOptions {
  log: FlashLog;
  codec: WireCodec;
  buffers: BatchBuffers;
  group: string;
  node: string;
  batchEntriesMax: number;
}

export class BatchSource {
  constructor(private readonly options: BatchSourceOptions) {}

  /** The batch starting at `seq`, made as `plan` says. */
  async make(seq: number, plan: BatchPlan): Promise<MakeResult> {
    const { log, codec, buffers, batchEntriesMax } = this.options;
    // A batch the codec will compress holds more entries for the same time on the wire (never more than the
    // broker takes uncompressed, so that one the codec then sends as it is still fits).
    const ratio = plan.link ? codec.expectedRatio(plan.batchBytes, plan.link) : 1;
    const plainBytes = Math.min(plan.payloadBytesMax, Math.round(plan.batchBytes / ratio));
    const bytesMax = readBytesMax(plainBytes, batchEntriesMax);
    // The entries are encoded at once and dropped, so one buffer serves every read.
    const entries = fitBatch(await log.read(seq, { entriesMax: batchEntriesMax, bytesMax, payloadBuffer: buffers.payloads(bytesMax) }), plainBytes);
    const first = entries[0];
    if (!first || first.seq !== seq) return { ok: false, reason: 'empty' };
    const epoch = log.epoch;
    let buffer: Uint8Array | undefined;
    const payload = codec.encodeBatch({ group: this.options.group, node: this.options.node, epoch, entries }, (bytes) => (buffer = buffers.take(bytes)), plan.link);
    if (payload.length > plan.payloadBytesMax) {
      if (buffer) buffers.give(buffer);
      return { ok: false, reason: 'too-large', seq, entryBytes: first.payload.length };
    }
    return { ok: true, batch: { first: seq, last: seq + entries.length - 1, entries: entries.length, payload, buffer, epoch, auth: codec.auth } };
  }
}

/** The error for an entry that alone does not fit in one packet the brokers take (MQTT 5 reason 0x95). */
export function entryTooLargeError(seq: number, entryBytes: number, payloadBytesMax: number): LastgaspError {
  return new LastgaspError(
    'BROKER_REFUSED',
    `entry ${seq} (${entryBytes} bytes) does not fit in one MQTT packet of at most ${payloadBytesMax} bytes that the broker takes; replication is stuck at it until the broker's max_packet_size is raised`,
    { seq, entryBytes, payloadBytesMax, reason: 'packet too large', reasonCode: 0x95 },
  );
}
