/**
 * Scenario files for the simulator (JSON or YAML): the battery, the thresholds, the bridge timings, and
 * steps, each a control command at a time after start. Every mistake is reported with the file and field.
 *
 *   battery: { capacityMah: 2000, socPercent: 80, loadMa: 900, speed: 60 }
 *   thresholds: { lowBatteryPercent: 20, brownoutPercent: 5 }
 *   steps:
 *     - { atMs: 2000, command: ac off }
 *     - { atMs: 9000, command: ac on }
 */
import { readFile } from 'node:fs/promises';
import { parse as parseYaml } from 'yaml';
import {
  BATTERY_DEFAULTS,
  parseControl,
  THRESHOLD_DEFAULTS,
  type BatteryOptions,
  type Chemistry,
  type ControlCommand,
  type Thresholds,
} from '../sim/index.ts';
import { BRIDGE_SIM_DEFAULTS, type BridgeSimOptions } from '../bridge/sim-device.ts';

export interface ScenarioStep {
  readonly atMs: number;
  readonly text: string;
  readonly command: ControlCommand;
}

export interface Scenario {
  battery: BatteryOptions;
  thresholds: Thresholds;
  bridge: BridgeSimOptions;
  steps: ScenarioStep[];
}

export function defaultScenario(): Scenario {
  return { battery: { ...BATTERY_DEFAULTS }, thresholds: { ...THRESHOLD_DEFAULTS }, bridge: { ...BRIDGE_SIM_DEFAULTS }, steps: [] };
}

export class ScenarioError extends Error {}

type NumberLimits = Record<string, readonly [min: number, max: number]>;

const BATTERY_LIMITS: NumberLimits = {
  capacityMah: [1, 10_000_000],
  socPercent: [0, 100],
  loadMa: [0, 1_000_000],
  chargeMa: [0, 1_000_000],
  cells: [1, 32],
  cellResistanceMohm: [0, 10_000],
  speed: [0.001, 1_000_000],
};
const THRESHOLD_LIMITS: NumberLimits = { lowBatteryPercent: [0, 100], brownoutPercent: [0, 100], restartMs: [0, 3_600_000] };
const BRIDGE_LIMITS: NumberLimits = { telemetryMs: [10, 3_600_000], heartbeatMs: [10, 3_600_000], holdMsMax: [0, 0xffffffff] };

export async function loadScenario(file: string, into: Scenario): Promise<Scenario> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new ScenarioError(`scenario ${file}: cannot read it (${(error as Error).message})`);
  }
  let data: unknown;
  try {
    data = /\.json$/i.test(file) ? JSON.parse(text) : parseYaml(text);
  } catch (error) {
    throw new ScenarioError(`scenario ${file}: not valid ${/\.json$/i.test(file) ? 'JSON' : 'YAML'} (${(error as Error).message})`);
  }
  return applyScenario(data, into, `scenario ${file}`);
}

export function applyScenario(data: unknown, into: Scenario, where: string): Scenario {
  const root = object(data, where);
  for (const key of Object.keys(root)) {
    if (!['battery', 'thresholds', 'bridge', 'steps'].includes(key)) throw new ScenarioError(`${where}: ${key}: unknown field (expected battery, thresholds, bridge, steps)`);
  }
  if (root.battery !== undefined) {
    const battery = object(root.battery, `${where}: battery`);
    const chemistry = battery.chemistry;
    if (chemistry !== undefined && chemistry !== 'li-ion' && chemistry !== 'lifepo4') {
      throw new ScenarioError(`${where}: battery.chemistry: "${String(chemistry)}" is not li-ion or lifepo4`);
    }
    const { chemistry: _chemistry, ...numbers } = battery;
    into.battery = { ...into.battery, ...numbersIn(numbers, BATTERY_LIMITS, `${where}: battery`), ...(chemistry ? { chemistry: chemistry as Chemistry } : {}) };
  }
  if (root.thresholds !== undefined) into.thresholds = { ...into.thresholds, ...numbersIn(object(root.thresholds, `${where}: thresholds`), THRESHOLD_LIMITS, `${where}: thresholds`) };
  if (root.bridge !== undefined) {
    const bridge = object(root.bridge, `${where}: bridge`);
    const { model, firmware, ...numbers } = bridge;
    into.bridge = { ...into.bridge, ...numbersIn(numbers, BRIDGE_LIMITS, `${where}: bridge`) };
    if (model !== undefined) into.bridge = { ...into.bridge, model: String(model) };
    if (firmware !== undefined) into.bridge = { ...into.bridge, firmware: String(firmware) };
  }
  if (root.steps !== undefined) {
    if (!Array.isArray(root.steps)) throw new ScenarioError(`${where}: steps: expected a list of { atMs, command }`);
    root.steps.forEach((raw, index) => {
      const step = object(raw, `${where}: steps[${index}]`);
      const atMs = step.atMs;
      if (typeof atMs !== 'number' || !Number.isFinite(atMs) || atMs < 0) throw new ScenarioError(`${where}: steps[${index}].atMs: expected milliseconds after start (a number >= 0)`);
      if (typeof step.command !== 'string') throw new ScenarioError(`${where}: steps[${index}].command: expected a control command such as "ac off"`);
      into.steps.push(parseStep(atMs, step.command, `${where}: steps[${index}].command`));
    });
    into.steps.sort((a, b) => a.atMs - b.atMs);
  }
  return into;
}

/** A step from the command line: `MS:COMMAND`, e.g. `2000:ac off`. */
export function parseInlineStep(text: string): ScenarioStep {
  const match = /^\s*(\d+(?:\.\d+)?)\s*:\s*(.+)$/.exec(text);
  if (!match) throw new ScenarioError(`--step "${text}": expected MS:COMMAND, e.g. --step "2000:ac off"`);
  return parseStep(Number(match[1]), match[2]!, `--step "${text}"`);
}

function parseStep(atMs: number, text: string, where: string): ScenarioStep {
  const parsed = parseControl(text);
  if (!parsed.ok) throw new ScenarioError(`${where}: ${parsed.error}`);
  return { atMs, text: text.trim(), command: parsed.command };
}

function object(value: unknown, where: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new ScenarioError(`${where}: expected a mapping`);
  return value as Record<string, unknown>;
}

function numbersIn(values: Record<string, unknown>, limits: NumberLimits, where: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [key, value] of Object.entries(values)) {
    const limit = limits[key];
    if (!limit) throw new ScenarioError(`${where}.${key}: unknown field (expected ${Object.keys(limits).join(', ')})`);
    if (typeof value !== 'number' || !Number.isFinite(value) || value < limit[0] || value > limit[1]) {
      throw new ScenarioError(`${where}.${key}: ${JSON.stringify(value)} is not a number in ${limit[0]}..${limit[1]}`);
    }
    out[key] = value;
  }
  return out;
}
