// The power telemetry's records (replication/control-records.ts) on a stand-in for the broker links: what a
// dashboard gets is a matter of which records leave, not of a broker's behaviour. The records of one turn go
// as one (a brownout passes three power states at once, and on a slow uplink each record is hold-up time),
// and the last record before the power goes is never followed by a stale one.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setImmediate } from 'node:timers/promises';
import { ControlRecords, type ControlRecordsOptions } from '../../agent/replication/control-records.ts';
import { topics } from '../../agent/replication/index.ts';
import { FakeClock } from '../support/fake-clock.ts';

function records() {
  const sent: Array<{ state: string; qos: number }> = [];
  const link = {
    connected: true,
    publish: async (_topic: string, payload: Uint8Array, options: { qos: number }) => void sent.push({ state: (JSON.parse(new TextDecoder().decode(payload)) as { state: string }).state, qos: options.qos }),
  };
  // Only what the power records use: the links, the topics, the node and the clock.
  const options = { links: [link], topics: topics('lastgasp', 'g'), node: 'gw-a', clock: new FakeClock() } as unknown as ControlRecordsOptions;
  return { control: new ControlRecords(options), sent };
}

test('the power records of one turn go as one, the last; a later turn sends its own', async () => {
  const { control, sent } = records();
  control.power({ state: 'ON_BATTERY' }, true);
  control.power({ state: 'BROWNOUT' }, true);
  control.power({ state: 'FLUSHING' }, true);
  assert.equal(sent.length, 0, 'nothing leaves inside the turn');
  await setImmediate();
  assert.deepEqual(sent, [{ state: 'FLUSHING', qos: 0 }]);
  control.power({ state: 'ONLINE' }, true);
  await setImmediate();
  assert.deepEqual(sent.map((record) => record.state), ['FLUSHING', 'ONLINE']);
});

test('a record the flush\'s pause holds back is not sent, and the last record before the power goes is not followed by a stale one', async () => {
  const { control, sent } = records();
  control.setPaused(true);
  control.power({ state: 'FLUSHING' }, true);
  await setImmediate();
  assert.equal(sent.length, 0, 'silent during the flush');
  control.setPaused(false);
  control.power({ state: 'HANDED_OFF' }, true);
  await control.powerNow({ state: 'POWER_OFF' });
  await setImmediate();
  assert.deepEqual(sent, [{ state: 'POWER_OFF', qos: 1 }]);
});
