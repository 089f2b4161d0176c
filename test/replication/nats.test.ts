// One clustered broker reached through the list of its node addresses (issue 5, cluster shape a): a real
// three-node NATS 2.9 cluster whose MQTT gateway keeps sessions and QoS 1 messages in R3 JetStream streams.
// NATS speaks MQTT 3.1.1 only, so the links fall back from 5. Each gateway lists the nodes in its own order;
// the node the sibling is on is SIGKILLed mid-stream and the sibling resumes its session on another, then
// the primary's node is killed and it fails over too. Every acknowledged entry arrives, in order, once.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startNatsCluster, type NatsCluster, type NatsNode } from '../support/nats.ts';
import { killAll } from '../support/processes.ts';
import { tempDir, waitFor } from '../support/ports.ts';
import { assertSameLog, startNode, startWriter, waitCommitted, waitReplicated, waitWritten, type TestNode } from './support/nodes.ts';

/** NATS elects new stream and consumer leaders after a kill; its MQTT gateway retries in 4 s rounds. */
const FAILOVER_TIMEOUT_MS = 120_000;

let dir: { path: string; remove: () => Promise<void> };
let cluster: NatsCluster;

before(async () => {
  dir = await tempDir('repl-nats');
  cluster = await startNatsCluster(dir.path);
});

after(async () => {
  await cluster?.stop();
  await dir?.remove();
  await killAll();
});

/** The NATS node a gateway's (single) link is connected to now. */
function nodeOf(gateway: TestNode): NatsNode | undefined {
  const server = gateway.links()[0]?.server;
  return cluster.nodes.find((node) => server === `127.0.0.1:${node.mqttPort}`);
}

test('through the NATS cluster: 3.1.1 fallback, the sibling\'s node and then the primary\'s node SIGKILLed mid-stream', async () => {
  const [n1, n2, n3] = cluster.nodes as [NatsNode, NatsNode, NatsNode];
  const common = { dir: dir.path, mode: 'cluster' as const, keepaliveS: 2 };
  const a = await startNode({ ...common, name: 'gw-a', role: 'primary', brokers: [n2.mqttUrl, n3.mqttUrl, n1.mqttUrl], siblings: ['gw-b'] });
  const b = await startNode({ ...common, name: 'gw-b', role: 'standby', brokers: [n1.mqttUrl, n2.mqttUrl, n3.mqttUrl], siblings: ['gw-a'] });
  try {
    assert.equal(a.links()[0]!.protocolVersion, 4, 'NATS refused MQTT 5; the link speaks 3.1.1');
    assert.equal(nodeOf(a), n2);
    assert.equal(nodeOf(b), n1);
    const writer = startWriter(a, 'nats', 4);
    await waitWritten(writer, 1000);
    await waitCommitted(b, 500, FAILOVER_TIMEOUT_MS);

    await n1.kill('SIGKILL');
    await waitWritten(writer, writer.acked.length + 1000);
    await waitFor('the sibling on another node', () => (b.replication.connected && nodeOf(b) !== undefined && nodeOf(b) !== n1 ? true : undefined), FAILOVER_TIMEOUT_MS);
    await waitCommitted(b, writer.acked.length, FAILOVER_TIMEOUT_MS);
    await n1.restart();

    await n2.kill('SIGKILL');
    await waitWritten(writer, writer.acked.length + 1000);
    await waitFor('the primary on another node', () => (a.replication.connected && nodeOf(a) !== undefined && nodeOf(a) !== n2 ? true : undefined), FAILOVER_TIMEOUT_MS);
    await waitWritten(writer, writer.acked.length + 500);
    const acked = await writer.stop();
    const committed = a.log.watermarks().committed;
    assert.equal(acked.at(-1), committed);
    await waitCommitted(b, committed, FAILOVER_TIMEOUT_MS);
    await waitReplicated(a, committed, FAILOVER_TIMEOUT_MS);
    await assertSameLog(a, b, committed);
    await n2.restart();
  } finally {
    await a.stop();
    await b.stop();
  }
});
