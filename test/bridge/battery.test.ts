// The simulator's battery model moves the numbers a supervisor reads in the right direction at the right
// pace: coulomb counting, a resting-voltage curve, sag under load, and a runtime estimate in wall-clock time.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Battery, BATTERY_DEFAULTS, parseControl, restingCellMv } from '../../firmware-bridge/sim/index.ts';

test('on battery the charge falls by load × time / capacity, faster with --speed', () => {
  const battery = new Battery({ ...BATTERY_DEFAULTS, capacityMah: 1000, socPercent: 50, loadMa: 500, speed: 60 });
  battery.step(60_000, false, true);
  // One wall minute at speed 60 is one model hour: 500 mAh out of 1000 mAh.
  assert.equal(Math.round(battery.socPercent * 1000) / 1000, 0);
  assert.equal(battery.currentMa(false, true), -500);
});

test('on mains the pack charges until full, then draws nothing', () => {
  const battery = new Battery({ ...BATTERY_DEFAULTS, capacityMah: 1000, socPercent: 99, chargeMa: 1000 });
  assert.equal(battery.currentMa(true, true), 1000);
  battery.step(3_600_000, true, true);
  assert.equal(battery.socPercent, 100);
  assert.equal(battery.currentMa(true, true), 0);
});

test('cell voltage follows the chemistry curve and sags under load', () => {
  assert.equal(restingCellMv('li-ion', 100), 4190);
  assert.equal(restingCellMv('lifepo4', 50), 3300);
  assert.ok(restingCellMv('li-ion', 20) < restingCellMv('li-ion', 80));
  const battery = new Battery({ ...BATTERY_DEFAULTS, socPercent: 50, loadMa: 2000, cellResistanceMohm: 50 });
  assert.equal(battery.cellMv(true, true) - battery.cellMv(false, true), 150, '2 A × 50 mΩ = 100 mV sag plus 50 mV charge rise at 1 A');
});

test('runtime is the remaining charge at the present load, in wall-clock seconds', () => {
  const battery = new Battery({ ...BATTERY_DEFAULTS, capacityMah: 2000, socPercent: 50, loadMa: 1000, speed: 2 });
  assert.equal(battery.runtimeS(), 1800);
});

test('the control language accepts the documented commands and refuses the rest with a reason', () => {
  assert.deepEqual(parseControl('ac off'), { ok: true, command: { kind: 'ac', present: false } });
  assert.deepEqual(parseControl('  soc 12.5 '), { ok: true, command: { kind: 'soc', percent: 12.5 } });
  assert.deepEqual(parseControl('drop-link 500'), { ok: true, command: { kind: 'drop-link', ms: 500 } });
  assert.deepEqual(parseControl('garbage 0'), { ok: false, error: '"0" is not a number in 1..1000000 (bytes)' });
  assert.equal(parseControl('quit now').ok, false);
  assert.match((parseControl('reboot') as { error: string }).error, /unknown command "reboot"/);
});
