// Security on real brokers: replication over mqtts:// with a CA and client certificates (the certificate's
// CN is the username the ACL of broker-config applies to), a gateway with a certificate from another CA kept
// out, and username/password read by the agent from a file and from the environment on a mosquitto with the
// password file and ACL of broker-config. The group key (HMAC) against forged, unsigned and replayed
// batches is in faults.test.ts.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { writeFile } from 'node:fs/promises';
import mqtt from 'mqtt';
import { BrokerLink } from '../../agent/replication/index.ts';
import { systemClock } from '../../agent/util/index.ts';
import { createTestPki } from '../support/certs.ts';
import { authVars, startMosquitto, tlsVars, writePasswordFile } from '../support/mosquitto.ts';
import { startAgent, writeAgentConfig } from '../support/agents.ts';
import { killAll } from '../support/processes.ts';
import { tempDir, waitFor } from '../support/ports.ts';
import { assertSameLog, captureLogger, GROUP, startNode, waitCommitted, waitReplicated, type LogLine } from './support/nodes.ts';

after(killAll);

test('over mqtts:// with client certificates: replication works under the ACL, and a certificate from another CA is kept out', async () => {
  const dir = await tempDir('sec-tls');
  const pki = await createTestPki(join(dir.path, 'pki'), { clients: ['gw-a', 'gw-b'] });
  const rogue = await createTestPki(join(dir.path, 'rogue'), { clients: ['gw-b'], caName: 'not our CA' });
  const broker = await startMosquitto(dir.path, { config: 'tls.conf', vars: tlsVars(pki) });
  const tlsOf = (name: string) => ({ ca: pki.caFile, cert: pki.client(name).certFile, key: pki.client(name).keyFile });
  const a = await startNode({ dir: dir.path, name: 'gw-a', role: 'primary', brokers: [broker.url], siblings: ['gw-b'], tls: tlsOf('gw-a') });
  const b = await startNode({ dir: dir.path, name: 'gw-b', role: 'standby', brokers: [broker.url], siblings: ['gw-a'], tls: tlsOf('gw-b') });
  const lines: LogLine[] = [];
  const intruder = new BrokerLink({
    urls: [broker.url],
    clientId: 'gw-b',
    protocol: 'auto',
    keepaliveS: 5,
    tls: { ca: pki.caFile, cert: rogue.client('gw-b').certFile, key: rogue.client('gw-b').keyFile },
    onMessage: async () => undefined,
    logger: captureLogger(lines, 'intruder'),
    clock: systemClock,
  });
  try {
    assert.match(broker.url, /^mqtts:/);
    await a.append(300, 'tls', 4);
    await waitCommitted(b, 300);
    await waitReplicated(a, 300);
    await assertSameLog(a, b, 300);
    assert.equal(a.links()[0]!.pubackFailures, 0, 'every topic the agent writes is one the ACL grants it');

    intruder.start();
    await waitFor('the intruder\'s TLS handshake to fail', () => (lines.some((line) => line.msg === 'broker error') ? true : undefined), 20_000);
    assert.equal(intruder.connected, false);
    assert.equal(intruder.stats().connects, 0);
    await a.append(10, 'after');
    await waitCommitted(b, 310);
    await assertSameLog(a, b, 310);
    // The broker makes the certificate's CN the client id: a second session of a node (its availability)
    // would have taken over the replication session, and each taken it back a second later, for ever.
    for (const node of [a, b]) assert.deepEqual([node.links()[0]!.connects, node.links()[0]!.disconnects], [1, 0], `${node.name} kept one replication session`);
  } finally {
    await intruder.stop();
    await a.stop();
    await b.stop();
    await broker.stop();
    await dir.remove();
  }
});

test('agents read their MQTT password from a file and from the environment; the broker\'s password file and ACL let them replicate', async () => {
  const dir = await tempDir('sec-auth');
  const passwords = await writePasswordFile(join(dir.path, 'passwords'), { 'gw-a': 'file-secret-a', 'gw-b': 'env-secret-b', historian: 'secret-h' });
  const broker = await startMosquitto(dir.path, { config: 'auth.conf', vars: authVars(passwords) });
  const passwordFile = join(dir.path, 'gw-a.password');
  await writeFile(passwordFile, 'file-secret-a\n', { mode: 0o600 });
  const passwordEnv = 'LASTGASP_TEST_MQTT_PASSWORD_GW_B';
  process.env[passwordEnv] = 'env-secret-b';
  const replication = { brokers: [{ url: broker.url }], keepaliveS: 2 };
  const configA = await writeAgentConfig(dir.path, 'gw-a', { group: GROUP, role: 'primary', siblings: ['gw-b'], replication: { ...replication, username: 'gw-a', passwordFile } });
  const configB = await writeAgentConfig(dir.path, 'gw-b', { group: GROUP, role: 'standby', siblings: ['gw-a'], replication: { ...replication, username: 'gw-b', passwordEnv } });
  const a = await startAgent('gw-a', configA.file, configA.api);
  const b = await startAgent('gw-b', configB.file, configB.api);
  try {
    await a.waitForEvent('role', (line) => line.role === 'primary');
    await b.waitForEvent('role', (line) => line.role === 'standby');
    for (let index = 0; index < 50; index++) await a.client.put(`k${index}`, `v${index}`);
    const committed = (await a.client.status()).watermarks.committed as number;
    await waitFor('the sibling to hold every entry', async () => ((await b.client.status()).watermarks.committed >= committed ? true : undefined), 30_000);
    const [ours, theirs] = await Promise.all([a.client.entries(1, 1000), b.client.entries(1, 1000)]);
    assert.deepEqual(theirs.entries, ours.entries);
    const links = (await a.client.status()).replication.links as Array<{ pubackFailures: number; protocolVersion: number; connects: number; disconnects: number }>;
    assert.equal(links[0]!.pubackFailures, 0);
    assert.equal(links[0]!.protocolVersion, 5);
    // The broker makes the username the client id: one session per node, never taken over by its own availability.
    assert.deepEqual([links[0]!.connects, links[0]!.disconnects], [1, 0], 'gw-a kept one replication session');
    // And its availability, said on that session, is there for a dashboard (the ACL's read-only historian).
    const historian = await mqtt.connectAsync(broker.url, { clientId: 'historian', username: 'historian', password: 'secret-h', protocolVersion: 5 });
    try {
      let retained: string | undefined;
      historian.on('message', (_topic, payload) => (retained = payload.toString()));
      await historian.subscribeAsync(`lastgasp/v1/${GROUP}/gw-a/availability`, { qos: 1 });
      assert.equal(await waitFor('gw-a\'s retained availability', () => retained, 10_000), 'online');
    } finally {
      await historian.endAsync(true);
    }
    assert.ok(!/file-secret-a|env-secret-b/.test(a.process.output() + b.process.output()), 'no password in the logs');
  } finally {
    delete process.env[passwordEnv];
    await a.stop();
    await b.stop();
    await broker.stop();
    await dir.remove();
  }
});
