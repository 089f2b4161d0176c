/**
 * Structured, namespaced logging (`agent:log`, `bridge:jbd`). One line per event on stderr, so that
 * systemd's journal keeps it and stdout stays free for command output (`--json`). Hot paths pass a
 * lambda so that a disabled level costs one comparison.
 */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent';

export type LogFields = Record<string, unknown>;
export type LogMessage = string | (() => string);

export interface Logger {
  debug(message: LogMessage, fields?: LogFields): void;
  info(message: LogMessage, fields?: LogFields): void;
  warn(message: LogMessage, fields?: LogFields): void;
  error(message: LogMessage, fields?: LogFields): void;
  child(namespace: string): Logger;
}

const LEVEL_RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 };

export interface LoggerOptions {
  level: LogLevel;
  /** Emit one JSON object per line instead of text (for log shippers). */
  json?: boolean;
  /** Where lines go; defaults to stderr. */
  write?: (line: string) => void;
  /** Prefix every line with the node name, so that interleaved demo output stays readable. */
  node?: string;
}

/** A logger whose level can change while it runs (SIGHUP reload): its children follow. */
export interface RootLogger extends Logger {
  setLevel(level: LogLevel): void;
}

export function createLogger(options: LoggerOptions, namespace = 'lastgasp'): RootLogger {
  // One threshold shared by the logger and every child made from it, so that a new level reaches them all.
  const threshold = { rank: LEVEL_RANK[options.level] };
  const logger = createWith(options, namespace, threshold);
  return { ...logger, setLevel: (level) => void (threshold.rank = LEVEL_RANK[level]) };
}

function createWith(options: LoggerOptions, namespace: string, threshold: { rank: number }): Logger {
  const write = options.write ?? ((line: string) => process.stderr.write(line + '\n'));
  const emit = (level: Exclude<LogLevel, 'silent'>, message: LogMessage, fields?: LogFields) => {
    if (LEVEL_RANK[level] < threshold.rank) return;
    const text = typeof message === 'function' ? message() : message;
    write(formatLine(options, level, namespace, text, fields));
  };
  return {
    debug: (message, fields) => emit('debug', message, fields),
    info: (message, fields) => emit('info', message, fields),
    warn: (message, fields) => emit('warn', message, fields),
    error: (message, fields) => emit('error', message, fields),
    child: (child) => createWith({ ...options, write }, child, threshold),
  };
}

function formatLine(options: LoggerOptions, level: string, namespace: string, text: string, fields?: LogFields): string {
  const time = new Date().toISOString();
  if (options.json) {
    return JSON.stringify({ time, level, ns: namespace, node: options.node, msg: text, ...fields }, jsonReplacer);
  }
  const node = options.node ? `[${options.node}] ` : '';
  const rest = fields ? ' ' + formatFields(fields) : '';
  return `${time} ${level.toUpperCase().padEnd(5)} ${node}${namespace}: ${text}${rest}`;
}

function formatFields(fields: LogFields): string {
  return Object.entries(fields)
    .filter(([, value]) => value !== undefined)
    .map(([key, value]) => `${key}=${formatValue(value)}`)
    .join(' ');
}

function formatValue(value: unknown): string {
  if (typeof value === 'string') return /[\s"=]/.test(value) ? JSON.stringify(value) : value;
  if (value instanceof Error) return JSON.stringify(value.message);
  return JSON.stringify(value, jsonReplacer) ?? String(value);
}

function jsonReplacer(_key: string, value: unknown): unknown {
  if (typeof value === 'bigint') return value.toString();
  if (value instanceof Error) return { message: value.message, code: (value as { code?: unknown }).code };
  return value;
}

/** A logger that drops everything; for library users who pass none. */
export const silentLogger: Logger = createLogger({ level: 'silent' });
