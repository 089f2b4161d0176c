/**
 * The core every protocol folder builds on: the `PowerSource` interface and its types, the injected clock,
 * the bridge's error type, byte counters, the delimited accumulator, event edges, the polled-driver base,
 * the null source, and the transports (core/transport/). Nothing here knows a device protocol.
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
export { systemBridgeClock, type BridgeClock, type BridgeTimer } from './clock.ts';
export { BridgeError, isBridgeError, type BridgeErrorCode } from './errors.ts';
export { Counters, droppedBytes } from './counters.ts';
export { DelimitedAccumulator, type DelimitedOptions } from './delimited.ts';
export { EventEdges } from './edges.ts';
export { NoPowerSource } from './none.ts';
export { OrderedDrops, type DecodeOutput } from './decode-output.ts';
export { PolledPowerSource, POLL_FAILURES_MAX, AC_DISCHARGE_THRESHOLD_MA_DEFAULT, acFromCurrent, type PollResult, type PolledOptions, type StreamParser } from './polled.ts';
export { explainParseError, closest } from './usage.ts';
export * from './transport/index.ts';
