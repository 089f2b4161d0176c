/**
 * `lastgasp bms decode --protocol bridge`: captured bytes through the same parser the host uses, one
 * result per frame or per run of dropped bytes.
 */
import { OrderedDrops, type DecodeOutput } from '../core/index.ts';
import { BridgeParser } from './parser.ts';

export function decodeBridge(bytes: Uint8Array): DecodeOutput[] {
  const out: DecodeOutput[] = [];
  const parser = new BridgeParser({ frame: (frame) => out.push({ ok: true, version: frame.version, seq: frame.seq, message: frame.message }) }, new OrderedDrops(out));
  parser.push(bytes);
  // A capture often stops right after the last frame, before or after its delimiter.
  if (bytes.at(-1) !== 0x00) parser.push(Uint8Array.of(0x00));
  return out;
}
