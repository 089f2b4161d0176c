// Takeover beyond the brownout handoff, with real processes: the sibling takes over when the primary dies
// without a word (SIGKILL: the broker publishes its Will, the sibling waits takeover.silenceMs), and the old
// primary, restarted, sees the newer epoch, demotes itself, sets aside (quarantines) what it had written
// that never reached the new primary, and catches up with what the new primary wrote since. And a primary
// that boots while no broker answers decides its role alone and keeps accepting writes.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { startMosquitto } from '../support/mosquitto.ts';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { settledState, startAgent, startPair, writeAgentConfig } from '../support/agents.ts';
import { killAll } from '../support/processes.ts';
import { freePort, tempDir, waitFor } from '../support/ports.ts';

after(killAll);

test('silence takeover, then the old primary returns as a standby, quarantines its unreplicated suffix and catches up', async () => {
  const dir = await tempDir('silence');
  const broker = await startMosquitto(dir.path);
  const pair = await startPair(dir.path, 'silence', broker.url, { extra: { replication: { heartbeatMs: 200 }, takeover: { silenceMs: 1500 } } });
  let a = pair.a;
  const b = pair.b;
  try {
    for (let index = 0; index < 100; index++) await a.client.put(`k${index % 10}`, `replicated-${index}`);
    await waitFor('the sibling to hold 100 entries', async () => ((await b.client.status()).watermarks.committed >= 100 ? true : undefined));

    // Acknowledged on gw-a but held back from replication: these are the entries a silent death strands.
    await a.client.setReplicationPaused(true);
    for (let index = 0; index < 20; index++) await a.client.put(`stranded${index}`, 'only on gw-a');
    assert.equal((await a.client.status()).watermarks.committed, 120);
    await a.process.kill('SIGKILL');

    const takeover = await b.waitForEvent('takeover', () => true, 20_000);
    assert.equal(takeover.cause, 'silence');
    assert.equal(takeover.epoch, 2);
    assert.equal(takeover.since, 101);
    for (let index = 0; index < 30; index++) await b.client.put(`after${index}`, 'written by gw-b');

    a = await startAgent('gw-a', a.configFile, a.api);
    const quarantine = await a.waitForEvent('quarantine');
    assert.equal(quarantine.after, 100);
    assert.equal(quarantine.records, 20);
    await a.waitForEvent('role', (line) => line.role === 'standby');
    await waitFor('gw-a to catch up with gw-b', async () => ((await a.client.status()).watermarks.committed >= 130 ? true : undefined), 20_000);
    const [stateA, stateB] = await Promise.all([settledState(a, 130), b.client.list()]);
    assert.equal(stateA.digest, stateB.digest);
    assert.equal(await a.client.get('stranded0'), undefined, 'the quarantined suffix must not be merged into the state');
    const statusA = await a.client.status();
    assert.ok((statusA.log.quarantine as string[]).length >= 1, 'the quarantine file is reported in the status');
    const refused = await a.client.put('x', 'y').catch((error: { code?: string }) => error);
    assert.equal((refused as { code: string }).code, 'NOT_PRIMARY');
  } finally {
    await a.stop();
    await b.stop();
    await broker.stop();
    await dir.remove();
  }
});

test('a primary whose broker is down at boot still accepts writes, and replicates once the broker is up', async () => {
  const dir = await tempDir('no-broker');
  const port = await freePort();
  const url = `mqtt://127.0.0.1:${port}`;
  const base = { group: 'boot', replication: { brokers: [{ url }] }, takeover: { brokerWaitMs: 1000 } };
  const configA = await writeAgentConfig(dir.path, 'gw-a', { ...base, role: 'primary', siblings: ['gw-b'] });
  const a = await startAgent('gw-a', configA.file, configA.api);
  let broker: Awaited<ReturnType<typeof startMosquitto>> | undefined;
  let b: Awaited<ReturnType<typeof startAgent>> | undefined;
  try {
    await a.waitForEvent('role', (line) => line.role === 'primary');
    for (let index = 0; index < 50; index++) await a.client.put(`k${index}`, 'written offline');
    assert.equal((await a.client.status()).watermarks.replicated, 0);
    const remembered = JSON.parse(readFileSync(join(dir.path, 'gw-a', 'leader.json'), 'utf8')) as { node: string; epoch: number; kind: string };
    assert.deepEqual([remembered.kind, remembered.node, remembered.epoch], ['leader', 'gw-a', 1]);

    broker = await startMosquitto(dir.path, { port });
    const configB = await writeAgentConfig(dir.path, 'gw-b', { ...base, role: 'standby', siblings: ['gw-a'] });
    b = await startAgent('gw-b', configB.file, configB.api);
    await b.waitForEvent('role', (line) => line.role === 'standby');
    await waitFor('the sibling to catch up once the broker is up', async () => ((await b!.client.status()).watermarks.committed >= 50 ? true : undefined), 30_000);
    assert.equal((await settledState(b, 50)).digest, (await a.client.list()).digest);
    await waitFor('gw-a to count its writes replicated', async () => ((await a.client.status()).watermarks.replicated >= 50 ? true : undefined), 30_000);
  } finally {
    await a.stop();
    await b?.stop();
    await broker?.stop();
    await dir.remove();
  }
});
