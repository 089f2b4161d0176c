/**
 * The simulator's battery: coulomb counting against a capacity, a resting-voltage curve per chemistry, a
 * voltage sag from internal resistance, and a runtime estimate at the present load. Simple on purpose: it
 * has to move the numbers a power supervisor reads in the right direction at the right pace, not to
 * predict a real pack.
 */

export type Chemistry = 'li-ion' | 'lifepo4';

/**
 * Resting cell voltage (mV) at 0, 10, ..., 100 % state of charge. The shapes are the typical discharge
 * curves of an NMC 18650 cell and of a LiFePO4 cell (flat plateau around 3.3 V), rounded; they are not
 * taken from one datasheet.
 */
const OCV_CURVES_MV: Record<Chemistry, readonly number[]> = {
  'li-ion': [3000, 3450, 3600, 3680, 3740, 3790, 3850, 3930, 4010, 4100, 4190],
  lifepo4: [2500, 3150, 3220, 3260, 3280, 3300, 3310, 3330, 3340, 3350, 3400],
};

export interface BatteryOptions {
  readonly capacityMah: number;
  readonly socPercent: number;
  /** Current drawn by the gateway while on battery. */
  readonly loadMa: number;
  /** Charge current while mains is present and the pack is not full. */
  readonly chargeMa: number;
  readonly cells: number;
  readonly chemistry: Chemistry;
  /** Internal resistance per cell; 30 mΩ is a healthy 18650. */
  readonly cellResistanceMohm: number;
  /** Model time runs this many times faster than the wall clock, so that a demo drains a pack in seconds. */
  readonly speed: number;
}

export const BATTERY_DEFAULTS: BatteryOptions = {
  capacityMah: 2000,
  socPercent: 100,
  loadMa: 800,
  chargeMa: 1000,
  cells: 4,
  chemistry: 'li-ion',
  cellResistanceMohm: 30,
  speed: 1,
};

const MS_PER_HOUR = 3_600_000;

export class Battery {
  private soc: number;
  private load: number;

  constructor(readonly options: BatteryOptions) {
    this.soc = clamp(options.socPercent, 0, 100);
    this.load = options.loadMa;
  }

  get socPercent(): number {
    return this.soc;
  }

  set socPercent(value: number) {
    this.soc = clamp(value, 0, 100);
  }

  get loadMa(): number {
    return this.load;
  }

  set loadMa(value: number) {
    this.load = Math.max(0, value);
  }

  /** Current into the pack (positive charging, negative discharging) for the given supply situation. */
  currentMa(acPresent: boolean, powered: boolean): number {
    if (acPresent) return this.soc < 100 ? this.options.chargeMa : 0;
    return powered ? -this.load : 0;
  }

  /** Advance the model by `wallMs` of wall-clock time. */
  step(wallMs: number, acPresent: boolean, powered: boolean): void {
    const modelHours = (wallMs * this.options.speed) / MS_PER_HOUR;
    const deltaMah = this.currentMa(acPresent, powered) * modelHours;
    this.soc = clamp(this.soc + (deltaMah / this.options.capacityMah) * 100, 0, 100);
  }

  cellMv(acPresent: boolean, powered: boolean): number {
    const sagMv = (this.currentMa(acPresent, powered) * this.options.cellResistanceMohm) / 1000;
    return Math.round(restingCellMv(this.options.chemistry, this.soc) + sagMv);
  }

  packMv(acPresent: boolean, powered: boolean): number {
    return this.cellMv(acPresent, powered) * this.options.cells;
  }

  /** Wall-clock seconds until empty at the present load (what the agent will live through). */
  runtimeS(): number {
    if (this.load <= 0) return 0xffffffff;
    const remainingMah = (this.soc / 100) * this.options.capacityMah;
    return Math.round(((remainingMah / this.load) * 3600) / this.options.speed);
  }
}

export function restingCellMv(chemistry: Chemistry, socPercent: number): number {
  const curve = OCV_CURVES_MV[chemistry];
  const position = clamp(socPercent, 0, 100) / 10;
  const index = Math.min(Math.floor(position), curve.length - 2);
  const fraction = position - index;
  return curve[index]! + (curve[index + 1]! - curve[index]!) * fraction;
}

function clamp(value: number, min: number, max: number): number {
  return Math.min(max, Math.max(min, value));
}
