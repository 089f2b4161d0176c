// The brownout's steps (agent/power/brownout.ts) over in-process stand-ins for the log, replication and the
// role, on a clock the test advances: the budget's end must be placed at an exact instant, and a tail that
// never drains is a fault a real broker does not produce on demand. The same steps with real agents, brokers
// and a simulated BMS are in test/e2e/brownout.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Brownout, type BrownoutOptions, type HandoffRecord, type PowerStateName } from '../../agent/power/index.ts';
import { silentLogger } from '../../agent/util/index.ts';
import { FakeClock } from '../support/fake-clock.ts';

interface World {
  clock: FakeClock;
  marks: { committed: number; replicated: number };
  events: string[];
  published: HandoffRecord[];
  /** Resolves the pending waitReplicated (the sibling acknowledged up to the fence). */
  acknowledge(): void;
  powerState: PowerStateName;
  brownout: Brownout;
}

function setUp(options: { leadMs?: number; syncMs?: number; positions?: Record<string, number>; role?: string } = {}): World {
  const clock = new FakeClock();
  const world = { clock, marks: { committed: 10, replicated: 7 }, events: [] as string[], published: [] as HandoffRecord[], acknowledge: () => undefined, powerState: 'ONLINE' as PowerStateName } as World;
  const parts: BrownoutOptions = {
    log: {
      epoch: 3,
      watermarks: () => ({ ...world.marks }),
      setSyncMode: (mode) => void world.events.push(`sync ${mode}`),
      fence: async () => (world.events.push('fence'), world.marks.committed),
      unfence: () => void world.events.push('unfence'),
      syncWatermarks: async () => undefined,
      recentSyncMsMax: () => options.syncMs,
    },
    replication: {
      beginFlush: (budgetMs) => void world.events.push(`begin ${budgetMs}`),
      endFlush: () => void world.events.push('end flush'),
      setOnBattery: () => undefined,
      handoffLeadMs: () => options.leadMs,
      waitReplicated: (seq, _timeoutMs, signal) =>
        new Promise((resolve) => {
          signal.addEventListener('abort', () => resolve(false), { once: true });
          world.acknowledge = () => {
            world.marks = { ...world.marks, replicated: seq };
            resolve(true);
          };
        }),
      siblingPositions: () => options.positions ?? {},
      publishHandoff: async (record) => void (world.events.push('publish'), world.published.push(record)),
      publishPowerNow: async () => undefined,
      abort: async () => undefined,
    },
    roles: {
      role: options.role ?? 'primary',
      latchHandoff: async () => void world.events.push('latch'),
      latch: () => undefined,
      waitForSuccessor: async () => true,
    },
    application: { restart: () => void world.events.push('restart') },
    powerState: () => world.powerState,
    group: 'g',
    node: 'gw-a',
    siblings: ['gw-b', 'gw-c'],
    restartAfterPowerOffMs: 60_000,
    publishHandedOff: async () => undefined,
    lastPowerStatus: () => undefined,
    hooks: { fire: (event) => void world.events.push(`hook ${event}`) },
    flushSeconds: { observe: () => undefined },
    logger: silentLogger,
    clock,
  };
  world.brownout = new Brownout(parts);
  return world;
}

/** Let the flush's awaits (fence, the watermarks' sync) run without moving the clock. */
const settle = () => new Promise((resolve) => setImmediate(resolve));

test('a tail that never drains: the flush stops as long before the budget as the handoff record needs, and says so', async () => {
  const world = setUp({ leadMs: 300 });
  const flush = world.brownout.flushTail(1000, new AbortController().signal);
  let ended = false;
  void flush.then(() => (ended = true));
  await settle();
  // 1000 ms of budget, less the 300 ms the record needs behind what is in flight, less the 100 ms margin
  // kept while the log has measured no fdatasync.
  world.clock.advance(599);
  await settle();
  assert.equal(ended, false, 'still waiting for the tail with time left before the handoff must leave');
  world.clock.advance(1);
  await settle();
  assert.equal(ended, true, 'the flush ended when only the record\'s lead and the margin were left');
  const outcome = await flush;
  assert.deepEqual(
    { end: outcome.end, complete: outcome.complete, lastSeq: outcome.lastSeq, committed: outcome.committed, tailAtStart: outcome.tailAtStart },
    { end: 'budget', complete: false, lastSeq: 7, committed: 10, tailAtStart: 3 },
  );
  assert.deepEqual(world.events.slice(0, 3), ['sync immediate', 'begin 1000', 'fence'], 'the flush pauses the rest and fences the log before it waits');
});

test('the margin before the handoff record is four of the log\'s recent longest fdatasyncs and 20 ms', async () => {
  const world = setUp({ leadMs: 300, syncMs: 5 });
  const flush = world.brownout.flushTail(1000, new AbortController().signal);
  let ended = false;
  void flush.then(() => (ended = true));
  await settle();
  // 1000 − 300 − (4 × 5 + 20) = 660 ms.
  world.clock.advance(659);
  await settle();
  assert.equal(ended, false);
  world.clock.advance(1);
  await settle();
  assert.equal(ended, true);
  assert.equal((await flush).end, 'budget');
});

test('a budget that ran out: the handoff gives the tail the rest of the budget, which goes on behind it', async () => {
  const world = setUp({ leadMs: 300, syncMs: 5 });
  const flush = world.brownout.flushTail(1000, new AbortController().signal);
  await settle();
  world.clock.advance(660);
  const outcome = await flush;
  assert.equal(outcome.end, 'budget');
  // Latching and signing took 15 ms: 1000 − 660 − 15 of the budget is left for the tail.
  world.clock.advance(15);
  await world.brownout.publishHandoff(outcome, 'battery low');
  const [record] = world.published;
  assert.deepEqual({ complete: record!.complete, lastSeq: record!.lastSeq, committed: record!.committed, tailMs: record!.tailMs }, { complete: false, lastSeq: 7, committed: 10, tailMs: 325 });
  assert.ok(!world.events.includes('end flush'), 'the publisher goes on flushing after the record');
});

test('a drained tail: the handoff is complete, latched before it leaves, and names the best-caught-up sibling', async () => {
  const world = setUp({ positions: { 'gw-b': 5, 'gw-c': 9 } });
  const flush = world.brownout.flushTail(1000, new AbortController().signal);
  await settle();
  world.acknowledge();
  const outcome = await flush;
  assert.equal(outcome.end, 'flushed');
  await world.brownout.publishHandoff(outcome, 'battery low');
  assert.deepEqual(world.events.filter((event) => event === 'latch' || event === 'publish'), ['latch', 'publish']);
  const [record] = world.published;
  assert.deepEqual(
    { kind: record!.kind, to: record!.to, lastSeq: record!.lastSeq, committed: record!.committed, complete: record!.complete, epoch: record!.epoch },
    { kind: 'handoff', to: 'gw-c', lastSeq: 10, committed: 10, complete: true, epoch: 3 },
  );
  assert.equal(record!.tailMs, undefined, 'a complete handoff announces no tail');
});

test('a standby has no tail of its own: its flush ends "not-primary" and it publishes no handoff', async () => {
  const world = setUp({ role: 'standby' });
  const outcome = await world.brownout.flushTail(1000, new AbortController().signal);
  assert.equal(outcome.end, 'not-primary');
  await world.brownout.publishHandoff(outcome, 'battery low');
  assert.deepEqual(world.published, []);
  assert.equal(await world.brownout.waitForSuccessor(1000), false);
});

test('handing off and powered off are the power machine\'s states; mains back unfences and restarts the application', () => {
  const world = setUp();
  const seen = (['ONLINE', 'ON_BATTERY', 'BROWNOUT', 'FLUSHING', 'HANDED_OFF', 'POWER_OFF'] as const).map((state) => {
    world.powerState = state;
    return [state, world.brownout.handingOff, world.brownout.poweredOff];
  });
  assert.deepEqual(seen, [
    ['ONLINE', false, false],
    ['ON_BATTERY', false, false],
    ['BROWNOUT', false, false],
    ['FLUSHING', true, false],
    ['HANDED_OFF', true, false],
    ['POWER_OFF', true, true],
  ]);
  world.powerState = 'ONLINE';
  world.brownout.resume();
  assert.deepEqual(world.events, ['restart', 'unfence', 'end flush']);
});
