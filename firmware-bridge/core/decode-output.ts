/**
 * What `lastgasp bms decode` prints for each frame, and the counters that record each run of dropped bytes
 * in order, so that the output follows the capture. Each protocol folder's decoder.ts uses them.
 */
import { Counters } from './counters.ts';

export type DecodeOutput = { ok: true; [field: string]: unknown } | { ok: false; reason: string; [field: string]: unknown };

/** Counters that also record, in order, each run of dropped bytes, so that the output follows the capture. */
export class OrderedDrops extends Counters {
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
