/**
 * NUT's network protocol as upsd speaks it on TCP 3493 (networkupstools `docs/net-protocol.txt`): one
 * command per line, answers such as `BEGIN LIST VAR ups` / `VAR ups name "value"` / `END LIST VAR ups`,
 * `OK ...` and `ERR <code>`. Values are double-quoted with `\"` and `\\` escapes.
 */

export const NUT_PORT_DEFAULT = 3493;
/** upsd caps a line at its LARGEBUF (4096 bytes); anything longer is not from upsd. */
export const NUT_LINE_LEN_MAX = 4096;
export const NUT_NEWLINE = 0x0a;

export type NutLine =
  | { kind: 'var'; ups: string; name: string; value: string }
  | { kind: 'begin'; what: string }
  | { kind: 'end'; what: string }
  | { kind: 'ok'; text: string }
  | { kind: 'err'; code: string }
  | { kind: 'other'; text: string };

/** Split a line into words, honouring double quotes and backslash escapes; undefined if a quote is unclosed. */
export function splitNutWords(line: string): string[] | undefined {
  const words: string[] = [];
  let index = 0;
  while (index < line.length) {
    while (line[index] === ' ') index++;
    if (index >= line.length) break;
    if (line[index] === '"') {
      let word = '';
      index++;
      for (;;) {
        if (index >= line.length) return undefined;
        const char = line[index++]!;
        if (char === '"') break;
        if (char === '\\' && index < line.length) word += line[index++]!;
        else word += char;
      }
      words.push(word);
    } else {
      const end = line.indexOf(' ', index);
      words.push(line.slice(index, end === -1 ? line.length : end));
      index = end === -1 ? line.length : end;
    }
  }
  return words;
}

export function parseNutLine(line: string): NutLine {
  const text = line.endsWith('\r') ? line.slice(0, -1) : line;
  const fast = parseVarFast(text);
  if (fast) return fast;
  const words = splitNutWords(text);
  if (!words || words.length === 0) return { kind: 'other', text };
  const [head, ...rest] = words;
  if (head === 'VAR' && rest.length === 3) return { kind: 'var', ups: rest[0]!, name: rest[1]!, value: rest[2]! };
  if (head === 'BEGIN') return { kind: 'begin', what: rest.join(' ') };
  if (head === 'END') return { kind: 'end', what: rest.join(' ') };
  if (head === 'OK') return { kind: 'ok', text: rest.join(' ') };
  if (head === 'ERR') return { kind: 'err', code: rest[0] ?? '' };
  return { kind: 'other', text };
}

/**
 * The common case, `VAR ups name "value"` with no escapes, without splitting character by character: it is
 * most of every LIST VAR answer.
 */
function parseVarFast(text: string): NutLine | undefined {
  if (!text.startsWith('VAR ') || text.includes('\\') || !text.endsWith('"')) return undefined;
  const upsEnd = text.indexOf(' ', 4);
  const nameEnd = upsEnd === -1 ? -1 : text.indexOf(' ', upsEnd + 1);
  if (nameEnd === -1 || text.charCodeAt(nameEnd + 1) !== 0x22) return undefined;
  const value = text.slice(nameEnd + 2, -1);
  if (value.includes('"') || upsEnd === 4 || nameEnd === upsEnd + 1) return undefined;
  return { kind: 'var', ups: text.slice(4, upsEnd), name: text.slice(upsEnd + 1, nameEnd), value };
}

/** Quote a value for a command line. */
export function quoteNut(value: string): string {
  return `"${value.replace(/[\\"]/g, (char) => `\\${char}`)}"`;
}

/** Status tokens (`docs/new-drivers.txt`): OL OB LB HB RB CHRG DISCHRG BYPASS CAL OFF OVER TRIM BOOST FSD. */
export interface NutPowerView {
  readonly acPresent: boolean | undefined;
  readonly lowBattery: boolean;
  readonly forcedShutdown: boolean;
  readonly socPercent?: number;
  readonly runtimeS?: number;
  readonly packMv?: number;
  readonly currentMa?: number;
  readonly temperaturesC?: number[];
  readonly alarms: string[];
}

/** Tokens that are an alarm in themselves, reported with their NUT names. */
const NUT_ALARM_TOKENS = new Set(['RB', 'OVER', 'OFF', 'BYPASS', 'FSD', 'ALARM']);

/** Map upsd's variables to the normalized status. `battery.current` is in A; NUT does not fix its sign. */
export function nutPowerView(vars: ReadonlyMap<string, string>): NutPowerView {
  const tokens = new Set((vars.get('ups.status') ?? '').split(/\s+/).filter(Boolean));
  const number = (name: string) => {
    const raw = vars.get(name);
    if (raw === undefined) return undefined;
    const value = Number(raw);
    return Number.isFinite(value) ? value : undefined;
  };
  const acPresent = tokens.has('OB') ? false : tokens.has('OL') ? true : undefined;
  const alarms = [...tokens].filter((token) => NUT_ALARM_TOKENS.has(token));
  const alarmText = vars.get('ups.alarm');
  if (alarmText) alarms.push(alarmText);
  const voltage = number('battery.voltage');
  const current = number('battery.current');
  const temperature = number('battery.temperature') ?? number('ups.temperature');
  return {
    acPresent,
    lowBattery: tokens.has('LB'),
    forcedShutdown: tokens.has('FSD'),
    socPercent: number('battery.charge'),
    runtimeS: number('battery.runtime'),
    packMv: voltage === undefined ? undefined : Math.round(voltage * 1000),
    currentMa: current === undefined ? undefined : Math.round(current * 1000),
    temperaturesC: temperature === undefined ? undefined : [temperature],
    alarms,
  };
}
