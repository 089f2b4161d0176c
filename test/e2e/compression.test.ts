// Compressed batches reach the sibling: a primary behind a 1 Mbit/s uplink with 50 ms each way (the hold-up
// benchmark's shaped relay) flushes a tail of telemetry on brownout; its batches go out Brotli-compressed, the
// sibling decompresses and holds every acknowledged entry, and the handoff is complete. With
// replication.compression: off (a group whose receivers predate the flag) the same tail goes out as it is.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { startMosquitto } from '../support/mosquitto.ts';
import { killAll } from '../support/processes.ts';
import { tempDir } from '../support/ports.ts';
import { startShapedLink } from '../bench/shaped-link.ts';
import { entryValue } from '../bench/holdup-data.ts';
import { keysOn, shapeFor, startShapedPair, warmUp, writeTail } from '../bench/holdup-support.ts';
import { mulberry32 } from '../log/support/random.ts';

after(killAll);

for (const compression of ['auto', 'off'] as const) test(`compression ${compression}: a telemetry tail flushed over a slow uplink ${compression === 'auto' ? 'leaves compressed' : 'leaves as it is'} and every acknowledged entry is on the sibling`, async () => {
  const dir = await tempDir('compression-e2e');
  const broker = await startMosquitto(dir.path);
  const link = await startShapedLink(broker.port, shapeFor(1000));
  const { a, b, sim, close } = await startShapedPair(dir.path, 'zipped', broker, link, [], { onBatteryDebounceMs: 0, flushBudgetMs: 60_000, handoffAckTimeoutMs: 5000, cutDelayMs: 200 }, { compression });
  try {
    const random = mulberry32(12);
    // Replicated over the slow link first: the publisher measures the link's drain rate.
    await warmUp(a, 'telemetry', random);
    await a.client.setReplicationPaused(true);
    const values = Array.from({ length: 1500 }, (_, index) => entryValue('telemetry', random, index));
    const acked = await writeTail(a, values, 'tail');
    const committed = Math.max(...acked.keys());
    const before = (await a.client.status()).replication.publisher as { bytesPublished: number };
    sim.send('ac off');
    sim.send('brownout');
    const handoff = await a.waitForEvent('handoff');
    assert.equal(handoff.complete, true);
    assert.equal(handoff.lastSeq, committed);
    const publisher = (await a.client.status()).replication.publisher as { bytesPublished: number; compression: { batchesCompressed: number; bytesIn: number; bytesOut: number } };
    const rawBytes = values.reduce((sum, value) => sum + value.length, 0);
    const flushedBytes = publisher.bytesPublished - before.bytesPublished;
    if (compression === 'auto') {
      assert.ok(publisher.compression.batchesCompressed > 0, JSON.stringify(publisher.compression));
      assert.ok(flushedBytes < rawBytes / 2, `the tail of ${rawBytes} payload bytes took ${flushedBytes} bytes on the wire`);
    } else {
      assert.equal(publisher.compression.batchesCompressed, 0, JSON.stringify(publisher.compression));
      assert.ok(flushedBytes >= rawBytes, `uncompressed, the tail of ${rawBytes} payload bytes took only ${flushedBytes} bytes on the wire`);
    }
    const onB = await keysOn(b, Math.min(...acked.keys()));
    for (const [seq, key] of acked) assert.equal(onB.get(seq), key, `acknowledged seq ${seq} (${key}) is not on the sibling`);
    const sample = Math.min(...acked.keys()) + 700;
    const entry = (await b.client.entries(sample, 1)).entries[0]!;
    assert.equal(entry.key, acked.get(sample));
  } finally {
    await close();
    await link.cut();
    await broker.stop();
    await dir.remove();
  }
});
