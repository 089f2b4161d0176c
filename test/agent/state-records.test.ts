// The state records a power change publishes (agent/hosts.ts supervisorHost over node-records.ts): one per
// name on the wire. BROWNOUT and FLUSHING are both `flushing` and follow each other at once; a second
// identical record would only take hold-up time from the tail on a slow uplink. Replication is a stand-in
// that keeps what it is asked to publish: which records leave is the agent's decision, not a broker's.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HookEvents, supervisorHost } from '../../agent/hosts.ts';
import { NodeRecords } from '../../agent/node-records.ts';
import type { Brownout, PowerStateName } from '../../agent/power/index.ts';
import type { Replication, StateMessage } from '../../agent/replication/index.ts';
import type { Hooks } from '../../agent/app/hooks.ts';
import { FakeClock } from '../support/fake-clock.ts';

test('each power change publishes its state record once per name: BROWNOUT then FLUSHING is one `flushing`', () => {
  const published: string[] = [];
  const replication = { connected: true, publishState: async (message: StateMessage) => void published.push(message.state), publishPower: () => undefined } as unknown as Replication;
  let power: PowerStateName = 'ONLINE';
  const records = new NodeRecords({ group: 'g', node: 'gw-a', log: { epoch: 1, watermarks: () => ({ committed: 9 }) }, replication: () => replication, role: () => 'primary', powerState: () => power, clock: new FakeClock() });
  const events = new HookEvents({ fire: () => undefined } as unknown as Hooks, () => []);
  // The brownout's steps are not used by a state change.
  const host = supervisorHost({} as Brownout, { events, records, lastPowerStatus: () => undefined, tailEnergy: () => ({ unreplicatedBytes: 0 }) as never });
  for (const state of ['ON_BATTERY', 'BROWNOUT', 'FLUSHING', 'HANDED_OFF', 'POWER_OFF'] as const) {
    power = state;
    host.stateChanged(state, 'test');
  }
  assert.deepEqual(published, ['on-battery', 'flushing', 'handed-off']);
  power = 'ONLINE';
  host.stateChanged('ONLINE', 'mains back');
  assert.deepEqual(published, ['on-battery', 'flushing', 'handed-off', 'online']);
});
