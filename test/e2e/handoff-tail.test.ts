// An incomplete handoff whose tail goes on behind the record, with real parts: mosquitto, the BMS simulator
// on a socat pty, two agent processes, gw-a behind a shaped 1 Mbit/s uplink (50 ms each way) with a tail
// five times what its flush budget can carry. The record goes out while the bytes ahead of it can still
// arrive, says `complete: false` and how much budget is left (`tailMs`); gw-a goes on flushing behind it.
// What must hold:
//   - gw-b keeps applying the tail after the record arrived and takes over only when it ends, so its epoch
//     starts past the record's lastSeq and past what it held when the record came;
//   - every write gw-a acknowledged below gw-b's first seq is on gw-b, with its key (the handoff and the tail
//     told the truth);
//   - gw-a, restarted, rejoins as a standby and sets aside exactly the writes that never arrived (from gw-b's
//     first seq to its own last), no more and no fewer;
//   - when gw-a's connection goes in the middle of the tail (its Will), gw-b takes over at once, with every
//     batch that arrived before the Will stored.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { startMosquitto } from '../support/mosquitto.ts';
import { killAll } from '../support/processes.ts';
import { startAgent, type AgentProcess } from '../support/agents.ts';
import { tempDir } from '../support/ports.ts';
import { startShapedLink } from '../bench/shaped-link.ts';
import { entryValue } from '../bench/holdup-data.ts';
import { keysOn, shapeFor, startShapedPair, warmUp, writeTail } from '../bench/holdup-support.ts';
import { mulberry32 } from '../log/support/random.ts';

after(killAll);

const BUDGET_MS = 1500;

/** The pair behind a 1 Mbit/s uplink, a tail of about 1 MB written with replication paused, and the brownout. */
async function brownoutWithLongTail(dir: string) {
  const broker = await startMosquitto(dir);
  const link = await startShapedLink(broker.port, shapeFor(1000));
  const pair = await startShapedPair(dir, 'tail', broker, link, [], { onBatteryDebounceMs: 0, flushBudgetMs: BUDGET_MS, handoffAckTimeoutMs: 5000, cutDelayMs: 200 });
  const { a, sim } = pair;
  const close = async () => {
    await pair.close();
    await link.cut().catch(() => undefined);
    await broker.stop();
  };
  try {
    const random = mulberry32(7);
    // Replicated over the slow link first: the publisher measures the link's drain rate.
    await warmUp(a, 'random', random, 60);
    await a.client.setReplicationPaused(true);
    // About 1 MB of incompressible tail: eight seconds of this link, five times the budget.
    const acked = await writeTail(a, Array.from({ length: 1000 }, (_, index) => entryValue('random', random, index)), 'tail');
    const committed = Math.max(...acked.keys());
    sim.send('ac off');
    sim.send('brownout');
    const handoff = await a.waitForEvent('handoff', () => true, 20_000);
    assert.equal(handoff.complete, false, 'a tail of eight seconds does not fit a budget of 1.5');
    assert.equal(handoff.committed, committed);
    assert.ok(typeof handoff.tailMs === 'number' && handoff.tailMs > 0 && handoff.tailMs < BUDGET_MS, `tailMs ${String(handoff.tailMs)}`);
    return { ...pair, link, acked, committed, handoff, close };
  } catch (error) {
    await close();
    throw error;
  }
}

/** Every write gw-a acknowledged below gw-b's first seq is on gw-b, with its key. */
async function assertKeptBelow(b: AgentProcess, acked: ReadonlyMap<number, string>, since: number): Promise<void> {
  const onB = await keysOn(b, Math.min(...acked.keys()));
  for (const [seq, key] of acked) if (seq < since) assert.equal(onB.get(seq), key, `acknowledged seq ${seq} (${key}) is below gw-b's first seq ${since} but not on gw-b`);
}

test('an incomplete handoff: the sibling keeps the tail that comes on behind the record, and the old primary sets aside only the rest', async () => {
  const dir = await tempDir('handoff-tail');
  const { a, b, sim, link, acked, committed, handoff, close } = await brownoutWithLongTail(dir.path);
  let restarted: Awaited<ReturnType<typeof startAgent>> | undefined;
  try {
    const following = await b.waitForEvent('handoff-tail', () => true, 20_000);
    const takeover = await b.waitForEvent('takeover', () => true, 20_000);
    await sim.waitForLine((line) => line.event === 'power-cut', 'the power cut', 20_000);
    await link.cut();
    await a.process.kill('SIGKILL');

    const lastSeq = handoff.lastSeq as number;
    const since = takeover.since as number;
    const tail = takeover.tail as { end: string; waitedMs: number };
    assert.equal(takeover.complete, false);
    assert.equal(takeover.handoffCommitted, committed);
    assert.ok(since - 1 > (following.have as number), `gw-b held ${String(following.have)} when the record came and took over at ${since - 1}: nothing of the tail behind the record was kept (lastSeq ${lastSeq}, ${JSON.stringify(tail)})`);
    assert.ok(since - 1 >= lastSeq && since - 1 < committed, `since ${since}, lastSeq ${lastSeq}, committed ${committed}`);
    assert.ok(['timeout', 'ended'].includes(tail.end), JSON.stringify(tail));

    await assertKeptBelow(b, acked, since);
    const written = await b.client.put('after', 'written to gw-b');
    assert.equal(written.seq, since, 'gw-b\'s epoch begins right after the tail it kept');

    // Mains back (that is what lets the gateway boot), gw-a restarted: a standby that sets aside since..committed.
    sim.send('ac on');
    restarted = await startAgent('gw-a', a.configFile, a.api);
    await restarted.waitForEvent('role', (line) => line.role === 'standby', 30_000);
    const quarantine = await restarted.waitForEvent('quarantine', () => true, 30_000);
    assert.equal(quarantine.after, since - 1, 'gw-a keeps exactly what gw-b holds of its epoch');
    assert.equal(quarantine.records, committed - since + 1, 'and sets aside every write that never arrived');
  } finally {
    await restarted?.stop('SIGKILL');
    await close();
    await dir.remove();
  }
});

test('an incomplete handoff whose old primary goes mid-tail: its Will ends the tail, and what arrived before it is kept', async () => {
  const dir = await tempDir('handoff-tail-will');
  const { a, b, link, acked, committed, handoff, close } = await brownoutWithLongTail(dir.path);
  try {
    const following = await b.waitForEvent('handoff-tail', () => true, 20_000);
    // Some of the tail behind the record, then the power goes: the link drops, the broker sends gw-a's Will.
    await new Promise((resolve) => setTimeout(resolve, 150));
    await link.cut();
    await a.process.kill('SIGKILL');
    const takeover = await b.waitForEvent('takeover', () => true, 20_000);
    const since = takeover.since as number;
    const tail = takeover.tail as { end: string; waitedMs: number };
    assert.equal(tail.end, 'ended', `the Will ended the tail, not the timeout: ${JSON.stringify(tail)}`);
    assert.ok(since - 1 > (following.have as number), `gw-b held ${String(following.have)} when the record came and took over at ${since - 1} (lastSeq ${String(handoff.lastSeq)}, ${JSON.stringify(tail)})`);
    assert.ok(since - 1 < committed, `since ${since}, committed ${committed}`);
    await assertKeptBelow(b, acked, since);
    assert.equal((await b.client.put('after', 'written to gw-b')).seq, since, 'gw-b\'s epoch begins right after the tail it kept');
  } finally {
    await close();
    await dir.remove();
  }
});
