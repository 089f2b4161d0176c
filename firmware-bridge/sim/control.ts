/**
 * The simulator's control language, one command per line, read from stdin and from scenario steps alike,
 * so that a scripted scenario and a test driving the simulator by hand say the same things.
 */

export type ControlCommand =
  | { kind: 'ac'; present: boolean }
  | { kind: 'brownout' }
  | { kind: 'soc'; percent: number }
  | { kind: 'load'; loadMa: number }
  | { kind: 'garbage'; bytes: number }
  | { kind: 'corrupt'; frames: number }
  | { kind: 'drop-link'; ms: number }
  | { kind: 'slow'; ms: number }
  | { kind: 'status' }
  | { kind: 'quit' };

export type ControlParse = { ok: true; command: ControlCommand } | { ok: false; error: string };

/** Largest garbage burst: a megabyte is a flood for any UART and still quick to generate. */
const GARBAGE_BYTES_MAX = 1_000_000;
/** Longest link drop or answer delay: ten minutes, longer than any test or demo wants. */
const DELAY_MS_MAX = 600_000;

export const CONTROL_HELP = [
  'ac off | ac on        mains lost / mains back (pushes ac-lost / ac-restored)',
  'brownout              supply about to collapse (pushes brownout)',
  'soc <percent>         set the state of charge, 0..100',
  'load <mA>             set the current the gateway draws on battery',
  'garbage <n>           write n random bytes onto the link',
  'corrupt <n>           spoil the checksum of the next n frames sent (a flaky unit, e.g. Daly 0x95)',
  'drop-link <ms>        vanish for ms (TCP: drop and refuse clients; --pty: remove the pty; --serial: go silent)',
  'slow <ms>             delay everything sent by ms (0 = normal)',
  'status                print the present status as a JSON line',
  'quit                  stop the simulator',
];

export function parseControl(line: string): ControlParse {
  const words = line.trim().split(/\s+/);
  const [verb = '', argument, extra] = words;
  if (extra !== undefined) return { ok: false, error: `too many words in "${line.trim()}"` };
  const number = (min: number, max: number, unit: string): number | string => {
    if (argument === undefined) return `"${verb}" needs a number (${unit})`;
    const value = Number(argument);
    if (!Number.isFinite(value) || value < min || value > max) return `"${argument}" is not a number in ${min}..${max} (${unit})`;
    return value;
  };
  const withNumber = (min: number, max: number, unit: string, build: (value: number) => ControlCommand): ControlParse => {
    const value = number(min, max, unit);
    return typeof value === 'string' ? { ok: false, error: value } : { ok: true, command: build(value) };
  };
  const bare = (command: ControlCommand): ControlParse =>
    argument === undefined ? { ok: true, command } : { ok: false, error: `"${verb}" takes no argument` };
  switch (verb) {
    case 'ac':
      if (argument === 'off' || argument === 'on') return { ok: true, command: { kind: 'ac', present: argument === 'on' } };
      return { ok: false, error: 'use "ac off" or "ac on"' };
    case 'brownout':
      return bare({ kind: 'brownout' });
    case 'soc':
      return withNumber(0, 100, 'percent', (percent) => ({ kind: 'soc', percent }));
    case 'load':
      return withNumber(0, 1_000_000, 'mA', (loadMa) => ({ kind: 'load', loadMa }));
    case 'garbage':
      return withNumber(1, GARBAGE_BYTES_MAX, 'bytes', (bytes) => ({ kind: 'garbage', bytes: Math.round(bytes) }));
    case 'corrupt':
      return withNumber(1, 1_000_000, 'frames', (frames) => ({ kind: 'corrupt', frames: Math.round(frames) }));
    case 'drop-link':
      return withNumber(0, DELAY_MS_MAX, 'ms', (ms) => ({ kind: 'drop-link', ms }));
    case 'slow':
      return withNumber(0, DELAY_MS_MAX, 'ms', (ms) => ({ kind: 'slow', ms }));
    case 'status':
      return bare({ kind: 'status' });
    case 'quit':
      return bare({ kind: 'quit' });
    default:
      return { ok: false, error: `unknown command "${verb}"; commands: ${CONTROL_HELP.map((help) => help.split(/\s{2,}/)[0]).join(', ')}` };
  }
}

/** xorshift32 (Marsaglia 2003): deterministic garbage for a given --seed, so that a failing run can be replayed. */
export function garbageBytes(count: number, state: { seed: number }): Uint8Array {
  const bytes = new Uint8Array(count);
  let x = state.seed >>> 0 || 1;
  for (let index = 0; index < count; index++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    bytes[index] = x & 0xff;
  }
  state.seed = x;
  return bytes;
}
