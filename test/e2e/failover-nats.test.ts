// Broker failover at the speed of the flush budget (issue 15, item 1), on a real three-node NATS cluster:
// the node the primary is connected to, which also leads the `$MQTT_sess` stream, is SIGKILLed about a
// second before a brownout while 8 writers keep the primary busy. The primary must race the other nodes
// within its budget and flush the tail through the first that acknowledges. The handoff must tell the truth:
// complete, every write it acknowledged is on the sibling; incomplete (nats-server can take longer than the
// budget to serve again), every write up to its lastSeq is, and the new primary reports the gap. A healthy
// brownout runs first in the same cluster (it must be complete), for the figures; then the same kill with the
// direct path to the sibling on (LASTGASP_FAILOVER_DIRECT_SEEDS, 1 by default), whose handoff must be complete.
// Seeds vary the kill-to-brownout gap and the load; LASTGASP_FAILOVER_SEEDS runs more of them,
// LASTGASP_FAILOVER_VERBOSE=1 prints what both agents logged about replication, power and takeover.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { NATS_MQTT_STREAMS, startNatsCluster, type NatsCluster, type NatsNode } from '../support/nats.ts';
import { createPtyPair, type PtyPair } from '../support/pty.ts';
import { startBmsSim, type BmsSim } from '../support/bms-sim.ts';
import { startAgent, writeAgentConfig, type AgentProcess } from '../support/agents.ts';
import { killAll } from '../support/processes.ts';
import { freePort, tempDir, waitFor } from '../support/ports.ts';
import { startWriters } from '../support/writers.ts';

after(killAll);

const SEEDS = Number(process.env.LASTGASP_FAILOVER_SEEDS ?? 2);
/** Seeds of the same kill with the direct path to the sibling on (issue 15 item 2); LASTGASP_FAILOVER_DIRECT_SEEDS runs more. */
const DIRECT_SEEDS = Number(process.env.LASTGASP_FAILOVER_DIRECT_SEEDS ?? 1);
/**
 * The flush budget. nats-server 2.9 needs 4 to 11 s here after such a kill before any node can load a session
 * or store a QoS 1 message (new stream leaders), which no client can shorten; with the default 10 s a run can
 * fail on the cluster alone (seen once in six), so the test gives 20 s and checks that the agent gets through
 * as soon as a node serves; the output says how long after the cluster was back. LASTGASP_FAILOVER_BUDGET_MS
 * measures another budget.
 */
const BUDGET_MS = Number(process.env.LASTGASP_FAILOVER_BUDGET_MS ?? 20_000);

/** A small deterministic generator: each seed is a reproducible schedule. */
function random(seed: number): () => number {
  let state = seed * 2_654_435_761 >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

/** Which node leads each MQTT stream now. */
async function streamLeaders(cluster: NatsCluster): Promise<Record<string, string>> {
  const leaders: Record<string, string> = {};
  for (const stream of NATS_MQTT_STREAMS) leaders[stream] = await cluster.streamLeader(stream);
  return leaders;
}

/** Milliseconds from `killedAt` until no MQTT stream is led by `killed` any more (NaN after 30 s). */
async function leadersBack(cluster: NatsCluster, killed: string, killedAt: number): Promise<number> {
  while (Date.now() - killedAt < 30_000) {
    const report = await cluster.jsz().catch(() => undefined);
    const streams = report?.account_details?.flatMap((account) => account.stream_detail ?? []) ?? [];
    const led = NATS_MQTT_STREAMS.every((name) => {
      const leader = streams.find((stream) => stream.name === name)?.cluster?.leader;
      return leader !== undefined && leader !== killed;
    });
    if (led) return Date.now() - killedAt;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return NaN;
}

interface Run {
  /** From the kill (or the brownout) to the end of the flush, and the flush alone. */
  readonly doneAfterKillMs: number;
  /** From the kill until every MQTT stream had a leader again (the cluster could store); NaN if not seen. */
  readonly clusterBackMs: number;
  readonly leaders: string;
  readonly flushMs: number;
  readonly tail: number;
  readonly acked: number;
  readonly complete: boolean;
}

/**
 * One brownout of gw-a with 8 writers; with `kill`, gw-a's NATS node is SIGKILLed about a second before it;
 * with `direct`, the two agents also have the direct path to each other (used during the flush).
 */
async function brownoutRun(cluster: NatsCluster, label: string, seed: number, kill: boolean, direct = false): Promise<Run> {
  const dir = await tempDir(`failover-${label}`);
  const rand = random(seed);
  const leader = await cluster.streamLeader('$MQTT_sess');
  const first = cluster.node(leader);
  // gw-a's first address is the session stream's leader, so that the kill hits the node it uses and the
  // stream NATS needs to load any session; gw-b starts elsewhere.
  const urlsA = [first, ...cluster.nodes.filter((node) => node !== first)].map((node) => ({ url: node.mqttUrl }));
  const urlsB = [...cluster.nodes.filter((node) => node !== first), first].map((node) => ({ url: node.mqttUrl }));
  let pty: PtyPair | undefined;
  let sim: BmsSim | undefined;
  const agents: AgentProcess[] = [];
  try {
    pty = await createPtyPair(dir.path);
    sim = await startBmsSim(['--protocol', 'bridge', '--serial', pty.devicePath]);
    const group = `fo${label.replace(/[^a-z0-9]/g, '')}`;
    const replication = { heartbeatMs: 1000, keepaliveS: 2, durability: 'replica' };
    const [portA, portB] = [await freePort(), await freePort()];
    const directTo = (listen: number, node: string, port: number) => (direct ? { direct: { listen: `127.0.0.1:${listen}`, peers: [{ node, address: `127.0.0.1:${port}` }] } } : {});
    const configA = await writeAgentConfig(dir.path, 'gw-a', {
      group,
      role: 'primary',
      siblings: ['gw-b'],
      replication: { ...replication, brokers: urlsA, ...directTo(portA, 'gw-b', portB) },
      power: { source: { kind: 'bridge', transport: { type: 'serial', path: pty.hostPath } }, onBatteryDebounceMs: 0, flushBudgetMs: BUDGET_MS, handoffAckTimeoutMs: 5000, cutDelayMs: 200 },
    });
    const configB = await writeAgentConfig(dir.path, 'gw-b', { group, role: 'standby', siblings: ['gw-a'], replication: { ...replication, brokers: urlsB, ...directTo(portB, 'gw-a', portA) } });
    const a = await startAgent('gw-a', configA.file, configA.api);
    agents.push(a);
    const b = await startAgent('gw-b', configB.file, configB.api);
    agents.push(b);
    await a.waitForEvent('role', (line) => line.role === 'primary', 60_000);
    await b.waitForEvent('role', (line) => line.role === 'standby', 60_000);
    await a.waitForEvent('power-link', (line) => line.state === 'up');
    const writers = startWriters([a], 8, label);
    const steady = 300 + Math.floor(rand() * 700);
    await waitFor('steady writes', () => (writers.acks.length >= steady ? true : undefined), 60_000);
    const leaders = await streamLeaders(cluster);
    let killedAt = Date.now();
    let clusterBack: Promise<number> = Promise.resolve(NaN);
    if (kill) {
      const server = (await a.client.status()).replication.links[0].server as string;
      const used: NatsNode | undefined = cluster.nodes.find((node) => server === `127.0.0.1:${node.mqttPort}`);
      assert.ok(used, `gw-a's NATS node (${server}) is one of the cluster's`);
      killedAt = Date.now();
      await used.kill('SIGKILL');
      clusterBack = leadersBack(cluster, used.name, killedAt);
    }
    await new Promise((resolve) => setTimeout(resolve, 700 + Math.floor(rand() * 600)));
    sim.send('ac off');
    sim.send('brownout');
    const handoff = await a.waitForEvent('handoff', () => true, 60_000);
    await writers.stop();
    const takeover = await b.waitForEvent('takeover', () => true, 60_000);
    assert.equal(takeover.fromNode, 'gw-a');
    // The guarantee under test: the handoff tells the truth. Complete, every acknowledged write is on the
    // sibling; incomplete (the budget ran out: nats-server 2.9 can take longer than any budget to elect its
    // stream leaders again, which only the direct path of issue 15 would get around), every write up to the
    // handoff's lastSeq is there, and the new primary reports the gap loudly. How often it is complete is a
    // measurement, printed below, not a pass condition.
    if (!kill) assert.equal(handoff.complete, true, `${label}: a healthy brownout's handoff went out incomplete`);
    // With the direct path the tail does not wait for the cluster at all: the handoff must be complete.
    if (direct) assert.equal(handoff.complete, true, `${label}: with the direct path on, the handoff went out incomplete`);
    const acked = writers.acks.filter((ack) => ack.node === 'gw-a');
    const page = await b.client.entries(1, 100_000);
    const onB = new Map(page.entries.map((entry) => [entry.seq, entry.key]));
    const covered = handoff.complete ? acked : acked.filter((ack) => ack.seq <= (handoff.lastSeq as number));
    const missing = covered.filter((ack) => onB.get(ack.seq) !== ack.key);
    assert.deepEqual(missing.slice(0, 5).map((ack) => `${ack.seq}:${ack.key}`), [], `${label}: ${missing.length} of ${covered.length} acknowledged writes the handoff vouched for are not on the sibling`);
    if (!handoff.complete) {
      const gap = await b.waitForEvent('handoff-incomplete', () => true, 10_000);
      assert.equal(gap.missing, (handoff.committed as number) - (handoff.lastSeq as number), `${label}: the new primary reports the gap`);
    }
    if (process.env.LASTGASP_FAILOVER_VERBOSE) for (const agent of agents) console.log(`---- ${agent.node}\n${agent.process.output().split('\n').filter((line) => /replication|power|takeover|roles|handoff|flush/.test(line)).slice(-60).join('\n')}`);
    const flush = a.events().find((line) => line.event === 'flush-done');
    return {
      doneAfterKillMs: Date.parse(String(flush?.time)) - killedAt,
      clusterBackMs: await clusterBack,
      leaders: Object.entries(leaders).map(([stream, node]) => `${stream} ${node}`).join(', '),
      flushMs: Number(flush?.flushMs),
      tail: Number(a.events().find((line) => line.event === 'flush-start')?.tail),
      acked: acked.length,
      complete: handoff.complete === true,
    };
  } catch (error) {
    // The agents' own account of the flush is what explains a failure here.
    for (const agent of agents) console.log(`---- ${agent.node}\n${agent.process.output().split('\n').filter((line) => /replication|power|takeover|roles|handoff|flush/.test(line)).slice(-60).join('\n')}`);
    throw error;
  } finally {
    for (const agent of agents) await agent.stop('SIGKILL');
    await sim?.stop();
    await pty?.close();
    if (kill) for (const node of cluster.nodes) if (!node.running) await node.restart();
    await dir.remove();
  }
}

test('NATS cluster: the primary\'s node (the session stream\'s leader) SIGKILLed about 1 s before a brownout; the flush fails over, and the handoff tells the truth', { timeout: 600_000 }, async () => {
  const dir = await tempDir('failover-nats');
  const cluster = await startNatsCluster(dir.path);
  try {
    const healthy = await brownoutRun(cluster, 'healthy', 0, false);
    console.log(`healthy brownout: flush ${healthy.flushMs} ms for a tail of ${healthy.tail}, ${healthy.acked} writes acknowledged`);
    for (let seed = 1; seed <= SEEDS; seed++) {
      const run = await brownoutRun(cluster, `seed${seed}`, seed, true);
      console.log(`seed ${seed}: node killed (leaders before: ${run.leaders}); streams led again ${run.clusterBackMs} ms after the kill; flush done ${run.doneAfterKillMs} ms after the kill, flush ${run.flushMs} ms for a tail of ${run.tail}, ${run.acked} writes acknowledged; handoff ${run.complete ? 'complete' : 'INCOMPLETE (budget ran out)'}`);
    }
    for (let seed = 1; seed <= DIRECT_SEEDS; seed++) {
      const run = await brownoutRun(cluster, `direct${seed}`, seed, true, true);
      console.log(`seed ${seed}, direct path on: node killed; flush done ${run.doneAfterKillMs} ms after the kill, flush ${run.flushMs} ms for a tail of ${run.tail}, ${run.acked} writes acknowledged; handoff complete`);
    }
  } finally {
    await cluster.stop();
    await dir.remove();
  }
});
