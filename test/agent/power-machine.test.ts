// The power state machine, stepped input by input (it is a pure function: no clock, no I/O).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { initialState, step, type Input, type MachineState, type Thresholds } from '../../agent/power/index.ts';
import type { PowerStatus } from '../../firmware-bridge/index.ts';

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

/** Like `run`, also collecting what became of held brownouts. */
function stepAll(inputs: Input[], limits = thresholds) {
  let state: MachineState = initialState(0);
  const actions: string[] = [];
  const checks: string[] = [];
  for (const input of inputs) {
    const result = step(state, input, limits);
    state = result.state;
    actions.push(...result.actions.map((action) => action.type));
    if (result.brownoutCheck) checks.push(result.brownoutCheck);
  }
  return { state, actions, checks };
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

test('a brownout the BMS declared while mains still looked present, once confirmed, is not undone by the next status', () => {
  const alarmed = status(true, { socPercent: 90, alarms: ['brownout'] });
  const { state } = run([
    { type: 'status', status: status(true, { socPercent: 90 }), atMs: 0 },
    { type: 'event', event: { kind: 'brownout', atMs: 1 }, atMs: 1 },
    { type: 'status', status: alarmed, atMs: 500 },
    { type: 'tick', atMs: 2001 },
    { type: 'status', status: status(true, { socPercent: 90 }), atMs: 2100 },
  ]);
  assert.equal(state.name, 'BROWNOUT');
});

test('a brownout event the telemetry contradicts is held, and dismissed when the telemetry stops reporting it', () => {
  const inputs: Input[] = [
    { type: 'status', status: status(true, { socPercent: 95, runtimeS: 5000 }), atMs: 0 },
    { type: 'event', event: { kind: 'brownout', atMs: 10 }, atMs: 10 },
  ];
  const held = stepAll(inputs);
  assert.equal(held.state.name, 'ONLINE', 'no brownout on the event alone');
  assert.deepEqual(held.checks, ['held']);
  assert.equal(held.state.brownoutHeld?.sinceMs, 10);
  // A repeat of the event does not restart the debounce.
  assert.equal(stepAll([...inputs, { type: 'event', event: { kind: 'brownout', atMs: 1500 }, atMs: 1500 }]).state.brownoutHeld?.sinceMs, 10);
  const dismissed = stepAll([...inputs, { type: 'status', status: status(true, { socPercent: 95, runtimeS: 5000 }), atMs: 260 }, { type: 'tick', atMs: 60_000 }]);
  assert.equal(dismissed.state.name, 'ONLINE');
  assert.deepEqual(dismissed.checks, ['held', 'dismissed']);
  assert.equal(dismissed.state.brownoutHeld, undefined);
  assert.deepEqual(dismissed.actions, []);
});

test('a held brownout that the telemetry keeps reporting becomes a brownout once the debounce has passed, not before', () => {
  const alarmed = status(true, { socPercent: 95, alarms: ['brownout'] });
  const inputs: Input[] = [
    { type: 'status', status: status(true, { socPercent: 95 }), atMs: 0 },
    { type: 'event', event: { kind: 'brownout', atMs: 100, detail: 'vin 10.8 V' }, atMs: 100 },
    { type: 'status', status: alarmed, atMs: 350 },
    { type: 'status', status: alarmed, atMs: 2099 },
  ];
  assert.equal(stepAll(inputs).state.name, 'ONLINE', '1999 ms after the event');
  const confirmed = stepAll([...inputs, { type: 'tick', atMs: 2100 }]);
  assert.equal(confirmed.state.name, 'BROWNOUT');
  assert.deepEqual(confirmed.checks, ['held', 'confirmed']);
  assert.deepEqual(confirmed.actions, ['shrink-tail', 'flush-and-handoff']);
  assert.match(confirmed.state.brownoutReason!, /reported a brownout \(vin 10\.8 V\), still reported after 2000 ms with mains present/);
  // Without any status after the event the debounce alone proves nothing: it stays held.
  const silent = stepAll([inputs[0]!, inputs[1]!, { type: 'tick', atMs: 10_000 }]);
  assert.equal(silent.state.name, 'ONLINE');
  assert.notEqual(silent.state.brownoutHeld, undefined);
});

test('with no debounce, a held brownout still needs one status after the event that reports it', () => {
  const limits = { ...thresholds, onBatteryDebounceMs: 0 };
  const inputs: Input[] = [
    { type: 'status', status: status(true, { socPercent: 95 }), atMs: 0 },
    { type: 'event', event: { kind: 'brownout', atMs: 5 }, atMs: 5 },
    { type: 'tick', atMs: 250 },
  ];
  assert.equal(stepAll(inputs, limits).state.name, 'ONLINE');
  assert.equal(stepAll([...inputs, { type: 'status', status: status(true, { socPercent: 95, alarms: ['brownout'] }), atMs: 255 }], limits).state.name, 'BROWNOUT');
});

test('a held brownout is confirmed at once when mains is lost or the charge turns out low', () => {
  const base: Input[] = [
    { type: 'status', status: status(true, { socPercent: 95 }), atMs: 0 },
    { type: 'event', event: { kind: 'brownout', atMs: 10 }, atMs: 10 },
  ];
  const mainsLost = stepAll([...base, { type: 'event', event: { kind: 'ac-lost', atMs: 20 }, atMs: 20 }]);
  assert.equal(mainsLost.state.name, 'BROWNOUT');
  assert.match(mainsLost.state.brownoutReason!, /and now mains is lost/);
  assert.deepEqual(mainsLost.checks, ['held', 'confirmed']);
  const low = stepAll([...base, { type: 'status', status: status(true, { socPercent: 12 }), atMs: 20 }]);
  assert.equal(low.state.name, 'BROWNOUT');
  assert.match(low.state.brownoutReason!, /and now the charge is low/);
});

test('a brownout event the telemetry does not contradict acts at once: on battery, with a low charge, or with no telemetry yet', () => {
  for (const first of [status(false, { socPercent: 95 }), status(true, { socPercent: 15 }), status(true, { lowBattery: true })]) {
    const result = stepAll([{ type: 'status', status: first, atMs: 0 }, { type: 'event', event: { kind: 'brownout', atMs: 1 }, atMs: 1 }]);
    assert.equal(result.state.name, 'BROWNOUT', JSON.stringify(first));
    assert.deepEqual(result.checks, []);
  }
});

test('an unknown mains state (undefined) neither starts nor ends an outage', () => {
  const { transitions } = run([
    { type: 'status', status: status(false, { socPercent: 90 }), atMs: 0 },
    { type: 'status', status: status(undefined, { socPercent: 90 }), atMs: 100 },
  ]);
  assert.deepEqual(transitions, ['ONLINE→ON_BATTERY']);
});
