/**
 * One decode function per protocol for `lastgasp bms decode`: captured bytes in, one JSON-ready result per
 * frame (or per run of dropped bytes) out, in the order they appear. Each runs the same accumulator the live
 * driver uses, so a capture decodes here exactly as the agent would have read it; each lives in its
 * protocol's folder (decoder.ts).
 */
import { decodeBridge } from '../bridge/decoder.ts';
import { decodeJbd } from '../jbd/decoder.ts';
import { decodeDaly } from '../daly/decoder.ts';
import { decodeMegatec } from '../megatec/decoder.ts';

export type { DecodeOutput } from '../core/index.ts';

export const DECODERS = {
  bridge: decodeBridge,
  jbd: decodeJbd,
  daly: decodeDaly,
  q1: decodeMegatec,
} as const;
export type DecoderName = keyof typeof DECODERS;

/** The order `bms probe` asks in: the bridge first (it answers HELLO at once), then the polled protocols. */
export const PROBE_ORDER = ['bridge', 'jbd', 'daly', 'q1'] as const;
