/**
 * `lastgasp bms decode --protocol q1`: captured bytes split at the Megatec terminator, each line read as
 * a Q1, F or I answer or a command.
 */
import { DelimitedAccumulator, OrderedDrops, type DecodeOutput } from '../core/index.ts';
import { decodeF, decodeI, decodeQ1, MEGATEC_LINE_LEN_MAX, parseMegatecShutdown, Q1_TERMINATOR } from './codec.ts';

const latin1 = new TextDecoder('latin1');

export function decodeMegatec(bytes: Uint8Array): DecodeOutput[] {
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
