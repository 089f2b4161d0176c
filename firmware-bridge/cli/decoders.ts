/**
 * One decode function per protocol for `lastgasp bms decode`: captured bytes in, one JSON-ready result per
 * frame (or per run of dropped bytes) out, in the order they appear. Each runs the same accumulator the live
 * driver uses, so a capture decodes here exactly as the agent would have read it.
 */
import { Counters } from '../stream/counters.ts';
import { DelimitedAccumulator } from '../stream/delimited.ts';
import { BridgeParser } from '../protocol/parser.ts';
import {
  decodeJbdBasic,
  decodeJbdCells,
  decodeJbdHardware,
  JbdAccumulator,
  JBD_OP_READ,
  JBD_REG_BASIC,
  JBD_REG_CELLS,
  JBD_REG_HARDWARE,
  JBD_STATUS_OK,
  type JbdFrame,
} from '../drivers/jbd.ts';
import {
  DalyAccumulator,
  DalyCommand,
  DALY_BMS_ADDRESS,
  decodeDalyCellMinMax,
  decodeDalyCells,
  decodeDalyFailures,
  decodeDalyMos,
  decodeDalySoc,
  decodeDalyStatus,
  decodeDalyTemperatureMinMax,
  decodeDalyTemperatures,
  type DalyFrame,
} from '../drivers/daly.ts';
import { decodeF, decodeI, decodeQ1, MEGATEC_LINE_LEN_MAX, parseMegatecShutdown, Q1_TERMINATOR } from '../drivers/megatec.ts';

export type DecodeOutput = { ok: true; [field: string]: unknown } | { ok: false; reason: string; [field: string]: unknown };

/** Counters that also record, in order, each run of dropped bytes, so that the output follows the capture. */
class OrderedDrops extends Counters {
  constructor(private readonly out: DecodeOutput[]) {
    super();
  }
  override drop(reason: string, bytes: number): void {
    super.drop(reason, bytes);
    const last = this.out.at(-1);
    if (last && !last.ok && last.reason === reason) last.bytes = (last.bytes as number) + bytes;
    else this.out.push({ ok: false, reason, bytes });
  }
}

function decodeBridge(bytes: Uint8Array): DecodeOutput[] {
  const out: DecodeOutput[] = [];
  const parser = new BridgeParser({ frame: (frame) => out.push({ ok: true, version: frame.version, seq: frame.seq, message: frame.message }) }, new OrderedDrops(out));
  parser.push(bytes);
  // A capture often stops right after the last frame, before or after its delimiter.
  if (bytes.at(-1) !== 0x00) parser.push(Uint8Array.of(0x00));
  return out;
}

function decodeJbd(bytes: Uint8Array): DecodeOutput[] {
  const out: DecodeOutput[] = [];
  const accumulator = new JbdAccumulator(new OrderedDrops(out), (frame) => out.push(describeJbd(frame)));
  accumulator.push(bytes);
  accumulator.flush();
  return out;
}

function describeJbd(frame: JbdFrame): DecodeOutput {
  const isRequest = (frame.register === JBD_OP_READ || frame.register === 0x5a) && frame.data.length === 0 && frame.status <= JBD_REG_HARDWARE;
  if (isRequest) return { ok: true, request: frame.register === JBD_OP_READ ? 'read' : 'write', register: frame.status };
  if (frame.status !== JBD_STATUS_OK) return { ok: false, reason: 'status', register: frame.register, status: frame.status };
  const register = [JBD_REG_BASIC, JBD_REG_CELLS, JBD_REG_HARDWARE].includes(frame.register) ? frame.register : guessJbdRegister(frame.data);
  const guessed = register !== frame.register;
  const base = { ok: true as const, register, ...(guessed ? { registerGuessed: true, byte1: frame.register } : {}) };
  if (register === JBD_REG_BASIC) {
    const basic = decodeJbdBasic(frame.data);
    return basic.ok ? { ...base, basic: basic.value } : { ok: false, reason: 'basic info too short', register };
  }
  if (register === JBD_REG_CELLS) {
    const cells = decodeJbdCells(frame.data);
    return cells.ok ? { ...base, cellMv: cells.value } : { ok: false, reason: 'odd cell data length', register };
  }
  const hardware = decodeJbdHardware(frame.data);
  return hardware.ok ? { ...base, model: hardware.value } : { ok: false, reason: 'hardware', register };
}

/**
 * Some printed captures show A5 in byte 1 instead of the register. Guess from the data: printable ASCII is
 * the model string, a run of plausible cell voltages is register 0x04, anything at least 23 bytes is 0x03.
 */
function guessJbdRegister(data: Uint8Array): number {
  if (data.length > 0 && data.every((byte) => byte >= 0x20 && byte < 0x7f)) return JBD_REG_HARDWARE;
  const cells = decodeJbdCells(data);
  if (cells.ok && cells.value.length > 0 && cells.value.every((mv) => mv >= 1000 && mv <= 5000)) return JBD_REG_CELLS;
  return JBD_REG_BASIC;
}

function decodeDaly(bytes: Uint8Array): DecodeOutput[] {
  const out: DecodeOutput[] = [];
  const accumulator = new DalyAccumulator(new OrderedDrops(out), (frame) => out.push(describeDaly(frame)));
  accumulator.push(bytes);
  accumulator.flush();
  return out;
}

function describeDaly(frame: DalyFrame): DecodeOutput {
  const base = { ok: true as const, address: frame.address, command: frame.command };
  if (frame.address !== DALY_BMS_ADDRESS) return { ...base, request: true };
  switch (frame.command) {
    case DalyCommand.SOC:
      return { ...base, soc: decodeDalySoc(frame.data) };
    case DalyCommand.CELL_MINMAX:
      return { ...base, cellMinMax: decodeDalyCellMinMax(frame.data) };
    case DalyCommand.TEMP_MINMAX:
      return { ...base, temperatureMinMax: decodeDalyTemperatureMinMax(frame.data) };
    case DalyCommand.MOS:
      return { ...base, mos: decodeDalyMos(frame.data) };
    case DalyCommand.STATUS:
      return { ...base, status: decodeDalyStatus(frame.data) };
    case DalyCommand.CELLS:
      return { ...base, cells: decodeDalyCells(frame.data) };
    case DalyCommand.TEMPERATURES:
      return { ...base, temperatures: decodeDalyTemperatures(frame.data) };
    case DalyCommand.FAILURES:
      return { ...base, failures: decodeDalyFailures(frame.data) };
    default:
      return { ...base, data: Array.from(frame.data) };
  }
}

const latin1 = new TextDecoder('latin1');

function decodeMegatec(bytes: Uint8Array): DecodeOutput[] {
  const out: DecodeOutput[] = [];
  const accumulator = new DelimitedAccumulator({ delimiter: Q1_TERMINATOR, frameLenMax: MEGATEC_LINE_LEN_MAX }, new OrderedDrops(out), (line) => out.push(describeMegatec(latin1.decode(line))));
  accumulator.push(bytes);
  if (bytes.at(-1) !== Q1_TERMINATOR) accumulator.push(Uint8Array.of(Q1_TERMINATOR));
  return out;
}

function describeMegatec(line: string): DecodeOutput {
  if (line.startsWith('(')) {
    const q1 = decodeQ1(line);
    return q1.ok ? { ok: true, reply: 'Q1', status: q1.value } : { ok: false, reason: `Q1 ${q1.reason}`, line };
  }
  if (line.startsWith('#')) {
    const ratings = decodeF(line);
    if (ratings.ok) return { ok: true, reply: 'F', ratings: ratings.value };
    const info = decodeI(line);
    if (info.ok) return { ok: true, reply: 'I', info: info.value };
    return { ok: false, reason: 'a # answer of neither the F nor the I length', line };
  }
  const shutdownMs = parseMegatecShutdown(line);
  if (shutdownMs !== undefined) return { ok: true, command: line, shutdownInMs: shutdownMs };
  if (/^(Q1|F|I|C|Q|T|TL|T\d\d|CT)$/.test(line)) return { ok: true, command: line };
  return { ok: false, reason: 'not a Megatec answer or command', line };
}

export const DECODERS = {
  bridge: decodeBridge,
  jbd: decodeJbd,
  daly: decodeDaly,
  q1: decodeMegatec,
} as const;
export type DecoderName = keyof typeof DECODERS;

/** The order `bms probe` asks in: the bridge first (it answers HELLO at once), then the polled protocols. */
export const PROBE_ORDER = ['bridge', 'jbd', 'daly', 'q1'] as const;
