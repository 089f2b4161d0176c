/**
 * The power state machine as a pure function: (state, input) → (state, actions). No clock, no I/O: the
 * shell (supervisor.ts) feeds it inputs with their times and carries out the actions. That keeps every rule
 * testable by stepping inputs, and keeps the one irreversible step (the handoff) in one place.
 *
 *   ONLINE → ON_BATTERY → BROWNOUT → FLUSHING → HANDED_OFF → POWER_OFF
 *                 ↘──────────↘───────────↘ ONLINE  (mains back before the handoff, the point of no return)
 *
 * Lessons from NUT and apcupsd users (research notes, §1 and §4): start shrinking the unreplicated tail as
 * soon as mains is lost (it harms nothing), but debounce before anything irreversible; use thresholds the
 * user sets (charge, runtime, time on battery, whichever first) rather than the device's low-battery flag
 * alone; a power-source link that goes silent while on battery is itself critical after a dead time; and
 * once the handoff is out, the decision is latched.
 *
 * A brownout event is acted on at once, unless the telemetry contradicts it (mains present and nothing saying
 * the charge is low): then it is held like any other threshold. It becomes a brownout only if the source's
 * own telemetry still reports it (the `brownout` alarm) once the on-battery debounce has passed since the
 * event; a status that no longer reports it dismisses it, and mains lost or a low charge confirms it at once.
 * One stray or corrupted frame on the serial line therefore cannot start the one irreversible sequence.
 */
import type { PowerEvent, PowerStatus } from '../../firmware-bridge/index.ts';
import { flushNeedMs, timeLeft, type TailEstimate } from './energy.ts';

export type PowerStateName = 'ONLINE' | 'ON_BATTERY' | 'BROWNOUT' | 'FLUSHING' | 'HANDED_OFF' | 'POWER_OFF';

export interface Thresholds {
  socPercentMin: number;
  runtimeSMin: number;
  onBatterySMax: number;
  trustDeviceLowBattery: boolean;
  onBatteryDebounceMs: number;
  linkDeadMs: number;
  /**
   * The energy rule: a brownout once the time the tail needs (flush at the measured rate, then the steps
   * after it) comes within this margin of the battery's time left. Left out: thresholds only.
   */
  energyMarginMs?: number;
  /** Pack capacity, for the time left from charge and load when the source gives no runtime (0 = unknown). */
  batteryMah?: number;
}

/** What started a brownout: the energy plan, or a rule (a threshold, the source's own event, a dead link). */
export type BrownoutTrigger = 'energy' | 'threshold';

export interface MachineState {
  readonly name: PowerStateName;
  readonly sinceMs: number;
  /** When mains was lost (ms, monotonic); undefined while on mains. */
  readonly onBatterySinceMs: number | undefined;
  /** When the power-source link went down (ms); undefined while up. */
  readonly linkDownSinceMs: number | undefined;
  readonly lastStatus: PowerStatus | undefined;
  /** Why the brownout was declared; latched with it. */
  readonly brownoutReason: string | undefined;
  /** A brownout event the telemetry contradicted, held until confirmed or dismissed (see the file comment). */
  readonly brownoutHeld: HeldBrownout | undefined;
  /** The latest estimate of the unreplicated tail, fed while on battery; undefined until one came. */
  readonly tail?: TailEstimate;
}

export interface HeldBrownout {
  /** When the event arrived (ms, monotonic). */
  readonly sinceMs: number;
  readonly detail: string | undefined;
  /** A status received after the event still carried the brownout alarm. */
  readonly reported: boolean;
}

/** The alarm name under which a source's telemetry reports a brownout (the bridge protocol's TELEMETRY alarms). */
export const BROWNOUT_ALARM = 'brownout';

/** What became of a brownout event the telemetry contradicted; the supervisor counts each. */
export type BrownoutCheck = 'held' | 'dismissed' | 'confirmed';

export type Input =
  | { type: 'status'; status: PowerStatus; atMs: number }
  | { type: 'event'; event: PowerEvent; atMs: number }
  | { type: 'link'; up: boolean; atMs: number }
  | { type: 'tick'; atMs: number }
  /** The tail's size and the measured drain rate (see energy.ts); weighed against the time left. */
  | { type: 'tail'; tail: TailEstimate; atMs: number }
  | { type: 'flush-started'; atMs: number }
  | { type: 'handoff-published'; atMs: number }
  | { type: 'power-off-requested'; atMs: number };

export type Action =
  /** Mains lost: sync every batch at once and start shrinking the tail. */
  | { type: 'shrink-tail' }
  /** Mains back before the point of no return: back to normal operation. */
  | { type: 'resume' }
  /** Brownout: refuse new appends, pause other traffic, flush the tail, hand off, let the BMS cut power. */
  | { type: 'flush-and-handoff'; reason: string; trigger: BrownoutTrigger };

export interface Step {
  readonly state: MachineState;
  readonly actions: readonly Action[];
  /** A line for the timeline when the state changed. */
  readonly transition?: { from: PowerStateName; to: PowerStateName; reason: string };
  readonly brownoutCheck?: BrownoutCheck;
}

export function initialState(atMs: number): MachineState {
  return { name: 'ONLINE', sinceMs: atMs, onBatterySinceMs: undefined, linkDownSinceMs: undefined, lastStatus: undefined, brownoutReason: undefined, brownoutHeld: undefined };
}

export function step(state: MachineState, input: Input, thresholds: Thresholds): Step {
  const observed = observe(state, input);
  switch (observed.name) {
    case 'ONLINE':
    case 'ON_BATTERY':
      return fromSupplied(observed, input, thresholds);
    case 'BROWNOUT':
    case 'FLUSHING':
      if (mainsReturned(state, observed)) return move({ ...observed, brownoutReason: undefined }, 'ONLINE', input.atMs, 'mains back before the handoff', [{ type: 'resume' }]);
      if (observed.name === 'BROWNOUT' && input.type === 'flush-started') return move(observed, 'FLUSHING', input.atMs, 'flush started', []);
      if (observed.name === 'FLUSHING' && input.type === 'handoff-published') return move(observed, 'HANDED_OFF', input.atMs, 'handoff record published', []);
      return stay(observed);
    case 'HANDED_OFF':
      if (input.type === 'power-off-requested') return move(observed, 'POWER_OFF', input.atMs, 'power cut requested', []);
      return stay(observed);
    case 'POWER_OFF':
      return stay(observed);
  }
}

/**
 * Mains came back after having been seen lost. A brownout the BMS declared while mains still looked
 * present is not undone by the next status that says so: only an observed return counts.
 */
function mainsReturned(before: MachineState, after: MachineState): boolean {
  return before.onBatterySinceMs !== undefined && after.onBatterySinceMs === undefined;
}

/** Record what the input says about mains and the link, whatever the state. */
function observe(state: MachineState, input: Input): MachineState {
  if (input.type === 'status') {
    const ac = input.status.acPresent;
    const onBatterySinceMs = ac === false ? (state.onBatterySinceMs ?? input.atMs) : ac === true ? undefined : state.onBatterySinceMs;
    return { ...state, lastStatus: input.status, onBatterySinceMs, linkDownSinceMs: undefined };
  }
  if (input.type === 'event') {
    if (input.event.kind === 'ac-lost') return { ...state, onBatterySinceMs: state.onBatterySinceMs ?? input.atMs };
    if (input.event.kind === 'ac-restored') return { ...state, onBatterySinceMs: undefined };
    return state;
  }
  if (input.type === 'link') {
    return { ...state, linkDownSinceMs: input.up ? undefined : (state.linkDownSinceMs ?? input.atMs) };
  }
  if (input.type === 'tail') return { ...state, tail: input.tail };
  return state;
}

function fromSupplied(observed: MachineState, input: Input, thresholds: Thresholds): Step {
  const checked = checkHeldBrownout(observed, input, thresholds);
  if ('actions' in checked) return checked;
  const state = checked.state;
  const onBattery = state.onBatterySinceMs !== undefined;
  const ruled = checked.reason ?? brownoutReason(state, input, thresholds);
  const planned = ruled ? undefined : energyReason(state, input.atMs, thresholds);
  const reason = ruled ?? planned;
  if (reason) return declareBrownout(state, input.atMs, reason, ruled ? 'threshold' : 'energy', checked.check);
  if (state.name === 'ONLINE' && onBattery) return move(state, 'ON_BATTERY', input.atMs, 'mains lost', [{ type: 'shrink-tail' }]);
  if (state.name === 'ON_BATTERY' && !onBattery) return move(state, 'ONLINE', input.atMs, 'mains back', [{ type: 'resume' }]);
  return stay(state);
}

function declareBrownout(state: MachineState, atMs: number, reason: string, trigger: BrownoutTrigger, check?: BrownoutCheck): Step {
  const step = move({ ...state, brownoutReason: reason, brownoutHeld: undefined }, 'BROWNOUT', atMs, reason, [
    ...(state.name === 'ONLINE' ? [{ type: 'shrink-tail' } as const] : []),
    { type: 'flush-and-handoff', reason, trigger },
  ]);
  return check ? { ...step, brownoutCheck: check } : step;
}

/** Mains present and nothing in the last status says the charge is low: a brownout event is suspect. */
function contradictsBrownout(state: MachineState, thresholds: Thresholds): boolean {
  const status = state.lastStatus;
  if (state.onBatterySinceMs !== undefined || status?.acPresent !== true || status.lowBattery === true) return false;
  if (thresholds.socPercentMin > 0 && status.socPercent !== undefined && status.socPercent <= thresholds.socPercentMin) return false;
  if (thresholds.runtimeSMin > 0 && status.runtimeS !== undefined && status.runtimeS <= thresholds.runtimeSMin) return false;
  return true;
}

/**
 * Hold a brownout event the telemetry contradicts, and decide a held one: a Step when this input decides
 * it alone (held, dismissed), otherwise the state to go on with and, when confirmed, the reason.
 */
function checkHeldBrownout(state: MachineState, input: Input, thresholds: Thresholds): Step | { state: MachineState; reason?: string; check?: BrownoutCheck } {
  const isBrownoutEvent = input.type === 'event' && input.event.kind === 'brownout';
  const held = state.brownoutHeld;
  if (isBrownoutEvent && contradictsBrownout(state, thresholds)) {
    if (held) return stay(state);
    const detail = input.event.detail;
    return { state: { ...state, brownoutHeld: { sinceMs: input.atMs, detail, reported: false } }, actions: [], brownoutCheck: 'held' };
  }
  if (!held) return { state };
  const said = `the power source reported a brownout${held.detail ? ` (${held.detail})` : ''}`;
  if (!contradictsBrownout(state, thresholds)) {
    const why = state.onBatterySinceMs !== undefined ? 'mains is lost' : state.lastStatus?.acPresent !== true ? 'mains is no longer reported present' : 'the charge is low';
    return { state: { ...state, brownoutHeld: undefined }, reason: `${said}, and now ${why}`, check: 'confirmed' };
  }
  let reported = held.reported;
  if (input.type === 'status') {
    if (!input.status.alarms.includes(BROWNOUT_ALARM)) return { state: { ...state, brownoutHeld: undefined }, actions: [], brownoutCheck: 'dismissed' };
    reported = true;
  }
  const next = reported === held.reported ? state : { ...state, brownoutHeld: { ...held, reported } };
  const heldMs = input.atMs - held.sinceMs;
  if (reported && heldMs >= thresholds.onBatteryDebounceMs) {
    return { state: { ...next, brownoutHeld: undefined }, reason: `${said}, still reported after ${Math.round(heldMs)} ms with mains present`, check: 'confirmed' };
  }
  return { state: next };
}

/** The first brownout rule that holds, or undefined. The BMS's own brownout event needs no debounce. */
function brownoutReason(state: MachineState, input: Input, thresholds: Thresholds): string | undefined {
  if (input.type === 'event' && input.event.kind === 'brownout') return `the power source reported a brownout${input.event.detail ? ` (${input.event.detail})` : ''}`;
  if (input.type === 'event' && input.event.kind === 'power-off-pending') return 'the power source is about to cut power';
  const since = state.onBatterySinceMs;
  if (since === undefined) return undefined;
  const onBatteryMs = input.atMs - since;
  if (onBatteryMs < thresholds.onBatteryDebounceMs) return undefined;
  const status = state.lastStatus;
  if (status && status.acPresent === false) {
    if (thresholds.socPercentMin > 0 && status.socPercent !== undefined && status.socPercent <= thresholds.socPercentMin) {
      return `state of charge ${status.socPercent}% ≤ ${thresholds.socPercentMin}%`;
    }
    if (thresholds.runtimeSMin > 0 && status.runtimeS !== undefined && status.runtimeS <= thresholds.runtimeSMin) {
      return `runtime ${status.runtimeS} s ≤ ${thresholds.runtimeSMin} s`;
    }
    if (thresholds.trustDeviceLowBattery && status.lowBattery === true) return 'the device reports low battery';
  }
  if (input.type === 'event' && input.event.kind === 'low-battery' && thresholds.trustDeviceLowBattery) return 'the device reports low battery';
  if (thresholds.onBatterySMax > 0 && onBatteryMs >= thresholds.onBatterySMax * 1000) return `on battery for ${Math.round(onBatteryMs / 1000)} s ≥ ${thresholds.onBatterySMax} s`;
  const linkDown = state.linkDownSinceMs;
  if (linkDown !== undefined && input.atMs - linkDown >= thresholds.linkDeadMs) {
    return `power-source link silent for ${Math.round(input.atMs - linkDown)} ms while on battery`;
  }
  return undefined;
}

/**
 * The energy rule (thresholds.energyMarginMs): on battery, past the debounce, the time the tail needs to
 * leave plus what comes after the flush is within the margin of the battery's time left. Waiting longer
 * could only make the tail larger and the time left shorter, so this is the last moment the flush fits.
 */
function energyReason(state: MachineState, atMs: number, thresholds: Thresholds): string | undefined {
  const margin = thresholds.energyMarginMs;
  const tail = state.tail;
  const since = state.onBatterySinceMs;
  if (margin === undefined || !tail || since === undefined || atMs - since < thresholds.onBatteryDebounceMs) return undefined;
  if (state.lastStatus?.acPresent !== false) return undefined;
  const left = timeLeft(state.lastStatus, thresholds.batteryMah ?? 0);
  if (!left) return undefined;
  const needMs = flushNeedMs(tail.bytes, tail.bytesPerS) + tail.afterFlushMs;
  if (needMs + margin < left.ms) return undefined;
  const seconds = (ms: number) => (ms / 1000).toFixed(1);
  return `energy: the tail needs ${seconds(needMs)} s (${tail.bytes} bytes at ${Math.round(tail.bytesPerS)} B/s, then ${seconds(tail.afterFlushMs)} s to hand off) and the battery has ${seconds(left.ms)} s left (${left.from}), within the ${seconds(margin)} s margin`;
}

function move(state: MachineState, to: PowerStateName, atMs: number, reason: string, actions: Action[]): Step {
  return { state: { ...state, name: to, sinceMs: atMs }, actions, transition: { from: state.name, to, reason } };
}

function stay(state: MachineState): Step {
  return { state, actions: [] };
}
