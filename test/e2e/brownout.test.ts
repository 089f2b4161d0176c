// The brownout story with real parts: a real mosquitto, the BMS simulator on one end of a real pty pair
// made by socat and the primary's bridge link on the other, primary and sibling as separate processes.
// A workload leaves an unreplicated tail; mains is cut; the primary must flush the tail, hand off and be
// killed by the simulated BMS's power cut, and the sibling must hold every acknowledged write and serve
// the same state. A second test brings mains back during the flush: no handoff, writes accepted again.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { startMosquitto } from '../support/mosquitto.ts';
import { createPtyPair } from '../support/pty.ts';
import { startBmsSim } from '../support/bms-sim.ts';
import { settledState, startAgent, startPair } from '../support/agents.ts';
import { killAll } from '../support/processes.ts';
import { tempDir, waitFor } from '../support/ports.ts';

after(killAll);

async function setUp(name: string, power: Record<string, unknown> = {}) {
  const dir = await tempDir(name);
  const broker = await startMosquitto(dir.path);
  const pty = await createPtyPair(dir.path);
  const sim = await startBmsSim(['--protocol', 'bridge', '--serial', pty.devicePath]);
  const { a, b } = await startPair(dir.path, 'brownout', broker.url, {
    extraA: {
      power: {
        source: { kind: 'bridge', transport: { type: 'serial', path: pty.hostPath } },
        onBatteryDebounceMs: 0,
        flushBudgetMs: 60_000,
        handoffAckTimeoutMs: 5000,
        cutDelayMs: 200,
        ...power,
      },
    },
  });
  await a.waitForEvent('power-link', (line) => line.state === 'up');
  const tearDown = async () => {
    await a.stop('SIGKILL');
    await b.stop();
    await sim.stop();
    await pty.close();
    await broker.stop();
    await dir.remove();
  };
  return { a, b, sim, tearDown };
}

test('brownout: the tail is flushed, the sibling takes over with every acknowledged write and the same state', async () => {
  const { a, b, sim, tearDown } = await setUp('brownout');
  try {
    const acked = new Map<number, string>();
    const write = async (count: number, writers: number, tag: string) => {
      let next = 0;
      await Promise.all(
        Array.from({ length: writers }, async () => {
          while (next < count) {
            const index = next++;
            const key = `${tag}/${index % 50}`;
            const { seq } = await a.client.put(key, `${tag}-${index}`);
            acked.set(seq, key);
          }
        }),
      );
    };
    await write(500, 8, 'steady');
    await a.client.setReplicationPaused(true);
    await write(2000, 32, 'burst');
    const before = await a.client.status();
    const tail = before.watermarks.committed - before.watermarks.replicated;
    assert.ok(tail >= 2000, `the burst should have left an unreplicated tail, found ${tail}`);
    const digestA = (await a.client.list()).digest;

    sim.send('ac off');
    sim.send('brownout');
    const flushStart = await a.waitForEvent('flush-start');
    assert.ok((flushStart.tail as number) >= 2000);
    const handoff = await a.waitForEvent('handoff');
    assert.equal(handoff.complete, true);
    assert.equal(handoff.lastSeq, before.watermarks.committed);
    const takeover = await b.waitForEvent('takeover');
    assert.equal(takeover.fromNode, 'gw-a');
    assert.equal(takeover.epoch, 2);
    await sim.waitForLine((line) => line.event === 'command' && line.kind === 'cut', 'the cut command');
    await sim.waitForLine((line) => line.event === 'power-cut', 'the power cut');
    await a.process.kill('SIGKILL');

    const statusB = await b.client.status();
    assert.equal(statusB.role, 'primary');
    assert.equal(statusB.watermarks.committed, before.watermarks.committed);
    const page = await b.client.entries(1, 10_000);
    const onB = new Map(page.entries.map((entry) => [entry.seq, entry.key]));
    for (const [seq, key] of acked) assert.equal(onB.get(seq), key, `acknowledged seq ${seq} (${key}) is not on the sibling`);
    assert.equal((await settledState(b, before.watermarks.committed)).digest, digestA);
    const after = await b.client.put('after', 'takeover');
    assert.equal(after.epoch, 2);
    assert.equal(after.seq, before.watermarks.committed + 1);
    // The new primary publishes from its own position on, not its whole log again.
    const published = await waitFor('the new entry to be published', async () => {
      const count = ((await b.client.status()).replication.publisher as { entriesPublished: number }).entriesPublished;
      return count >= 1 ? count : undefined;
    });
    assert.equal(published, 1);
  } finally {
    await tearDown();
  }
});

test('mains back during the flush: no handoff, the primary accepts writes again', async () => {
  const { a, b, sim, tearDown } = await setUp('mains-back');
  try {
    for (let index = 0; index < 50; index++) await a.client.put(`k${index}`, 'v');
    // A sibling that does not answer keeps the flush waiting for its acks; SIGSTOP makes that deterministic.
    b.process.child.kill('SIGSTOP');
    await a.client.setReplicationPaused(true);
    for (let index = 0; index < 50; index++) await a.client.put(`later${index}`, 'v');
    sim.send('ac off');
    sim.send('brownout');
    await a.waitForEvent('flush-start');
    const refused = await a.client.put('during', 'flush').catch((error: { code?: string }) => error);
    assert.equal((refused as { code: string }).code, 'HANDING_OFF');
    sim.send('ac on');
    await a.waitForEvent('power-state', (line) => line.to === 'ONLINE' && line.from === 'FLUSHING');
    await waitFor('writes accepted again', async () => ((await a.client.ready()).ready ? true : undefined));
    await a.waitForEvent('handoff-cancelled');
    const accepted = await a.client.put('after', 'mains back');
    assert.equal(accepted.epoch, 1);
    // The operator's pause outlives the outage; lifting it lets the sibling catch up.
    b.process.child.kill('SIGCONT');
    await a.client.setReplicationPaused(false);
    assert.equal(a.events().filter((line) => line.event === 'handoff').length, 0);
    await waitFor('the sibling to catch up', async () => ((await b.client.status()).watermarks.committed >= accepted.seq ? true : undefined), 20_000);
    assert.equal((await b.client.status()).role, 'standby');
  } finally {
    b.process.child.kill('SIGCONT');
    await tearDown();
  }
});

test('a handoff whose power cut never comes: the old primary exits 75, and restarted it rejoins as a standby', async () => {
  const { a, b, sim, tearDown } = await setUp('no-cut', { restartAfterPowerOffMs: 1500 });
  let restarted: Awaited<ReturnType<typeof startAgent>> | undefined;
  try {
    for (let index = 0; index < 100; index++) await a.client.put(`k${index % 10}`, `v${index}`);
    sim.send('ac off');
    sim.send('brownout');
    await b.waitForEvent('takeover');
    // The simulated BMS does cut, but nothing kills gw-a here: as if mains had come back first.
    const code = await a.process.exited;
    assert.equal(code, 75);
    assert.ok(a.events().some((line) => line.event === 'power-off-timeout'));
    for (let index = 0; index < 20; index++) await b.client.put(`new${index}`, 'after the handoff');
    // Mains are back (that is why the cut never came): a node restarted on a BMS still reporting a brownout
    // would rightly power off again at once, with nothing of its own to flush.
    sim.send('ac on');
    restarted = await startAgent('gw-a', a.configFile, a.api);
    await restarted.waitForEvent('role', (line) => line.role === 'standby');
    await waitFor('gw-a to catch up as a standby', async () => ((await restarted!.client.status()).watermarks.committed >= 120 ? true : undefined), 20_000);
    assert.equal((await settledState(restarted, 120)).digest, (await b.client.list()).digest);
    assert.equal(restarted.events().filter((line) => line.event === 'quarantine').length, 0, 'a complete handoff leaves nothing to set aside');
  } finally {
    await restarted?.stop();
    await tearDown();
  }
});
