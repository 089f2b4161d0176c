/**
 * The public surface of firmware-bridge/: everything about the link to the battery controller. The agent
 * uses `createPowerSource`; tests and `lastgasp bms decode` use the codecs; the CLI wires `bmsSimMain`.
 */
export type {
  BridgeLogger,
  PowerStatus,
  PowerEvent,
  PowerEventKind,
  LinkState,
  CommandResult,
  PowerSourceCapabilities,
  PowerSourceListener,
  PowerSource,
  PowerSourceConfig,
  TransportConfig,
} from './types.ts';

export {
  createPowerSource,
  BRIDGE_BAUD_DEFAULT,
  JBD_BAUD_DEFAULT,
  DALY_BAUD_DEFAULT,
  Q1_BAUD_DEFAULT,
  POLL_MS_DEFAULT,
  SYSFS_POLL_MS_DEFAULT,
  type PowerSourceDeps,
} from './power-source.ts';

// The bridge protocol: constants, framing, messages, the stream parser and the endpoint.
export * from './protocol/constants.ts';
export { cobsEncode, cobsDecodeInto, cobsEncodedLenMax } from './protocol/cobs.ts';
export { crc16, CRC16_CHECK, CRC16_INIT, CRC16_POLY } from './protocol/crc16.ts';
export { encodeFrame, decodeFrame, type RawFrame, type FrameDecodeResult, type FrameDropReason } from './protocol/frame.ts';
export {
  encodeMessage,
  encodeBody,
  decodeMessage,
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
} from './protocol/messages.ts';
export { BridgeParser, BRIDGE_STALL_MS, type BridgeParserHandlers } from './protocol/parser.ts';
export { BridgeEndpoint, systemBridgeClock, type BridgeClock, type ReliableResult, type EndpointOptions } from './bridge/endpoint.ts';
export { BridgePowerSource, type BridgeSourceOptions } from './bridge/host.ts';

// Drivers for existing devices: codecs (pure) and their PowerSources.
export * from './drivers/jbd.ts';
export * from './drivers/daly.ts';
export * from './drivers/megatec.ts';
export * from './drivers/nut.ts';
export * from './drivers/sysfs.ts';
export { PolledPowerSource, POLL_FAILURES_MAX, AC_DISCHARGE_THRESHOLD_MA_DEFAULT, acFromCurrent, type PollResult, type PolledOptions, type StreamParser } from './drivers/polled.ts';
export { JbdPowerSource, type JbdSourceOptions } from './drivers/jbd-source.ts';
export { DalyPowerSource, type DalySourceOptions } from './drivers/daly-source.ts';
export { MegatecPowerSource, type MegatecSourceOptions } from './drivers/megatec-source.ts';
export { NutPowerSource, type NutSourceOptions } from './drivers/nut-source.ts';
export { SysfsPowerSource, type SysfsSourceOptions } from './drivers/sysfs-source.ts';
export { NoPowerSource } from './source/none.ts';
export { EventEdges } from './source/edges.ts';

// Streams and transports.
export { Counters, droppedBytes } from './stream/counters.ts';
export { DelimitedAccumulator, type DelimitedOptions } from './stream/delimited.ts';
export {
  createTransport,
  transportName,
  ReconnectingTransport,
  tcpConnector,
  nodeSerialConnector,
  denoTtyConnector,
  isDeno,
  sttyArgs,
  RECONNECT_INITIAL_MS,
  RECONNECT_MAX_MS,
  type Transport,
  type TransportHandlers,
  type CreateTransportOptions,
} from './transport/index.ts';

// The simulator and the CLI entry points.
export { bmsSimMain, BMS_SIM_HELP } from './sim/cli.ts';
export { bmsMain, BMS_HELP } from './cli/bms.ts';
export { DECODERS, PROBE_ORDER, type DecodeOutput, type DecoderName } from './cli/decoders.ts';
export { SIM_PROTOCOLS, type SimProtocolName } from './sim/cli.ts';
export { Battery, BATTERY_DEFAULTS, restingCellMv, type BatteryOptions, type Chemistry } from './sim/battery.ts';
export { parseControl, CONTROL_HELP, type ControlCommand } from './sim/control.ts';
export { jbdResponse } from './sim/jbd-device.ts';
export { dalyResponse } from './sim/daly-device.ts';
export type { Io } from './cli/io.ts';
