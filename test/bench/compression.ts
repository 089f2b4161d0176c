/**
 * `npm run bench:compression`: what the compressors that both Node 20 and Deno 2 ship do to a batch on this
 * machine, to choose the batch compression (agent/replication/compression.ts) by measurement. Each batch is
 * the body the publisher sends: about 256 KiB of entries, telemetry (the JSON readings of bench:holdup) or
 * incompressible random bytes. For each algorithm and level: the compression speed (MB of input per second of
 * CPU, one thread), the decompression speed, and the ratio (compressed ÷ input bytes).
 *
 * Runs under Node (`npm run bench:compression`) and Deno 2 (`deno run -A test/bench/compression.ts`): the same
 * candidates on both, so that the choice holds for both runtimes. The last line is one JSON object.
 */
import * as zlib from 'node:zlib';
import { WireCodec } from '../../agent/replication/index.ts';
import { mulberry32 } from '../log/support/random.ts';
import { entryValue, type Data } from './holdup-data.ts';

const BATCH_BYTES = 256 * 1024;
/** Each measurement repeats until it has run this long, so a loaded machine's hiccup weighs little. */
const MEASURE_MS = 400;

interface Candidate {
  readonly name: string;
  compress(input: Uint8Array): Uint8Array;
  decompress(input: Uint8Array): Uint8Array;
}

const brotli = (quality: number): Candidate => ({
  name: `brotli q${quality}`,
  compress: (input) => zlib.brotliCompressSync(input, { params: { [zlib.constants.BROTLI_PARAM_QUALITY]: quality, [zlib.constants.BROTLI_PARAM_SIZE_HINT]: input.length } }),
  decompress: (input) => zlib.brotliDecompressSync(input),
});
const deflateRaw = (level: number): Candidate => ({
  name: `deflate-raw ${level}`,
  compress: (input) => zlib.deflateRawSync(input, { level }),
  decompress: (input) => zlib.inflateRawSync(input),
});
const gzip = (level: number): Candidate => ({
  name: `gzip ${level}`,
  compress: (input) => zlib.gzipSync(input, { level }),
  decompress: (input) => zlib.gunzipSync(input),
});

const CANDIDATES: Candidate[] = [deflateRaw(1), deflateRaw(3), deflateRaw(6), deflateRaw(9), gzip(6), brotli(1), brotli(4), brotli(5), brotli(7), brotli(9), brotli(11)];

/** A batch body as the publisher writes it (the codec's own encoder), unsigned. */
function batchBody(data: Data): Uint8Array {
  const random = mulberry32(7);
  const entries = [];
  let bytes = 0;
  for (let seq = 1; bytes < BATCH_BYTES; seq++) {
    const payload = entryValue(data, random, seq);
    bytes += payload.length + 20;
    entries.push({ seq, epoch: 1, timestampMs: 1_760_000_000_000 + seq, payload });
  }
  return new WireCodec().encodeBatch({ group: 'bench', node: 'gw-a', epoch: 1, entries });
}

function timed(run: () => void): number {
  let runs = 0;
  const start = performance.now();
  while (performance.now() - start < MEASURE_MS) {
    run();
    runs++;
  }
  return (performance.now() - start) / runs;
}

async function compressionStream(input: Uint8Array): Promise<{ ms: number; ratio: number }> {
  let out = 0;
  const start = performance.now();
  let runs = 0;
  while (performance.now() - start < MEASURE_MS) {
    const stream = new Blob([input]).stream().pipeThrough(new CompressionStream('deflate-raw'));
    out = (await new Response(stream).arrayBuffer()).byteLength;
    runs++;
  }
  return { ms: (performance.now() - start) / runs, ratio: out / input.length };
}

const runtime = 'Deno' in globalThis ? 'deno' : `node`;
const results: Array<{ data: Data; name: string; compressMBps: number; decompressMBps: number; ratio: number }> = [];
console.log(`${runtime}: batch of ${BATCH_BYTES / 1024} KiB; MB/s of input, one thread`);
console.log('data       algorithm        compress MB/s  decompress MB/s  ratio');
for (const data of ['telemetry', 'random'] as const) {
  const input = batchBody(data);
  for (const candidate of CANDIDATES) {
    const packed = candidate.compress(input);
    const compressMs = timed(() => candidate.compress(input));
    const decompressMs = timed(() => candidate.decompress(packed));
    results.push({ data, name: candidate.name, compressMBps: Math.round(input.length / 1000 / compressMs), decompressMBps: Math.round(input.length / 1000 / decompressMs), ratio: Number((packed.length / input.length).toFixed(3)) });
  }
  const stream = await compressionStream(input);
  results.push({ data, name: 'CompressionStream deflate-raw', compressMBps: Math.round(input.length / 1000 / stream.ms), decompressMBps: 0, ratio: Number(stream.ratio.toFixed(3)) });
}
for (const row of results) console.log(`${row.data.padEnd(9)}  ${row.name.padEnd(30)} ${String(row.compressMBps).padStart(6)}  ${String(row.decompressMBps || '-').padStart(15)}  ${row.ratio.toFixed(3)}`);
console.log(JSON.stringify({ runtime, batchBytes: BATCH_BYTES, results }));
