// Linux power_supply. This machine (a container) has no supply under /sys/class/power_supply and sysfs
// cannot be populated on demand, so the test builds a directory with the same layout and attribute files a
// kernel exposes (a Mains adapter and a Battery, values as in Documentation/ABI/testing/sysfs-class-power)
// and points the source at it: the same reads the source does on a gateway.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createPowerSource, sysfsView } from '../../firmware-bridge/index.ts';
import { tempDir } from '../support/ports.ts';
import { RecordingListener } from './helpers.ts';

async function supply(root: string, name: string, files: Record<string, string>): Promise<void> {
  await mkdir(join(root, name), { recursive: true });
  for (const [file, value] of Object.entries(files)) await writeFile(join(root, name, file), `${value}\n`);
}

test('sysfs: mains online, battery charging; then mains offline and the battery low', async () => {
  const dir = await tempDir('sysfs');
  await supply(dir.path, 'AC', { type: 'Mains', online: '1' });
  await supply(dir.path, 'BAT0', { type: 'Battery', capacity: '87', status: 'Charging', voltage_now: '12600000', current_now: '450000', temp: '251', capacity_level: 'Normal' });
  const source = createPowerSource({ kind: 'sysfs', path: dir.path, pollMs: 50 });
  const listener = new RecordingListener();
  try {
    await source.start(listener);
    await listener.waitForLink('up');
    const charging = await listener.waitForStatus('charging', (status) => status.acPresent === true);
    assert.equal(charging.socPercent, 87);
    assert.equal(charging.packMv, 12_600);
    assert.equal(charging.currentMa, 450);
    assert.deepEqual(charging.temperaturesC, [25.1]);
    await supply(dir.path, 'AC', { online: '0' });
    await supply(dir.path, 'BAT0', { status: 'Discharging', capacity: '9', current_now: '1200000', capacity_level: 'Low' });
    await listener.waitForEvent('ac-lost');
    await listener.waitForEvent('low-battery');
    const low = await listener.waitForStatus('discharging', (status) => status.acPresent === false && status.socPercent === 9);
    assert.equal(low.currentMa, -1200, 'a driver reporting a magnitude while discharging is given the sign by status');
    await rm(join(dir.path, 'AC'), { recursive: true });
    await rm(join(dir.path, 'BAT0'), { recursive: true });
    const downAt = await listener.waitForLink('down');
    assert.match(listener.links[downAt]!.reason ?? '', /no power supply/);
  } finally {
    await source.stop();
    await dir.remove();
  }
});

test('sysfs view: without a mains supply, the battery status says whether mains is there; garbage values are unknown', () => {
  const view = sysfsView(new Map([['BAT1', { type: 'Battery\n', status: 'Discharging\n', capacity: 'n/a\n', voltage_now: '-\n' }]]));
  assert.equal(view.acPresent, false);
  assert.equal(view.socPercent, undefined);
  assert.equal(view.packMv, undefined);
  assert.equal(sysfsView(new Map()).acPresent, undefined);
});
