/**
 * What every power source (the bridge protocol, a JBD or Daly pack, a Megatec UPS, a NUT server, Linux
 * power_supply) gives the agent: one normalized status, discrete events, the link's state, and, where the
 * device can, power commands. The agent's supervisor uses nothing else.
 */

/** Minimal logger shape; the agent passes its own (structural typing keeps this folder standalone). */
export interface BridgeLogger {
  debug(message: string | (() => string), fields?: Record<string, unknown>): void;
  info(message: string | (() => string), fields?: Record<string, unknown>): void;
  warn(message: string | (() => string), fields?: Record<string, unknown>): void;
  error(message: string | (() => string), fields?: Record<string, unknown>): void;
}

/**
 * Sign convention for `currentMa`: positive = current into the pack (charging), negative = out of the
 * pack (discharging). Drivers whose device reports the other way round flip it, and each driver can be
 * flipped again by configuration (`invertCurrent`), because vendors disagree (see research notes, Daly).
 */
export interface PowerStatus {
  /** Which source produced it, e.g. "bridge:/dev/ttyUSB0", "nut:ups@127.0.0.1". */
  readonly source: string;
  /** Mains present. undefined when the source cannot tell. */
  readonly acPresent: boolean | undefined;
  readonly socPercent?: number;
  readonly runtimeS?: number;
  readonly packMv?: number;
  readonly currentMa?: number;
  readonly cellMv?: readonly number[];
  readonly temperaturesC?: readonly number[];
  /** The device's own low-battery flag (NUT LB, Megatec bit 6); the supervisor does not rely on it alone. */
  readonly lowBattery?: boolean;
  /** Short alarm names as the device reports them ("cell-ov", "FSD", ...). */
  readonly alarms: readonly string[];
  /** Wall-clock time (ms) the values were read from the device. */
  readonly atMs: number;
}

export type PowerEventKind =
  | 'ac-lost'
  | 'ac-restored'
  | 'low-battery'
  /** The controller says the supply is about to collapse: flush and hand off now. */
  | 'brownout'
  /** The controller is cutting (or has been told to cut) power. */
  | 'power-off-pending';

export interface PowerEvent {
  readonly kind: PowerEventKind;
  readonly atMs: number;
  readonly detail?: string;
}

export type LinkState = 'connecting' | 'up' | 'down';

export interface CommandResult {
  readonly ok: boolean;
  /** Reason code from the device's NAK, or "timeout", "unsupported", "link-down". */
  readonly reason?: string;
}

export interface PowerSourceCapabilities {
  /** The device can be told to cut power after a delay (bridge "cut", Megatec S<n>, NUT FSD via upsmon). */
  readonly cutPower: boolean;
  /** The device can be asked to keep power up for N ms (bridge "hold"). */
  readonly holdPower: boolean;
  /** The device pushes events; otherwise they are derived from polled status. */
  readonly pushEvents: boolean;
}

export interface PowerSourceListener {
  status(status: PowerStatus): void;
  event(event: PowerEvent): void;
  link(state: LinkState, reason?: string): void;
}

export interface PowerSource {
  readonly name: string;
  readonly capabilities: PowerSourceCapabilities;
  /** Open the link (reconnecting by itself with backoff from then on) and start reporting. */
  start(listener: PowerSourceListener): Promise<void>;
  stop(): Promise<void>;
  holdPower(durationMs: number): Promise<CommandResult>;
  cutPower(delayMs: number): Promise<CommandResult>;
  cancelCut(): Promise<CommandResult>;
  /** Named counters (bytes dropped by reason, frames, CRC errors, reconnects, ...). */
  counters(): Readonly<Record<string, number>>;
}

/**
 * Configuration of a power source, as it appears under `power.source` in the agent's config file.
 * JBD and Daly packs cannot see mains: it is inferred from the pack current, and mains counts as lost once
 * the pack discharges more than `acDischargeThresholdMa` (default 100 mA). A Megatec UPS reports only a
 * battery voltage: with `batteryVoltsLow`/`batteryVoltsHigh` (in the UPS's own scale) the charge is estimated
 * between them, as NUT's battery.voltage.low/high do.
 */
export type PowerSourceConfig =
  | { kind: 'none' }
  | { kind: 'bridge'; transport: TransportConfig; invertCurrent?: boolean }
  | { kind: 'jbd'; transport: TransportConfig; pollMs?: number; invertCurrent?: boolean; acDischargeThresholdMa?: number }
  | { kind: 'daly'; transport: TransportConfig; pollMs?: number; invertCurrent?: boolean; address?: number; acDischargeThresholdMa?: number }
  | { kind: 'q1'; transport: TransportConfig; pollMs?: number; batteryVoltsLow?: number; batteryVoltsHigh?: number }
  | { kind: 'nut'; host: string; port?: number; ups: string; username?: string; passwordFile?: string; pollMs?: number }
  | { kind: 'sysfs'; path?: string; pollMs?: number };

export type TransportConfig =
  | { type: 'serial'; path: string; baudRate?: number }
  | { type: 'tcp'; host: string; port: number };
