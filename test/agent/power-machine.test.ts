// The power state machine, stepped input by input (it is a pure function: no clock, no I/O).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { initialState, step, type Input, type MachineState, type Thresholds } from '../../agent/power/index.ts';
import type { PowerStatus } from '../../firmware-bridge/types.ts';

const thresholds: Thresholds = { socPercentMin: 20, runtimeSMin: 60, onBatterySMax: 0, trustDeviceLowBattery: true, onBatteryDebounceMs: 2000, linkDeadMs: 15_000 };

function status(acPresent: boolean | undefined, extra: Partial<PowerStatus> = {}): PowerStatus {
  return { source: 'test', acPresent, alarms: [], atMs: 0, ...extra };
}

function run(inputs: Input[], limits = thresholds) {
  let state: MachineState = initialState(0);
  const actions: string[] = [];
  const transitions: string[] = [];
  for (const input of inputs) {
    const result = step(state, input, limits);
    state = result.state;
    actions.push(...result.actions.map((action) => action.type));
    if (result.transition) transitions.push(`${result.transition.from}→${result.transition.to}`);
  }
  return { state, actions, transitions };
}

test('mains lost starts shrinking the tail at once and mains back resumes', () => {
  const { transitions, actions } = run([
    { type: 'status', status: status(false, { socPercent: 90, runtimeS: 900 }), atMs: 100 },
    { type: 'status', status: status(true, { socPercent: 90 }), atMs: 900 },
  ]);
  assert.deepEqual(transitions, ['ONLINE→ON_BATTERY', 'ON_BATTERY→ONLINE']);
  assert.deepEqual(actions, ['shrink-tail', 'resume']);
});

test('a low state of charge is a brownout only after the on-battery debounce', () => {
  const low = status(false, { socPercent: 15, runtimeS: 600 });
  const early = run([{ type: 'status', status: low, atMs: 0 }, { type: 'tick', atMs: 1999 }]);
  assert.equal(early.state.name, 'ON_BATTERY');
  const late = run([{ type: 'status', status: low, atMs: 0 }, { type: 'tick', atMs: 2000 }]);
  assert.equal(late.state.name, 'BROWNOUT');
  assert.equal(late.state.brownoutReason, 'state of charge 15% ≤ 20%');
  assert.deepEqual(late.actions, ['shrink-tail', 'flush-and-handoff']);
});

test('the runtime threshold and the time-on-battery limit each trigger, whichever comes first', () => {
  const runtime = run([{ type: 'status', status: status(false, { socPercent: 80, runtimeS: 45 }), atMs: 0 }, { type: 'tick', atMs: 2500 }]);
  assert.equal(runtime.state.brownoutReason, 'runtime 45 s ≤ 60 s');
  const timed = run([{ type: 'status', status: status(false, { socPercent: 80, runtimeS: 900 }), atMs: 0 }, { type: 'tick', atMs: 30_000 }], { ...thresholds, onBatterySMax: 30 });
  assert.equal(timed.state.brownoutReason, 'on battery for 30 s ≥ 30 s');
});

test("the BMS's brownout event needs no debounce, even straight from ONLINE", () => {
  const { transitions, actions, state } = run([{ type: 'event', event: { kind: 'brownout', atMs: 0 }, atMs: 10 }]);
  assert.deepEqual(transitions, ['ONLINE→BROWNOUT']);
  assert.deepEqual(actions, ['shrink-tail', 'flush-and-handoff']);
  assert.match(state.brownoutReason!, /reported a brownout/);
});

test("the device's own low-battery flag counts only when trusted", () => {
  const flagged = status(false, { socPercent: 70, runtimeS: 900, lowBattery: true });
  assert.equal(run([{ type: 'status', status: flagged, atMs: 0 }, { type: 'tick', atMs: 3000 }]).state.name, 'BROWNOUT');
  assert.equal(run([{ type: 'status', status: flagged, atMs: 0 }, { type: 'tick', atMs: 3000 }], { ...thresholds, trustDeviceLowBattery: false }).state.name, 'ON_BATTERY');
});

test('a power-source link silent while on battery becomes a brownout after the dead time, not before', () => {
  const inputs: Input[] = [
    { type: 'status', status: status(false, { socPercent: 80, runtimeS: 900 }), atMs: 0 },
    { type: 'link', up: false, atMs: 1000 },
    { type: 'tick', atMs: 15_999 },
  ];
  assert.equal(run(inputs).state.name, 'ON_BATTERY');
  const dead = run([...inputs, { type: 'tick', atMs: 16_000 }]);
  assert.equal(dead.state.name, 'BROWNOUT');
  assert.match(dead.state.brownoutReason!, /link silent for 15000 ms while on battery/);
});

test('a silent link on mains is not a brownout', () => {
  const { state } = run([{ type: 'link', up: false, atMs: 0 }, { type: 'tick', atMs: 60_000 }]);
  assert.equal(state.name, 'ONLINE');
});

test('mains back during the flush returns to ONLINE: the handoff is the point of no return', () => {
  const { state, transitions, actions } = run([
    { type: 'status', status: status(false, { socPercent: 50 }), atMs: 0 },
    { type: 'event', event: { kind: 'brownout', atMs: 0 }, atMs: 1 },
    { type: 'flush-started', atMs: 2 },
    { type: 'status', status: status(true), atMs: 3 },
  ]);
  assert.deepEqual(transitions, ['ONLINE→ON_BATTERY', 'ON_BATTERY→BROWNOUT', 'BROWNOUT→FLUSHING', 'FLUSHING→ONLINE']);
  assert.deepEqual(actions, ['shrink-tail', 'flush-and-handoff', 'resume']);
  assert.equal(state.brownoutReason, undefined);
});

test('once the handoff is published the decision is latched, mains or not', () => {
  const { state, transitions } = run([
    { type: 'status', status: status(false, { socPercent: 50 }), atMs: 0 },
    { type: 'event', event: { kind: 'brownout', atMs: 0 }, atMs: 1 },
    { type: 'flush-started', atMs: 2 },
    { type: 'handoff-published', atMs: 3 },
    { type: 'status', status: status(true), atMs: 4 },
    { type: 'power-off-requested', atMs: 5 },
    { type: 'event', event: { kind: 'ac-restored', atMs: 6 }, atMs: 6 },
  ]);
  assert.deepEqual(transitions, ['ONLINE→ON_BATTERY', 'ON_BATTERY→BROWNOUT', 'BROWNOUT→FLUSHING', 'FLUSHING→HANDED_OFF', 'HANDED_OFF→POWER_OFF']);
  assert.equal(state.name, 'POWER_OFF');
});

test('a brownout the BMS declared while mains still looked present is not undone by the next status', () => {
  const { state } = run([
    { type: 'status', status: status(true), atMs: 0 },
    { type: 'event', event: { kind: 'brownout', atMs: 1 }, atMs: 1 },
    { type: 'status', status: status(true), atMs: 2 },
  ]);
  assert.equal(state.name, 'BROWNOUT');
});

test('an unknown mains state (undefined) neither starts nor ends an outage', () => {
  const { transitions } = run([
    { type: 'status', status: status(false, { socPercent: 90 }), atMs: 0 },
    { type: 'status', status: status(undefined, { socPercent: 90 }), atMs: 100 },
  ]);
  assert.deepEqual(transitions, ['ONLINE→ON_BATTERY']);
});
