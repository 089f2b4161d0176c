/**
 * What a publisher is given (publisher.ts): the log, the links and the codec, the group's durability and
 * quorum, and the limits on batches and the window; and the narrow views of the broker links and the direct
 * path that it uses.
 */
import type { FlashLog } from '../log/index.ts';
import type { Clock, Logger } from '../util/index.ts';
import type { BrokerLink } from './broker-link.ts';
import type { Topics, WireCodec } from './wire.ts';

export interface PublisherOptions {
  log: FlashLog;
  links: readonly PublishLink[];
  codec: WireCodec;
  topics: Topics;
  group: string;
  node: string;
  durability: 'replica' | 'broker';
  /** PUBACKs needed per batch (1 in cluster mode). */
  quorum: number;
  siblings: readonly string[];
  /** Siblings that must hold an entry on flash before it counts as replicated (durability "replica"). */
  replicaAcks: number;
  batchEntriesMax: number;
  batchBytesMax: number;
  windowMax: number;
  /**
   * Nagle's rule for batches: while a batch awaits its quorum, a small one waits for that acknowledgement
   * (batch-sizing.ts fullEnoughToSend; replication.coalesce; default true).
   */
  coalesce?: boolean;
  /** Whether batches may be compressed where that pays (replication.compression; default true). */
  compress?: boolean;
  /** Memory the prepared tail may hold (prepared-tail.ts PREPARED_BYTES_MAX by default; 0: none prepared). */
  preparedBytesMax?: number;
  /** The direct path to the siblings (direct/direct-path.ts), when configured. */
  direct?: DirectSink;
  logger: Logger;
  clock: Clock;
}

/**
 * What the publisher uses of a broker link (BrokerLink): named here so the publisher's timing tests can
 * place each PUBACK at an exact instant of their clock.
 */
export type PublishLink = Pick<BrokerLink, 'connected' | 'info' | 'payloadBytesMax' | 'publish'>;

/** A second way out for batches, beside the brokers. */
export interface DirectSink {
  /** Batches go out this way now: while they do, the publisher runs with no broker connected. */
  carrying(): boolean;
  /** Every batch published, in publish order. */
  batch(first: number, last: number, payload: Uint8Array): void;
}
