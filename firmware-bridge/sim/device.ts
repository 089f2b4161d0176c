/**
 * The simulated controller's state, whatever protocol it speaks: mains, the battery model, the low-battery
 * and brownout thresholds, the power output and the host's hold/cut/cancel commands. Every notable change is
 * reported as one JSON line through `emit`, which the demo and the end-to-end tests read.
 */
import type { PowerEventKind } from '../core/index.ts';
import type { Battery } from './battery.ts';

export interface Thresholds {
  /** The controller raises low-battery at or below this charge, on battery. */
  readonly lowBatteryPercent: number;
  /** The controller raises brownout at or below this charge, on battery (0 = only by command). */
  readonly brownoutPercent: number;
  /** After a cut with mains present, the output comes back after this long (a UPS's restart delay). */
  readonly restartMs: number;
}

export const THRESHOLD_DEFAULTS: Thresholds = { lowBatteryPercent: 20, brownoutPercent: 5, restartMs: 2000 };

export type SimLine = Record<string, unknown> & { event: string };

export interface SimStatus {
  readonly acPresent: boolean;
  readonly powered: boolean;
  readonly brownout: boolean;
  readonly lowBattery: boolean;
  readonly socPercent: number;
  readonly packMv: number;
  readonly cellMv: number;
  readonly cells: number;
  readonly currentMa: number;
  readonly runtimeS: number;
  readonly loadMa: number;
  readonly temperatureDeciC: number;
  readonly cutPendingMs: number | undefined;
}

/** A pack at room temperature; the simulator does not model heat. */
const SIM_TEMPERATURE_DECI_C = 250;

export class SimDevice {
  acPresent = true;
  powered = true;
  brownout = false;
  lowBattery = false;
  private holdUntilMs = 0;
  private cutTimer: ReturnType<typeof setTimeout> | undefined;
  private cutAtMs: number | undefined;
  private restartTimer: ReturnType<typeof setTimeout> | undefined;
  private lastStepMs: number;
  private readonly listeners: Array<(kind: PowerEventKind) => void> = [];

  constructor(
    readonly battery: Battery,
    readonly thresholds: Thresholds,
    private readonly emit: (line: SimLine) => void,
    private readonly nowMs: () => number = () => performance.now(),
  ) {
    this.lastStepMs = this.nowMs();
  }

  /** Subscribe to power events the controller would push (bridge mode sends them at once). */
  onPowerEvent(listener: (kind: PowerEventKind) => void): void {
    this.listeners.push(listener);
  }

  setAc(present: boolean): void {
    this.step();
    if (present === this.acPresent) return;
    this.acPresent = present;
    if (present) {
      this.brownout = false;
      this.lowBattery = false;
      this.raise('ac-restored');
      if (!this.powered) this.restore('mains back');
    } else {
      this.raise('ac-lost');
    }
    this.reportStatus();
    this.checkThresholds();
  }

  triggerBrownout(): void {
    this.step();
    if (this.brownout) return;
    this.brownout = true;
    this.raise('brownout');
    this.reportStatus();
  }

  setSoc(percent: number): void {
    this.step();
    this.battery.socPercent = percent;
    // Thresholds first, so that whatever they trigger is printed before the status line that follows.
    this.checkThresholds();
    this.reportStatus();
  }

  setLoad(loadMa: number): void {
    this.step();
    this.battery.loadMa = loadMa;
    this.reportStatus();
  }

  /** Host HOLD: keep the output up at least this long even when the pack is flat; 0 releases. */
  hold(durationMs: number): void {
    this.holdUntilMs = durationMs === 0 ? 0 : this.nowMs() + durationMs;
  }

  releaseHold(): void {
    this.holdUntilMs = 0;
  }

  /** Host CUT: switch the output off after `delayMs`; a later CUT replaces the pending one. */
  cut(delayMs: number): void {
    this.clearCut();
    this.cutAtMs = this.nowMs() + delayMs;
    this.cutTimer = setTimeout(() => this.powerCut('host'), delayMs);
  }

  /** Host CANCEL: forget a pending cut. True when there was one. */
  cancelCut(): boolean {
    const had = this.cutTimer !== undefined;
    this.clearCut();
    if (had) this.emit({ event: 'cut-cancelled' });
    return had;
  }

  /** Advance the battery model and apply the thresholds; called on every telemetry tick. */
  tick(): void {
    this.step();
    this.checkThresholds();
  }

  status(): SimStatus {
    const battery = this.battery;
    return {
      acPresent: this.acPresent,
      powered: this.powered,
      brownout: this.brownout,
      lowBattery: this.lowBattery,
      socPercent: Math.round(battery.socPercent * 10) / 10,
      packMv: battery.packMv(this.acPresent, this.powered),
      cellMv: battery.cellMv(this.acPresent, this.powered),
      cells: battery.options.cells,
      currentMa: battery.currentMa(this.acPresent, this.powered),
      runtimeS: battery.runtimeS(),
      loadMa: battery.loadMa,
      temperatureDeciC: SIM_TEMPERATURE_DECI_C,
      cutPendingMs: this.cutAtMs === undefined ? undefined : Math.max(0, Math.round(this.cutAtMs - this.nowMs())),
    };
  }

  reportStatus(): void {
    const { acPresent, powered, brownout, lowBattery, socPercent, packMv, currentMa, runtimeS } = this.status();
    this.emit({ event: 'status', acPresent, powered, brownout, lowBattery, socPercent, packMv, currentMa, runtimeS });
  }

  stop(): void {
    this.clearCut();
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.restartTimer = undefined;
  }

  private step(): void {
    const nowMs = this.nowMs();
    this.battery.step(nowMs - this.lastStepMs, this.acPresent, this.powered);
    this.lastStepMs = nowMs;
  }

  private checkThresholds(): void {
    if (this.acPresent || !this.powered) return;
    const soc = this.battery.socPercent;
    if (!this.lowBattery && soc <= this.thresholds.lowBatteryPercent) {
      this.lowBattery = true;
      this.raise('low-battery');
      this.reportStatus();
    }
    if (!this.brownout && this.thresholds.brownoutPercent > 0 && soc <= this.thresholds.brownoutPercent) {
      this.brownout = true;
      this.raise('brownout');
      this.reportStatus();
    }
    // A flat pack cuts the output by itself, unless the host holds power (then at the end of the hold).
    if (soc > 0 || this.nowMs() < this.holdUntilMs) return;
    if (this.holdUntilMs > 0) this.emit({ event: 'hold-expired' });
    this.powerCut('flat');
  }

  private powerCut(reason: 'host' | 'flat'): void {
    this.clearCut();
    if (!this.powered) return;
    this.powered = false;
    this.holdUntilMs = 0;
    this.emit({ event: 'power-cut', reason });
    this.reportStatus();
    if (this.acPresent) {
      this.restartTimer = setTimeout(() => {
        this.restartTimer = undefined;
        if (this.acPresent) this.restore('restart delay over');
      }, this.thresholds.restartMs);
    }
  }

  private restore(reason: string): void {
    if (this.powered) return;
    this.step();
    this.powered = true;
    this.emit({ event: 'power-restored', reason });
  }

  private clearCut(): void {
    if (this.cutTimer) clearTimeout(this.cutTimer);
    this.cutTimer = undefined;
    this.cutAtMs = undefined;
  }

  private raise(kind: PowerEventKind): void {
    for (const listener of this.listeners) listener(kind);
  }
}
