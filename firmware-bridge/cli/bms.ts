/**
 * `lastgasp bms probe` finds which protocol a device answers and prints its normalized status;
 * `lastgasp bms decode` turns a captured frame (hex) into JSON, for the user with a logic analyser.
 */
import { parseArgs } from 'node:util';
import { explainParseError } from '../core/index.ts';
import type { PowerSourceConfig, PowerStatus, TransportConfig } from '../core/index.ts';
import { createPowerSource } from '../power-source.ts';
import { EXIT_FAILURE, EXIT_OK, EXIT_USAGE, type Io } from './io.ts';
import { DECODERS, PROBE_ORDER, type DecoderName } from './decoders.ts';

export const BMS_HELP = `Usage: lastgasp bms probe PORT [--protocol ${PROBE_ORDER.join('|')}] [--baud N] [--timeout-ms N] [--json]
       lastgasp bms decode --protocol ${Object.keys(DECODERS).join('|')} HEX...

probe   Opens PORT, a serial device (/dev/ttyUSB0) or HOST:PORT of a serial device server (ser2net raw),
        and asks each protocol in turn (${PROBE_ORDER.join(', ')}), each at its usual baud rate,
        until one answers; then prints the normalized status (AC, charge, runtime, pack mV, current mA with
        + = charging, cells, temperatures, alarms). --protocol asks only that one. --json prints one JSON
        object for scripts: {"protocol":...,"status":{...}} or {"protocol":null,"tried":[...]}.
        --timeout-ms is per protocol (default 3000). Exit 0 when a protocol answered, 1 when none did.

decode  Decodes captured bytes, given as hex (spaces, colons and 0x prefixes are ignored), and prints one
        JSON line per frame found: the fields, or why the frame was rejected (checksum, length, ...).
        Exit 0 when at least one frame decoded, 1 otherwise.

Examples:
  lastgasp bms probe /dev/ttyUSB0
  lastgasp bms probe 192.168.1.50:4001 --protocol bridge --json
  lastgasp bms decode --protocol bridge "03 01 20 03 03 a1 06 19 13 88 5d be 00"`;

class UsageError extends Error {}

export async function bmsMain(argv: string[], io: Io): Promise<number> {
  const [subcommand, ...rest] = argv;
  try {
    switch (subcommand) {
      case 'probe':
        return await probeCommand(rest, io);
      case 'decode':
        return decodeCommand(rest, io);
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        io.stdout(BMS_HELP);
        return subcommand === undefined ? EXIT_USAGE : EXIT_OK;
      default:
        throw new UsageError(`unknown subcommand "${subcommand}" (expected probe or decode)`);
    }
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    io.stderr(`bms: ${error.message}`);
    io.stderr('Run "lastgasp bms --help" for the options.');
    return EXIT_USAGE;
  }
}

type OptionSpec = Record<string, { type: 'string' | 'boolean'; short?: string }>;
type ParsedOptions = { values: Record<string, string | boolean | undefined>; positionals: string[] };

function parse(argv: string[], options: OptionSpec): ParsedOptions {
  try {
    const parsed = parseArgs({ args: argv, options: { help: { type: 'boolean', short: 'h' }, ...options }, allowPositionals: true, strict: true });
    return { values: parsed.values as ParsedOptions['values'], positionals: parsed.positionals };
  } catch (error) {
    throw new UsageError(explainParseError(error, ['help', ...Object.keys(options)]));
  }
}

function decodeCommand(argv: string[], io: Io): number {
  const { values, positionals } = parse(argv, { protocol: { type: 'string' } });
  if (values.help) {
    io.stdout(BMS_HELP);
    return EXIT_OK;
  }
  const protocol = values.protocol as string | undefined;
  if (!protocol || !(protocol in DECODERS)) throw new UsageError(`decode needs --protocol ${Object.keys(DECODERS).join('|')}`);
  const text = positionals.join(' ');
  const digits = text.replace(/0x/gi, '').replace(/[\s:,-]/g, '');
  if (digits.length === 0) throw new UsageError('decode needs the captured bytes as hex');
  if (!/^[0-9a-f]*$/i.test(digits) || digits.length % 2 !== 0) throw new UsageError(`"${text}" is not hex bytes (pairs of 0-9, a-f)`);
  const bytes = Uint8Array.from({ length: digits.length / 2 }, (_, index) => parseInt(digits.slice(index * 2, index * 2 + 2), 16));
  const results = DECODERS[protocol as DecoderName](bytes);
  for (const result of results) io.stdout(JSON.stringify(result));
  if (results.length === 0) io.stdout(JSON.stringify({ ok: false, reason: 'no frame found in the bytes given' }));
  return results.some((result) => result.ok) ? EXIT_OK : EXIT_FAILURE;
}

/** Per-protocol wait before moving to the next: enough for a 2400-baud Q1 answer and a bridge handshake. */
const PROBE_TIMEOUT_MS = 3000;

async function probeCommand(argv: string[], io: Io): Promise<number> {
  const { values, positionals } = parse(argv, {
    protocol: { type: 'string' },
    baud: { type: 'string' },
    'timeout-ms': { type: 'string' },
    json: { type: 'boolean' },
  });
  if (values.help) {
    io.stdout(BMS_HELP);
    return EXIT_OK;
  }
  const port = positionals[0];
  if (!port || positionals.length > 1) throw new UsageError('probe needs exactly one PORT (/dev/ttyUSB0 or HOST:PORT)');
  const protocol = values.protocol as string | undefined;
  if (protocol !== undefined && !(PROBE_ORDER as readonly string[]).includes(protocol)) throw new UsageError(`--protocol ${protocol}: expected one of ${PROBE_ORDER.join(', ')}`);
  const baudRate = values.baud === undefined ? undefined : Number(values.baud);
  if (baudRate !== undefined && !(Number.isInteger(baudRate) && baudRate > 0)) throw new UsageError(`--baud ${String(values.baud)}: expected a positive integer`);
  const timeoutMs = values['timeout-ms'] === undefined ? PROBE_TIMEOUT_MS : Number(values['timeout-ms']);
  if (!(Number.isFinite(timeoutMs) && timeoutMs > 0)) throw new UsageError(`--timeout-ms ${String(values['timeout-ms'])}: expected a positive number`);
  const transport = parsePort(port, baudRate);
  const candidates = protocol ? [protocol as (typeof PROBE_ORDER)[number]] : [...PROBE_ORDER];
  const tried: Array<{ protocol: string; result: string }> = [];
  for (const candidate of candidates) {
    const outcome = await probeOne({ kind: candidate, transport } as PowerSourceConfig, timeoutMs);
    if (outcome.status) {
      if (values.json) io.stdout(JSON.stringify({ protocol: candidate, port, status: outcome.status }));
      else for (const line of describeStatus(candidate, port, outcome.status)) io.stdout(line);
      return EXIT_OK;
    }
    tried.push({ protocol: candidate, result: outcome.reason });
  }
  if (values.json) io.stdout(JSON.stringify({ protocol: null, port, tried }));
  else {
    io.stderr(`bms probe: nothing answered on ${port}:`);
    for (const entry of tried) io.stderr(`  ${entry.protocol}: ${entry.result}`);
  }
  return EXIT_FAILURE;
}

function parsePort(port: string, baudRate: number | undefined): TransportConfig {
  const tcp = /^([^/]+):(\d+)$/.exec(port);
  if (tcp) return { type: 'tcp', host: tcp[1]!, port: Number(tcp[2]) };
  return baudRate === undefined ? { type: 'serial', path: port } : { type: 'serial', path: port, baudRate };
}

async function probeOne(config: PowerSourceConfig, timeoutMs: number): Promise<{ status?: PowerStatus; reason: string }> {
  const source = createPowerSource(config, {});
  let lastLink = 'no answer';
  const status = await new Promise<PowerStatus | undefined>((resolve) => {
    const timer = setTimeout(() => resolve(undefined), timeoutMs);
    void source.start({
      status: (status) => {
        clearTimeout(timer);
        resolve(status);
      },
      event: () => undefined,
      link: (state, reason) => {
        if (reason) lastLink = `${state}: ${reason}`;
      },
    });
  });
  await source.stop();
  return status ? { status, reason: 'answered' } : { reason: `no status within ${timeoutMs} ms (${lastLink})` };
}

function describeStatus(protocol: string, port: string, status: PowerStatus): string[] {
  const lines = [`${port} answers ${protocol}`];
  const row = (name: string, value: unknown) => value !== undefined && lines.push(`  ${name.padEnd(14)} ${String(value)}`);
  row('mains', status.acPresent === undefined ? 'unknown' : status.acPresent ? 'present' : 'LOST');
  row('charge', status.socPercent === undefined ? undefined : `${status.socPercent} %`);
  row('runtime', status.runtimeS === undefined ? undefined : `${status.runtimeS} s`);
  row('pack', status.packMv === undefined ? undefined : `${status.packMv} mV`);
  row('current', status.currentMa === undefined ? undefined : `${status.currentMa} mA (${status.currentMa >= 0 ? 'charging' : 'discharging'})`);
  row('cells', status.cellMv?.length ? `${status.cellMv.join(' ')} mV` : undefined);
  row('temperatures', status.temperaturesC?.length ? `${status.temperaturesC.join(' ')} °C` : undefined);
  row('low battery', status.lowBattery);
  row('alarms', status.alarms.length ? status.alarms.join(', ') : 'none');
  return lines;
}
