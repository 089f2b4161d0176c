// firmware-bridge raises its own BridgeError and imports nothing from the agent; the agent's
// createPowerSource (agent/power/bridge-source.ts) turns it into the LastgaspError of the same code, so that
// `lastgasp run` exits 78 on a power source it cannot build, as on any configuration error.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createPowerSource } from '../../agent/power/index.ts';
import { BridgeError, createPowerSource as createBridgePowerSource, type PowerSourceConfig, type PowerStatus } from '../../firmware-bridge/index.ts';
import { LastgaspError } from '../../agent/util/index.ts';
import { FakeClock } from '../support/fake-clock.ts';

const UNKNOWN = { kind: 'zigbee' } as unknown as PowerSourceConfig;

test('the bridge reports an unknown power.source.kind as a BridgeError CONFIG_INVALID naming the field and the choices', () => {
  assert.throws(() => createBridgePowerSource(UNKNOWN), (error: unknown) => {
    assert.ok(error instanceof BridgeError);
    assert.equal(error.code, 'CONFIG_INVALID');
    assert.equal(error.message, 'power.source.kind: "zigbee" is not one of none, bridge, jbd, daly, q1, nut, sysfs');
    return true;
  });
});

test('the agent gets the same error as a LastgaspError CONFIG_INVALID, the bridge error as its cause', () => {
  assert.throws(() => createPowerSource(UNKNOWN), (error: unknown) => {
    assert.ok(error instanceof LastgaspError);
    assert.equal(error.code, 'CONFIG_INVALID');
    assert.equal(error.message, 'power.source.kind: "zigbee" is not one of none, bridge, jbd, daly, q1, nut, sysfs');
    assert.ok(error.cause instanceof BridgeError);
    return true;
  });
});

test('a kind the bridge knows passes through the agent unchanged, on the agent\'s own clock', async () => {
  const clock = new FakeClock();
  const source = createPowerSource({ kind: 'none' }, { clock });
  assert.equal(source.name, 'none');
  assert.deepEqual(source.capabilities, { cutPower: false, holdPower: false, pushEvents: false });
  const statuses: PowerStatus[] = [];
  await source.start({ status: (status) => statuses.push(status), event: () => undefined, link: () => undefined });
  assert.deepEqual(statuses, [{ source: 'none', acPresent: undefined, alarms: [], atMs: clock.nowMs() }]);
});
