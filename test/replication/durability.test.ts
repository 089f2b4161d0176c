// Durability levels, with a real mosquitto and real flash logs: `replica` counts an entry once N siblings
// hold it on flash (the broker's PUBACK is not enough), `broker` once the broker quorum sent PUBACK; and the
// log's retention follows the level, deleting whole segments only below the `replicated` watermark (on a
// standby, what it has stored).
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { startMosquitto } from '../support/mosquitto.ts';
import { killAll } from '../support/processes.ts';
import { tempDir, waitFor } from '../support/ports.ts';
import { assertSameLog, startNode, waitCommitted, waitReplicated, type TestNode } from './support/nodes.ts';

after(killAll);

/** Small segments, so that a few hundred entries fill several and retention has whole segments to free. */
const SEGMENT_BYTES = 16 * 1024;
const ENTRY = new Uint8Array(1000);

async function fill(node: TestNode, count: number): Promise<number> {
  let last = 0;
  for (let index = 0; index < count; index++) last = (await node.log.append(ENTRY)).seq;
  return last;
}

function waitBrokerAcked(node: TestNode, seq: number) {
  return waitFor(`${node.name}: the broker to acknowledge seq ${seq}`, () => ((node.publisher().brokerAcked as number) >= seq ? true : undefined), 30_000);
}

test('replica: broker PUBACKs alone replicate nothing and retention keeps every segment; once the sibling holds them, segments go', async () => {
  const dir = await tempDir('dur-replica');
  const broker = await startMosquitto(dir.path);
  const a = await startNode({ dir: dir.path, name: 'gw-a', role: 'primary', brokers: [broker.url], siblings: ['gw-b'], segmentBytes: SEGMENT_BYTES });
  let b: TestNode | undefined;
  try {
    const last = await fill(a, 200);
    await waitBrokerAcked(a, last);
    assert.equal(a.log.watermarks().replicated, 0, 'the broker has it, no sibling does');
    assert.equal(a.log.firstSeq, 1);
    assert.ok(a.log.status().segments.length >= 5, `${a.log.status().segments.length} segments`);

    b = await startNode({ dir: dir.path, name: 'gw-b', role: 'standby', brokers: [broker.url], siblings: ['gw-a'], segmentBytes: SEGMENT_BYTES });
    await waitReplicated(a, last);
    assert.equal(a.log.watermarks().replicaAcked, last);
    await fill(a, 1);
    await waitFor('retention to free the segments the sibling holds', () => (a.log.firstSeq > 1 ? true : undefined), 30_000);
    assert.ok(a.log.firstSeq - 1 <= a.log.watermarks().replicated);
    await waitCommitted(b, last + 1);
    // Every entry is ENTRY; the sibling's copy is read alone (reading the primary while its retention
    // recycles segments is a race of the log's, reported to its owner).
    const copy = await b.entries();
    assert.deepEqual(copy.map((entry) => entry.seq), Array.from({ length: last + 1 }, (_, index) => index + 1));
    for (const entry of copy) assert.deepEqual(entry.payload, ENTRY);
    assert.equal(b.receiver().entriesApplied, last + 1);
    assert.equal(b.receiver().appendFailures, 0);
    // The standby's copy is replicated as soon as stored: once its floor passes (the agent's state snapshot),
    // its retention frees whole segments too, and nothing of it counts as its own unreplicated tail.
    assert.equal(b.log.firstSeq, 1, 'nothing freed below the floor');
    b.log.setRetentionFloor(last);
    await fill(a, 20);
    await waitCommitted(b, last + 21);
    // Marked as the next batch goes in: everything but the last batch.
    assert.ok(b.log.watermarks().replicated >= last + 1, `the standby's replicated mark ${b.log.watermarks().replicated}`);
    assert.ok(b.log.status().unreplicatedBytes < 64 * 1024, `${b.log.status().unreplicatedBytes} bytes unreplicated on the standby`);
    await waitFor('the standby\'s retention to free segments below its floor', () => (b!.log.firstSeq > 1 ? true : undefined), 30_000);
    assert.ok(b.log.firstSeq <= last, `the standby keeps what its floor asks (first seq ${b.log.firstSeq})`);
  } finally {
    await a.stop();
    await b?.stop();
    await broker.stop();
    await dir.remove();
  }
});

test('broker: the broker quorum\'s PUBACK replicates, and retention frees segments with no sibling online', async () => {
  const dir = await tempDir('dur-broker');
  const broker = await startMosquitto(dir.path);
  const a = await startNode({ dir: dir.path, name: 'gw-a', role: 'primary', brokers: [broker.url], siblings: ['gw-b'], durability: 'broker', segmentBytes: SEGMENT_BYTES });
  try {
    const last = await fill(a, 200);
    await waitReplicated(a, last);
    assert.equal(a.log.watermarks().replicaAcked, 0, 'no sibling acknowledged anything');
    await fill(a, 1);
    await waitFor('retention to free replicated segments', () => (a.log.firstSeq > 1 ? true : undefined), 30_000);
  } finally {
    await a.stop();
    await broker.stop();
    await dir.remove();
  }
});

test('replicaAcks 2 of two siblings: one sibling\'s ack is not enough; replicaAcks 1: either sibling is', async () => {
  const dir = await tempDir('dur-n');
  const broker = await startMosquitto(dir.path);
  const siblings = ['gw-b', 'gw-c'];
  const both = await startNode({ dir: dir.path, name: 'gw-a', role: 'primary', brokers: [broker.url], siblings });
  const b = await startNode({ dir: dir.path, name: 'gw-b', role: 'standby', brokers: [broker.url], siblings: ['gw-a', 'gw-c'] });
  let c: TestNode | undefined;
  try {
    await both.append(100, 'n');
    await waitFor('gw-b\'s ack of seq 100 at the primary', () => (both.publisher().siblings['gw-b'] === 100 ? true : undefined));
    assert.equal(both.log.watermarks().replicated, 0, 'replicaAcks defaults to every sibling');
    c = await startNode({ dir: dir.path, name: 'gw-c', role: 'standby', brokers: [broker.url], siblings: ['gw-a', 'gw-b'] });
    await waitReplicated(both, 100);
    await assertSameLog(both, c, 100);
  } finally {
    await both.stop();
    await b.stop();
    await c?.stop();
    await broker.stop();
  }

  const second = join(dir.path, 'second');
  await mkdir(second, { recursive: true });
  const broker2 = await startMosquitto(second);
  const one = await startNode({ dir: second, name: 'gw-a', role: 'primary', brokers: [broker2.url], siblings, replicaAcks: 1 });
  const onlyC = await startNode({ dir: second, name: 'gw-c', role: 'standby', brokers: [broker2.url], siblings: ['gw-a', 'gw-b'] });
  try {
    await one.append(100, 'one');
    await waitReplicated(one, 100);
    assert.deepEqual(one.publisher().siblings, { 'gw-b': 0, 'gw-c': 100 });
  } finally {
    await one.stop();
    await onlyC.stop();
    await broker2.stop();
    await dir.remove();
  }
});
