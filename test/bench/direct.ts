/**
 * `npm run bench:direct`: the brownout drain when brokers fail, with and without the direct path to the
 * sibling (issue 15), on the three-node NATS cluster the README recommends, in one run:
 *
 *   - healthy: every node up, direct path off (the baseline);
 *   - healthy + direct: every node up, direct path on (the two ways race);
 *   - dead node: the NATS node gw-a is connected to (it also leads `$MQTT_sess`) SIGKILLed 1 s before the
 *     brownout, direct path off: the flush must fail over to another node, as fast as nats-server lets it;
 *   - dead node + direct: the same kill, with the direct path on;
 *   - brokers down + direct: every NATS node SIGSTOPped 1 s before the brownout (stopped, not killed: a
 *     cluster killed whole cannot be restarted node by node for the next case); only the direct path is left.
 *
 * Each case: real agent processes (gw-a on the BMS simulator through a socat pty), a tail of
 * LASTGASP_DIRECT_TAIL entries (default 3000, ~1 KB telemetry each) written with replication paused, then
 * the brownout. Measured from gw-a's own events: the flush time, the tail, whether the handoff is complete;
 * and checked: every acknowledged write up to the handoff's lastSeq is on gw-b. Rounds:
 * LASTGASP_BENCH_ROUNDS (default 1); the table gives medians and the ratio to the healthy case; the last line
 * is one JSON object. Not part of `npm test`; run it with `nice`.
 */
import { startNatsCluster, type NatsCluster } from '../support/nats.ts';
import { createPtyPair } from '../support/pty.ts';
import { startBmsSim } from '../support/bms-sim.ts';
import { startAgent, writeAgentConfig, type AgentProcess } from '../support/agents.ts';
import { killAll } from '../support/processes.ts';
import { freePort, tempDir } from '../support/ports.ts';
import { entryValue, keysOn, writeTail } from './holdup-support.ts';
import { mulberry32 } from '../log/support/random.ts';

const ROUNDS = Number(process.env.LASTGASP_BENCH_ROUNDS ?? 1);
const TAIL = Number(process.env.LASTGASP_DIRECT_TAIL ?? 3000);
/** The budget the README's default gives (power.flushBudgetMs). */
const BUDGET_MS = 10_000;
const KILL_BEFORE_BROWNOUT_MS = 1000;

type CaseName = 'healthy' | 'healthy + direct' | 'dead node' | 'dead node + direct' | 'brokers down + direct';
const CASES: ReadonlyArray<{ name: CaseName; kill: 'none' | 'used' | 'all'; direct: boolean }> = [
  { name: 'healthy', kill: 'none', direct: false },
  { name: 'healthy + direct', kill: 'none', direct: true },
  { name: 'dead node', kill: 'used', direct: false },
  { name: 'dead node + direct', kill: 'used', direct: true },
  { name: 'brokers down + direct', kill: 'all', direct: true },
];

interface Result {
  flushMs: number;
  tail: number;
  complete: boolean;
  truthful: boolean;
}

async function runCase(cluster: NatsCluster, index: number, spec: (typeof CASES)[number]): Promise<Result> {
  const dir = await tempDir(`bench-direct-${index}`);
  const leader = await cluster.streamLeader('$MQTT_sess');
  const first = cluster.node(leader);
  const urlsA = [first, ...cluster.nodes.filter((node) => node !== first)].map((node) => ({ url: node.mqttUrl }));
  const urlsB = [...cluster.nodes.filter((node) => node !== first), first].map((node) => ({ url: node.mqttUrl }));
  const pty = await createPtyPair(dir.path);
  const sim = await startBmsSim(['--protocol', 'bridge', '--serial', pty.devicePath]);
  const agents: AgentProcess[] = [];
  let suspended = false;
  try {
    const [portA, portB] = [await freePort(), await freePort()];
    const direct = (listen: number, node: string, port: number) => (spec.direct ? { direct: { listen: `127.0.0.1:${listen}`, peers: [{ node, address: `127.0.0.1:${port}` }] } } : {});
    // The default keepalive: a 2 s one (the failover test's) can drop a connection of an agent still starting
    // on a loaded machine, and a start whose first SUBSCRIBE fails exits.
    const replication = { heartbeatMs: 1000, durability: 'replica' };
    const group = `bd${index}`;
    // Small segments: each agent preallocates several, and the default 64 MiB ones add up on a shared disk.
    const log = { segmentBytes: 8 * 1024 * 1024, quotaBytes: 128 * 1024 * 1024 };
    const configA = await writeAgentConfig(dir.path, 'gw-a', {
      group,
      log,
      role: 'primary',
      siblings: ['gw-b'],
      replication: { ...replication, brokers: urlsA, ...direct(portA, 'gw-b', portB) },
      power: { source: { kind: 'bridge', transport: { type: 'serial', path: pty.hostPath } }, onBatteryDebounceMs: 0, flushBudgetMs: BUDGET_MS, handoffAckTimeoutMs: 1000, cutDelayMs: 200 },
    });
    const configB = await writeAgentConfig(dir.path, 'gw-b', { group, log, role: 'standby', siblings: ['gw-a'], replication: { ...replication, brokers: urlsB, ...direct(portB, 'gw-a', portA) } });
    const a = await startAgent('gw-a', configA.file, configA.api);
    agents.push(a);
    const b = await startAgent('gw-b', configB.file, configB.api);
    agents.push(b);
    await a.waitForEvent('role', (line) => line.role === 'primary', 60_000);
    await b.waitForEvent('role', (line) => line.role === 'standby', 60_000);
    await a.waitForEvent('power-link', (line) => line.state === 'up');
    const random = mulberry32(index + 1);
    await a.client.setReplicationPaused(true);
    const acked = await writeTail(a, Array.from({ length: TAIL }, (_, entry) => entryValue('telemetry', random, entry)), 'tail');
    if (spec.kill === 'used') {
      const server = (await a.client.status()).replication.links[0].server as string;
      const used = cluster.nodes.find((node) => server === `127.0.0.1:${node.mqttPort}`);
      if (!used) throw new Error(`gw-a's NATS node (${server}) is not one of the cluster's`);
      await used.kill('SIGKILL');
    } else if (spec.kill === 'all') {
      suspended = true;
      for (const node of cluster.nodes) node.suspend();
    }
    await new Promise((resolve) => setTimeout(resolve, KILL_BEFORE_BROWNOUT_MS));
    sim.send('ac off');
    sim.send('brownout');
    const done = await a.waitForEvent('flush-done', () => true, BUDGET_MS + 30_000);
    const handoff = await a.waitForEvent('handoff', () => true, 30_000);
    await b.waitForEvent('takeover', () => true, 30_000);
    const onB = await keysOn(b, Math.min(...acked.keys()));
    let truthful = true;
    for (const [seq, key] of acked) if (seq <= (handoff.lastSeq as number) && onB.get(seq) !== key) truthful = false;
    return { flushMs: Number(done.flushMs), tail: Number(done.tailAtStart), complete: handoff.complete === true, truthful };
  } finally {
    for (const agent of agents) await agent.stop('SIGKILL');
    if (suspended) for (const node of cluster.nodes) node.resume();
    await sim.stop();
    await pty.close();
    for (const node of cluster.nodes) if (!node.running) await node.restart();
    await dir.remove();
  }
}

const median = (values: readonly number[]) => [...values].sort((x, y) => x - y)[Math.floor(values.length / 2)]!;

async function main(): Promise<void> {
  const dir = await tempDir('bench-direct');
  const cluster = await startNatsCluster(dir.path);
  const results = new Map<CaseName, Result[]>(CASES.map((spec) => [spec.name, []]));
  try {
    let index = 0;
    // Rounds interleave the cases, so that a slow moment of the machine falls on all of them alike.
    for (let round = 0; round < ROUNDS; round++) for (const spec of CASES) results.get(spec.name)!.push(await runCase(cluster, index++, spec));
    const healthy = median(results.get('healthy')!.map((result) => result.flushMs));
    console.log(`brownout drain on a three-node NATS cluster, tail of ${TAIL} entries, budget ${BUDGET_MS} ms, ${ROUNDS} round(s), medians`);
    console.log('case                     flush ms  × healthy  complete  truthful');
    const summary: Record<string, unknown> = {};
    for (const spec of CASES) {
      const runs = results.get(spec.name)!;
      const flushMs = median(runs.map((result) => result.flushMs));
      const complete = runs.filter((result) => result.complete).length;
      const truthful = runs.every((result) => result.truthful);
      console.log(`${spec.name.padEnd(23)}  ${String(flushMs).padStart(8)}  ${(flushMs / healthy).toFixed(2).padStart(9)}  ${`${complete}/${runs.length}`.padStart(8)}  ${truthful}`);
      summary[spec.name] = { flushMs, ratioToHealthy: Number((flushMs / healthy).toFixed(2)), complete, runs: runs.length, truthful, tail: median(runs.map((result) => result.tail)) };
    }
    console.log(JSON.stringify({ bench: 'direct', tailEntries: TAIL, budgetMs: BUDGET_MS, rounds: ROUNDS, cases: summary }));
  } finally {
    await cluster.stop();
    await dir.remove();
  }
}

main()
  .catch((error: unknown) => {
    console.error(error);
    process.exitCode = 1;
  })
  .finally(() => killAll());
