// Delivery through one real mosquitto, primary and sibling each with a real flash log: strict seq order,
// batches that adapt to the backlog, a window under the broker's Receive Maximum, batches cut to the
// broker's Maximum Packet Size, and an entry too large for the broker reported rather than skipped.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { startMosquitto } from '../support/mosquitto.ts';
import { killAll } from '../support/processes.ts';
import { tempDir, waitFor } from '../support/ports.ts';
import { assertSameLog, errorLines, startNode, waitCommitted, waitReplicated, type TestNode } from './support/nodes.ts';

after(killAll);

test('idle: one entry per batch, at once; backlog: full batches; the sibling gets every entry in order', async () => {
  const dir = await tempDir('delivery-adapt');
  const broker = await startMosquitto(dir.path);
  const a = await startNode({ dir: dir.path, name: 'gw-a', role: 'primary', brokers: [broker.url], siblings: ['gw-b'] });
  const b = await startNode({ dir: dir.path, name: 'gw-b', role: 'standby', brokers: [broker.url], siblings: ['gw-a'] });
  try {
    // Idle: each append is replicated before the next one is made.
    for (let index = 0; index < 20; index++) {
      const [seq] = await a.append(1, `idle${index}`);
      await waitReplicated(a, seq!);
    }
    const idle = a.publisher();
    assert.equal(idle.batches, 20, 'an idle link sends each entry as soon as it is committed');
    assert.equal(idle.batchEntriesMaxSeen, 1);

    // Backlog: replication held back while 6000 entries pile up, then released.
    a.replication.publisher.setPaused(true);
    await a.append(6000, 'backlog', 16);
    a.replication.publisher.setPaused(false);
    await waitReplicated(a, 6020);
    const backlog = a.publisher();
    const backlogBatches = (backlog.batches as number) - 20;
    assert.equal(backlog.batchEntriesMaxSeen, 2048, 'a backlog goes out in batches of batchEntriesMax');
    assert.ok(backlogBatches <= 4, `6000 entries took ${backlogBatches} batches`);
    await waitCommitted(b, 6020);
    await assertSameLog(a, b, 6020);
    assert.equal(b.receiver().gaps, 0);
    assert.equal(b.receiver().duplicateBatches, 0);
  } finally {
    await a.stop();
    await b.stop();
    await broker.stop();
    await dir.remove();
  }
});

test('half-MiB batches encoded into the buffers of acknowledged ones, and a brownout flush after them, reach the sibling byte for byte', async () => {
  const dir = await tempDir('delivery-reuse');
  const broker = await startMosquitto(dir.path);
  // Compression off: the codec compresses when the measured link rate says it pays, and a loaded machine
  // measures a slow link; the small compressed batches then never touch the pool of half-MiB buffers.
  const a = await startNode({ dir: dir.path, name: 'gw-a', role: 'primary', brokers: [broker.url], siblings: ['gw-b'], batchBytesMax: 512 * 1024, windowMax: 4, compression: 'off' });
  const b = await startNode({ dir: dir.path, name: 'gw-b', role: 'standby', brokers: [broker.url], siblings: ['gw-a'] });
  try {
    // About 240 bytes an entry: 24,000 entries make a dozen batches of 2048, four times the window. Drained
    // on mains, every batch is as large as the broker takes; a fresh buffer is needed at send time only while
    // the window fills, and every later batch goes into the buffer of one the broker acknowledged, or was
    // prepared while the pause held (prepared-tail.ts), into a buffer taken then.
    a.replication.publisher.setPaused(true);
    await a.append(24_000, 'x'.repeat(230), 32);
    a.replication.publisher.setPaused(false);
    await waitReplicated(a, 24_000);
    const stats = a.publisher();
    assert.ok((stats.batches as number) >= 12, `${String(stats.batches)} batches`);
    const ready = (stats.batchBuffersReused as number) + (stats.preparedSent as number);
    assert.ok(ready >= (stats.batches as number) - 2 * 4, `${String(stats.batchBuffersReused)} of ${String(stats.batches)} batches reused a buffer, ${String(stats.preparedSent)} were prepared`);

    // The brownout flush sizes its batches to the measured rate (smaller on a loaded machine, and then from
    // malloc rather than the pool): whatever their size, they follow the reused ones byte for byte.
    a.replication.publisher.setPaused(true);
    await a.append(12_000, 'y'.repeat(230), 32);
    a.replication.publisher.setFlushing(true);
    await waitReplicated(a, 36_000);
    await waitCommitted(b, 36_000);
    await assertSameLog(a, b, 36_000);
    assert.equal(b.receiver().gaps, 0);
    assert.deepEqual(b.replication.stats().rejected, {});
  } finally {
    await a.stop();
    await b.stop();
    await broker.stop();
    await dir.remove();
  }
});

test('the publish window stays under the broker\'s Receive Maximum even when the config allows more', async () => {
  const dir = await tempDir('delivery-window');
  const receiveMaximum = 3;
  const broker = await startMosquitto(dir.path, { vars: { MAX_INFLIGHT_MESSAGES: String(receiveMaximum) } });
  const a = await startNode({ dir: dir.path, name: 'gw-a', role: 'primary', brokers: [broker.url], siblings: ['gw-b'], windowMax: 64, batchEntriesMax: 10 });
  const b = await startNode({ dir: dir.path, name: 'gw-b', role: 'standby', brokers: [broker.url], siblings: ['gw-a'] });
  try {
    a.replication.publisher.setPaused(true);
    await a.append(3000, 'w', 16);
    a.replication.publisher.setPaused(false);
    await waitCommitted(b, 3000);
    assert.equal(a.publisher().windowMax, receiveMaximum);
    const [link] = a.links();
    assert.ok((link!.inflightPeak as number) <= receiveMaximum, `peak ${String(link!.inflightPeak)} on the wire`);
    assert.ok((a.publisher().batches as number) >= 300);
    await assertSameLog(a, b, 3000);
  } finally {
    await a.stop();
    await b.stop();
    await broker.stop();
    await dir.remove();
  }
});

test('batches are cut to the broker\'s Maximum Packet Size; an entry that cannot fit is reported and replication waits at it', async () => {
  const dir = await tempDir('delivery-mps');
  const limit = 16 * 1024;
  const broker = await startMosquitto(dir.path, { vars: { MAX_PACKET_SIZE: String(limit) } });
  const a = await startNode({ dir: dir.path, name: 'gw-a', role: 'primary', brokers: [broker.url], siblings: ['gw-b'] });
  const b = await startNode({ dir: dir.path, name: 'gw-b', role: 'standby', brokers: [broker.url], siblings: ['gw-a'] });
  try {
    a.replication.publisher.setPaused(true);
    await a.append(2000, 'small', 8);
    a.replication.publisher.setPaused(false);
    await waitCommitted(b, 2000);
    const stats = a.publisher();
    assert.ok((stats.bytesPublished as number) / (stats.batches as number) <= limit);
    assert.equal(a.links()[0]!.tooLarge, 0, 'no batch was built larger than the broker takes');
    assert.equal(a.links()[0]!.serverDisconnects, 0);

    const { seq } = await a.log.append(new Uint8Array(limit + 100));
    await a.append(5, 'after');
    await waitCommitted(a, seq + 5);
    const [line] = await waitForError(a, /does not fit in one MQTT packet/);
    assert.equal(line!.seq, seq);
    assert.equal(line!.reason, 'packet too large');
    await waitReplicated(a, seq - 1);
    assert.equal(a.log.watermarks().replicated, seq - 1, 'nothing past the oversized entry counts as replicated');
    assert.equal(b.log.watermarks().committed, seq - 1, 'and nothing past it reached the sibling');
    await assertSameLog(a, b, seq - 1);
  } finally {
    await a.stop();
    await b.stop();
    await broker.stop();
    await dir.remove();
  }
});

function waitForError(node: TestNode, pattern: RegExp) {
  return waitFor(`an error line matching ${pattern}`, () => {
    const found = errorLines(node, pattern);
    return found.length > 0 ? found : undefined;
  });
}
