// The Deno path: the same agent code runs unchanged under Deno 2 (the npm package `deno`). A primary under
// Deno replicates through a real mosquitto to a sibling under Node; the sibling holds every acknowledged
// write in the same on-disk format and serves the same state. Both sign with their own Ed25519 key (the test
// harness's default, as in production) and verify each other's: Deno's node:crypto against Node's. The
// direct path between them (issue 15) checks each side's TLS certificate key: Deno's node:tls against Node's.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { startMosquitto } from '../support/mosquitto.ts';
import { settledState, startPair } from '../support/agents.ts';
import { killAll } from '../support/processes.ts';
import { freePort, tempDir, waitFor } from '../support/ports.ts';

after(killAll);

test('a primary running under Deno 2 replicates to a sibling under Node', async () => {
  const dir = await tempDir('deno');
  const broker = await startMosquitto(dir.path);
  const { a, b } = await startPair(dir.path, 'deno', broker.url, { runtimeA: 'deno' });
  try {
    const seqs: number[] = [];
    for (let index = 0; index < 200; index++) seqs.push((await a.client.put(`k${index % 20}`, `v${index}`)).seq);
    seqs.push((await a.client.append(new TextEncoder().encode('from deno'))).seq);
    const committed = Math.max(...seqs);
    await waitFor('the Node sibling to hold every entry', async () => ((await b.client.status()).watermarks.committed >= committed ? true : undefined), 30_000);
    await waitFor('the Deno primary to count them replicated', async () => ((await a.client.status()).watermarks.replicated >= committed ? true : undefined), 30_000);
    assert.equal((await settledState(b, committed)).digest, (await a.client.list()).digest);
    const last = await b.client.entries(committed, 1);
    assert.equal(Buffer.from(String(last.entries[0]!.data), 'base64').toString('utf8'), 'from deno');
    for (const agent of [a, b]) {
      const replication = (await agent.client.status()).replication as { auth: string; rejected: Record<string, number> };
      assert.equal(replication.auth, 'ed25519', `${agent.node} signs with its own key`);
      assert.deepEqual(replication.rejected, {}, `${agent.node} verified every message of the other runtime`);
    }
    const publisher = (await a.client.status()).replication.publisher as { acksReceived: number };
    assert.ok(publisher.acksReceived > 0, 'the Deno primary took the Node sibling\'s signed acks');
  } finally {
    await a.stop();
    await b.stop();
    await broker.stop();
    await dir.remove();
  }
});

test('the direct path between a Deno primary and a Node sibling: mutual TLS with the node keys, batches one way and acks the other', async () => {
  const dir = await tempDir('deno-direct');
  const broker = await startMosquitto(dir.path);
  const [portA, portB] = [await freePort(), await freePort()];
  const replication = (listen: number, node: string, port: number) => ({ brokers: [{ url: broker.url }], direct: { listen: `127.0.0.1:${listen}`, peers: [{ node, address: `127.0.0.1:${port}` }], always: true } });
  const { a, b } = await startPair(dir.path, 'denodirect', broker.url, { runtimeA: 'deno', extraA: { replication: replication(portA, 'gw-b', portB) }, extraB: { replication: replication(portB, 'gw-a', portA) } });
  try {
    const direct = async (agent: typeof a) => (await agent.client.status()).replication.direct as { batchesSent: number; peers: Array<{ state: string; lastAckAgeMs: number }>; listener: { framesReceived: number; refused: Record<string, number> } };
    await waitFor('the direct path up both ways', async () => ((await direct(a)).peers[0]!.state === 'up' && (await direct(b)).peers[0]!.state === 'up' ? true : undefined), 30_000);
    let committed = 0;
    for (let index = 0; index < 100; index++) committed = (await a.client.put(`k${index}`, `v${index}`)).seq;
    await waitFor('the Deno primary to count them replicated', async () => ((await a.client.status()).watermarks.replicated >= committed ? true : undefined), 30_000);
    const [fromA, fromB] = [await direct(a), await direct(b)];
    assert.ok(fromA.batchesSent > 0, 'the Deno primary streamed batches directly');
    assert.ok(fromB.listener.framesReceived > 0, 'the Node sibling took them on its listener (it verified the Deno node\'s certificate key)');
    assert.ok(fromA.listener.framesReceived > 0 && fromA.peers[0]!.lastAckAgeMs >= 0, 'acks came back to the Deno listener (it verified the Node node\'s certificate key)');
    assert.deepEqual([fromA.listener.refused, fromB.listener.refused], [{}, {}]);
  } finally {
    await a.stop();
    await b.stop();
    await broker.stop();
    await dir.remove();
  }
});
