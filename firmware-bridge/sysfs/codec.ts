/**
 * Linux `power_supply` class in sysfs (kernel `Documentation/ABI/testing/sysfs-class-power`): a directory per
 * supply with one value per file. Mains/USB supplies say `online`; a battery says `capacity` (%), `status`
 * (Charging, Discharging, Full, Not charging), `voltage_now` (µV), `current_now` (µA, negative when
 * discharging per the ABI, though some drivers report a magnitude), `temp` (0.1 °C), `capacity_level`.
 */

export const SYSFS_POWER_SUPPLY_DIR = '/sys/class/power_supply';
/** Files read from each supply directory. */
export const SYSFS_FILES = ['type', 'online', 'capacity', 'status', 'voltage_now', 'current_now', 'temp', 'capacity_level'] as const;
export type SysfsFile = (typeof SYSFS_FILES)[number];
/** Supply types that stand for an external source (mains adapter, USB, wireless charger). */
const EXTERNAL_TYPES = new Set(['Mains', 'USB', 'USB_C', 'USB_PD', 'USB_PD_DRP', 'USB_DCP', 'USB_CDP', 'USB_ACA', 'Wireless']);

export type SupplyFiles = Partial<Record<SysfsFile, string>>;

export interface SysfsView {
  readonly acPresent: boolean | undefined;
  readonly socPercent?: number;
  readonly packMv?: number;
  readonly currentMa?: number;
  readonly temperaturesC?: number[];
  readonly lowBattery: boolean;
  readonly alarms: string[];
}

function integer(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const trimmed = text.trim();
  if (!/^-?\d+$/.test(trimmed)) return undefined;
  return Number(trimmed);
}

/** Combine the supplies (name → files) into one view. Pure: the source reads the files, this decides. */
export function sysfsView(supplies: ReadonlyMap<string, SupplyFiles>): SysfsView {
  let externalSeen = false;
  let externalOnline = false;
  let battery: SupplyFiles | undefined;
  for (const files of supplies.values()) {
    const type = files.type?.trim();
    if (type !== undefined && EXTERNAL_TYPES.has(type)) {
      externalSeen = true;
      if (integer(files.online) === 1) externalOnline = true;
    } else if (type === 'Battery' || type === 'UPS') {
      battery ??= files;
    }
  }
  const status = battery?.status?.trim();
  let acPresent: boolean | undefined = externalSeen ? externalOnline : undefined;
  if (acPresent === undefined && status !== undefined) {
    if (status === 'Discharging') acPresent = false;
    else if (status === 'Charging' || status === 'Full' || status === 'Not charging') acPresent = true;
  }
  const currentUa = integer(battery?.current_now);
  // Drivers that report a magnitude give a positive number while discharging; the status says which it is.
  const signedUa = currentUa !== undefined && status === 'Discharging' && currentUa > 0 ? -currentUa : currentUa;
  const voltageUv = integer(battery?.voltage_now);
  const tempDeci = integer(battery?.temp);
  const level = battery?.capacity_level?.trim();
  const alarms: string[] = [];
  if (level === 'Critical') alarms.push('capacity-critical');
  return {
    acPresent,
    socPercent: integer(battery?.capacity),
    packMv: voltageUv === undefined ? undefined : Math.round(voltageUv / 1000),
    currentMa: signedUa === undefined ? undefined : Math.round(signedUa / 1000),
    temperaturesC: tempDeci === undefined ? undefined : [tempDeci / 10],
    lowBattery: level === 'Low' || level === 'Critical',
    alarms,
  };
}
