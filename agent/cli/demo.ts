/**
 * `lastgasp demo`: the whole story on one machine, on embedded defaults, needing nothing but `npm ci`.
 *
 * An embedded MQTT broker (unless --broker), the BMS simulator, a primary and a sibling agent as separate
 * processes, and a workload writing through the primary's local API, beside an application (demo-app.mjs)
 * that the agents run on whichever node leads (config `app:`). The uplink is then held back (as a congested
 * cellular link would) while a burst of writes builds a real unreplicated tail; mains is cut in the
 * simulator; the primary stops its application, flushes the tail, hands off and is killed when the simulated
 * BMS cuts its power; the sibling takes over and starts the application, which reads the counter the first
 * one left. The demo ends by checking every acknowledged write against the sibling.
 *
 * Each run has a group of its own, so that a second run against the same broker does not meet the first
 * one's retained leader record.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ApiClient } from '../app/index.ts';
import { generateNodeKeyPair, privateKeyPem, publicKeyText } from '../replication/index.ts';
import { AckedModel, spawnChild, startEmbeddedBroker, type Child, type JsonLine } from './demo-parts.ts';
import { parseCommand, type CommandSpec, type Io } from './io.ts';
import { CLI_SCRIPT } from './self.ts';

const DEMO_HELP = `Usage: lastgasp demo [--json] [--broker URL] [--key-file FILE] [--steady N] [--burst N] [--keep DIR]

Runs the whole story on this machine and checks it:
  1. an embedded MQTT broker (the agent's own listener, demo-parts.ts) or --broker URL; the BMS simulator on a TCP port;
  2. a primary (gw-a) and a sibling (gw-b) agent as separate processes, in a group of this run's own;
     they run the demo application (a counter in the state) on whichever of them leads;
  3. a workload writing through gw-a's API: --steady N writes (default 4000) replicated as they come,
     then replication held back and a --burst of N writes (default 6000), the unreplicated tail;
  4. mains cut in the simulator → brownout → gw-a stops the application, flushes the tail, hands off, the
     BMS cuts its power (gw-a is killed with SIGKILL) → gw-b takes over with a new epoch and starts the
     application, which goes on from the counter gw-a's left;
  5. every write acknowledged by gw-a (the workload's and the application's) is checked on gw-b, and the
     states compared.

  --json        End with one JSON object on the last line (entriesAcked, entriesOnSibling, lost,
                tailAtBrownout, flushMs, takeoverMs, stateEqual, ...).
  --keep DIR    Put the agents' data and configs in DIR and leave them there (default: a temp dir, removed).
  --key-file F  Sign with the group key in F (replication.hmacKeyFile: at least 16 bytes, mode 0600), as
                gateways sharing a key would; default: an Ed25519 key pair per gateway, made for the run.

Exit code 0 when nothing acknowledged was lost and the states are equal.`;

const DEMO: CommandSpec = {
  help: DEMO_HELP,
  options: { json: { type: 'boolean' }, broker: { type: 'string' }, 'key-file': { type: 'string' }, steady: { type: 'string' }, burst: { type: 'string' }, keep: { type: 'string' } },
};

const KEYS = 500;
const WRITERS_STEADY = 16;
const WRITERS_BURST = 64;
const STEP_TIMEOUT_MS = 30_000;

const BIN = CLI_SCRIPT;
/** Next to this file in the sources, and copied next to the bundle by the build. */
const APP = fileURLToPath(new URL('./demo-app.mjs', import.meta.url));
/** The demo application's key (demo-app.mjs). */
const APP_KEY = 'demo/app-counter';
/** gw-a's application raises the counter until it is stopped; gw-b's raises it once, then idles, so the check sees a still state. */
const APP_TICKS_SIBLING = 1;

interface Timeline {
  (line: string): void;
}

export async function demoCommand(argv: readonly string[], io: Io): Promise<number> {
  const args = parseCommand(argv, DEMO);
  const steady = args.integer('steady', 4000, 1, 10_000_000);
  const burst = args.integer('burst', 6000, 1, 10_000_000);
  const keep = args.string('keep');
  const json = args.has('json');
  const dir = keep ?? (await mkdtemp(join(tmpdir(), 'lastgasp-demo-')));
  const started = performance.now();
  // The timeline ends with the result: what the cleanup makes the agents say after it is not shown, so that
  // the JSON line stays the last.
  let ended = false;
  const say: Timeline = (line) => void (ended || io.stdout(`[${((performance.now() - started) / 1000).toFixed(3).padStart(7)}s] ${line}`));
  const cleanup: Array<() => Promise<void>> = [];
  try {
    const result = await runDemo({ dir, steady, burst, brokerUrl: args.string('broker'), keyFile: args.string('key-file'), say, cleanup });
    // The application on gw-b must have read exactly the counter gw-a's application left.
    const ok = result.lost === 0 && result.stateEqual && result.app.readOnSibling === result.app.leftByPrimary;
    ended = true;
    io.stdout('');
    io.stdout(
      ok
        ? `OK: all ${result.entriesAcked} acknowledged writes are on the sibling, states equal; tail of ${result.tailAtBrownout} flushed in ${result.flushMs} ms, takeover ${result.takeoverMs} ms after the handoff; the application went on on gw-b from counter ${result.app.readOnSibling}.`
        : `FAILED: ${result.lost} acknowledged writes missing on the sibling; states ${result.stateEqual ? 'equal' : 'differ'}; the application on gw-b read counter ${result.app.readOnSibling}, gw-a's left ${result.app.leftByPrimary}.`,
    );
    if (json) io.stdout(JSON.stringify(result));
    return ok ? 0 : 1;
  } catch (error) {
    ended = true;
    io.stderr(`lastgasp demo: ${(error as Error).message}`);
    if (json) io.stdout(JSON.stringify({ error: (error as Error).message }));
    return 1;
  } finally {
    for (const step of cleanup.reverse()) await step().catch(() => undefined);
    if (!keep) await rm(dir, { recursive: true, force: true });
  }
}

interface DemoRun {
  dir: string;
  steady: number;
  burst: number;
  brokerUrl: string | undefined;
  keyFile: string | undefined;
  say: Timeline;
  cleanup: Array<() => Promise<void>>;
}

async function runDemo(run: DemoRun) {
  const { dir, say, cleanup } = run;
  let brokerUrl = run.brokerUrl;
  if (!brokerUrl) {
    const broker = await startEmbeddedBroker();
    cleanup.push(() => broker.close());
    brokerUrl = broker.url;
    say(`broker: embedded at ${brokerUrl} (the agent's own MQTT listener, MQTT 5, no persistent sessions)`);
  } else say(`broker: ${brokerUrl}`);

  const sim = spawnChild('bms-sim', process.execPath, [BIN, 'bms-sim', '--protocol', 'bridge', '--tcp', '127.0.0.1:0'], (line) => showSim(line, say));
  cleanup.push(() => sim.kill('SIGTERM'));
  const listening = await sim.waitFor('"listening" line', (line) => line.event === 'listening', STEP_TIMEOUT_MS);
  const [simHost, simPort] = String(listening.tcp).split(':');
  say(`bms-sim: bridge protocol on tcp ${listening.tcp}`);

  const { apiA, apiB } = await writeDemoConfigs(run, brokerUrl, `${simHost}:${simPort}`);

  const model = new AckedModel();
  // The application's acknowledged writes are the model's too: the sibling must hold them as well.
  const onLine = (line: JsonLine) => {
    if (line.event === 'demo-app' && line.what === 'write') model.put(line.seq as number, APP_KEY, String(line.counter));
    showAgent(line, say);
  };
  const agentA = spawnChild('gw-a', process.execPath, [BIN, 'run', '--config', join(dir, 'gw-a.json')], onLine);
  cleanup.push(() => agentA.kill('SIGKILL'));
  const agentB = spawnChild('gw-b', process.execPath, [BIN, 'run', '--config', join(dir, 'gw-b.json')], onLine);
  cleanup.push(() => agentB.kill('SIGTERM'));
  await agentA.waitFor('ready', (line) => line.event === 'ready', STEP_TIMEOUT_MS);
  await agentB.waitFor('ready', (line) => line.event === 'ready', STEP_TIMEOUT_MS);
  await agentA.waitFor('link to the simulator', (line) => typeof line.msg === 'string' && line.msg.startsWith('power-source link up'), STEP_TIMEOUT_MS);

  const clientA = new ApiClient({ address: apiA, socketsMax: WRITERS_BURST, tokenFile: join(dir, 'gw-a', 'api.token') });
  const clientB = new ApiClient({ address: apiB, tokenFile: join(dir, 'gw-b', 'api.token') });
  cleanup.push(async () => {
    clientA.close();
    clientB.close();
  });
  await agentA.waitFor('the application on gw-a', (line) => line.event === 'demo-app' && line.what === 'write', STEP_TIMEOUT_MS);

  let t0 = performance.now();
  await workload(clientA, model, 0, run.steady, WRITERS_STEADY);
  say(`workload: ${run.steady} writes acknowledged by gw-a at ${rate(run.steady, t0)}/s, replicated as they came`);

  await clientA.setReplicationPaused(true);
  say('uplink congested: replication held back on gw-a');
  t0 = performance.now();
  await workload(clientA, model, run.steady, run.burst, WRITERS_BURST);
  const before = await clientA.status();
  const tail = before.watermarks.committed - before.watermarks.replicated;
  say(`workload: burst of ${run.burst} writes acknowledged at ${rate(run.burst, t0)}/s; unreplicated tail now ${tail} entries`);

  const { flushStart, flushDone, handoff, takeover, resumed, appStarts } = await brownoutStory(sim, agentA, agentB, say);
  const leftByA = Math.max(...model.values(APP_KEY, (seq) => seq <= (handoff.committed as number)).map(Number));

  const { statusB, check, stateEqual, after } = await checkSibling(clientB, model, say);

  return {
    entriesAcked: model.bySeq.size,
    entriesOnSibling: statusB.watermarks.committed as number,
    lost: check.lost,
    tailAtBrownout: flushStart.tail as number,
    flushMs: flushDone.flushMs as number,
    takeoverMs: takeover.takeoverMs as number,
    stateEqual,
    handoffComplete: handoff.complete as boolean,
    handoffLastSeq: handoff.lastSeq as number,
    siblingEpoch: after.epoch,
    app: { startedOn: appStarts.map((line) => line.node as string), leftByPrimary: leftByA, readOnSibling: appStarts[1]!.read as number, writtenOnSibling: resumed.counter as number },
  };
}

/** The two agents' configs, written to the run's directory: a group of its own, signed, gw-a on the simulator. */
async function writeDemoConfigs(run: DemoRun, brokerUrl: string, simAddress: string): Promise<{ apiA: string; apiB: string }> {
  const [simHost, simPort] = simAddress.split(':');
  const apiA = `127.0.0.1:${await freePort()}`;
  const apiB = `127.0.0.1:${await freePort()}`;
  const group = `demo-${randomBytes(4).toString('hex')}`;
  run.say(`group: ${group}`);
  const app = (ticks?: number) => ({ command: [process.execPath, APP], env: ticks === undefined ? {} : { DEMO_APP_TICKS: String(ticks) }, stopTimeoutMs: 3000 });
  const common = { group, replication: { brokers: [{ url: brokerUrl }], durability: 'replica' }, logging: { level: 'info', json: true } };
  // Signed as in production: a key pair per gateway, the public keys in both configs (or the group key given).
  const signing = await demoSigning(run.dir, ['gw-a', 'gw-b'], run.keyFile);
  const configA = {
    ...common,
    replication: { ...common.replication, ...signing('gw-a') },
    app: app(),
    node: 'gw-a',
    role: 'primary',
    siblings: ['gw-b'],
    dataDir: join(run.dir, 'gw-a'),
    api: { listen: apiA },
    power: {
      source: { kind: 'bridge', transport: { type: 'tcp', host: simHost, port: Number(simPort) } },
      flushBudgetMs: 20_000,
      handoffAckTimeoutMs: 5000,
      cutDelayMs: 300,
      onBatteryDebounceMs: 0,
    },
  };
  const configB = { ...common, replication: { ...common.replication, ...signing('gw-b') }, app: app(APP_TICKS_SIBLING), node: 'gw-b', role: 'standby', siblings: ['gw-a'], dataDir: join(run.dir, 'gw-b'), api: { listen: apiB } };
  await writeFile(join(run.dir, 'gw-a.json'), JSON.stringify(configA, null, 2));
  await writeFile(join(run.dir, 'gw-b.json'), JSON.stringify(configB, null, 2));
  return { apiA, apiB };
}

/** Mains cut in the simulator: gw-a flushes, hands off and loses power; gw-b takes over and starts the application. */
async function brownoutStory(sim: Child, agentA: Child, agentB: Child, say: Timeline) {
  say('bms-sim: cutting mains');
  sim.send('ac off');
  sim.send('brownout');
  const flushStart = await agentA.waitFor('flush start', (line) => line.event === 'flush-start', STEP_TIMEOUT_MS);
  const flushDone = await agentA.waitFor('flush done', (line) => line.event === 'flush-done', STEP_TIMEOUT_MS);
  const handoff = await agentA.waitFor('handoff', (line) => line.event === 'handoff', STEP_TIMEOUT_MS);
  const takeover = await agentB.waitFor('takeover', (line) => line.event === 'takeover', STEP_TIMEOUT_MS);
  await sim.waitFor('power cut', (line) => line.event === 'power-cut', STEP_TIMEOUT_MS);
  await agentA.kill('SIGKILL');
  say('gw-a: power gone (SIGKILL)');
  const resumed = await agentB.waitFor('the application on gw-b', (line) => line.event === 'demo-app' && line.what === 'write', STEP_TIMEOUT_MS);
  const appStarts = await Promise.all([agentA, agentB].map((agent) => agent.waitFor('application start', (line) => line.event === 'demo-app' && line.what === 'started', STEP_TIMEOUT_MS)));
  return { flushStart, flushDone, handoff, takeover, resumed, appStarts };
}

/** Every acknowledged write against the new primary, its state digest, and one write it now serves. */
async function checkSibling(clientB: ApiClient, model: AckedModel, say: Timeline) {
  model.finish();
  const statusB = await clientB.status();
  const check = await verify(clientB, model);
  const digestB = (await clientB.list()).digest;
  const stateEqual = digestB === model.digest();
  say(`check: ${check.present}/${model.bySeq.size} acknowledged writes found on gw-b (${check.lost} lost); state digest ${stateEqual ? 'equal' : 'DIFFERENT'} (${digestB.slice(0, 12)}…)`);
  const after = await clientB.put('demo/after-takeover', 'written to gw-b');
  say(`gw-b: serves writes as primary in epoch ${after.epoch} (seq ${after.seq})`);
  return { statusB, check, stateEqual, after };
}

/** `count` writes from `writers` concurrent clients: 70 % key-value puts over KEYS keys, 30 % raw entries. */
async function workload(client: ApiClient, model: AckedModel, offset: number, count: number, writers: number): Promise<void> {
  let next = offset;
  const end = offset + count;
  const worker = async () => {
    while (next < end) {
      const index = next++;
      if (index % 10 < 7) {
        const key = `sensor/${index % KEYS}`;
        const value = JSON.stringify({ reading: index, at: Date.now() });
        const { seq } = await client.put(key, value);
        model.put(seq, key, value);
      } else {
        const data = `event ${index}`;
        const { seq } = await client.append(new TextEncoder().encode(data));
        model.entry(seq, data);
      }
    }
  };
  await Promise.all(Array.from({ length: writers }, worker));
}

/** Read the sibling's whole log through its API and compare every acknowledged write, seq by seq. */
async function verify(client: ApiClient, model: AckedModel): Promise<{ present: number; lost: number }> {
  let present = 0;
  const seen = new Set<number>();
  let from = 1;
  for (;;) {
    const page = await client.entries(from, 10_000);
    for (const entry of page.entries) {
      const expected = model.bySeq.get(entry.seq);
      if (!expected) continue;
      seen.add(entry.seq);
      const same =
        expected.op === 'put'
          ? entry.op === 'put' && entry.key === expected.key && Buffer.from(String(entry.value), 'base64').toString('utf8') === expected.value
          : entry.op === 'entry' && Buffer.from(String(entry.data), 'base64').toString('utf8') === expected.data;
      if (same) present++;
    }
    if (page.entries.length === 0 || page.next > page.committed) break;
    from = page.next;
  }
  return { present, lost: model.bySeq.size - present };
}

function showAgent(line: JsonLine, say: Timeline): void {
  const node = String(line.node ?? '?');
  switch (line.event) {
    case 'role':
      return say(`${node}: ${line.msg}`);
    case 'power-state':
      return say(`${node}: power ${line.from} → ${line.to} (${line.reason})`);
    case 'flush-start':
      return say(`${node}: brownout flush: ${line.tail} unreplicated entries, budget ${line.budgetMs} ms, appends refused`);
    case 'flush-done':
      return say(`${node}: ${line.complete ? 'tail replicated' : `${String(line.msg)} (${String(line.end)})`} in ${line.flushMs} ms (sibling holds up to seq ${line.lastSeq} of ${line.committed})`);
    case 'handoff':
      return say(`${node}: handoff record published (last seq ${line.lastSeq}, ${line.complete ? 'complete' : 'INCOMPLETE'})`);
    case 'takeover':
      return say(`${node}: took over from ${line.fromNode} in epoch ${line.epoch}, serving ${line.takeoverMs} ms after receiving the handoff record (${(line.servingAtMs as number) - (line.handoffAtMs as number)} ms after gw-a published it)`);
    case 'handoff-acked':
      return say(`${node}: ${line.acked ? 'successor announced itself' : 'no successor in time'}; telling the BMS to cut power`);
    case 'quarantine':
      return say(`${node}: ${line.msg}`);
    case 'app-start':
    case 'app-stopping':
      return say(`${node}: ${line.msg}`);
    case 'demo-app':
      if (line.what === 'started') return say(`${node}: the application reads counter ${line.read} from the state (epoch ${line.epoch})`);
      if (line.what === 'error') return say(`${node}: application error: ${line.message}`);
      return;
    default:
      if (line.level === 'error') say(`${node}: ERROR ${line.msg}`);
  }
}

function showSim(line: JsonLine, say: Timeline): void {
  if (line.event === 'command') say(`bms-sim: host command "${line.kind}"${line.delayMs !== undefined ? ` (${line.delayMs} ms)` : ''}${line.durationMs !== undefined ? ` (${line.durationMs} ms)` : ''}`);
  else if (line.event === 'power-cut') say('bms-sim: POWER CUT');
  else if (line.event === 'power-event') say(`bms-sim: sent power event ${line.kind}`);
}

function rate(count: number, sinceMs: number): string {
  return Math.round(count / ((performance.now() - sinceMs) / 1000)).toLocaleString('en-US');
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

/**
 * How the gateways sign: with the group key in `keyFile` (replication.hmacKeyFile), or with a key pair per
 * gateway made in `dir` (private keys mode 0600). Returns each node's replication keys.
 */
async function demoSigning(dir: string, nodes: readonly string[], keyFile: string | undefined): Promise<(node: string) => Record<string, unknown>> {
  if (keyFile !== undefined) return () => ({ hmacKeyFile: keyFile });
  const publicKeys: Record<string, string> = {};
  for (const node of nodes) {
    const pair = generateNodeKeyPair();
    await writeFile(join(dir, `${node}.key`), privateKeyPem(pair.privateKey), { mode: 0o600 });
    publicKeys[node] = publicKeyText(pair.publicKey);
  }
  return (node) => ({ signing: { keyFile: join(dir, `${node}.key`), publicKeys } });
}
