/**
 * The lastgasp bridge protocol (PROTOCOL.md), for controllers whose firmware you write: its constants,
 * COBS framing, CRC-16, frames, CBOR messages, the stream parser, the endpoint (sequence numbers,
 * retransmission, duplicates) and the host's PowerSource. The simulated controller (sim-device.ts) and the
 * CLI's decoder (decoder.ts) are entered directly by cli/, not from here, so that the daemon never loads them.
 */
export * from './constants.ts';
export { cobsEncode, cobsDecodeInto, cobsEncodedLenMax } from './cobs.ts';
export { crc16, CRC16_CHECK, CRC16_INIT, CRC16_POLY } from './crc16.ts';
export { encodeFrame, decodeFrame, type RawFrame, type FrameDecodeResult, type FrameDropReason } from './frame.ts';
export {
  encodeMessage,
  encodeBody,
  headerVersionFor,
  MESSAGE_TYPE_BY_NAME,
  RELIABLE_TYPES,
  type BridgeMessage,
  type BridgeMessageName,
  type BridgeFrame,
  type MessageDecodeResult,
  type MessageDropReason,
  type HelloMessage,
  type CapabilitiesMessage,
  type TelemetryMessage,
  type PowerEventMessage,
  type HeartbeatMessage,
  type HoldMessage,
  type CutMessage,
  type CancelMessage,
  type AckMessage,
  type NakMessage,
} from './messages.ts';
export { decodeMessage } from './message-decode.ts';
export { BridgeParser, BRIDGE_STALL_MS, type BridgeParserHandlers } from './parser.ts';
export { BridgeEndpoint, type ReliableResult, type EndpointOptions } from './endpoint.ts';
export { BridgePowerSource, type BridgeSourceOptions } from './host.ts';
