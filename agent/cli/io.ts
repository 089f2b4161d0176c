/** Where a command writes: results to stdout (machine-readable with --json), diagnostics to stderr. */
export interface Io {
  stdout(line: string): void;
  stderr(line: string): void;
  stdin?: NodeJS.ReadableStream;
}

export const processIo: Io = {
  stdout: (line) => void process.stdout.write(line + '\n'),
  stderr: (line) => void process.stderr.write(line + '\n'),
  stdin: process.stdin,
};

export { parseCommand, UsageError, HelpRequested, EXIT_USAGE, type CommandSpec, type ParsedCommand } from '../util/index.ts';
import { UsageError } from '../util/index.ts';

/**
 * The demo's parser until it moves to parseCommand (every other command has): `--name value`, `--name=value`
 * and `--flag` into a map; positional arguments are kept in order.
 */
export function parseArgs(argv: readonly string[], flags: readonly string[] = []): { options: Map<string, string>; positional: string[] } {
  const options = new Map<string, string>();
  const positional: string[] = [];
  for (let index = 0; index < argv.length; index++) {
    const arg = argv[index]!;
    if (!arg.startsWith('--')) {
      positional.push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    const name = eq > 0 ? arg.slice(2, eq) : arg.slice(2);
    if (eq > 0) options.set(name, arg.slice(eq + 1));
    else if (flags.includes(name)) options.set(name, 'true');
    else {
      const value = argv[index + 1];
      if (value === undefined || value.startsWith('--')) throw new UsageError(`--${name} needs a value`);
      options.set(name, value);
      index++;
    }
  }
  return { options, positional };
}

