export { Replication, type ReplicationOptions, type ReplicationEvents } from './replication.ts';
export { BrokerLink, brokerRefusal, publishPacketBytes, type BrokerLinkOptions, type LinkUp } from './broker-link.ts';
export { Publisher } from './publisher.ts';
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
} from './wire.ts';
export { DrainMeter, DRAIN_WINDOW_MS, DRAIN_SAMPLE_MS_MAX } from './drain-meter.ts';
