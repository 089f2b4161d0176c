/**
 * The energy side of the brownout plan, as pure functions: how long the tail needs to leave at the rate this
 * link was measured to drain, how long the battery has left, and how many unreplicated bytes a throttle
 * given in seconds of flush stands for. The machine (machine.ts) compares the first two; the agent sizes
 * the log's throttle with the third.
 */
import type { PowerStatus } from '../../firmware-bridge/index.ts';

/** What the supervisor learns from the agent on each tick while on battery. */
export interface TailEnergy {
  /** Bytes of the log not yet replicated at the configured level. */
  readonly unreplicatedBytes: number;
  /** Bytes per second this link drained while busy; undefined until the replication traffic measured it. */
  readonly drainBytesPerS: number | undefined;
}

/** The tail as the machine weighs it: its size, the rate, and what the steps after the flush need. */
export interface TailEstimate {
  readonly bytes: number;
  readonly bytesPerS: number;
  /** Handoff, the wait for the successor, the cut delay and a margin: spent after the flush. */
  readonly afterFlushMs: number;
}

export interface TimeLeft {
  readonly ms: number;
  readonly from: 'runtime' | 'charge and load';
}

/** Milliseconds the tail needs to leave at the measured rate. */
export function flushNeedMs(bytes: number, bytesPerS: number): number {
  if (bytes <= 0) return 0;
  return bytesPerS > 0 ? (bytes * 1000) / bytesPerS : Infinity;
}

/**
 * The battery's time left: its own runtime estimate when it gives one; otherwise the charge left (state of
 * charge × the configured capacity) over the discharge current it reports. currentMa is negative out of the
 * pack (firmware-bridge/PROTOCOL.md, TELEMETRY field 4); a pack that is not discharging gives no estimate.
 */
export function timeLeft(status: PowerStatus | undefined, batteryMah: number): TimeLeft | undefined {
  if (!status) return undefined;
  if (status.runtimeS !== undefined) return { ms: status.runtimeS * 1000, from: 'runtime' };
  if (batteryMah > 0 && status.socPercent !== undefined && status.currentMa !== undefined && status.currentMa < 0) {
    const hours = ((status.socPercent / 100) * batteryMah) / -status.currentMa;
    return { ms: hours * 3_600_000, from: 'charge and load' };
  }
  return undefined;
}

/**
 * The unreplicated-bytes limit a throttle given in seconds of flush stands for: seconds × the measured rate,
 * and never above a limit given in bytes (0 = none). Until a rate is measured only the byte limit holds.
 */
export function throttleBytes(seconds: number, bytesPerS: number | undefined, bytesLimit: number): number {
  if (seconds <= 0 || bytesPerS === undefined || bytesPerS <= 0) return bytesLimit;
  const fromRate = Math.max(1, Math.floor(seconds * bytesPerS));
  return bytesLimit > 0 ? Math.min(bytesLimit, fromRate) : fromRate;
}
