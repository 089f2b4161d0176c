// The sibling restarted mid-stream, with real agent processes: the standby is SIGKILLed while the primary
// keeps taking writes, then started again on the same data directory. It resumes from its own flash
// position (its first ack asks for everything after it), and ends with every acknowledged entry, in order,
// each applied once, while the primary was never restarted.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { startMosquitto } from '../support/mosquitto.ts';
import { startAgent, writeAgentConfig, type AgentProcess } from '../support/agents.ts';
import { killAll } from '../support/processes.ts';
import { tempDir, waitFor } from '../support/ports.ts';
import { GROUP } from './support/nodes.ts';

after(killAll);

async function allEntries(agent: AgentProcess, upTo: number): Promise<Array<Record<string, unknown>>> {
  const out: Array<Record<string, unknown>> = [];
  for (let from = 1; from <= upTo; ) {
    const page = await agent.client.entries(from, 5000);
    if (page.entries.length === 0) break;
    out.push(...page.entries);
    from = page.next;
  }
  return out;
}

test('the sibling SIGKILLed mid-stream and restarted: it catches up with every acknowledged entry, applied once', async () => {
  const dir = await tempDir('sibling-restart');
  const broker = await startMosquitto(dir.path);
  const replication = { brokers: [{ url: broker.url }], keepaliveS: 2, heartbeatMs: 500 };
  const configA = await writeAgentConfig(dir.path, 'gw-a', { group: GROUP, role: 'primary', siblings: ['gw-b'], replication });
  const configB = await writeAgentConfig(dir.path, 'gw-b', { group: GROUP, role: 'standby', siblings: ['gw-a'], replication });
  const a = await startAgent('gw-a', configA.file, configA.api);
  let b = await startAgent('gw-b', configB.file, configB.api);
  try {
    await a.waitForEvent('role', (line) => line.role === 'primary');
    await b.waitForEvent('role', (line) => line.role === 'standby');
    const acked: number[] = [];
    let stop = false;
    const writers = Array.from({ length: 8 }, async (_, writer) => {
      for (let index = 0; !stop; index++) {
        const { seq } = await a.client.append(new TextEncoder().encode(`w${writer}-${index}`));
        acked.push(seq);
      }
    });
    const written = (count: number) => waitFor(`${count} acknowledged writes`, () => (acked.length >= count ? true : undefined), 30_000);
    await written(1500);
    await b.process.kill('SIGKILL');
    await written(acked.length + 1500);
    b = await startAgent('gw-b', configB.file, configB.api);
    const opened = await b.waitForEvent('log-open');
    await b.waitForEvent('role', (line) => line.role === 'standby');
    await written(acked.length + 1500);
    stop = true;
    await Promise.all(writers);
    const committed = (await a.client.status()).watermarks.committed as number;
    assert.equal(Math.max(...acked), committed);
    await waitFor('the restarted sibling to hold every entry', async () => ((await b.client.status()).watermarks.committed >= committed ? true : undefined), 60_000);
    const [ours, theirs] = await Promise.all([allEntries(a, committed), allEntries(b, committed)]);
    assert.equal(theirs.length, committed);
    assert.deepEqual(theirs.map((entry) => entry.seq), Array.from({ length: committed }, (_, index) => index + 1));
    assert.deepEqual(theirs, ours);
    const receiver = (await b.client.status()).replication.receiver as Record<string, number>;
    assert.equal(receiver.appendFailures, 0);
    assert.equal(receiver.conflicts, 0);
    assert.equal(receiver.entriesApplied, committed - (opened.committed as number), 'each entry missing after the restart was applied exactly once');
  } finally {
    await a.stop();
    await b.stop();
    await broker.stop();
    await dir.remove();
  }
});
