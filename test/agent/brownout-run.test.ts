// The brownout's order (agent/power/brownout.ts runBrownout) over recording steps and a recording power
// source: the test must place mains' return at one exact point of the sequence (between the flush and the
// handoff), which neither a real BMS nor the simulator does on demand. The whole sequence with real agents,
// brokers and a simulated BMS is in test/e2e/brownout.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runBrownout, type BrownoutRun, type FlushOutcome, type PowerStateName } from '../../agent/power/index.ts';
import type { Logger, LogFields, LogMessage } from '../../agent/util/index.ts';
import { FakeClock } from '../support/fake-clock.ts';

const OUTCOME: FlushOutcome = { tailAtStart: 4, lastSeq: 9, committed: 9, complete: true, end: 'flushed', flushMs: 30 };

function setUp(options: { mainsBackDuringFlush?: boolean } = {}) {
  const calls: string[] = [];
  const events: Array<string | undefined> = [];
  let state: PowerStateName = 'BROWNOUT';
  const record = (level: string) => (_message: LogMessage, fields?: LogFields) => {
    if (level !== 'debug') events.push(fields?.event as string | undefined);
  };
  const logger: Logger = { debug: record('debug'), info: record('info'), warn: record('warn'), error: record('error'), child: () => logger };
  const controller = new AbortController();
  const run: BrownoutRun = {
    steps: {
      shrinkTail: () => void calls.push('shrinkTail'),
      flushTail: async (budgetMs) => {
        calls.push(`flushTail ${budgetMs}`);
        if (options.mainsBackDuringFlush) {
          state = 'ONLINE';
          controller.abort();
        }
        return OUTCOME;
      },
      publishHandoff: async (outcome, reason) => void calls.push(`publishHandoff ${outcome.lastSeq} ${reason}`),
      waitForSuccessor: async (timeoutMs) => (calls.push(`waitForSuccessor ${timeoutMs}`), true),
      resume: () => void calls.push('resume'),
      powerOff: async () => void calls.push('powerOff'),
    },
    source: {
      capabilities: { holdPower: true, cutPower: true, pushEvents: true },
      holdPower: async (holdMs) => (calls.push(`holdPower ${holdMs}`), { ok: true }),
      cutPower: async (delayMs) => (calls.push(`cutPower ${delayMs}`), { ok: true }),
    },
    feed: (input) => {
      calls.push(`feed ${input.type}`);
      if (input.type === 'flush-started') state = 'FLUSHING';
    },
    powerState: () => state,
    flushed: (outcome) => void calls.push(`flushed ${outcome.end}`),
    reason: 'charge 4 % below 10 %',
    signal: controller.signal,
    budgetMs: 2000,
    holdMs: 3600,
    handoffAckTimeoutMs: 1000,
    cutDelayMs: 100,
    logger,
    clock: new FakeClock(),
  };
  return { run, calls, events };
}

test('the brownout runs in one order: hold, flush, handoff, wait for the successor, cut, power off, with the machine told between', async () => {
  const { run, calls, events } = setUp();
  await runBrownout(run);
  assert.deepEqual(calls, [
    'holdPower 3600',
    'feed flush-started',
    'flushTail 2000',
    'flushed flushed',
    'publishHandoff 9 charge 4 % below 10 %',
    'feed handoff-published',
    'waitForSuccessor 1000',
    'cutPower 100',
    'feed power-off-requested',
    'powerOff',
  ]);
  assert.deepEqual(events, ['flush-done', 'handoff-acked']);
});

test('mains back during the flush: the outcome is kept, and no handoff, cut or power-off follows', async () => {
  const { run, calls, events } = setUp({ mainsBackDuringFlush: true });
  await runBrownout(run);
  assert.deepEqual(calls, ['holdPower 3600', 'feed flush-started', 'flushTail 2000', 'flushed flushed']);
  assert.deepEqual(events, ['handoff-cancelled']);
});
