// End to end with real parts: a real mosquitto, a primary and a sibling agent as separate processes, an
// application writing through the primary's API. Every acknowledged write must reach the sibling's own
// flash log, and the sibling's key-value state must equal the primary's. Then the primary is SIGKILLed in
// the middle of a workload and restarted: no acknowledged entry may be missing.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { startMosquitto } from '../support/mosquitto.ts';
import { settledState, startAgent, startPair } from '../support/agents.ts';
import { killAll } from '../support/processes.ts';
import { tempDir, waitFor } from '../support/ports.ts';

after(killAll);

test('acknowledged writes reach the sibling in order and the states are equal', async () => {
  const dir = await tempDir('e2e-repl');
  const broker = await startMosquitto(dir.path);
  const { a, b } = await startPair(dir.path, 'e2e', broker.url);
  try {
    const acked = new Map<number, string>();
    await Promise.all(
      Array.from({ length: 8 }, async (_, writer) => {
        for (let index = 0; index < 150; index++) {
          const key = `k${(writer * 150 + index) % 97}`;
          const { seq } = await a.client.put(key, `v${writer}-${index}`);
          acked.set(seq, key);
        }
      }),
    );
    const { seq: lastSeq } = await a.client.append(new TextEncoder().encode('raw entry'));
    const committed = (await a.client.status()).watermarks.committed as number;
    assert.equal(committed, lastSeq);
    await waitFor('the sibling to hold every entry', async () => ((await b.client.status()).watermarks.committed >= committed ? true : undefined), 20_000);
    await waitFor('the primary to see the replica ack', async () => ((await a.client.status()).watermarks.replicated >= committed ? true : undefined), 20_000);
    const [listA, listB] = await Promise.all([a.client.list(), settledState(b, committed)]);
    assert.equal(listB.digest, listA.digest);
    assert.equal(listB.count, 97);
    const page = await b.client.entries(1, 5000);
    assert.deepEqual(page.entries.map((entry) => entry.seq), Array.from({ length: committed }, (_, index) => index + 1));
    for (const entry of page.entries) if (acked.has(entry.seq)) assert.equal(entry.key, acked.get(entry.seq));
    const refused = await b.client.put('x', 'y').catch((error: { code?: string; detail?: { leader?: string } }) => error);
    assert.equal((refused as { code: string }).code, 'NOT_PRIMARY');
  } finally {
    await a.stop();
    await b.stop();
    await broker.stop();
    await dir.remove();
  }
});

test('a primary SIGKILLed mid-workload loses no acknowledged entry and resumes replicating after restart', async () => {
  const dir = await tempDir('e2e-kill');
  const broker = await startMosquitto(dir.path);
  let { a, b } = await startPair(dir.path, 'e2e', broker.url);
  try {
    const acked: number[] = [];
    let stop = false;
    const writers = Array.from({ length: 16 }, async (_, writer) => {
      for (let index = 0; !stop; index++) {
        try {
          const { seq } = await a.client.append(new TextEncoder().encode(`w${writer}-${index}`));
          acked.push(seq);
        } catch {
          return;
        }
      }
    });
    await waitFor('a few hundred acknowledged writes', () => (acked.length >= 600 ? true : undefined), 20_000);
    await a.process.kill('SIGKILL');
    stop = true;
    await Promise.all(writers);
    const highest = Math.max(...acked);
    a = await startAgent('gw-a', a.configFile, a.api);
    const status = await a.client.status();
    assert.ok(status.watermarks.committed >= highest, `committed ${status.watermarks.committed} < highest acknowledged ${highest}`);
    const seen = new Set<number>();
    for (let from = 1; from <= status.watermarks.committed; ) {
      const page = await a.client.entries(from, 5000);
      for (const entry of page.entries) seen.add(entry.seq);
      from = page.next;
      if (page.entries.length === 0) break;
    }
    for (const seq of acked) assert.ok(seen.has(seq), `acknowledged seq ${seq} missing after the SIGKILL`);
    await waitFor('the sibling to catch up after the restart', async () => ((await b.client.status()).watermarks.committed >= highest ? true : undefined), 20_000);
  } finally {
    await a.stop();
    await b.stop();
    await broker.stop();
    await dir.remove();
  }
});
