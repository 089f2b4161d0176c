// Freshness of control messages: a node's counters never repeat, across restarts too (the reservation on
// flash); receivers drop replays per sender and channel. On a real mosquitto with signed nodes: a replayed
// heartbeat is not emitted again (it cannot hold off a silence takeover), the Will still arrives after
// heartbeats with higher counters, and a restarted node takes the retained leader record once, then no
// replay of it.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { COUNTER_BLOCK, CounterSource, FreshnessFilter, WireCodec, type LeaderMessage, type Replication, type StateMessage } from '../../agent/replication/index.ts';
import { isLastgaspError } from '../../agent/util/index.ts';
import { groupKeys } from '../support/keys.ts';
import { startMosquitto } from '../support/mosquitto.ts';
import { killAll } from '../support/processes.ts';
import { tempDir, waitFor } from '../support/ports.ts';
import { GROUP, startNode } from './support/nodes.ts';

after(killAll);

const MEMBERS = ['gw-a', 'gw-b'];

test('counters never repeat: across a block boundary, and after a restart that used part of a block', async () => {
  const dir = await tempDir('counters');
  try {
    const file = join(dir.path, 'counter.json');
    const first = new CounterSource(file);
    await first.open();
    const taken: number[] = [];
    for (let index = 0; index < COUNTER_BLOCK + 1000; index++) taken.push(await first.take());
    for (let index = 1; index < taken.length; index++) assert.ok(taken[index]! > taken[index - 1]!, `counter ${index} does not grow`);
    const reserved = (JSON.parse(await readFile(file, 'utf8')) as { reservedTo: number }).reservedTo;
    assert.ok(reserved >= taken.at(-1)!, 'every counter handed out was reserved on flash first');
    // A restart (the old source is simply dropped, as by SIGKILL): the next run starts past the reservation.
    const second = new CounterSource(file);
    await second.open();
    assert.ok((await second.take()) > reserved);
    // A wiped data directory: no reservation, so the wall clock (in microseconds) is the floor.
    const wiped = new CounterSource(join(dir.path, 'wiped.json'), () => 1_795_000_000_000);
    await wiped.open();
    assert.equal(await wiped.take(), 1_795_000_000_000_000);
    await writeFile(file, '{"reservedTo": "soon"}');
    await assert.rejects(new CounterSource(file).open(), (error) => isLastgaspError(error, 'LOG_CORRUPT') && /reservedTo/.test(error.message));
  } finally {
    await dir.remove();
  }
});

test('the filter takes a counter once per sender and channel; older ones are replays, a lower epoch is stale', () => {
  const filter = new FreshnessFilter();
  assert.equal(filter.check('gw-a', 'state', 3, 10), 'fresh', 'the first sighting is taken');
  assert.equal(filter.check('gw-a', 'state', 3, 10), 'duplicate', 'the same message again (another broker)');
  assert.equal(filter.check('gw-a', 'state', 3, 5), 'replayed');
  assert.equal(filter.check('gw-a', 'state', 2, 11), 'stale-epoch');
  assert.equal(filter.check('gw-a', 'state', 4, 12), 'fresh');
  assert.equal(filter.check('gw-a', 'will', 3, 7), 'fresh', 'the Will is its own channel: composed at connect, below later heartbeats');
  assert.equal(filter.check('gw-b', 'state', 1, 1), 'fresh', 'another sender');
  assert.equal(filter.check('gw-a', 'leader', 3, 2), 'fresh', 'another channel');
});

test('on a real broker: a replayed heartbeat is not emitted again, the Will still arrives, a restarted node takes the retained leader record once', async () => {
  const dir = await tempDir('freshness');
  const broker = await startMosquitto(dir.path);
  const keys = groupKeys(dir.path);
  const recorder = await mqtt.connectAsync(broker.url, { clientId: 'recorder', protocolVersion: 5 });
  const recorded: Array<{ topic: string; payload: Uint8Array }> = [];
  recorder.on('message', (topic, payload) => recorded.push({ topic, payload: new Uint8Array(payload) }));
  await recorder.subscribeAsync('lastgasp/#', { qos: 1 });
  const states: StateMessage[] = [];
  const leaders: LeaderMessage[] = [];
  const listen = (replication: Replication) => {
    replication.on('state', (message) => states.push(message));
    replication.on('leader', (message) => leaders.push(message));
  };
  const a = await startNode({ dir: dir.path, name: 'gw-a', role: 'primary', brokers: [broker.url], siblings: ['gw-b'], auth: keys.auth('gw-a', MEMBERS), heartbeatMs: 0 });
  let b = await startNode({ dir: dir.path, name: 'gw-b', role: 'standby', brokers: [broker.url], siblings: ['gw-a'], auth: keys.auth('gw-b', MEMBERS), onCreated: listen });
  try {
    const heartbeat = () => ({ group: GROUP, node: 'gw-a', role: 'primary' as const, state: 'online' as const, epoch: a.log.epoch, committed: 0, atMs: Date.now() });
    for (let index = 0; index < 3; index++) await a.replication.publishState(heartbeat());
    await waitFor('three heartbeats at gw-b', () => (states.length >= 3 ? true : undefined));
    const recordedHeartbeat = recorded.find((message) => message.topic.endsWith('/state/gw-a'))!;
    const replays = 10;
    for (let index = 0; index < replays; index++) await recorder.publishAsync(recordedHeartbeat.topic, Buffer.from(recordedHeartbeat.payload), { qos: 1 });
    // A copy of a message taken moments ago counts as a duplicate (as another broker's copy would), an older one as replayed.
    const dropped = () => (b.rejected().replayed ?? 0) + (b.replication.stats().duplicates as number);
    await waitFor('gw-b to drop the replays', () => (dropped() >= replays ? true : undefined));
    assert.equal(states.length, 3, 'a replayed heartbeat is not a sign of life');

    await a.replication.publishLeader({ group: GROUP, kind: 'leader', epoch: 1, node: 'gw-a', since: 1, atMs: Date.now() });
    await waitFor('the leader record at gw-b', () => (leaders.length >= 1 ? true : undefined));
    // gw-b restarts: the retained leader record is the first it sees of gw-a, and is taken.
    await b.stop();
    leaders.length = 0;
    b = await startNode({ dir: dir.path, name: 'gw-b', role: 'standby', brokers: [broker.url], siblings: ['gw-a'], auth: keys.auth('gw-b', MEMBERS), onCreated: listen });
    await waitFor('the retained leader record after the restart', () => (leaders.length >= 1 ? true : undefined));
    const recordedLeader = recorded.find((message) => message.topic.endsWith('/leader'))!;
    for (let index = 0; index < replays; index++) await recorder.publishAsync(recordedLeader.topic, Buffer.from(recordedLeader.payload), { qos: 1 });
    const droppedAfterRestart = () => (b.rejected().replayed ?? 0) + (b.replication.stats().duplicates as number);
    await waitFor('the leader replays to be dropped', () => (droppedAfterRestart() >= replays ? true : undefined));
    assert.equal(leaders.length, 1, 'the retained record once, no replay of it');

    // The Will was composed when gw-a connected, with a counter below its heartbeats: it still arrives.
    states.length = 0;
    await a.replication.abort();
    const will = await waitFor('gw-a\'s Will at gw-b', () => states.find((message) => message.node === 'gw-a' && message.state === 'offline'));
    const reader = new WireCodec(keys.auth('gw-b', MEMBERS));
    const heartbeatCounters = recorded
      .filter((message) => message.topic.endsWith('/state/gw-a'))
      .map((message) => reader.decode(message.payload))
      .flatMap((decoded) => (decoded.ok && decoded.kind === 'state' && decoded.message.state === 'online' ? [decoded.message.counter] : []));
    assert.ok((will as StateMessage & { counter: number }).counter < Math.max(...heartbeatCounters), 'the Will carries an older counter than the heartbeats and is still taken');
  } finally {
    await recorder.endAsync();
    await a.stop().catch(() => undefined);
    await b.stop();
    await broker.stop();
    await dir.remove();
  }
});
