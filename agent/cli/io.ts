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
