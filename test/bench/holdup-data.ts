/** The tails of the hold-up benchmark (holdup.ts), apart so that bench:compression can run them under Deno too. */

const ENTRY_BYTES = 1000;

export type Data = 'telemetry' | 'random';

/** One entry of the tail: ten meters' readings as JSON (what a gateway logs), or incompressible bytes. */
export function entryValue(data: Data, random: () => number, index: number): Uint8Array {
  if (data === 'random') return Uint8Array.from({ length: ENTRY_BYTES }, () => Math.floor(random() * 256));
  const readings = Array.from({ length: 10 }, (_, meter) => ({
    meter: `meter-${String(meter).padStart(3, '0')}`,
    ts: 1_760_000_000_000 + index * 1000 + meter,
    v: Number((229 + random() * 3).toFixed(2)),
    a: Number((random() * 16).toFixed(3)),
    pf: Number((0.9 + random() * 0.1).toFixed(3)),
  }));
  return new TextEncoder().encode(JSON.stringify({ gw: 'gw-a', seq: index, readings }));
}
