/**
 * One decode function per protocol for `lastgasp bms decode`: captured bytes in, one JSON-ready result per
 * frame found out. Each runs the same parser the live driver uses, so a capture decodes here exactly as the
 * agent would have read it.
 */
import { BridgeParser } from '../protocol/parser.ts';

export type DecodeOutput = { ok: true; [field: string]: unknown } | { ok: false; reason: string; [field: string]: unknown };

function decodeBridge(bytes: Uint8Array): DecodeOutput[] {
  const out: DecodeOutput[] = [];
  const parser = new BridgeParser({
    frame: (frame) => out.push({ ok: true, version: frame.version, seq: frame.seq, message: frame.message }),
    rejected: (result) => out.push({ ok: false, reason: result.reason, version: result.version, type: result.type, seq: result.seq }),
  });
  const before = () => parser.counters.snapshot();
  const counted = before();
  parser.push(bytes);
  // A capture usually stops right after the last frame's delimiter, or just before it.
  if (bytes.at(-1) !== 0x00) parser.push(Uint8Array.of(0x00));
  for (const [name, value] of Object.entries(parser.counters.snapshot())) {
    const match = /^drop\.(cobs|short|long|crc|oversize)\.frames$/.exec(name);
    if (match) for (let count = counted[name] ?? 0; count < value; count++) out.push({ ok: false, reason: match[1]! });
  }
  return out;
}

export const DECODERS = {
  bridge: decodeBridge,
} as const;
export type DecoderName = keyof typeof DECODERS;

/** The order `bms probe` asks in: the bridge first (it answers HELLO at once), then the polled protocols. */
export const PROBE_ORDER = ['bridge'] as const;
