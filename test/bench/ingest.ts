/**
 * `npm run bench:ingest`: how fast an application gets entries to the sibling through each way in, in one
 * run, side by side (issue 10), with 256-byte entries and 1, 16 and 64 writers. An HTTP or embedded writer
 * waits for the acknowledgement of what it sent before sending more; an MQTT writer keeps MQTT_WINDOW QoS 1
 * publishes unacknowledged, as MQTT applications do (MQTT.js and mosquitto_pub send without waiting; the
 * window is what a Receive Maximum or max_inflight_messages allows), so that PUBACKs held for the fsync
 * become group commits. A run lasts RUN_MS, then the clock stops when the sibling (or the remote broker's
 * subscriber) holds everything acknowledged: entries/s end to end.
 *
 *   - httpSingle: POST /v1/entries, one entry per request, kept-alive connections (one per writer), on the
 *     API's default transport: a Unix socket (api.listen's default; over TCP loopback a request costs both
 *     sides about a fifth more CPU, the kernel's TCP path and the bearer token);
 *   - httpBatch: POST /v1/batch, BATCH_ENTRIES entries per request (a CBOR sequence), on the same socket;
 *   - mqttIngest: MQTT.js publishing QoS 1 to the agent's local MQTT listener (PUBACK after the fsync);
 *   - embedded: `Agent.append` in this process (the sibling is still a separate process);
 *   - mosquittoBridge: the same MQTT.js publishers to a local mosquitto with persistence, bridged at QoS 1 to a
 *     second mosquitto, counted by a subscriber there: what users would run instead (PUBACK from RAM);
 *   - httpNoop: the same ApiClient as httpSingle against a node:http server (another process, the same kind
 *     of socket) that answers 201 at once and stores nothing: the ceiling of one entry per request with this
 *     client and Node's own server, so it moves with the client (its transport, http/client-pool.ts), and
 *     httpSingle / httpNoop is the share left to everything lastgasp does (log, fsync, replication, sibling).
 *     The agent's fast path (http/fast-path.ts) costs less per request than this node:http server, so at few
 *     writers httpSingle is bounded by the log's commit cycle, not by this ceiling.
 *
 * For httpSingle each round also prints how much of a writer's cycle (one request's round trip while writing)
 * was the append inside gw-a, from its route's call to the acknowledgement (the linger, the write, the
 * fdatasync; gw-a's lastgasp_append_duration_seconds): the rest is HTTP, both event loops and the scheduler.
 *
 * CPU per entry: user + system time of both gateways' processes (the two agents, or the two mosquittos;
 * for embedded, this process and the sibling) over the run, divided by the entries. Each measurement runs
 * ROUNDS times, interleaved, after a short warm-up of every path (the agents' JIT, mosquitto's first queue);
 * the table gives medians. The last line is one JSON object. Not part of `npm test`; run it with `nice` on
 * a quiet machine, after `npm run build` (the agents run the bundle, as on a gateway).
 */
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { Agent } from '../../agent/agent.ts';
import { ApiClient, OP_ENTRY, type Op } from '../../agent/app/index.ts';
import { loadConfig } from '../../agent/config/index.ts';
import { silentLogger } from '../../agent/util/index.ts';
import { startAgent, writeAgentConfig, type AgentProcess } from '../support/agents.ts';
import { startMosquitto, type Mosquitto } from '../support/mosquitto.ts';
import { killAll, startProcess, type Managed } from '../support/processes.ts';
import { canConnect, freePort, tempDir, waitFor } from '../support/ports.ts';
import { processCpuMs } from './proc-cpu.ts';

const ENTRY_BYTES = 256;
/** LASTGASP_BENCH_WRITERS=16 measures one writer count (a third of the time). */
const WRITER_COUNTS = process.env.LASTGASP_BENCH_WRITERS ? process.env.LASTGASP_BENCH_WRITERS.split(',').map(Number) : [1, 16, 64];
const ROUNDS = Number(process.env.LASTGASP_BENCH_ROUNDS ?? 3);
const RUN_MS = Number(process.env.LASTGASP_BENCH_RUN_MS ?? 2000);
/** Entries per HTTP batch request. */
const BATCH_ENTRIES = 64;
/** QoS 1 publishes each MQTT writer keeps unacknowledged (mosquitto's max_inflight_messages default is 20). */
const MQTT_WINDOW = Number(process.env.LASTGASP_BENCH_MQTT_WINDOW ?? 32);
const DRAIN_TIMEOUT_MS = 120_000;
/** LASTGASP_BENCH_LINGER_MS sets the agents' log.lingerMs (default: the agent's own). */
const LINGER_MS = process.env.LASTGASP_BENCH_LINGER_MS === undefined ? undefined : Number(process.env.LASTGASP_BENCH_LINGER_MS);

const ALL_PATHS = ['httpSingle', 'httpBatch', 'mqttIngest', 'embedded', 'mosquittoBridge', 'httpNoop'] as const;
/** Each path runs this long once before the measured rounds. */
const WARMUP_MS = 500;
/** The httpNoop server: reads each request's body, answers 201 with a seq, keeps nothing. */
const NOOP_SERVER = `
const http = require('node:http');
let seq = 0;
http.createServer((req, res) => {
  req.on('data', () => {});
  req.on('end', () => {
    const body = JSON.stringify({ seq: ++seq, epoch: 1 });
    res.writeHead(201, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
}).listen(process.argv[1], () => console.log('listening'));
`;
type Path = (typeof ALL_PATHS)[number];
/** LASTGASP_BENCH_PATHS=mqttIngest,mosquittoBridge measures only those (a comparison on a shared machine). */
const PATHS: readonly Path[] = process.env.LASTGASP_BENCH_PATHS ? ALL_PATHS.filter((path) => process.env.LASTGASP_BENCH_PATHS!.split(',').includes(path)) : ALL_PATHS;

const payload = new Uint8Array(ENTRY_BYTES).fill(0x61);

function selfCpuMs(): number {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1000;
}

interface Setup {
  a: AgentProcess;
  b: AgentProcess;
  mqttUrl: string;
  password: string;
  embedded: Agent;
  embeddedSibling: AgentProcess;
  local: Managed;
  remote: Managed;
  localUrl: string;
  remoteUrl: string;
  broker: Mosquitto;
  noop: Managed;
  noopClient: ApiClient;
  /**
   * The HTTP writers' own clients, one per path: on the client the harness polls status with (or the batch
   * path's), some connections would have carried a request the fast path does not serve (a GET, a batch), and
   * such a connection stays with node:http.
   */
  singleClient: ApiClient;
  batchClient: ApiClient;
}

async function bridgePair(dir: string): Promise<{ local: Managed; remote: Managed; localUrl: string; remoteUrl: string }> {
  const remotePort = await freePort();
  const localPort = await freePort();
  const remoteConf = join(dir, 'remote.conf');
  const localConf = join(dir, 'local.conf');
  await writeFile(remoteConf, [`listener ${remotePort} 127.0.0.1`, 'allow_anonymous true', 'persistence false', 'max_queued_messages 2000000', 'max_inflight_messages 100', 'log_dest stderr'].join('\n') + '\n');
  // The local broker as a gateway would run it: persistence (saved every second, as broker-config's
  // single.conf does), and a QoS 1 bridge to the remote that keeps its queue across reconnects.
  await writeFile(
    localConf,
    [
      `listener ${localPort} 127.0.0.1`,
      'allow_anonymous true',
      'persistence true',
      `persistence_location ${dir}/`,
      'autosave_interval 1',
      'max_queued_messages 2000000',
      'max_inflight_messages 100',
      'log_dest stderr',
      'connection bench-bridge',
      `address 127.0.0.1:${remotePort}`,
      'topic bench/# out 1',
      'cleansession false',
      'bridge_protocol_version mqttv311',
      'bridge_max_packet_size 0',
    ].join('\n') + '\n',
  );
  const remote = startProcess('mosquitto:remote', '/usr/sbin/mosquitto', ['-c', remoteConf]);
  await waitFor('the remote mosquitto', () => canConnect(remotePort), 10_000);
  const local = startProcess('mosquitto:local', '/usr/sbin/mosquitto', ['-c', localConf]);
  await waitFor('the local mosquitto', () => canConnect(localPort), 10_000);
  return { local, remote, localUrl: `mqtt://127.0.0.1:${localPort}`, remoteUrl: `mqtt://127.0.0.1:${remotePort}` };
}

async function setUp(dir: string): Promise<Setup> {
  const broker = await startMosquitto(dir);
  const mqttPort = await freePort();
  const base = { replication: { brokers: [{ url: broker.url }] }, logging: { level: 'warn', json: true }, ...(LINGER_MS === undefined ? {} : { log: { lingerMs: LINGER_MS } }) };
  // gw-a's HTTP API where an application on the gateway reaches it by default: its Unix socket.
  const apiA = `unix:${join(dir, 'gw-a-api.sock')}`;
  const configA = await writeAgentConfig(dir, 'gw-a', { ...base, api: { listen: apiA }, group: 'bench', role: 'primary', siblings: ['gw-b'], mqttIngest: { listen: `127.0.0.1:${mqttPort}`, journal: ['bench/#'] } });
  const configB = await writeAgentConfig(dir, 'gw-b', { ...base, group: 'bench', role: 'standby', siblings: ['gw-a'] });
  const a = await startAgent('gw-a', configA.file, apiA, { waitReady: false });
  const b = await startAgent('gw-b', configB.file, configB.api, { waitReady: false });
  await waitFor('gw-a to serve', async () => ((await a.client.ready().catch(() => ({ ready: false }))).ready ? true : undefined), 60_000);
  const password = readFileSync(join(dir, 'gw-a', 'api.token'), 'utf8').trim();
  // The embedded pair: gw-c in this process, its sibling gw-d a process, in a group of their own.
  const configC = await writeAgentConfig(dir, 'gw-c', { ...base, group: 'embed', role: 'primary', siblings: ['gw-d'] });
  const configD = await writeAgentConfig(dir, 'gw-d', { ...base, group: 'embed', role: 'standby', siblings: ['gw-c'] });
  const embedded = new Agent(await loadConfig(configC.file), { logger: silentLogger });
  await embedded.start();
  const embeddedSibling = await startAgent('gw-d', configD.file, configD.api, { waitReady: false });
  await waitFor('the embedded agent to lead', async () => ((await embedded.readiness()).ready ? true : undefined), 60_000);
  const bridge = await bridgePair(dir);
  const noopSocket = join(dir, 'noop.sock');
  const noop = startProcess('http-noop', process.execPath, ['-e', NOOP_SERVER, noopSocket]);
  await waitFor('the no-op HTTP server', () => (noop.output().includes('listening') ? true : undefined), 10_000);
  const noopClient = new ApiClient({ address: `unix:${noopSocket}`, socketsMax: 64 });
  const [singleClient, batchClient] = [new ApiClient({ address: apiA, socketsMax: 64 }), new ApiClient({ address: apiA, socketsMax: 64 })];
  return { a, b, mqttUrl: `mqtt://127.0.0.1:${mqttPort}`, password, embedded, embeddedSibling, broker, ...bridge, noop, noopClient, singleClient, batchClient };
}

/** Run `writers` loops until the deadline; each returns how many entries it had acknowledged. */
async function runWriters(writers: number, write: (writer: number) => Promise<number>, runMs: number): Promise<number> {
  const deadline = performance.now() + runMs;
  const counts = await Promise.all(
    Array.from({ length: writers }, async (_, writer) => {
      let acked = 0;
      while (performance.now() < deadline) acked += await write(writer);
      return acked;
    }),
  );
  return counts.reduce((sum, count) => sum + count, 0);
}

async function mqttClients(url: string, count: number, password?: string): Promise<MqttClient[]> {
  return Promise.all(Array.from({ length: count }, (_, i) => mqtt.connectAsync(url, { clientId: `bench-${i}-${Date.now()}`, username: 'bench', ...(password ? { password } : {}), reconnectPeriod: 0 })));
}

/** gw-a's log commits and replication batches so far: the entries each carried tell where per-batch costs go. */
async function batchCounts(agent: AgentProcess): Promise<{ commits: number; batches: number }> {
  const status = await agent.client.status();
  return { commits: status.log.counters.batches as number, batches: status.replication.publisher.batches as number };
}

/** gw-a's appends so far and the seconds they took from the call to the acknowledgement (its histogram's count and sum). */
async function appendTimes(agent: AgentProcess): Promise<{ count: number; seconds: number }> {
  const text = await agent.client.metrics();
  const value = (name: string) => Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text)?.[1] ?? NaN);
  return { count: value('lastgasp_append_duration_seconds_count'), seconds: value('lastgasp_append_duration_seconds_sum') };
}

async function committed(agent: AgentProcess): Promise<number> {
  return (await agent.client.status()).watermarks.committed as number;
}

/**
 * Every agent has its next segment ready: a spare's zero-fill (64 MiB, at start and after a roll that found
 * no recycled segment) is left out of the measurements that follow, as a steady-state gateway would have it.
 * An agent still starting (no API token yet) counts as not ready. After 20 s the run goes on, and says which
 * agent had none.
 */
async function sparesReady(setup: Setup): Promise<void> {
  const names = ['gw-a', 'gw-b', 'gw-d', 'gw-c'];
  let counts: Array<number | string> = [];
  const ready = await waitFor('every agent to have a spare segment ready', async () => {
    counts = await Promise.all([setup.a, setup.b, setup.embeddedSibling].map((agent) => agent.client.status().then((status) => Number(status.log.counters.spares ?? 0), (error: Error) => error.message)));
    counts.push(setup.embedded.log.status().counters.spares ?? 0);
    return counts.every((count) => typeof count === 'number' && count >= 1) ? true : undefined;
  }, 20_000).catch(() => false);
  if (!ready) process.stderr.write(`no spare segment ready after 20 s (${names.map((name, index) => `${name}: ${counts[index]}`).join(', ')}); measuring anyway\n`);
}

/** One measurement: entries/s end to end and CPU µs per entry. */
async function measure(setup: Setup, path: Path, writers: number, runMs = RUN_MS): Promise<{ rate: number; cpuUsPerEntry: number; perCommit?: number; perBatch?: number; appendMs?: number; cycleMs?: number }> {
  if (path !== 'mosquittoBridge' && path !== 'httpNoop') await sparesReady(setup);
  const pids =
    path === 'mosquittoBridge'
      ? [setup.local.child.pid!, setup.remote.child.pid!]
      : path === 'embedded'
        ? [setup.embeddedSibling.process.child.pid!]
        : path === 'httpNoop'
          ? [setup.noop.child.pid!]
          : [setup.a.process.child.pid!, setup.b.process.child.pid!];
  const ops: Op[] = Array.from({ length: BATCH_ENTRIES }, () => ({ op: OP_ENTRY, data: payload }));
  let clients: MqttClient[] = [];
  let remoteCount = 0;
  let subscriber: MqttClient | undefined;
  if (path === 'mqttIngest') clients = await mqttClients(setup.mqttUrl, writers, setup.password);
  if (path === 'mosquittoBridge') {
    clients = await mqttClients(setup.localUrl, writers);
    subscriber = await mqtt.connectAsync(setup.remoteUrl, { clientId: `bench-sub-${Date.now()}`, reconnectPeriod: 0 });
    subscriber.on('message', () => void remoteCount++);
    await subscriber.subscribeAsync('bench/#', { qos: 1 });
  }
  const countsBefore = path === 'mosquittoBridge' || path === 'embedded' || path === 'httpNoop' ? undefined : await batchCounts(setup.a);
  const appendsBefore = path === 'httpSingle' ? await appendTimes(setup.a) : undefined;
  const cpuBefore = processCpuMs(pids) + (path === 'embedded' ? selfCpuMs() : 0);
  const started = performance.now();
  let lastSeq = 0;
  // Per MQTT writer, the publishes awaiting their PUBACK: a write returns as soon as the window has room.
  const windows = Array.from({ length: writers }, () => new Set<Promise<unknown>>());
  const publish = async (writer: number): Promise<number> => {
    const window = windows[writer]!;
    const sent: Promise<unknown> = clients[writer]!.publishAsync(`bench/w${writer}`, Buffer.from(payload), { qos: 1 }).finally(() => window.delete(sent));
    window.add(sent);
    if (window.size >= MQTT_WINDOW) await Promise.race(window);
    return 1;
  };
  const write = async (writer: number): Promise<number> => {
    switch (path) {
      case 'httpSingle':
        lastSeq = Math.max(lastSeq, (await setup.singleClient.append(payload)).seq);
        return 1;
      case 'httpNoop':
        await setup.noopClient.append(payload);
        return 1;
      case 'httpBatch':
        lastSeq = Math.max(lastSeq, (await setup.batchClient.batch(ops)).lastSeq);
        return BATCH_ENTRIES;
      case 'embedded':
        lastSeq = Math.max(lastSeq, (await setup.embedded.append({ op: OP_ENTRY, data: payload })).seq);
        return 1;
      default:
        return publish(writer);
    }
  };
  const entries = await runWriters(writers, write, runMs);
  const writingMs = performance.now() - started;
  // Everything counted was sent; the run ends once every one of them was acknowledged.
  await Promise.all(windows.flatMap((window) => [...window]));
  if (path === 'mosquittoBridge') await waitFor('the remote subscriber to get everything', () => (remoteCount >= entries ? true : undefined), DRAIN_TIMEOUT_MS, 2);
  else if (path === 'httpNoop') {
    // Nothing to wait for: the server keeps nothing.
  } else if (path === 'embedded') await waitFor('gw-d to hold everything', async () => ((await committed(setup.embeddedSibling)) >= lastSeq ? true : undefined), DRAIN_TIMEOUT_MS, 2);
  else {
    const target = path === 'mqttIngest' ? await committed(setup.a) : lastSeq;
    await waitFor('gw-b to hold everything', async () => ((await committed(setup.b)) >= target ? true : undefined), DRAIN_TIMEOUT_MS, 2).catch(async (error: unknown) => {
      // What each side knows: the first thing to read when the sibling does not catch up.
      for (const agent of [setup.a, setup.b]) {
        const status: Record<string, unknown> = await agent.client.status().catch((reason: unknown) => ({ unavailable: String(reason) }));
        process.stderr.write(`${agent.node} at the timeout (target seq ${target}): ${JSON.stringify({ watermarks: status.watermarks, log: status.log, replication: status.replication })}\n`);
        process.stderr.write(`${agent.node} output:\n${agent.process.output().slice(-4000)}\n`);
      }
      throw error;
    });
  }
  const elapsedS = (performance.now() - started) / 1000;
  const cpu = processCpuMs(pids) + (path === 'embedded' ? selfCpuMs() : 0) - cpuBefore;
  for (const client of clients) await client.endAsync();
  await subscriber?.endAsync();
  const rate = entries / elapsedS;
  if (!countsBefore) return { rate, cpuUsPerEntry: (cpu * 1000) / entries };
  const countsAfter = await batchCounts(setup.a);
  // One entry per request: of each writer's cycle while writing (a request's round trip), how much was the append inside gw-a
  // (from the route's append call to its acknowledgement: the linger, the write, the fdatasync).
  const appendsAfter = appendsBefore ? await appendTimes(setup.a) : undefined;
  const appendMs = appendsBefore && appendsAfter ? ((appendsAfter.seconds - appendsBefore.seconds) * 1000) / (appendsAfter.count - appendsBefore.count) : undefined;
  return { rate, cpuUsPerEntry: (cpu * 1000) / entries, perCommit: entries / (countsAfter.commits - countsBefore.commits), perBatch: entries / (countsAfter.batches - countsBefore.batches), ...(appendMs === undefined ? {} : { appendMs, cycleMs: (writers * writingMs) / entries }) };
}

function median(values: number[]): number {
  const sorted = [...values].sort((x, y) => x - y);
  return sorted[Math.floor(sorted.length / 2)]!;
}

async function main(): Promise<void> {
  const dir = await tempDir('bench-ingest');
  const setup = await setUp(dir.path);
  const results = new Map<string, Array<{ rate: number; cpuUsPerEntry: number }>>();
  try {
    for (const path of PATHS) await measure(setup, path, Math.max(...WRITER_COUNTS), WARMUP_MS);
    for (let round = 0; round < ROUNDS; round++) {
      for (const writers of WRITER_COUNTS) {
        for (const path of PATHS) {
          const result = await measure(setup, path, writers);
          const key = `${writers}/${path}`;
          results.set(key, [...(results.get(key) ?? []), result]);
          const sizes = result.perCommit === undefined ? '' : `, ${result.perCommit.toFixed(1)} entries per log commit, ${result.perBatch!.toFixed(1)} per replication batch`;
          const cycle = result.appendMs === undefined ? '' : `, append in gw-a ${result.appendMs.toFixed(2)} ms of a ${result.cycleMs!.toFixed(2)} ms writer cycle`;
          process.stderr.write(`round ${round + 1} writers ${writers} ${path}: ${Math.round(result.rate)}/s, ${Math.round(result.cpuUsPerEntry)} µs CPU/entry${sizes}${cycle}\n`);
        }
      }
    }
  } finally {
    await setup.embedded.stop();
    setup.noopClient.close();
    setup.singleClient.close();
    setup.batchClient.close();
    // Stopped, not killed: a profile (NODE_OPTIONS=--cpu-prof) is written at a normal exit only.
    await Promise.all([setup.a.stop('SIGTERM'), setup.b.stop('SIGTERM')]);
    await killAll();
    await dir.remove();
  }
  const summary: Record<string, Record<string, number | Record<string, number>>> = {};
  console.log(`\n| writers | ${PATHS.join(' | ')} |\n|---|${PATHS.map(() => '---').join('|')}|`);
  for (const writers of WRITER_COUNTS) {
    const row: Record<string, number | Record<string, number>> = {};
    const cpu: Record<string, number> = {};
    for (const path of PATHS) {
      const runs = results.get(`${writers}/${path}`)!;
      row[path] = Math.round(median(runs.map((run) => run.rate)));
      cpu[path] = Math.round(median(runs.map((run) => run.cpuUsPerEntry)));
    }
    row.cpuUsPerEntry = cpu;
    summary[String(writers)] = row;
    console.log(`| ${writers} | ${PATHS.map((path) => `${(row[path] as number).toLocaleString('en-US')}/s (${cpu[path]} µs)`).join(' | ')} |`);
  }
  console.log(`(entries/s end to end, median of ${ROUNDS} interleaved rounds; in brackets: CPU µs of both gateways per entry)`);
  const ratio = (row: Record<string, unknown>, path: Path, to: Path) => (typeof row[path] === 'number' && typeof row[to] === 'number' ? ((row[path] as number) / (row[to] as number)).toFixed(2) : '-');
  for (const writers of WRITER_COUNTS) {
    const row = summary[String(writers)]!;
    console.log(
      `${writers} writers: to the bridge: mqttIngest ${ratio(row, 'mqttIngest', 'mosquittoBridge')}, httpBatch ${ratio(row, 'httpBatch', 'mosquittoBridge')}, httpSingle ${ratio(row, 'httpSingle', 'mosquittoBridge')}; httpSingle to httpNoop ${ratio(row, 'httpSingle', 'httpNoop')}`,
    );
  }
  console.log(JSON.stringify({ writers: summary }));
}

await main();
