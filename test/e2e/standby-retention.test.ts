// A standby's log is a copy: over a long life far more data passes through it than its quota holds. It must
// release what it holds once its state no longer needs it, as the primary does once the data is replicated,
// and keep up. (A standby once kept everything: after log.quotaBytes of traffic — 1 GiB by default, about a
// day of a busy gateway — its appends failed with LOG_FULL and replication stopped for good.)
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { OP_PUT, type Op } from '../../agent/app/index.ts';
import { startMosquitto } from '../support/mosquitto.ts';
import { settledState, startPair } from '../support/agents.ts';
import { killAll } from '../support/processes.ts';
import { tempDir, waitFor } from '../support/ports.ts';

after(killAll);

const QUOTA_BYTES = 4 * 1024 * 1024;

test('a standby releases what it holds and keeps replicating after many times its quota went through it', async () => {
  const dir = await tempDir('e2e-standby-retention');
  const broker = await startMosquitto(dir.path);
  const log = { segmentBytes: 256 * 1024, entryBytesMax: 4096, quotaBytes: QUOTA_BYTES, snapshotEveryEntries: 500 };
  const { a, b } = await startPair(dir.path, 'retention', broker.url, { extra: { log } });
  try {
    // 16 MB of key-value writes in batches of 200 (under one write of these small segments): four times either quota.
    const value = new TextEncoder().encode('x'.repeat(1000));
    let lastSeq = 0;
    for (let round = 0; round < 80; round++) {
      const ops: Op[] = Array.from({ length: 200 }, (_, i) => ({ op: OP_PUT, key: `k${i % 50}`, value: Uint8Array.of(round, ...value.subarray(0, 999)) }));
      lastSeq = (await a.client.batch(ops)).lastSeq;
      // Keep under the unreplicated limit: the primary only releases what the standby has.
      await waitFor('gw-b to hold the round', async () => ((await b.client.status()).watermarks.committed >= lastSeq ? true : undefined), 30_000);
    }
    const [statusA, statusB] = await Promise.all([a.client.status(), b.client.status()]);
    assert.equal(statusB.watermarks.committed, lastSeq, 'the standby holds every entry');
    assert.ok(statusB.log.bytesOnDisk <= QUOTA_BYTES, `the standby stays within its quota (${statusB.log.bytesOnDisk} bytes)`);
    assert.ok(statusB.log.firstSeq > 1, `the standby released old segments (first seq ${statusB.log.firstSeq})`);
    assert.equal(statusB.log.counters.fullRejections, 0, 'the standby never refused a batch for space');
    assert.equal(statusB.replication.receiver.appendFailures, 0);
    assert.ok(statusB.log.unreplicatedBytes <= 256 * 1024, `what a standby holds came from the primary: at most its last batch counts as its own tail (${statusB.log.unreplicatedBytes} bytes)`);
    assert.ok(statusA.log.firstSeq > 1, 'the primary released what the standby acknowledged');
    const [listA, listB] = await Promise.all([a.client.list(), settledState(b, lastSeq)]);
    assert.equal(listB.digest, listA.digest, 'the standby state is the primary state');
  } finally {
    await a.stop();
    await b.stop();
    await broker.stop();
    await dir.remove();
  }
});
