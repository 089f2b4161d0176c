/**
 * Megatec "Q1" UPS protocol (2400 8N1, ASCII, CR-terminated), as NUT's nutdrv_qx megatec subdriver reads it
 * (`drivers/nutdrv_qx_megatec.c`, research notes §2.5): `Q1` status, `F` ratings, `I` identity, and the
 * commands `S<n>` (shut down after n minutes), `S<n>R<m>` and `C` (cancel).
 */

export const Q1_TERMINATOR = 0x0d;
/** `(MMM.M NNN.N PPP.P QQQ RR.R S.SS TT.T b7..b0` plus CR: 47 bytes (nutdrv_qx_megatec.c table). */
export const Q1_REPLY_LEN = 47;
/** `#VVV.V CCC BBB.B FF.F` plus CR: 22 bytes. */
export const F_REPLY_LEN = 22;
/** `#` + manufacturer, model, firmware, fixed width, plus CR: 39 bytes. */
export const I_REPLY_LEN = 39;
/** Longest line the accumulator keeps: every Megatec answer is shorter than this. */
export const MEGATEC_LINE_LEN_MAX = 64;

export const MEGATEC_QUERY_STATUS = 'Q1\r';
export const MEGATEC_QUERY_RATINGS = 'F\r';
export const MEGATEC_QUERY_INFO = 'I\r';
export const MEGATEC_CANCEL_SHUTDOWN = 'C\r';

/** Status bits b7..b0, in the order they appear at columns 38..45. */
export const Q1_STATUS_BITS = ['utilityFail', 'batteryLow', 'bypassActive', 'upsFailed', 'standby', 'testInProgress', 'shutdownActive', 'beeperOn'] as const;

export interface Q1Status {
  readonly inputV: number;
  readonly inputFaultV: number;
  readonly outputV: number;
  readonly loadPercent: number;
  readonly frequencyHz: number;
  /** As the UPS reports it: per cell on some models, per pack on others (NUT rescales with battery.voltage.nominal). */
  readonly batteryV: number;
  readonly temperatureC: number;
  readonly utilityFail: boolean;
  readonly batteryLow: boolean;
  readonly bypassActive: boolean;
  readonly upsFailed: boolean;
  /** 1 = standby/line-interactive, 0 = online (double conversion). */
  readonly standby: boolean;
  readonly testInProgress: boolean;
  readonly shutdownActive: boolean;
  readonly beeperOn: boolean;
}

export interface FRatings {
  readonly inputV: number;
  readonly currentA: number;
  readonly batteryV: number;
  readonly frequencyHz: number;
}

export type MegatecResult<T> = { ok: true; value: T } | { ok: false; reason: 'length' | 'marker' | 'field' };

/** Field columns of the Q1 reply (start inclusive, end exclusive), from the nutdrv_qx table. */
const Q1_FIELDS = [
  ['inputV', 1, 6],
  ['inputFaultV', 7, 12],
  ['outputV', 13, 18],
  ['loadPercent', 19, 22],
  ['frequencyHz', 23, 27],
  ['batteryV', 28, 32],
  ['temperatureC', 33, 37],
] as const;
const Q1_BITS_START = 38;

/** Decode a Q1 reply line, given without its CR. */
export function decodeQ1(line: string): MegatecResult<Q1Status> {
  if (line.length !== Q1_REPLY_LEN - 1) return { ok: false, reason: 'length' };
  if (line.charCodeAt(0) !== 0x28) return { ok: false, reason: 'marker' };
  const numbers: number[] = [];
  for (const [, start, end] of Q1_FIELDS) {
    const value = parseField(line, start, end);
    if (value === undefined) return { ok: false, reason: 'field' };
    numbers.push(value);
  }
  const bits: boolean[] = [];
  for (let index = 0; index < 8; index++) {
    const char = line.charCodeAt(Q1_BITS_START + index);
    if (char !== 0x30 && char !== 0x31) return { ok: false, reason: 'field' };
    bits.push(char === 0x31);
  }
  return {
    ok: true,
    value: {
      inputV: numbers[0]!,
      inputFaultV: numbers[1]!,
      outputV: numbers[2]!,
      loadPercent: numbers[3]!,
      frequencyHz: numbers[4]!,
      batteryV: numbers[5]!,
      temperatureC: numbers[6]!,
      utilityFail: bits[0]!,
      batteryLow: bits[1]!,
      bypassActive: bits[2]!,
      upsFailed: bits[3]!,
      standby: bits[4]!,
      testInProgress: bits[5]!,
      shutdownActive: bits[6]!,
      beeperOn: bits[7]!,
    },
  };
}

/** Decode an F reply line, given without its CR. */
export function decodeF(line: string): MegatecResult<FRatings> {
  if (line.length !== F_REPLY_LEN - 1) return { ok: false, reason: 'length' };
  if (line[0] !== '#') return { ok: false, reason: 'marker' };
  const fields = [parseField(line, 1, 6), parseField(line, 7, 10), parseField(line, 11, 16), parseField(line, 17, 21)];
  if (fields.some((field) => field === undefined)) return { ok: false, reason: 'field' };
  const [inputV, currentA, batteryV, frequencyHz] = fields as number[];
  return { ok: true, value: { inputV: inputV!, currentA: currentA!, batteryV: batteryV!, frequencyHz: frequencyHz! } };
}

/** Decode an I reply line, given without its CR: manufacturer [1,16), model [17,27), firmware [28,38). */
export function decodeI(line: string): MegatecResult<{ manufacturer: string; model: string; firmware: string }> {
  if (line.length !== I_REPLY_LEN - 1) return { ok: false, reason: 'length' };
  if (line[0] !== '#') return { ok: false, reason: 'marker' };
  return { ok: true, value: { manufacturer: line.slice(1, 16).trim(), model: line.slice(17, 27).trim(), firmware: line.slice(28, 38).trim() } };
}

/**
 * A fixed-width decimal field `line[start, end)`: optional spaces, an optional minus, digits, an optional
 * fraction. Parsed by hand because it runs for every field of every answer.
 */
function parseField(line: string, start: number, end: number): number | undefined {
  let index = start;
  while (index < end && line.charCodeAt(index) === 0x20) index++;
  let sign = 1;
  if (index < end && line.charCodeAt(index) === 0x2d) {
    sign = -1;
    index++;
  }
  let value = 0;
  let digits = 0;
  let scale = 0;
  for (; index < end; index++) {
    const char = line.charCodeAt(index);
    if (char >= 0x30 && char <= 0x39) {
      value = value * 10 + (char - 0x30);
      digits++;
      if (scale > 0) scale *= 10;
    } else if (char === 0x2e && scale === 0 && digits > 0) {
      scale = 1;
    } else {
      break;
    }
  }
  while (index < end && line.charCodeAt(index) === 0x20) index++;
  if (digits === 0 || index !== end || scale === 1) return undefined;
  return (sign * value) / (scale || 1);
}

/**
 * The shutdown command for a delay: `S.2`..`S.9` (tenths of a minute, 12..54 s) or `S01`..`S10` minutes,
 * rounded up so that the UPS never cuts earlier than asked (nutdrv_qx: offdelay 12..600 s). Undefined when
 * the delay is beyond 10 minutes.
 */
export function megatecShutdownCommand(delayMs: number): string | undefined {
  const tenths = Math.max(2, Math.ceil(delayMs / 6000));
  if (tenths <= 9) return `S.${tenths}\r`;
  const minutes = Math.ceil(delayMs / 60_000);
  if (minutes > 10) return undefined;
  return `S${String(minutes).padStart(2, '0')}\r`;
}

/** The delay an `S<n>` or `S<n>R<m>` command asks for, in ms; undefined if it is not one. */
export function parseMegatecShutdown(command: string): number | undefined {
  const match = /^S(\.\d|\d\d?)(R\d{4})?$/.exec(command);
  if (!match) return undefined;
  const minutes = Number(match[1]!.startsWith('.') ? `0${match[1]}` : match[1]);
  return Math.round(minutes * 60_000);
}

/** Encode a Q1 reply, for the simulator: fixed-width fields exactly as a UPS prints them. */
export function encodeQ1(status: Q1Status): string {
  const fixed = (value: number, width: number, decimals: number) => value.toFixed(decimals).padStart(width, '0').slice(-width);
  const bits = Q1_STATUS_BITS.map((name) => (status[name] ? '1' : '0')).join('');
  return `(${fixed(status.inputV, 5, 1)} ${fixed(status.inputFaultV, 5, 1)} ${fixed(status.outputV, 5, 1)} ${fixed(status.loadPercent, 3, 0)} ${fixed(status.frequencyHz, 4, 1)} ${fixed(status.batteryV, 4, status.batteryV >= 10 ? 1 : 2)} ${fixed(status.temperatureC, 4, 1)} ${bits}\r`;
}
