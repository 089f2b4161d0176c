/**
 * Batch bodies compressed with Brotli (RFC 7932) when that makes them leave sooner. Chosen by measurement
 * (bench:compression, README "Compression") among what Node 20 and Deno 2 both ship (node:zlib's deflate-raw,
 * gzip and Brotli; CompressionStream): on a 256 KiB batch of telemetry Brotli quality 1 compresses at 330 MB/s
 * to 0.18 of the bytes where deflate-raw level 1 does 240 MB/s to 0.20, and quality 5 reaches deflate's best
 * ratio at five times its speed; on incompressible bytes Brotli gives up at 1 GB/s where deflate still spends
 * 45 MB/s. CompressionStream is deflate only, asynchronous, and slower than node:zlib on both runtimes.
 *
 * The decision is per batch, from the last batches: compressing pays when compressing and sending the
 * smaller batch takes less time than sending it as it is, i.e. when the link drains slower than
 * speed × (1 − ratio), with the compressor's speed and ratio those this process measured on its own
 * batches. A link faster than the compressor never gets compressed batches; one whose rate is not measured
 * yet gets none either. On mains the fastest quality that pays is used. On brownout (flushing) the quality
 * that gets the batch across soonest, which on a slow link is a better ratio, within the CPU budget
 * (COMPRESS_CPU_SHARE of the wire time of what it produces, and never more than COMPRESS_MS_MAX of the event
 * loop per batch).
 */
import * as zlib from 'node:zlib';

/** The envelope's `z` for a Brotli-compressed body (broker-config/asyncapi.yaml). */
export const BATCH_COMPRESSION_BROTLI = 'br';

/**
 * The Brotli qualities tried, each with the speed (input bytes per ms of CPU) and ratio bench:compression
 * measured on telemetry on this project's build machine. These are priors: the compressor scales both by
 * what it measures on its own batches (a gateway's CPU is slower, its data compresses differently).
 */
const LADDER: ReadonlyArray<{ readonly quality: number; readonly bytesPerMs: number; readonly ratio: number }> = [
  { quality: 1, bytesPerMs: 330_000, ratio: 0.183 },
  { quality: 4, bytesPerMs: 129_000, ratio: 0.17 },
  { quality: 5, bytesPerMs: 58_000, ratio: 0.149 },
  { quality: 7, bytesPerMs: 25_000, ratio: 0.146 },
  { quality: 9, bytesPerMs: 13_000, ratio: 0.145 },
  { quality: 11, bytesPerMs: 1_000, ratio: 0.115 },
];
/** On brownout, compressing a batch may take at most this share of the time its output needs on the wire. */
const COMPRESS_CPU_SHARE = 0.5;
/** Nor more than this much of the event loop per batch: acknowledgements and the handoff wait behind it. */
const COMPRESS_MS_MAX = 50;
/** Weight of the newest batch in the running estimates: the last ten or so batches decide. */
const EWMA_WEIGHT = 0.2;
/**
 * While the ratio says "does not pay" (incompressible data), every this many batches one is compressed at
 * quality 1 anyway, to notice data that became compressible. Quality 1 gives up on random bytes at about
 * 1 GB/s, so a probe costs well under a millisecond per 256 KiB.
 */
const PROBE_EVERY = 16;
/** Bodies smaller than this are sent as they are: a few entries gain little and Brotli's header is ~10 bytes. */
const COMPRESS_BYTES_MIN = 1024;
/**
 * Largest decompressed body a receiver accepts unless its own replication.batchBytesMax is larger (the
 * publisher never compresses more than that into one batch): 32 times the default batchBytesMax of 512 KiB.
 * A body that would inflate beyond it is a zip bomb, refused after producing at most this much.
 */
export const BATCH_INFLATED_BYTES_MAX = 16 * 1024 * 1024;

/** What the publisher knows of the link a batch goes out on. */
export interface LinkHint {
  /** Wire bytes per second the link drained (DrainMeter); undefined until measured. */
  readonly bytesPerS: number | undefined;
  /** The brownout flush: spend CPU on ratio. */
  readonly flushing: boolean;
}

export interface CompressorCounters {
  batchesCompressed: number;
  bytesIn: number;
  bytesOut: number;
}

export class BatchCompressor {
  /**
   * Bytes saved ÷ the bytes the prior says the quality used saves: how much better or worse this data
   * compresses (0: incompressible, at every quality).
   */
  private gain = 1;
  /** Measured speed ÷ the prior speed: how much faster or slower this CPU is. */
  private speedScale = 1;
  private sinceProbe = 0;
  /** A batch of this process's own data was compressed: `gain` is measured, not the prior. */
  private measured = false;
  readonly counters: CompressorCounters = { batchesCompressed: 0, bytesIn: 0, bytesOut: 0 };

  /** The Brotli quality for a body of `bodyBytes` on this link, or undefined to send it uncompressed. */
  choose(bodyBytes: number, link: LinkHint): number | undefined {
    const planned = this.plan(bodyBytes, link);
    if (planned !== undefined) return planned.quality;
    // Nothing pays at the ratio measured. If the link is slow enough that it would at the prior one, the data
    // may have become compressible again: probe now and then.
    const rate = link.bytesPerS;
    if (rate === undefined || rate <= 0 || bodyBytes < COMPRESS_BYTES_MIN) return undefined;
    const first = LADDER[0]!;
    const wireMs = (bytes: number) => (bytes * 1000) / rate;
    const slowLink = bodyBytes / (first.bytesPerMs * this.speedScale) + wireMs(bodyBytes * first.ratio) < wireMs(bodyBytes);
    if (!slowLink || ++this.sinceProbe < PROBE_EVERY) return undefined;
    this.sinceProbe = 0;
    return first.quality;
  }

  /**
   * The ratio a body of `bodyBytes` is expected to shrink to on this link (1: sent as it is), which sizes how
   * much a batch reads. 1 until this process has compressed a batch of its own: at the prior (telemetry's
   * ratio) the first batch of incompressible data would read about seven times its size, and on a slow link
   * in a short brownout that one batch takes the whole hold-up time (bench:holdup at 256 kbit/s and 1 s).
   */
  expectedRatio(bodyBytes: number, link: LinkHint): number {
    if (!this.measured) return 1;
    return this.plan(bodyBytes, link)?.ratio ?? 1;
  }

  /** The quality that pays best on this link within the CPU budget, and the ratio expected from it. */
  private plan(bodyBytes: number, link: LinkHint): { quality: number; ratio: number } | undefined {
    const rate = link.bytesPerS;
    if (rate === undefined || rate <= 0 || bodyBytes < COMPRESS_BYTES_MIN) return undefined;
    const wireMs = (bytes: number) => (bytes * 1000) / rate;
    let best: { quality: number; ratio: number } | undefined;
    let bestMs = wireMs(bodyBytes);
    for (const step of LADDER) {
      const ratio = this.ratioAt(step.ratio);
      const compressMs = bodyBytes / (step.bytesPerMs * this.speedScale);
      const totalMs = compressMs + wireMs(bodyBytes * ratio);
      if (totalMs >= bestMs) continue;
      if (!link.flushing) return { quality: step.quality, ratio };
      if (compressMs > COMPRESS_MS_MAX || compressMs > wireMs(bodyBytes * ratio) * COMPRESS_CPU_SHARE) break;
      best = { quality: step.quality, ratio };
      bestMs = totalMs;
    }
    return best;
  }

  /** The ratio expected at a quality whose prior ratio is `prior`, for the data seen lately. */
  private ratioAt(prior: number): number {
    return Math.min(1, 1 - (1 - prior) * this.gain);
  }

  /** `body` compressed at `quality`, or undefined when that is not smaller; learns speed and ratio either way. */
  compress(body: Uint8Array, quality: number): Uint8Array | undefined {
    const step = LADDER.find((candidate) => candidate.quality === quality);
    if (!step) throw new RangeError(`compression: Brotli quality ${quality} is not on the ladder`);
    const startMs = performance.now();
    const packed = zlib.brotliCompressSync(body, {
      params: { [zlib.constants.BROTLI_PARAM_QUALITY]: quality, [zlib.constants.BROTLI_PARAM_SIZE_HINT]: body.length },
    });
    const elapsedMs = Math.max(performance.now() - startMs, 0.01);
    this.measured = true;
    const gain = Math.max(0, (1 - packed.length / body.length) / (1 - step.ratio));
    // Data that compresses worse than thought is believed at once: each further try at a high quality would
    // cost CPU for little (Brotli's best qualities crawl over random bytes at under 1 MB/s). Better news
    // moves the estimate gradually.
    this.gain = gain < this.gain ? gain : this.gain + EWMA_WEIGHT * (gain - this.gain);
    this.speedScale += EWMA_WEIGHT * (body.length / elapsedMs / step.bytesPerMs - this.speedScale);
    if (packed.length >= body.length) return undefined;
    this.counters.batchesCompressed++;
    this.counters.bytesIn += body.length;
    this.counters.bytesOut += packed.length;
    return new Uint8Array(packed.buffer, packed.byteOffset, packed.length);
  }
}

export type InflateResult = { ok: true; body: Uint8Array } | { ok: false; reason: string };

/**
 * The body of an envelope whose `z` is `compression`, decompressed to at most `bytesMax` bytes; never throws.
 * Data that is not what the flag says, and a body that would inflate beyond the cap, are refused.
 */
export function inflateBatchBody(compression: unknown, bytes: Uint8Array, bytesMax: number): InflateResult {
  if (compression !== BATCH_COMPRESSION_BROTLI) return { ok: false, reason: 'compression-unknown' };
  try {
    const body = zlib.brotliDecompressSync(bytes, { maxOutputLength: bytesMax });
    // A body is never empty. Plain CBOR read as Brotli often is an empty stream (a map head's bits say "last
    // meta-block, empty"), and Deno's node:zlib then ignores the bytes after it where Node's refuses them.
    if (body.length === 0) return { ok: false, reason: 'compression-bad-data' };
    return { ok: true, body: new Uint8Array(body.buffer, body.byteOffset, body.length) };
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    return { ok: false, reason: code === 'ERR_BUFFER_TOO_LARGE' ? 'compression-too-large' : 'compression-bad-data' };
  }
}
