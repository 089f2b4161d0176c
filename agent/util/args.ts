/**
 * The one command-line parser of every `lastgasp` command: node:util `parseArgs` in strict mode, with its
 * errors turned into sentences a user can act on (an unknown option names the closest known one), `--help`
 * and `-h` on every command, and typed getters that validate values. A usage error exits 64 (EX_USAGE,
 * sysexits.h), as the daemons a gateway image carries do.
 */
import { parseArgs } from 'node:util';
import { closest, explainParseError } from '../../firmware-bridge/core/usage.ts';

// One wording for the agent's and the bridge's commands: the bridge holds it, since it imports nothing from here.
export { closest, explainParseError };

/** Exit code of a usage error (EX_USAGE in sysexits.h). */
export const EXIT_USAGE = 64;

export class UsageError extends Error {}

/** Thrown by a command asked for `--help`; the CLI's entry point prints `text` on stdout and exits 0. */
export class HelpRequested extends Error {
  constructor(readonly text: string) {
    super('help requested');
  }
}

export type OptionSpec = Record<string, { type: 'string' | 'boolean'; short?: string; multiple?: boolean }>;

export interface CommandSpec {
  /** The command's help text (printed for --help). */
  readonly help: string;
  readonly options: OptionSpec;
  /** How many positional arguments it takes, and what they are called (for the error). */
  readonly positionals?: { readonly min: number; readonly max: number; readonly names: string };
}

export interface ParsedCommand {
  readonly positionals: string[];
  has(name: string): boolean;
  string(name: string): string | undefined;
  strings(name: string): string[];
  /** A string option that must be given: "--NAME PLACEHOLDER is required (why)". */
  required(name: string, placeholder: string, why?: string): string;
  /** An integer option within [min, max], or `fallback` when it is not given. */
  integer(name: string, fallback: number, min: number, max: number): number;
  /** A string option whose value is one of `choices`. */
  choice<T extends string>(name: string, choices: readonly T[], fallback: T): T;
}

/** Parse `argv` by `spec`; throws HelpRequested for --help, UsageError for anything it cannot accept. */
export function parseCommand(argv: readonly string[], spec: CommandSpec): ParsedCommand {
  const options = { help: { type: 'boolean' as const, short: 'h' }, ...spec.options };
  let parsed: { values: Record<string, string | boolean | Array<string | boolean> | undefined>; positionals: string[] };
  try {
    parsed = parseArgs({ args: [...argv], options, allowPositionals: true, strict: true });
  } catch (error) {
    // --help wins over any other mistake on the same line: the user is asking how to fix it.
    if (argv.includes('--help') || argv.includes('-h')) throw new HelpRequested(spec.help);
    throw new UsageError(explainParseError(error, Object.keys(options)));
  }
  if (parsed.values.help) throw new HelpRequested(spec.help);
  const count = parsed.positionals.length;
  const limits = spec.positionals ?? { min: 0, max: 0, names: '' };
  if (count > limits.max) throw new UsageError(`unexpected argument "${parsed.positionals[limits.max]}"${limits.max > 0 ? ` (this command takes ${limits.names})` : ' (this command takes options only)'}`);
  if (count < limits.min) throw new UsageError(`missing ${limits.names}`);
  const values = parsed.values;
  const string = (name: string) => {
    const value = values[name];
    return typeof value === 'string' ? value : undefined;
  };
  return {
    positionals: parsed.positionals,
    has: (name) => values[name] !== undefined && values[name] !== false,
    string,
    strings: (name) => {
      const value = values[name];
      return Array.isArray(value) ? value.map(String) : typeof value === 'string' ? [value] : [];
    },
    required: (name, placeholder, why) => {
      const value = string(name);
      if (value === undefined || value === '') throw new UsageError(`--${name} ${placeholder} is required${why ? ` (${why})` : ''}`);
      return value;
    },
    integer: (name, fallback, min, max) => {
      const text = string(name);
      if (text === undefined) return fallback;
      const value = Number(text);
      if (!/^-?\d+$/.test(text) || value < min || value > max) throw new UsageError(`--${name} ${text}: expected an integer from ${min} to ${max}`);
      return value;
    },
    choice: (name, choices, fallback) => {
      const text = string(name);
      if (text === undefined) return fallback;
      if (!(choices as readonly string[]).includes(text)) throw new UsageError(`--${name} ${text}: expected ${choices.join(', ')}`);
      return text as (typeof choices)[number];
    },
  };
}
