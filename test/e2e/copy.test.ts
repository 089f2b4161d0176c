// Writes that wait for their copy (ackAfter), with real processes: a mosquitto, a primary and a sibling
// with silence takeover. Writers ask for `replica` while others take the default (`flash`); replication
// is then held back on the primary and the primary is SIGKILLed. The sibling takes over by silence; the old
// primary returns and sets aside what never reached it. Every write acknowledged at `replica` is on the new
// primary at its seq: none of them was set aside. A `replica` write that cannot get its copy fails with
// NOT_REPLICATED instead of being acknowledged.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { isLastgaspError } from '../../agent/util/index.ts';
import { startMosquitto } from '../support/mosquitto.ts';
import { startAgent, startPair, type AgentProcess } from '../support/agents.ts';
import { killAll } from '../support/processes.ts';
import { tempDir, waitFor } from '../support/ports.ts';

after(killAll);

async function keysBySeq(agent: AgentProcess): Promise<Map<number, string>> {
  const out = new Map<number, string>();
  const committed = (await agent.client.status()).watermarks.committed as number;
  for (let from = 1; from <= committed; ) {
    const page = await agent.client.entries(from, 5000);
    for (const entry of page.entries) out.set(entry.seq, String(entry.key));
    if (page.entries.length === 0) break;
    from = page.next;
  }
  return out;
}

test('writes acknowledged at replica are never set aside by a silence takeover after the primary is SIGKILLed', async () => {
  const dir = await tempDir('e2e-copy');
  const broker = await startMosquitto(dir.path);
  const pair = await startPair(dir.path, 'copy', broker.url, { extra: { replication: { heartbeatMs: 200 }, takeover: { silenceMs: 1500 } } });
  let a = pair.a;
  const b = pair.b;
  try {
    const replicaAcks = new Map<number, string>();
    const flashAcks = new Map<number, string>();
    const refusals: Record<string, number> = {};
    let stop = false;
    const writer = (id: number, replica: boolean) =>
      (async () => {
        for (let index = 0; !stop; index++) {
          const key = `${replica ? 'replica' : 'flash'}-${id}-${index}`;
          try {
            const { seq } = await a.client.put(key, 'v', replica ? { ackAfter: 'replica', timeoutMs: 20_000 } : undefined);
            (replica ? replicaAcks : flashAcks).set(seq, key);
          } catch (error) {
            const code = isLastgaspError(error) ? error.code : 'connection';
            refusals[code] = (refusals[code] ?? 0) + 1;
            if (code === 'connection') return;
          }
        }
      })();
    const writers = [0, 1, 2, 3].map((id) => writer(id, true)).concat([0, 1, 2, 3].map((id) => writer(id, false)));
    await waitFor('writes at both levels', () => (replicaAcks.size >= 100 && flashAcks.size >= 100 ? true : undefined), 30_000);
    const status = await a.client.status();
    assert.ok(status.watermarks.replicaAcked >= Math.max(...replicaAcks.keys()), 'a replica write is acknowledged only once the sibling acked it');

    // Held back: replica writers now wait, flash writers go on and strand their entries on gw-a.
    await a.client.setReplicationPaused(true);
    const strandedFrom = flashAcks.size;
    await waitFor('flash writes stranded on gw-a', () => (flashAcks.size >= strandedFrom + 50 ? true : undefined), 30_000);
    const timedOut = await a.client.put('waits-in-vain', 'v', { ackAfter: 'replica', timeoutMs: 300 }).catch((error: unknown) => error);
    assert.ok(isLastgaspError(timedOut, 'NOT_REPLICATED'), String(timedOut));
    const badLevel = await a.client.put('bad', 'v', { ackAfter: 'everywhere' as 'replica' }).catch((error: unknown) => error);
    assert.ok(isLastgaspError(badLevel, 'BAD_REQUEST'), String(badLevel));
    await a.process.kill('SIGKILL');
    stop = true;
    await Promise.all(writers);

    const takeover = await b.waitForEvent('takeover', () => true, 20_000);
    assert.equal(takeover.cause, 'silence');
    const onB = await keysBySeq(b);
    for (const [seq, key] of replicaAcks) assert.equal(onB.get(seq), key, `replica-acknowledged seq ${seq} (${key}) is on the new primary`);

    // gw-a returns, sets aside its stranded suffix, and holds the same history as gw-b: the replica writes
    // are in it, at their seqs.
    a = await startAgent('gw-a', a.configFile, a.api);
    const quarantine = await a.waitForEvent('quarantine', () => true, 20_000);
    assert.ok((quarantine.records as number) >= 50, 'the flash writes held back were set aside');
    const marker = await b.client.put('marker', 'end');
    await waitFor('gw-a to catch up', async () => ((await a.client.status()).watermarks.committed >= marker.seq ? true : undefined), 20_000);
    const onA = await keysBySeq(a);
    for (const [seq, key] of replicaAcks) assert.equal(onA.get(seq), key, `replica-acknowledged seq ${seq} (${key}) is on the returned node`);
  } finally {
    await a.stop();
    await b.stop();
    await broker.stop();
    await dir.remove();
  }
});
