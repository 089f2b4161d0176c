/**
 * SIGHUP: read the config file again and take what can change while the agent runs. The rest (brokers, the
 * node's name, the data directory, the API's address, ...) is wired into connections and open files at
 * start; a change there is named in the log as needing a restart, and the agent runs on with what it had.
 */
import type { AgentConfig } from '../config/index.ts';

/**
 * The keys a reload applies. logging.level: the root logger's level, which every namespace follows. The
 * power thresholds: the supervisor judges the next status, event or tick by them (energyAware included: the
 * energy rule is evaluated per tick from the thresholds).
 */
export const RELOADABLE_KEYS: readonly string[] = [
  'logging.level',
  'power.socPercentMin',
  'power.runtimeSMin',
  'power.onBatterySMax',
  'power.trustDeviceLowBattery',
  'power.onBatteryDebounceMs',
  'power.linkDeadMs',
  'power.energyAware',
  'power.energyMarginMs',
  'power.batteryMah',
  ...['powerLost', 'powerRestored', 'brownout', 'flushDone', 'handoff', 'takeover', 'demotion', 'quarantine', 'shell', 'timeoutMs'].map((key) => `hooks.${key}`),
];

export interface ReloadPlan {
  /** Changed keys this reload applies, with their values before and after. */
  readonly applied: ReadonlyArray<{ key: string; from: unknown; to: unknown }>;
  /** Changed keys that take effect only at the next start. */
  readonly restartNeeded: readonly string[];
  /** The configuration in effect once `applied` is applied: the next reload compares against it. */
  readonly effective: AgentConfig;
}

/** What differs between the configuration in effect and the file's, and what may change now. */
export function planReload(running: AgentConfig, next: AgentConfig): ReloadPlan {
  const changed = changedKeys(running, next, '');
  const applied = changed.filter((key) => RELOADABLE_KEYS.includes(key)).map((key) => ({ key, from: valueAt(running, key), to: valueAt(next, key) }));
  const restartNeeded = changed.filter((key) => !RELOADABLE_KEYS.includes(key));
  const effective = structuredClone(running);
  for (const { key, to } of applied) setValueAt(effective, key, to);
  return { applied, restartNeeded, effective };
}

/** Dotted paths of the leaves that differ; an array counts as one value (a broker list is one key). */
export function changedKeys(before: unknown, after: unknown, path: string): string[] {
  if (isRecord(before) && isRecord(after)) {
    const names = [...new Set([...Object.keys(before), ...Object.keys(after)])].sort();
    return names.flatMap((name) => changedKeys(before[name], after[name], path ? `${path}.${name}` : name));
  }
  return JSON.stringify(before) === JSON.stringify(after) ? [] : [path];
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function valueAt(config: unknown, key: string): unknown {
  if (key === '') return config;
  return key.split('.').reduce<unknown>((node, name) => (isRecord(node) ? node[name] : undefined), config);
}

function setValueAt(config: unknown, key: string, value: unknown): void {
  const names = key.split('.');
  const parent = valueAt(config, names.slice(0, -1).join('.'));
  if (isRecord(parent)) parent[names.at(-1)!] = value;
}
