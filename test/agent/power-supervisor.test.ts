// The power supervisor driven by a scripted power source and a clock the test advances: power events are
// trusted only once the link is up, a brownout event the telemetry contradicts waits out the debounce, and
// the flush-done line says how the flush really ended. The real link (a socat pty, a real agent) is in
// test/e2e/bms-link.test.ts; here the source is in-process because the test must place each input at an
// exact instant of the supervisor's clock.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PowerSupervisor, type FlushEnd, type FlushOutcome, type SupervisorHost, type Thresholds } from '../../agent/power/index.ts';
import type { Logger, LogFields, LogMessage } from '../../agent/util/index.ts';
import { FakeClock } from '../support/fake-clock.ts';
import { NoPowerSource, type LinkState, type PowerEvent, type PowerSourceListener, type PowerStatus } from '../../firmware-bridge/index.ts';

const thresholds: Thresholds = { socPercentMin: 20, runtimeSMin: 60, onBatterySMax: 0, trustDeviceLowBattery: true, onBatteryDebounceMs: 2000, linkDeadMs: 15_000 };

/** Reports what the test scripts; commands nothing (NoPowerSource's half). */
class ScriptedSource extends NoPowerSource {
  override readonly name = 'scripted';
  override readonly capabilities = { cutPower: false, holdPower: false, pushEvents: true };
  listener: PowerSourceListener | undefined;
  override async start(listener: PowerSourceListener): Promise<void> {
    this.listener = listener;
  }
  link(state: LinkState): void {
    this.listener!.link(state);
  }
  status(acPresent: boolean, extra: Partial<PowerStatus> = {}): void {
    this.listener!.status({ source: this.name, acPresent, socPercent: 95, runtimeS: 5000, alarms: [], atMs: 0, ...extra });
  }
  event(kind: PowerEvent['kind']): void {
    this.listener!.event({ kind, atMs: 0 });
  }
}

function recordingLogger(lines: Array<{ level: string; message: string; fields: LogFields | undefined }>): Logger {
  const at = (level: string) => (message: LogMessage, fields?: LogFields) => void lines.push({ level, message: typeof message === 'string' ? message : message(), fields });
  const logger: Logger = { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error'), child: () => logger };
  return logger;
}

function setUp(flushEnd: FlushEnd = 'flushed') {
  const clock = new FakeClock();
  const source = new ScriptedSource();
  const lines: Array<{ level: string; message: string; fields: LogFields | undefined }> = [];
  const flushes: number[] = [];
  const host: SupervisorHost = {
    shrinkTail: () => undefined,
    flushTail: async (budgetMs) => {
      flushes.push(budgetMs);
      const outcome: FlushOutcome = { tailAtStart: 5, lastSeq: flushEnd === 'flushed' ? 10 : 7, committed: 10, complete: flushEnd === 'flushed', end: flushEnd, flushMs: 12 };
      return outcome;
    },
    publishHandoff: async () => undefined,
    waitForSuccessor: async () => true,
    resume: () => undefined,
    powerOff: async () => undefined,
    publishPower: () => undefined,
    stateChanged: () => undefined,
  };
  const supervisor = new PowerSupervisor({ source, host, thresholds, flushBudgetMs: 10_000, handoffAckTimeoutMs: 1000, cutDelayMs: 100, logger: recordingLogger(lines), clock });
  const distrust = () => supervisor.status().distrust as Record<string, number>;
  return { clock, source, supervisor, lines, flushes, distrust };
}

test('power events before the link is up are counted and ignored; after it they count', async () => {
  const { clock, source, supervisor, distrust, flushes } = setUp();
  await supervisor.start();
  source.link('connecting');
  source.event('brownout');
  source.event('ac-lost');
  await clock.advanceSettling(5000);
  assert.equal(supervisor.state, 'ONLINE');
  assert.equal(flushes.length, 0);
  assert.equal(distrust().eventsBeforeLinkUp, 2);
  source.link('up');
  source.status(true);
  source.event('ac-lost');
  await clock.advanceSettling(10);
  assert.equal(supervisor.state, 'ON_BATTERY');
  // A link that drops is not trusted again until it is back up.
  source.link('down');
  source.event('brownout');
  await clock.advanceSettling(10);
  assert.equal(supervisor.state, 'ON_BATTERY');
  assert.equal(distrust().eventsBeforeLinkUp, 3);
  await supervisor.stop();
});

test('a contradicted brownout event is held for the debounce, re-checked against the telemetry, then acted on', async () => {
  const { clock, source, supervisor, distrust, flushes, lines } = setUp();
  await supervisor.start();
  source.link('up');
  source.status(true);
  source.event('brownout');
  assert.equal(supervisor.state, 'ONLINE');
  assert.equal(distrust().brownoutsHeld, 1);
  assert.ok(lines.some((line) => line.fields?.event === 'brownout-held'));
  for (let elapsed = 0; elapsed < 1750; elapsed += 250) {
    source.status(true, { alarms: ['brownout'] });
    await clock.advanceSettling(250);
  }
  assert.equal(supervisor.state, 'ONLINE', 'still within the debounce');
  source.status(true, { alarms: ['brownout'] });
  await clock.advanceSettling(500);
  const brownout = supervisor.timeline().find((entry) => entry.to === 'BROWNOUT');
  assert.ok(brownout, 'a brownout was declared');
  assert.match(brownout.reason, /still reported after 2000 ms with mains present/);
  assert.equal(supervisor.state, 'POWER_OFF', 'and the sequence ran to its end');
  assert.equal(distrust().brownoutsConfirmed, 1);
  assert.equal(flushes.length, 1);
  await supervisor.stop();
});

test('a contradicted brownout event that the telemetry drops is dismissed and counted; the next one is held afresh', async () => {
  const { clock, source, supervisor, distrust, flushes } = setUp();
  await supervisor.start();
  source.link('up');
  source.status(true);
  source.event('brownout');
  await clock.advanceSettling(250);
  source.status(true);
  await clock.advanceSettling(10_000);
  assert.equal(supervisor.state, 'ONLINE');
  assert.deepEqual(distrust(), { eventsBeforeLinkUp: 0, brownoutsHeld: 1, brownoutsDismissed: 1, brownoutsConfirmed: 0 });
  // The same event with mains gone is not contradicted: it acts at once.
  source.status(false);
  source.event('brownout');
  await clock.advanceSettling(10);
  assert.equal(flushes.length, 1);
  assert.equal(distrust().brownoutsHeld, 1);
  await supervisor.stop();
});

test('the flush-done line says how the flush ended', async () => {
  const expected: Record<FlushEnd, RegExp> = {
    flushed: /^tail flushed/,
    budget: /^flush budget ran out/,
    aborted: /^flush aborted/,
    'replication-stopped': /^replication stopped before the tail was gone/,
    'not-primary': /^not the primary/,
  };
  for (const end of Object.keys(expected) as FlushEnd[]) {
    const { clock, source, supervisor, lines } = setUp(end);
    await supervisor.start();
    source.link('up');
    source.status(false);
    source.event('brownout');
    await clock.advanceSettling(10);
    const done = lines.find((line) => line.fields?.event === 'flush-done');
    assert.ok(done, `${end}: a flush-done line`);
    assert.match(done.message, expected[end], end);
    assert.equal(done.fields?.end, end);
    assert.equal(done.level, end === 'flushed' ? 'info' : 'warn');
    await supervisor.stop();
  }
});

test('a clean stop logs no warning: a link that goes down because the agent stops is no news', async () => {
  // As the serial and TCP sources do: closing the port reports the link down.
  class ClosingSource extends ScriptedSource {
    override async stop(): Promise<void> {
      this.link('down');
    }
  }
  const { clock } = setUp();
  const source = new ClosingSource();
  const lines: Array<{ level: string; message: string; fields: LogFields | undefined }> = [];
  const host = { shrinkTail: () => undefined, publishPower: () => undefined, stateChanged: () => undefined } as unknown as SupervisorHost;
  const supervisor = new PowerSupervisor({ source, host, thresholds, flushBudgetMs: 10_000, handoffAckTimeoutMs: 1000, cutDelayMs: 100, logger: recordingLogger(lines), clock });
  await supervisor.start();
  source.link('up');
  source.status(true);
  await supervisor.stop();
  assert.ok(lines.some((line) => line.fields?.event === 'power-link' && line.fields.state === 'down'), 'the link going down is still logged');
  assert.deepEqual(lines.filter((line) => line.level === 'warn' || line.level === 'error'), []);
});
