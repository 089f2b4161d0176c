// Takeover beyond the brownout handoff, with real processes: the sibling takes over when the primary dies
// without a word (SIGKILL: the broker publishes its Will, the sibling waits takeover.silenceMs), and the old
// primary, restarted, sees the newer epoch, demotes itself, sets aside (quarantines) what it had written
// that never reached the new primary, and catches up with what the new primary wrote since.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { startMosquitto } from '../support/mosquitto.ts';
import { settledState, startAgent, startPair } from '../support/agents.ts';
import { killAll } from '../support/processes.ts';
import { tempDir, waitFor } from '../support/ports.ts';

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
