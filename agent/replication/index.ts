/**
 * Replication's public surface. The hub (replication.ts) owns the broker links and dispatches what the
 * inbound gate (inbound-gate.ts) admits to the publisher (primary), the receiver (standby) or the roles'
 * events, and publishes this node's control records through control-records.ts (leader, state, Will, acks,
 * power); a broker link (broker-link.ts) keeps its stall tracking, Receive Maximum quota, node race and
 * client options in files of their own; availability.ts says online/offline for dashboards; direct/ is the
 * second path to the siblings. The publisher (publisher.ts) is the sequence of the primary's side; its
 * parts sit beside it: batch sizing, the batch supply (the pooled buffers, the batches made from the log,
 * and the tail prepared ahead while it cannot send), the window's bookkeeping, the sibling positions, the
 * replicated watermark's waiters, and the resend requests. Every timing in them runs on the injected clock.
 */
export { Replication, type ReplicationOptions, type ReplicationEvents } from './replication.ts';
export { BrokerLink, brokerRefusal, publishPacketBytes, type BrokerLinkOptions, type LinkUp } from './broker-link.ts';
export { Availability, type AvailabilityOptions } from './availability.ts';
export { Publisher } from './publisher.ts';
export type { PublisherOptions, PublishLink } from './publisher-options.ts';
export { Receiver } from './receiver.ts';
export {
  WireCodec,
  topics,
  WIRE_VERSION,
  type Topics,
  type BatchMessage,
  type AckMessage,
  type StateMessage,
  type LeaderMessage,
  type NodeStateName,
  type DecodeResult,
  type MessageKind,
  type Freshness,
  type WireCodecOptions,
} from './wire.ts';
export type { WireAuth } from './wire-auth.ts';
export { decodeStrictCbor, type CborValue, type StrictDecodeResult } from './strict-cbor.ts';
export { CounterSource, FreshnessFilter, COUNTER_BLOCK, type FreshnessVerdict } from './freshness.ts';
export { generateNodeKeyPair, privateKeyPem, publicKeyText, fingerprint, parsePublicKeyText, parsePrivateKeyPem, readPublicKey, loadKeyring, type Keyring, type NodeKeyPair } from './keys.ts';
export { DrainMeter, DRAIN_WINDOW_MS, DRAIN_SAMPLE_MS_MAX } from './drain-meter.ts';
export { BatchCompressor, BATCH_COMPRESSION_BROTLI, BATCH_INFLATED_BYTES_MAX, type LinkHint } from './compression.ts';
