// Who may accept writes, attacked with real processes (agent/takeover/LEADERSHIP.md states the rules): a
// handoff whose power cut never comes while silence takeover is on, a retained leader record deleted by
// someone with broker access followed by a restart, a standby paused past the silence, the primary cut off
// from the brokers (and the reverse), and a group of three whose primary dies. Writers keep writing to every
// node throughout; every acknowledgement is recorded and checked: no (epoch, seq) acknowledged for two
// writes, no node acknowledging after the one that replaced it had begun.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import mqtt from 'mqtt';
import { startMosquitto } from '../support/mosquitto.ts';
import { createPtyPair } from '../support/pty.ts';
import { startBmsSim } from '../support/bms-sim.ts';
import { settledState, startAgent, startPair, writeAgentConfig, type AgentProcess } from '../support/agents.ts';
import { killAll } from '../support/processes.ts';
import { tempDir, waitFor } from '../support/ports.ts';
import { startTcpProxy } from '../support/tcp-proxy.ts';
import { ackedAfter, doubleAcks, markerWrite, startWriters } from '../support/writers.ts';

after(killAll);

/** Fast heartbeats so that the tests run in seconds: a 3 s silence gives a 2.2 s lease (0.9 x 3000 - 2 x 250). */
const FAST = { replication: { heartbeatMs: 250 }, takeover: { silenceMs: 3000 } };

async function publishRaw(url: string, topic: string, payload: Uint8Array | string, retain: boolean): Promise<void> {
  const client = await mqtt.connectAsync(url, { reconnectPeriod: 0 });
  await client.publishAsync(topic, typeof payload === 'string' ? payload : Buffer.from(payload), { qos: 1, retain });
  await client.endAsync();
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function role(agent: AgentProcess): Promise<string> {
  return (await agent.client.status()).role as string;
}

test('a handoff whose cut never comes, with silence takeover on: the old primary never leads again, and restarts as a standby', async () => {
  const dir = await tempDir('latched');
  const broker = await startMosquitto(dir.path);
  const pty = await createPtyPair(dir.path);
  const sim = await startBmsSim(['--protocol', 'bridge', '--serial', pty.devicePath]);
  const { a, b } = await startPair(dir.path, 'latched', broker.url, {
    extra: FAST,
    extraA: { power: { source: { kind: 'bridge', transport: { type: 'serial', path: pty.hostPath } }, onBatteryDebounceMs: 0, cutDelayMs: 200, restartAfterPowerOffMs: 12_000 } },
  });
  let restarted: AgentProcess | undefined;
  try {
    await a.waitForEvent('power-link', (line) => line.state === 'up');
    for (let index = 0; index < 50; index++) await a.client.put(`k${index}`, `v${index}`);
    sim.send('ac off');
    sim.send('brownout');
    await b.waitForEvent('takeover');
    // Nothing kills gw-a: it waits for a cut that never comes, for more than twice the silence.
    await sleep(7000);
    assert.equal(a.events().filter((line) => line.event === 'takeover' || (line.event === 'role' && line.role === 'primary' && line.epoch !== 1)).length, 0, 'gw-a led again after handing off');
    await assert.rejects(a.client.put('late', 'x'), (error: { code?: string }) => error.code === 'HANDING_OFF' || error.code === 'NOT_PRIMARY');
    const written = await b.client.put('after', 'handoff');
    assert.equal(await a.process.exited, 75);
    sim.send('ac on'); // mains back for the restart, or it would find the battery still failing
    restarted = await startAgent('gw-a', a.configFile, a.api);
    await restarted.waitForEvent('role', (line) => line.role === 'standby');
    await sleep(3000);
    assert.equal(await role(restarted), 'standby');
    assert.equal(await role(b), 'primary');
    await waitFor('gw-a to follow gw-b', async () => ((await restarted!.client.status()).watermarks.committed >= written.seq ? true : undefined), 20_000);
    assert.equal((await settledState(restarted, written.seq)).digest, (await b.client.list()).digest);
    const receiver = (await restarted.client.status()).replication.receiver as Record<string, number>;
    assert.equal(receiver.epochRegressions ?? 0, 0, 'batches from the new primary were refused');
  } finally {
    await restarted?.stop();
    await a.stop('SIGKILL');
    await b.stop();
    await sim.stop();
    await pty.close();
    await broker.stop();
    await dir.remove();
  }
});

test('a deleted retained leader record and a restart of the configured primary: still one leader, nothing acknowledged twice', async () => {
  const dir = await tempDir('deleted');
  const broker = await startMosquitto(dir.path);
  const pty = await createPtyPair(dir.path);
  const sim = await startBmsSim(['--protocol', 'bridge', '--serial', pty.devicePath]);
  const { a, b } = await startPair(dir.path, 'deleted', broker.url, {
    extraA: { power: { source: { kind: 'bridge', transport: { type: 'serial', path: pty.hostPath } }, onBatteryDebounceMs: 0, cutDelayMs: 200 } },
  });
  let restarted: AgentProcess | undefined;
  try {
    await a.waitForEvent('power-link', (line) => line.state === 'up');
    for (let index = 0; index < 50; index++) await a.client.put(`k${index}`, `v${index}`);
    sim.send('ac off');
    sim.send('brownout');
    await b.waitForEvent('takeover');
    await sim.waitForLine((line) => line.event === 'power-cut', 'the cut');
    await a.stop('SIGKILL');
    sim.send('ac on'); // mains back: the gateway boots again
    const writers = startWriters([b], 4, 'before');
    await sleep(500);
    // Someone with access to the broker (no key needed) deletes the retained leader record.
    await publishRaw(broker.url, 'lastgasp/v1/deleted/leader', '', true);
    restarted = await startAgent('gw-a', a.configFile, a.api);
    await restarted.waitForEvent('role');
    const restartedWriters = startWriters([restarted], 4, 'restarted');
    await sleep(4000);
    await restartedWriters.stop();
    await writers.stop();
    assert.equal(await role(restarted), 'standby');
    assert.equal(await role(b), 'primary');
    assert.equal(restartedWriters.acks.length, 0, `gw-a acknowledged ${restartedWriters.acks.length} writes while gw-b led`);
    assert.ok(writers.acks.length > 0);
    assert.deepEqual(doubleAcks([...writers.acks, ...restartedWriters.acks]), []);
    // gw-b put its record back on the broker when it saw it deleted.
    assert.ok(b.events().some((line) => line.event === 'leader-republish'), 'gw-b did not restore its leader record');
    const last = writers.acks.reduce((max, ack) => Math.max(max, ack.seq), 0);
    await waitFor('gw-a to follow gw-b', async () => ((await restarted!.client.status()).watermarks.committed >= last ? true : undefined), 20_000);
  } finally {
    await restarted?.stop();
    await a.stop('SIGKILL');
    await b.stop();
    await sim.stop();
    await pty.close();
    await broker.stop();
    await dir.remove();
  }
});

test('a standby paused past the silence does not take over from a healthy primary when it runs again', async () => {
  const dir = await tempDir('paused');
  const broker = await startMosquitto(dir.path);
  const { a, b } = await startPair(dir.path, 'paused', broker.url, { extra: FAST });
  try {
    const writers = startWriters([a, b], 4, 'paused');
    await sleep(1000);
    b.process.child.kill('SIGSTOP');
    await sleep(5000);
    b.process.child.kill('SIGCONT');
    await sleep(4000);
    await writers.stop();
    assert.equal(b.events().filter((line) => line.event === 'takeover').length, 0, 'the paused standby took over');
    assert.equal(a.events().filter((line) => line.event === 'quarantine').length, 0, 'the primary set writes aside');
    assert.equal(await role(a), 'primary');
    assert.equal(writers.acks.filter((ack) => ack.node === 'gw-b').length, 0);
    assert.deepEqual(doubleAcks(writers.acks), []);
    const marker = await markerWrite(a);
    assert.equal((await settledState(b, marker.seq)).digest, (await a.client.list()).digest);
  } finally {
    await a.stop();
    await b.stop();
    await broker.stop();
    await dir.remove();
  }
});

test('the primary cut off from the broker stops acknowledging before the standby takes over; healed, it demotes itself', async () => {
  const dir = await tempDir('partition');
  const broker = await startMosquitto(dir.path);
  const proxyA = await startTcpProxy({ port: broker.port });
  const { a, b } = await startPair(dir.path, 'partition', broker.url, { extra: FAST, extraA: { replication: { brokers: [{ url: proxyA.url('mqtt') }], heartbeatMs: 250 } } });
  try {
    const writers = startWriters([a, b], 4, 'partition');
    await sleep(1000);
    proxyA.pause();
    await b.waitForEvent('takeover', () => true, 20_000);
    await sleep(1500);
    await proxyA.restore();
    await a.waitForEvent('role', (line) => line.role === 'standby', 20_000);
    await sleep(1000);
    await writers.stop();
    // Refused for want of a lease (LEASE_LOST), or already standing by (NOT_PRIMARY) when the check came first.
    assert.ok((writers.refusals.LEASE_LOST ?? 0) + (writers.refusals.NOT_PRIMARY ?? 0) > 0, 'gw-a never refused a write');
    assert.ok(a.events().some((line) => line.event === 'lease-lost'), 'gw-a did not report its lease lost');
    assert.equal(ackedAfter(writers.acks, 'gw-a', 'gw-b'), undefined);
    assert.deepEqual(doubleAcks(writers.acks), []);
    // Whatever gw-a acknowledged that never reached gw-b was set aside and reported, not merged.
    const marker = await markerWrite(b);
    assert.equal((await settledState(a, marker.seq)).digest, (await b.client.list()).digest);
  } finally {
    await a.stop();
    await b.stop();
    await proxyA.close();
    await broker.stop();
    await dir.remove();
  }
});

test('a standby cut off from the broker does not take over, and the primary keeps acknowledging', async () => {
  const dir = await tempDir('cut-standby');
  const broker = await startMosquitto(dir.path);
  const proxyB = await startTcpProxy({ port: broker.port });
  const { a, b } = await startPair(dir.path, 'cutstandby', broker.url, { extra: FAST, extraB: { replication: { brokers: [{ url: proxyB.url('mqtt') }], heartbeatMs: 250 } } });
  try {
    const writers = startWriters([a, b], 4, 'cut');
    await sleep(500);
    proxyB.pause();
    await sleep(6000);
    const during = writers.acks.filter((ack) => ack.node === 'gw-a').length;
    await proxyB.restore();
    await sleep(2000);
    await writers.stop();
    assert.equal(b.events().filter((line) => line.event === 'takeover').length, 0, 'the cut-off standby took over');
    assert.equal(writers.acks.filter((ack) => ack.node === 'gw-b').length, 0);
    assert.ok(writers.acks.filter((ack) => ack.node === 'gw-a').length > during, 'gw-a stopped acknowledging');
    const marker = await markerWrite(a);
    assert.equal((await settledState(b, marker.seq)).digest, (await a.client.list()).digest);
  } finally {
    await a.stop();
    await b.stop();
    await proxyB.close();
    await broker.stop();
    await dir.remove();
  }
});

test('three gateways: the primary dies, exactly one standby (the best caught up) takes over and the other follows it', async () => {
  const dir = await tempDir('three');
  const broker = await startMosquitto(dir.path);
  const base = { group: 'three', ...FAST, replication: { brokers: [{ url: broker.url }], heartbeatMs: 250, durability: 'broker' } };
  const nodes = ['gw-a', 'gw-b', 'gw-c'];
  const configs = await Promise.all(nodes.map((node) => writeAgentConfig(dir.path, node, { ...base, role: node === 'gw-a' ? 'primary' : 'standby', siblings: nodes.filter((other) => other !== node) })));
  const agents = await Promise.all(nodes.map((node, index) => startAgent(node, configs[index]!.file, configs[index]!.api)));
  const [a, b, c] = agents as [AgentProcess, AgentProcess, AgentProcess];
  try {
    await a.waitForEvent('role', (line) => line.role === 'primary', 30_000);
    const writers = startWriters(agents, 3, 'three');
    await sleep(1500);
    await a.stop('SIGKILL');
    const winner = await Promise.race([b.waitForEvent('takeover', () => true, 30_000).then(() => b), c.waitForEvent('takeover', () => true, 30_000).then(() => c)]);
    const loser = winner === b ? c : b;
    await sleep(3000);
    await writers.stop();
    assert.equal(loser.events().filter((line) => line.event === 'takeover').length, 0, 'both standbys took over');
    assert.equal(await role(loser), 'standby');
    assert.deepEqual(doubleAcks(writers.acks), []);
    assert.equal(ackedAfter(writers.acks, 'gw-a', winner.node), undefined);
    const marker = await markerWrite(winner);
    assert.equal((await settledState(loser, marker.seq)).digest, (await winner.client.list()).digest);
  } finally {
    for (const agent of agents) await agent.stop();
    await broker.stop();
    await dir.remove();
  }
});

test('three gateways, a brownout: the handoff names the best-caught-up sibling, not the first one listed', async () => {
  const dir = await tempDir('three-handoff');
  const broker = await startMosquitto(dir.path);
  const proxyB = await startTcpProxy({ port: broker.port });
  const pty = await createPtyPair(dir.path);
  const sim = await startBmsSim(['--protocol', 'bridge', '--serial', pty.devicePath]);
  const agents: AgentProcess[] = [];
  try {
    const nodes = ['gw-a', 'gw-b', 'gw-c'];
    for (const node of nodes) {
      const url = node === 'gw-b' ? proxyB.url('mqtt') : broker.url;
      const config = await writeAgentConfig(dir.path, node, {
        group: 'threehandoff',
        role: node === 'gw-a' ? 'primary' : 'standby',
        siblings: nodes.filter((other) => other !== node),
        replication: { brokers: [{ url }], durability: 'broker' },
        ...(node === 'gw-a' ? { power: { source: { kind: 'bridge', transport: { type: 'serial', path: pty.hostPath } }, onBatteryDebounceMs: 0, cutDelayMs: 200 } } : {}),
      });
      agents.push(await startAgent(node, config.file, config.api));
    }
    const [a, b, c] = agents as [AgentProcess, AgentProcess, AgentProcess];
    await a.waitForEvent('power-link', (line) => line.state === 'up');
    for (let index = 0; index < 20; index++) await a.client.put(`early${index}`, 'everyone has these');
    await waitFor('both siblings to hold 20', async () => ((await b.client.status()).watermarks.committed >= 20 && (await c.client.status()).watermarks.committed >= 20 ? true : undefined), 20_000);
    proxyB.pause(); // gw-b (first in gw-a's siblings) falls behind
    for (let index = 0; index < 100; index++) await a.client.put(`late${index}`, 'only gw-c gets these in time');
    await waitFor('gw-c to hold 120', async () => ((await c.client.status()).watermarks.committed >= 120 ? true : undefined), 20_000);
    sim.send('ac off');
    sim.send('brownout');
    const handoff = await a.waitForEvent('handoff', () => true, 30_000);
    assert.equal(handoff.to, 'gw-c');
    await c.waitForEvent('takeover', () => true, 30_000);
    await proxyB.restore();
    const written = await c.client.put('after', 'gw-c leads');
    assert.equal((await settledState(b, written.seq)).digest, (await c.client.list()).digest);
    assert.equal(b.events().filter((line) => line.event === 'takeover').length, 0);
  } finally {
    for (const agent of agents) await agent.stop('SIGKILL');
    await sim.stop();
    await pty.close();
    await proxyB.close();
    await broker.stop();
    await dir.remove();
  }
});
