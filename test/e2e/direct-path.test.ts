// The direct path to the sibling (issue 15 item 2) with real processes: a real mosquitto, two agents with a
// BMS simulator on a socat pty, 8 writers on the primary, and each agent's TLS listener on loopback.
// - Every broker down before the brownout (SIGKILL, and SIGSTOP): the direct path carries the tail and the
//   handoff, the handoff is complete, every acknowledged write is on the sibling, and the sibling takes over.
// - The direct path cut (the peers' addresses go through a proxy that is cut) with the broker up: the broker
//   carries it all the same.
// - A forged peer (a TLS client with a key not listed for any peer), a client that does not speak TLS, and
//   garbage frames from the real peer's key: refused or dropped and counted; the agent keeps replicating.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect as tcpConnect } from 'node:net';
import { connect } from 'node:tls';
import { startMosquitto, type Mosquitto } from '../support/mosquitto.ts';
import { createPtyPair, type PtyPair } from '../support/pty.ts';
import { startBmsSim, type BmsSim } from '../support/bms-sim.ts';
import { startAgent, writeAgentConfig, type AgentProcess } from '../support/agents.ts';
import { groupKeys } from '../support/keys.ts';
import { killAll } from '../support/processes.ts';
import { freePort, tempDir, waitFor } from '../support/ports.ts';
import { startTcpProxy, type TcpProxy } from '../support/tcp-proxy.ts';
import { startWriters, type Writers } from '../support/writers.ts';
import { DIRECT_KIND_BATCH, PeerLink, encodeFrame, tlsIdentity } from '../../agent/replication/direct/index.ts';
import { silentLogger } from '../../agent/util/index.ts';

after(killAll);

interface Group {
  readonly a: AgentProcess;
  readonly b: AgentProcess;
  readonly sim: BmsSim;
  readonly portA: number;
  readonly portB: number;
  readonly proxies: TcpProxy[];
  readonly writers: Writers;
  /** What both agents logged about replication, power and takeover: what explains a failure. */
  dump(): void;
  stop(): Promise<void>;
}

/**
 * gw-a (primary, on the simulated BMS) and gw-b (standby) on `broker`, each listening for the other on a
 * loopback port; with `viaProxy` each dials the other through a proxy the test can cut. 8 writers on gw-a.
 */
async function startGroup(dir: string, broker: Mosquitto, label: string, options: { viaProxy?: boolean; always?: boolean } = {}): Promise<Group> {
  const pty: PtyPair = await createPtyPair(dir);
  const sim = await startBmsSim(['--protocol', 'bridge', '--serial', pty.devicePath]);
  const portA = await freePort();
  const portB = await freePort();
  const proxies = options.viaProxy ? [await startTcpProxy({ port: portA }), await startTcpProxy({ port: portB })] : [];
  const addressA = `127.0.0.1:${proxies[0]?.port ?? portA}`;
  const addressB = `127.0.0.1:${proxies[1]?.port ?? portB}`;
  const replication = { brokers: [{ url: broker.url }], heartbeatMs: 1000, keepaliveS: 2, durability: 'replica' };
  const direct = (listen: number, node: string, address: string) => ({ listen: `127.0.0.1:${listen}`, peers: [{ node, address }], always: options.always ?? false });
  const configA = await writeAgentConfig(dir, 'gw-a', {
    group: label,
    role: 'primary',
    siblings: ['gw-b'],
    replication: { ...replication, direct: direct(portA, 'gw-b', addressB) },
    power: { source: { kind: 'bridge', transport: { type: 'serial', path: pty.hostPath } }, onBatteryDebounceMs: 0, flushBudgetMs: 10_000, handoffAckTimeoutMs: 3000, cutDelayMs: 200 },
  });
  const configB = await writeAgentConfig(dir, 'gw-b', { group: label, role: 'standby', siblings: ['gw-a'], replication: { ...replication, direct: direct(portB, 'gw-a', addressA) } });
  const a = await startAgent('gw-a', configA.file, configA.api);
  const b = await startAgent('gw-b', configB.file, configB.api);
  await a.waitForEvent('role', (line) => line.role === 'primary', 60_000);
  await b.waitForEvent('role', (line) => line.role === 'standby', 60_000);
  await a.waitForEvent('power-link', (line) => line.state === 'up');
  const writers = startWriters([a], 8, label);
  return {
    a,
    b,
    sim,
    portA,
    portB,
    proxies,
    writers,
    dump() {
      for (const agent of [a, b]) console.log(`---- ${agent.node}\n${agent.process.output().split('\n').filter((line) => /replication|power|takeover|roles|handoff|flush|direct/.test(line)).slice(-80).join('\n')}`);
    },
    async stop() {
      await writers.stop();
      for (const agent of [a, b]) await agent.stop('SIGKILL');
      for (const proxy of proxies) await proxy.close();
      await sim.stop();
      await pty.close();
    },
  };
}

/** The direct path's part of /v1/status, with the first peer's state. */
function peerStatus(status: Record<string, unknown>): { state: string; batchesSent: number; peers: Array<Record<string, unknown>>; listener: Record<string, unknown> } {
  const direct = (status.replication as Record<string, unknown>).direct as { batchesSent: number; peers: Array<Record<string, unknown>>; listener: Record<string, unknown> };
  return { state: String(direct.peers[0]!.state), ...direct };
}

/** Brownout on gw-a; the handoff, the takeover, and every write gw-a acknowledged on gw-b. */
async function brownoutAndCheck(group: Group, label: string): Promise<{ handoff: Record<string, unknown>; acked: number }> {
  const { a, b, sim, writers } = group;
  sim.send('ac off');
  sim.send('brownout');
  const handoff = await a.waitForEvent('handoff', () => true, 60_000);
  await writers.stop();
  const takeover = await b.waitForEvent('takeover', () => true, 60_000);
  assert.equal(takeover.fromNode, 'gw-a');
  assert.equal(handoff.complete, true, `${label}: the handoff went out incomplete (lastSeq ${handoff.lastSeq}, committed ${handoff.committed})`);
  const acked = writers.acks.filter((ack) => ack.node === 'gw-a');
  assert.ok(acked.length > 0, `${label}: gw-a acknowledged writes`);
  const page = await b.client.entries(1, 100_000);
  const onB = new Map(page.entries.map((entry) => [entry.seq, entry.key]));
  const missing = acked.filter((ack) => onB.get(ack.seq) !== ack.key);
  assert.deepEqual(missing.slice(0, 5).map((ack) => `${ack.seq}:${ack.key}`), [], `${label}: ${missing.length} of ${acked.length} acknowledged writes are not on the sibling`);
  return { handoff, acked: acked.length };
}

for (const signal of ['SIGKILL', 'SIGSTOP'] as const) {
  test(`every broker down (${signal}) before a brownout: the direct path carries the tail and a complete handoff, and the sibling takes over`, { timeout: 180_000 }, async () => {
    const dir = await tempDir(`direct-down-${signal}`);
    const broker = await startMosquitto(dir.path);
    const group = await startGroup(dir.path, broker, `dd${signal.toLowerCase()}`);
    try {
      await waitFor('steady writes', () => (group.writers.acks.length >= 500 ? true : undefined), 60_000);
      await waitFor('the direct path up both ways', async () => ((await Promise.all([group.a, group.b].map(async (agent) => peerStatus(await agent.client.status()).state))).every((state) => state === 'up') ? true : undefined), 30_000);
      if (signal === 'SIGKILL') await broker.stop('SIGKILL');
      else broker.suspend();
      // Writes go on while no broker answers: the tail grows on gw-a's flash until the brownout.
      const before = group.writers.acks.length;
      await waitFor('writes without a broker', () => (group.writers.acks.length >= before + 200 ? true : undefined), 60_000);
      const { handoff } = await brownoutAndCheck(group, `brokers ${signal}`);
      const sent = peerStatus(await group.b.client.status()).listener;
      assert.ok((sent.framesReceived as number) > 0, 'gw-b received frames on its listener');
      assert.ok((handoff.lastSeq as number) > 0);
      // With no broker to take its last state record, gw-a still gets to the end of its brownout.
      await group.a.waitForEvent('power-off', () => true, 30_000);
    } catch (error) {
      group.dump();
      throw error;
    } finally {
      await group.stop();
      await broker.stop('SIGKILL').catch(() => undefined);
      await dir.remove();
    }
  });
}

test('the direct path cut (its proxy reset and closed) with the broker up: the broker carries the tail and the handoff', { timeout: 180_000 }, async () => {
  const dir = await tempDir('direct-cut');
  const broker = await startMosquitto(dir.path);
  const group = await startGroup(dir.path, broker, 'dcut', { viaProxy: true, always: true });
  try {
    await waitFor('steady writes', () => (group.writers.acks.length >= 300 ? true : undefined), 60_000);
    await waitFor('gw-a streaming directly', async () => (peerStatus(await group.a.client.status()).batchesSent > 0 ? true : undefined), 30_000);
    for (const proxy of group.proxies) await proxy.cut();
    await waitFor('gw-a to see its peer gone', async () => (peerStatus(await group.a.client.status()).state !== 'up' ? true : undefined), 30_000);
    await brownoutAndCheck(group, 'direct path cut');
    const peer = peerStatus(await group.a.client.status()).peers[0]!;
    assert.notEqual(peer.state, 'up');
    assert.ok((peer.causes as Array<{ cause: string }>).length > 0, 'the lost connection is recorded with its cause');
  } catch (error) {
    group.dump();
    throw error;
  } finally {
    await group.stop();
    await broker.stop('SIGKILL').catch(() => undefined);
    await dir.remove();
  }
});

test('a forged peer, a client that is not TLS, and garbage frames in the real peer\'s name are refused and counted; replication goes on', { timeout: 180_000 }, async () => {
  const dir = await tempDir('direct-forged');
  const strangers = await tempDir('direct-forged-keys');
  const broker = await startMosquitto(dir.path);
  const group = await startGroup(dir.path, broker, 'dforged');
  let impostor: PeerLink | undefined;
  try {
    await waitFor('steady writes', () => (group.writers.acks.length >= 100 ? true : undefined), 60_000);
    const forgedAuth = groupKeys(strangers.path).auth('gw-a', ['gw-a', 'gw-b']);
    assert.ok(forgedAuth.mode === 'ed25519');
    const forger = connect({ host: '127.0.0.1', port: group.portB, ...tlsIdentity(forgedAuth.keyring), rejectUnauthorized: false, minVersion: 'TLSv1.3' });
    forger.on('error', () => undefined);
    forger.on('secureConnect', () => forger.write(encodeFrame(DIRECT_KIND_BATCH, Uint8Array.of(1, 2, 3))));
    await new Promise((resolve) => forger.once('close', resolve));
    // The start of a TLS record and then nothing: the listener's handshake timeout ends it.
    const plain = tcpConnect(group.portB, '127.0.0.1', () => plain.write(Uint8Array.of(0x16, 0x03, 0x01, 0x00, 0x10, 0x01)));
    plain.resume();
    plain.on('error', () => undefined);
    await new Promise((resolve) => plain.once('close', resolve));
    // gw-a's real key (the test holds the group's key files): authenticated, so what it sends is looked at.
    const realAuth = groupKeys(dir.path).auth('gw-a', ['gw-a', 'gw-b']);
    assert.ok(realAuth.mode === 'ed25519');
    impostor = new PeerLink({ node: 'gw-b', address: `127.0.0.1:${group.portB}`, keyring: realAuth.keyring, identity: tlsIdentity(realAuth.keyring), logger: silentLogger });
    impostor.start();
    await waitFor('the test\'s link up', () => (impostor!.state === 'up' ? true : undefined), 10_000);
    assert.ok(impostor.send(Uint8Array.of(0, 0, 0, 1, 200)));
    assert.ok(impostor.send(encodeFrame(DIRECT_KIND_BATCH, new TextEncoder().encode('not a signed envelope'))));
    assert.ok(impostor.send(Uint8Array.of(0x7f, 0xff, 0xff, 0xff)));
    const status = await waitFor('the counts', async () => {
      const current = await group.b.client.status();
      const listener = peerStatus(current).listener as { refused: Record<string, number>; garbage: Record<string, number> };
      return listener.garbage['too-large'] === 1 && listener.refused['handshake-failed'] === 1 ? { current, listener } : undefined;
    }, 20_000);
    assert.equal(status.listener.refused['unknown-key'], 1, 'the forged key was refused');
    assert.equal(status.listener.garbage['unknown-kind'], 1);
    const rejected = (status.current.replication as { rejected: Record<string, number> }).rejected;
    assert.ok(Object.values(rejected).reduce((sum, count) => sum + count, 0) >= 1, `the junk envelope was rejected by the usual checks (${JSON.stringify(rejected)})`);
    // Still replicating: a write acknowledged now reaches gw-b.
    const seq = (await group.a.client.put('after-garbage', 'yes')).seq;
    await waitFor('gw-b to hold the write made after the garbage', async () => ((await group.b.client.status()).watermarks.committed >= seq ? true : undefined), 30_000);
  } catch (error) {
    group.dump();
    throw error;
  } finally {
    impostor?.stop();
    await group.stop();
    await broker.stop('SIGKILL').catch(() => undefined);
    await dir.remove();
    await strangers.remove();
  }
});
