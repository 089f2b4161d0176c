/**
 * `npm run bench:replication`: lastgasp's replication against raw MQTT.js, side by side in one run, on one
 * local mosquitto (broker-config/mosquitto/single.conf), with 256-byte entries:
 *
 *   - raw MQTT.js, QoS 1, one entry per message, at most 100 unacknowledged (the broker's Receive Maximum);
 *   - raw MQTT.js, QoS 1, pre-built batches (encoded by the real codec) of several sizes, the window lastgasp
 *     uses (8): the best of them is the practical limit of the wire;
 *   - lastgasp end to end: appends (fdatasynced by the flash log) until the broker quorum acknowledged them
 *     (durability broker), and until a sibling in another process holds them on its flash (durability replica);
 *   - the brownout drain: after 50,000 entries replicated normally (a gateway that has been running), an
 *     unreplicated tail of 50,000 more flushed with `setFlushing(true)` until the
 *     broker acknowledged all of it, against raw MQTT.js publishing the very batches lastgasp sent (re-encoded
 *     byte for byte from the gateway's log at the boundaries it used) with the same window;
 *   - the flash log alone (the same appends with replication held back): the ceiling of the end-to-end runs,
 *     since every entry is fdatasynced before it may be replicated;
 *   - the raw pipeline (issue 12), the baseline a durable pipeline is held to: batches of 256 entries (the most
 *     one group commit of 256 writers can hold) written to a file and fdatasynced, each then published QoS 1
 *     by raw MQTT.js with the window lastgasp uses, the next write overlapping the publishes; no framework;
 *   - the end-to-end runs and the drain again with replication.compression off, and the end-to-end runs with a
 *     batching writer (one caller of FlashLog.appendMany with WRITERS entries, the raw pipeline's unit), next to
 *     the concurrent one-entry appends: each entry repeats one 256-byte value, which Brotli shrinks to almost
 *     nothing, so what compression costs or saves on loopback shows;
 *   - the largest RSS of the gateway processes (primary and sibling run as child processes, under tsx as the
 *     agent does), and their RSS once connected and idle.
 *
 * Each measurement runs ROUNDS times, interleaved, so that all of them see the same load on a shared machine;
 * the table gives the medians. The last line is one JSON object. Not part of `npm test`; run it with `nice`.
 * LASTGASP_BENCH_CPU_PROF=dir writes a CPU profile of every gateway process there, and prints the measured
 * stretch of each on the profile's clock (µs) to stderr.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createPrivateKey, createPublicKey, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import mqtt, { type MqttClient } from 'mqtt';
import { createFlashLog } from '../../agent/log/index.ts';
import { Replication, WireCodec, type WireAuth } from '../../agent/replication/index.ts';
import { silentLogger, systemClock } from '../../agent/util/index.ts';
import { startMosquitto } from '../support/mosquitto.ts';

const ENTRY_BYTES = 256;
const ROUNDS = Number(process.env.LASTGASP_BENCH_ROUNDS ?? 3);
/** Messages of the one-per-message baseline per round: a few seconds at the rates seen here. */
const PER_MESSAGE_COUNT = Number(process.env.LASTGASP_BENCH_PER_MESSAGE ?? 20_000);
/** Entries of each batched or end-to-end run. */
const E2E_ENTRIES = Number(process.env.LASTGASP_BENCH_ENTRIES ?? 100_000);
/** The brownout tail of issue 5. */
const DRAIN_ENTRIES = Number(process.env.LASTGASP_BENCH_DRAIN_ENTRIES ?? 50_000);
/** The one-per-message baseline's window: the Receive Maximum single.conf announces (max_inflight_messages). */
const PER_MESSAGE_WINDOW = 100;
/** lastgasp's default publish window (agent/config/schema.ts, replication.windowMax); the batched runs use it too. */
const BATCH_WINDOW = 8;
/**
 * Entries per pre-built batch. 1886 is what the publisher puts in a batch by default: 512 KiB
 * (replication.batchBytesMax) less the header and the per-entry overhead of 2048 entries, over 256 bytes.
 */
const BATCH_SIZES = [128, 512, 1886];
/** Concurrent application writers in the end-to-end runs: enough to keep the group commit full. */
const WRITERS = 256;
const WORKER_TIMEOUT_MS = 300_000;
const RSS_SAMPLE_MS = 20;
/**
 * The end-to-end runs: each durability with the agent's defaults (compression auto, concurrent one-entry
 * appends), with compression off, and with the batching writer (appendMany of WRITERS entries).
 */
const E2E_CASES: ReadonlyArray<readonly [Durability, 'auto' | 'off', 'entry' | 'many']> = [
  ['broker', 'auto', 'entry'],
  ['broker', 'off', 'entry'],
  ['broker', 'auto', 'many'],
  ['replica', 'auto', 'entry'],
  ['replica', 'off', 'entry'],
  ['replica', 'auto', 'many'],
];
const e2eKey = (durability: Durability, compression: 'auto' | 'off', writer: 'entry' | 'many') => `${durability}Ack${compression === 'off' ? 'Off' : ''}${writer === 'many' ? 'Many' : ''}PerS`;
const MB = 1024 * 1024;

type Durability = 'broker' | 'replica';

interface WorkerConfig {
  role: 'primary' | 'standby';
  dir: string;
  url: string;
  group: string;
  durability: Durability;
  entries: number;
  mode: 'e2e' | 'drain' | 'log-only';
  /** replication.compression of the gateway: the drain and the e2e runs are measured both ways. */
  compression: 'auto' | 'off';
  /** 'entry': WRITERS concurrent appends of one entry; 'many': one writer appending WRITERS entries per call. */
  writer: 'entry' | 'many';
}

interface WorkerResult {
  ms: number;
  /** CPU time (user + system, all threads) of the measured part. */
  cpuMs: number;
  perS: number;
  rssMBMax: number;
  rssIdleMB: number;
  batches: number;
  batchEntriesMaxSeen: number;
  /** Batches the gateway sent compressed. */
  batchesCompressed: number;
  /**
   * Drain: [first seq, entries, bytes, compressed (1) or not (0)] of every batch published, so the baseline
   * can send the same batches (uncompressed: raw MQTT.js has no compressor).
   */
  boundaries?: Array<[number, number, number, number]>;
}

// ---- the gateway side, in a child process -----------------------------------------------------------------

/** RFC 8410: an Ed25519 private key in PKCS#8 DER is this 16-byte prefix and the 32-byte seed. */
const ED25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');

/**
 * The gateways sign as in production (per-node Ed25519). Both processes and the drain's baseline need the
 * same keys, so they come from fixed seeds: fine for a benchmark on loopback, never for a gateway.
 */
function benchAuth(node: 'gw-a' | 'gw-b'): WireAuth {
  const key = (member: string) => createPrivateKey({ key: Buffer.concat([ED25519_PKCS8_PREFIX, Buffer.alloc(32, member === 'gw-a' ? 1 : 2)]), format: 'der', type: 'pkcs8' });
  const publicKeys = new Map(['gw-a', 'gw-b'].map((member) => [member, createPublicKey(key(member))]));
  return { mode: 'ed25519', keyring: { node, privateKey: key(node), publicKeys } };
}

async function worker(config: WorkerConfig): Promise<void> {
  // Exit rather than die of the signal, so that a CPU profile (LASTGASP_BENCH_CPU_PROF) is written.
  process.once('SIGTERM', () => process.exit(0));
  let rssMax = process.memoryUsage().rss;
  const sampler = setInterval(() => (rssMax = Math.max(rssMax, process.memoryUsage().rss)), RSS_SAMPLE_MS);
  const say = (line: object) => process.stdout.write(JSON.stringify(line) + '\n');
  const node = config.role === 'primary' ? 'gw-a' : 'gw-b';
  // Retention held back: the baseline of the drain re-reads the drained entries from this log afterwards.
  const log = createFlashLog({ dir: join(config.dir, node), logger: silentLogger, clock: systemClock, retentionFloor: 1 });
  await log.open();
  const replication = new Replication({
    log,
    group: config.group,
    node,
    siblings: [config.role === 'primary' ? 'gw-b' : 'gw-a'],
    brokers: [config.url],
    mode: 'cluster',
    durability: config.durability,
    topicPrefix: 'lastgasp',
    protocol: 'auto',
    batchEntriesMax: 2048,
    batchBytesMax: 512 * 1024,
    windowMax: BATCH_WINDOW,
    // LASTGASP_BENCH_COALESCE=0 measures without replication.coalesce (an A/B of it on this machine).
    coalesce: process.env.LASTGASP_BENCH_COALESCE !== '0',
    // The log alone is measured with the publisher paused: nothing may be prepared ahead meanwhile (the
    // prepared tail would read, encode and sign during the appends, about a fifth of their rate here).
    ...(config.mode === 'log-only' ? { prepareAheadBytes: 0 } : {}),
    keepaliveS: 10,
    auth: benchAuth(node),
    counterFile: join(config.dir, `${node}.wire-counter.json`),
    compression: config.compression,
    logger: silentLogger,
    clock: systemClock,
  });
  await replication.start();
  while (!replication.connected) await new Promise((resolve) => setTimeout(resolve, 10));
  await replication.setRole(config.role);
  const rssIdle = process.memoryUsage().rss;
  if (config.role === 'standby') {
    say({ ready: true });
    setInterval(() => say({ rssMB: rssMax / MB }), 250);
    return;
  }
  const payload = new Uint8Array(randomBytes(ENTRY_BYTES));
  // The batching writer hands the log what the raw pipeline writes at once: WRITERS entries, one call.
  const many = Array.from({ length: WRITERS }, () => payload);
  const append = async () => {
    if (config.writer === 'many') {
      for (let next = 0; next < config.entries; next += WRITERS) await log.appendMany(next + WRITERS <= config.entries ? many : many.slice(0, config.entries - next));
      return;
    }
    let next = 0;
    await Promise.all(
      Array.from({ length: WRITERS }, async () => {
        while (next++ < config.entries) await log.append(payload);
      }),
    );
  };
  say({ ready: true });
  let started: number;
  let cpuAtStart = process.cpuUsage();
  if (config.mode === 'log-only') {
    replication.publisher.setPaused(true);
    started = performance.now();
    await append();
    const ms = performance.now() - started;
    say({ result: { ms, cpuMs: cpuMsSince(cpuAtStart), perS: (config.entries / ms) * 1000, rssMBMax: rssMax / MB, rssIdleMB: rssIdle / MB, batches: 0, batchEntriesMaxSeen: 0, batchesCompressed: 0 } });
    await replication.stop();
    await log.close();
    process.exit(0);
  }
  const boundaries: Array<[number, number, number, number]> = [];
  let target = config.entries;
  if (config.mode === 'drain') {
    // A gateway that loses power has been replicating for a while: the same number of entries first goes
    // through normal replication (warming the read, encode and publish paths), then the tail builds up.
    await append();
    await replication.publisher.waitReplicated(config.entries, WORKER_TIMEOUT_MS);
    // Note each batch's boundaries as it is encoded (a few numbers, not the bytes: they would add to the RSS).
    const codec = replication.codec;
    const encodeBatch = codec.encodeBatch.bind(codec);
    codec.encodeBatch = (message, allocate, link) => {
      const compressedBefore = codec.compression.batchesCompressed;
      const bytes = encodeBatch(message, allocate, link);
      boundaries.push([message.entries[0]!.seq, message.entries.length, bytes.length, codec.compression.batchesCompressed - compressedBefore]);
      return bytes;
    };
    replication.publisher.setPaused(true);
    await append();
    target = log.watermarks().committed;
    // As the agent's brownout flush does: every write synced at once, control traffic held back.
    log.setSyncMode('immediate');
    replication.setControlPaused(true);
    cpuAtStart = process.cpuUsage();
    started = performance.now();
    replication.publisher.setFlushing(true);
  } else {
    started = performance.now();
    await append();
  }
  const done = await replication.publisher.waitReplicated(target, WORKER_TIMEOUT_MS);
  if (process.env.LASTGASP_BENCH_CPU_PROF) {
    // The measured stretch on the clock of a CPU profile's samples, to cut it out of the profile.
    const endUs = Number(process.hrtime.bigint() / 1000n);
    process.stderr.write(`${config.mode} ${config.durability} ${config.compression} ${config.writer}: measured ${Math.round(endUs - (performance.now() - started) * 1000)} ${endUs}\n`);
  }
  const ms = performance.now() - started;
  const cpuMs = cpuMsSince(cpuAtStart);
  clearInterval(sampler);
  rssMax = Math.max(rssMax, process.memoryUsage().rss);
  const stats = replication.publisher.stats();
  if (!done) throw new Error(`only ${log.watermarks().replicated} of ${target} replicated`);
  const result: WorkerResult = { ms, cpuMs, perS: (config.entries / ms) * 1000, rssMBMax: rssMax / MB, rssIdleMB: rssIdle / MB, batches: stats.batches as number, batchEntriesMaxSeen: stats.batchEntriesMaxSeen as number, batchesCompressed: replication.codec.compression.batchesCompressed, boundaries };
  say({ result });
  await replication.stop();
  await log.close();
  process.exit(0);
}

function cpuMsSince(start: NodeJS.CpuUsage): number {
  const used = process.cpuUsage(start);
  return (used.user + used.system) / 1000;
}

interface Worker {
  readonly child: ChildProcess;
  next(): Promise<Record<string, unknown>>;
  rssMBMax(): number;
  stop(): Promise<void>;
}

function startWorker(config: WorkerConfig): Worker {
  // LASTGASP_BENCH_CPU_PROF=dir: each gateway process writes a V8 CPU profile there (node --cpu-prof).
  const profile = process.env.LASTGASP_BENCH_CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${join(process.env.LASTGASP_BENCH_CPU_PROF, `${config.mode}-${config.durability}-${config.role}-${config.compression}-${config.writer}-${Date.now()}`)}`] : [];
  const child = spawn(process.execPath, [...profile, '--import', 'tsx', fileURLToPath(import.meta.url), 'worker', JSON.stringify(config)], { stdio: ['ignore', 'pipe', 'inherit'] });
  const lines: Array<Record<string, unknown>> = [];
  const waiting: Array<(line: Record<string, unknown>) => void> = [];
  let rssMB = 0;
  createInterface({ input: child.stdout! }).on('line', (text) => {
    const line = JSON.parse(text) as Record<string, unknown>;
    if (typeof line.rssMB === 'number') {
      rssMB = Math.max(rssMB, line.rssMB);
      return;
    }
    const waiter = waiting.shift();
    if (waiter) waiter(line);
    else lines.push(line);
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    child,
    next: () =>
      new Promise((resolve, reject) => {
        const line = lines.shift();
        if (line) return resolve(line);
        waiting.push(resolve);
        void exited.then(() => reject(new Error(`worker ${config.role} exited (${String(child.exitCode)})`)));
      }),
    rssMBMax: () => rssMB,
    async stop() {
      if (child.exitCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

// ---- raw MQTT.js -----------------------------------------------------------------------------------------

async function rawClient(url: string, clientId: string): Promise<MqttClient> {
  const client = mqtt.connect(url, { protocolVersion: 5, clientId, clean: true, reconnectPeriod: 0 });
  await new Promise((resolve, reject) => {
    client.once('connect', resolve);
    client.once('error', reject);
  });
  return client;
}

/** Publish every payload QoS 1 in order with at most `window` unacknowledged; resolves with the elapsed ms. */
async function publishWindowed(client: MqttClient, topic: string, payloads: readonly Uint8Array[], window: number): Promise<number> {
  const started = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(window, payloads.length) }, async () => {
      while (next < payloads.length) {
        const payload = payloads[next++]!;
        await client.publishAsync(topic, Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength), { qos: 1 });
      }
    }),
  );
  return performance.now() - started;
}

/**
 * The raw durable pipeline: each batch written at the end of a file and fdatasynced, then published QoS 1 with
 * at most `window` unacknowledged; the next batch is written while earlier ones are in flight. Elapsed ms.
 */
async function rawPipeline(client: MqttClient, topic: string, batches: readonly Uint8Array[], window: number, file: string): Promise<number> {
  const handle = await open(file, 'w');
  const inflight = new Set<Promise<unknown>>();
  let position = 0;
  const started = performance.now();
  try {
    for (const batch of batches) {
      await handle.write(batch, 0, batch.length, position);
      position += batch.length;
      await handle.datasync();
      while (inflight.size >= window) await Promise.race(inflight);
      const publish: Promise<unknown> = client.publishAsync(topic, Buffer.from(batch.buffer, batch.byteOffset, batch.byteLength), { qos: 1 }).finally(() => inflight.delete(publish));
      inflight.add(publish);
    }
    await Promise.all(inflight);
    return performance.now() - started;
  } finally {
    await handle.close();
  }
}

function prebuiltBatches(entries: number, perBatch: number): Uint8Array[] {
  const codec = new WireCodec();
  const payload = new Uint8Array(randomBytes(ENTRY_BYTES));
  const batches: Uint8Array[] = [];
  for (let first = 1; first <= entries; first += perBatch) {
    const count = Math.min(perBatch, entries - first + 1);
    const rows = Array.from({ length: count }, (_, index) => ({ seq: first + index, epoch: 1, timestampMs: Date.now(), payload }));
    batches.push(codec.encodeBatch({ group: 'raw', node: 'raw', epoch: 1, entries: rows }));
  }
  return batches;
}

// ---- the run ---------------------------------------------------------------------------------------------

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

const fmt = (value: number, digits = 0) => value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });

async function main(): Promise<void> {
  const base = await mkdtemp(join(tmpdir(), 'lastgasp-bench-repl-'));
  const broker = await startMosquitto(base);
  const samples: Record<string, number[]> = {};
  const add = (name: string, value: number) => (samples[name] ??= []).push(value);
  let rssMBMax = 0;
  let rssIdleMB = 0;
  let siblingRssMBMax = 0;
  const batchedBySize: Record<number, number[]> = {};
  try {
    const raw = await rawClient(broker.url, 'bench-raw');
    const batchesBySize = Object.fromEntries(BATCH_SIZES.map((size) => [size, prebuiltBatches(E2E_ENTRIES, size)]));
    const single = Array.from({ length: PER_MESSAGE_COUNT }, () => new Uint8Array(randomBytes(ENTRY_BYTES)));
    const pipelineBatches = prebuiltBatches(E2E_ENTRIES, WRITERS);
    for (let round = 1; round <= ROUNDS; round++) {
      const perMessageMs = await publishWindowed(raw, `bench/raw/${round}/single`, single, PER_MESSAGE_WINDOW);
      add('rawPerMessagePerS', (PER_MESSAGE_COUNT / perMessageMs) * 1000);
      for (const size of BATCH_SIZES) {
        const ms = await publishWindowed(raw, `bench/raw/${round}/batched`, batchesBySize[size]!, BATCH_WINDOW);
        (batchedBySize[size] ??= []).push((E2E_ENTRIES / ms) * 1000);
      }
      const pipelineMs = await rawPipeline(raw, `bench/raw/${round}/pipeline`, pipelineBatches, BATCH_WINDOW, join(base, `r${round}-raw-pipeline.log`));
      add('rawPipelinePerS', (E2E_ENTRIES / pipelineMs) * 1000);
      await rm(join(base, `r${round}-raw-pipeline.log`), { force: true });
      for (const [durability, compression, writer] of E2E_CASES) {
        const name = `${durability}-${compression}-${writer}`;
        const dir = join(base, `r${round}-${name}`);
        await mkdir(dir, { recursive: true });
        const group = `bench${round}${name}`;
        const sibling = durability === 'replica' ? startWorker({ role: 'standby', dir, url: broker.url, group, durability, entries: 0, mode: 'e2e', compression, writer }) : undefined;
        if (sibling) await sibling.next();
        const primary = startWorker({ role: 'primary', dir, url: broker.url, group, durability, entries: E2E_ENTRIES, mode: 'e2e', compression, writer });
        await primary.next();
        const { result } = (await primary.next()) as { result: WorkerResult };
        add(e2eKey(durability, compression, writer), result.perS);
        add(e2eKey(durability, compression, writer).replace('PerS', 'BatchesCompressed'), result.batchesCompressed);
        add(e2eKey(durability, compression, writer).replace('PerS', 'Batches'), result.batches);
        rssMBMax = Math.max(rssMBMax, result.rssMBMax);
        rssIdleMB = Math.max(rssIdleMB, result.rssIdleMB);
        await primary.stop();
        if (sibling) {
          siblingRssMBMax = Math.max(siblingRssMBMax, sibling.rssMBMax());
          await sibling.stop();
        }
      }
      for (const writer of ['entry', 'many'] as const) {
        const logDir = join(base, `r${round}-log-${writer}`);
        await mkdir(logDir, { recursive: true });
        const logOnly = startWorker({ role: 'primary', dir: logDir, url: broker.url, group: `log${round}${writer}`, durability: 'broker', entries: E2E_ENTRIES, mode: 'log-only', compression: 'auto', writer });
        await logOnly.next();
        add(writer === 'entry' ? 'logOnlyPerS' : 'logOnlyManyPerS', ((await logOnly.next()) as { result: WorkerResult }).result.perS);
        await logOnly.stop();
      }
      // Compression on and off in turn, the order alternating by round, so neither always runs second.
      for (const compression of round % 2 === 1 ? (['auto', 'off'] as const) : (['off', 'auto'] as const)) {
        const drain = await drainRound(broker.url, base, round, compression);
        const suffix = compression === 'auto' ? '' : 'Off';
        add(`drain${suffix}Ms`, drain.ms);
        add(`rawDrain${suffix}Ms`, drain.rawMs);
        add(`drain${suffix}CpuMs`, drain.cpuMs);
        add(`rawDrain${suffix}CpuMs`, drain.rawCpuMs);
        add(`drain${suffix}BatchesCompressed`, drain.compressed);
        add(`drain${suffix}Batches`, drain.batches);
        rssMBMax = Math.max(rssMBMax, drain.rssMBMax);
      }
      console.error(`round ${round}/${ROUNDS} done`);
    }
    raw.end(true);
  } finally {
    await broker.stop();
    await rm(base, { recursive: true, force: true });
  }

  const m = (name: string) => median(samples[name]!);
  const batchedMedians = BATCH_SIZES.map((size) => ({ size, perS: median(batchedBySize[size]!) }));
  const best = batchedMedians.reduce((a, b) => (b.perS > a.perS ? b : a));
  const rawPerMessagePerS = m('rawPerMessagePerS');
  const brokerAckPerS = m('brokerAckPerS');
  const replicaAckPerS = m('replicaAckPerS');
  const drainMs = m('drainMs');
  const logOnlyPerS = m('logOnlyPerS');
  const rawDrainMs = m('rawDrainMs');
  const rawPipelinePerS = m('rawPipelinePerS');
  const drainVsRawByRound = samples.drainMs!.map((ms, index) => Number((ms / samples.rawDrainMs![index]!).toFixed(3)));
  const drainOffVsRawByRound = samples.drainOffMs!.map((ms, index) => Number((ms / samples.rawDrainOffMs![index]!).toFixed(3)));
  const brokerAckOffPerS = m('brokerAckOffPerS');
  const replicaAckOffPerS = m('replicaAckOffPerS');
  const brokerAckManyPerS = m('brokerAckManyPerS');
  const replicaAckManyPerS = m('replicaAckManyPerS');
  const logOnlyManyPerS = m('logOnlyManyPerS');
  const drainOffMs = m('drainOffMs');
  const rawDrainOffMs = m('rawDrainOffMs');
  const vsPipeline = (perS: number) => Number((perS / rawPipelinePerS).toFixed(3));
  const rows: Array<[string, string, string]> = [
    ['raw MQTT.js, 1 entry/message, window 100', `${fmt(rawPerMessagePerS)} entries/s`, 'baseline'],
    ...batchedMedians.map(({ size, perS }): [string, string, string] => [`raw MQTT.js, batches of ${size}, window ${BATCH_WINDOW}`, `${fmt(perS)} entries/s`, size === best.size ? 'best: the practical limit' : '']),
    ['lastgasp append -> broker quorum', `${fmt(brokerAckPerS)} entries/s`, `${fmt(brokerAckPerS / best.perS, 2)} x raw batched (>= 0.8), ${fmt(brokerAckPerS / rawPerMessagePerS, 1)} x per-message (>= 10)`],
    ['lastgasp append -> replica ack', `${fmt(replicaAckPerS)} entries/s`, `${fmt(replicaAckPerS / best.perS, 2)} x raw batched`],
    [`raw pipeline: ${WRITERS}-entry batches fdatasynced, then QoS 1, window ${BATCH_WINDOW}`, `${fmt(rawPipelinePerS)} entries/s`, 'baseline of the durable pipeline'],
    ['lastgasp vs the raw pipeline: broker / replica ack', `${fmt(brokerAckPerS / rawPipelinePerS, 2)} / ${fmt(replicaAckPerS / rawPipelinePerS, 2)}`, 'goals >= 0.8 / >= 0.7'],
    ['  the same, compression off', `${fmt(brokerAckOffPerS / rawPipelinePerS, 2)} / ${fmt(replicaAckOffPerS / rawPipelinePerS, 2)}`, `${fmt(brokerAckOffPerS)} / ${fmt(replicaAckOffPerS)} entries/s`],
    [`  the same, one writer, appendMany of ${WRITERS}`, `${fmt(brokerAckManyPerS / rawPipelinePerS, 2)} / ${fmt(replicaAckManyPerS / rawPipelinePerS, 2)}`, `${fmt(brokerAckManyPerS)} / ${fmt(replicaAckManyPerS)} entries/s`],
    [`lastgasp flash log alone, ${WRITERS} writers`, `${fmt(logOnlyPerS)} entries/s`, `the ceiling of the two above (broker: ${fmt(brokerAckPerS / logOnlyPerS, 2)} of it)`],
    [`lastgasp flash log alone, appendMany of ${WRITERS}`, `${fmt(logOnlyManyPerS)} entries/s`, `the ceiling of the batching writer (broker: ${fmt(brokerAckManyPerS / logOnlyManyPerS, 2)} of it)`],
    [`brownout drain of ${fmt(DRAIN_ENTRIES)} entries, compression auto`, `${fmt(drainMs)} ms`, `${fmt(drainMs / rawDrainMs, 2)} x raw (<= 1.25); ${fmt(m('drainBatchesCompressed'))} of ${fmt(m('drainBatches'))} batches compressed`],
    ['raw MQTT.js, the same batches (uncompressed)', `${fmt(rawDrainMs)} ms`, 'baseline'],
    ['drain / raw, round by round', drainVsRawByRound.map((ratio) => fmt(ratio, 2)).join(' '), 'every round <= 1.25'],
    ['CPU time of the drain: lastgasp / raw', `${fmt(m('drainCpuMs'))} / ${fmt(m('rawDrainCpuMs'))} ms`, 'user + system, all threads of the process'],
    [`brownout drain, compression off`, `${fmt(drainOffMs)} ms`, `${fmt(drainOffMs / rawDrainOffMs, 2)} x raw (${fmt(rawDrainOffMs)} ms); CPU ${fmt(m('drainOffCpuMs'))} ms`],
    ['drain off / raw, round by round', drainOffVsRawByRound.map((ratio) => fmt(ratio, 2)).join(' '), 'every round <= 1.25'],
    ['gateway RSS max (primary / sibling)', `${fmt(rssMBMax, 1)} / ${fmt(siblingRssMBMax, 1)} MB`, `< 80 MB; ${fmt(rssIdleMB, 1)} MB connected and idle`],
  ];
  const width = Math.max(...rows.map((row) => row[0].length));
  const valueWidth = Math.max(...rows.map((row) => row[1].length));
  console.log(`replication bench: ${ENTRY_BYTES}-byte entries, one local mosquitto, medians of ${ROUNDS} interleaved rounds`);
  for (const [name, value, note] of rows) console.log(`${name.padEnd(width)}  ${value.padStart(valueWidth)}  ${note}`);
  console.log(
    JSON.stringify({
      entryBytes: ENTRY_BYTES,
      rounds: ROUNDS,
      rawPerMessagePerS: Math.round(rawPerMessagePerS),
      rawBatchedPerS: Math.round(best.perS),
      rawBatchedBestEntries: best.size,
      rawBatchedPerSBySize: Object.fromEntries(batchedMedians.map(({ size, perS }) => [size, Math.round(perS)])),
      brokerAckPerS: Math.round(brokerAckPerS),
      replicaAckPerS: Math.round(replicaAckPerS),
      logOnlyPerS: Math.round(logOnlyPerS),
      rawPipelinePerS: Math.round(rawPipelinePerS),
      brokerVsRawPipeline: Number((brokerAckPerS / rawPipelinePerS).toFixed(3)),
      replicaVsRawPipeline: Number((replicaAckPerS / rawPipelinePerS).toFixed(3)),
      brokerVsLogOnly: Number((brokerAckPerS / logOnlyPerS).toFixed(3)),
      compressionOff: { brokerAckPerS: Math.round(brokerAckOffPerS), replicaAckPerS: Math.round(replicaAckOffPerS), brokerVsRawPipeline: vsPipeline(brokerAckOffPerS), replicaVsRawPipeline: vsPipeline(replicaAckOffPerS), drainMs: Math.round(drainOffMs), rawDrainMs: Math.round(rawDrainOffMs), drainVsRaw: Number((drainOffMs / rawDrainOffMs).toFixed(3)), drainVsRawByRound: drainOffVsRawByRound },
      appendMany: { brokerAckPerS: Math.round(brokerAckManyPerS), replicaAckPerS: Math.round(replicaAckManyPerS), logOnlyPerS: Math.round(logOnlyManyPerS), brokerVsRawPipeline: vsPipeline(brokerAckManyPerS), replicaVsRawPipeline: vsPipeline(replicaAckManyPerS) },
      drainBatchesCompressed: Math.round(m('drainBatchesCompressed')),
      drainBatches: Math.round(m('drainBatches')),
      brokerVsRawBatched: Number((brokerAckPerS / best.perS).toFixed(3)),
      brokerVsRawPerMessage: Number((brokerAckPerS / rawPerMessagePerS).toFixed(2)),
      drainMs: Math.round(drainMs),
      rawDrainMs: Math.round(rawDrainMs),
      drainVsRaw: Number((drainMs / rawDrainMs).toFixed(3)),
      drainVsRawByRound,
      drainCpuMs: Math.round(m('drainCpuMs')),
      rawDrainCpuMs: Math.round(m('rawDrainCpuMs')),
      rssMBMax: Number(rssMBMax.toFixed(1)),
      rssIdleMB: Number(rssIdleMB.toFixed(1)),
      siblingRssMBMax: Number(siblingRssMBMax.toFixed(1)),
      samples: Object.fromEntries(Object.entries(samples).map(([name, values]) => [name, values.map((value) => Math.round(value))])),
    }),
  );
}

/**
 * The brownout drain, then raw MQTT.js publishing the same batches: re-encoded from the gateway's log at the
 * boundaries it reported (the encoding is deterministic; the lengths are checked), all in memory before the
 * clock starts. Nobody subscribes in either run, so the broker does the same work.
 */
async function drainRound(url: string, base: string, round: number, compression: 'auto' | 'off'): Promise<{ ms: number; rawMs: number; cpuMs: number; rawCpuMs: number; rssMBMax: number; batches: number; compressed: number }> {
  const group = `drain${round}${compression}`;
  const dir = join(base, `r${round}-drain-${compression}`);
  await mkdir(dir, { recursive: true });
  const primary = startWorker({ role: 'primary', dir, url, group, durability: 'broker', entries: DRAIN_ENTRIES, mode: 'drain', compression, writer: 'entry' });
  await primary.next();
  const { result } = (await primary.next()) as { result: WorkerResult };
  await primary.stop();
  const boundaries = result.boundaries ?? [];
  const batches = await reencode(join(dir, 'gw-a'), group, boundaries);
  const publisher = await rawClient(url, `bench-drain-${round}`);
  const cpuAtStart = process.cpuUsage();
  const rawMs = await publishWindowed(publisher, `bench/raw/${round}/drain`, batches, BATCH_WINDOW);
  const rawCpuMs = cpuMsSince(cpuAtStart);
  publisher.end(true);
  const compressed = boundaries.filter((boundary) => boundary[3] === 1).length;
  return { ms: result.ms, rawMs, cpuMs: result.cpuMs, rawCpuMs, rssMBMax: result.rssMBMax, batches: boundaries.length, compressed };
}

async function reencode(logDir: string, group: string, boundaries: ReadonlyArray<[number, number, number, number]>): Promise<Uint8Array[]> {
  const log = createFlashLog({ dir: logDir, logger: silentLogger, clock: systemClock });
  await log.open();
  const codec = new WireCodec(benchAuth('gw-a'));
  const batches: Uint8Array[] = [];
  try {
    for (const [first, count, bytes, compressed] of boundaries) {
      const entries = await log.read(first, { entriesMax: count, bytesMax: Number.MAX_SAFE_INTEGER });
      const batch = codec.encodeBatch({ group, node: 'gw-a', epoch: entries[0]!.epoch, entries });
      // A batch the gateway compressed is sent uncompressed here: only its entries can be checked.
      if (entries.length !== count || (compressed === 0 && batch.length !== bytes)) throw new Error(`re-encoding batch ${first}: ${batch.length} bytes, the gateway sent ${bytes}`);
      batches.push(batch);
    }
  } finally {
    await log.close();
  }
  return batches;
}

if (process.argv[2] === 'worker') await worker(JSON.parse(process.argv[3]!) as WorkerConfig);
else await main();
