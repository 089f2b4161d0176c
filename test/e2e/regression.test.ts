// A loss is never silent: a node whose flash went backwards (a data directory restored from an older copy, or
// lost whole as a power cut on a file system without directory fsync can do) must not lead with seqs it may
// already have acknowledged. The group remembers how far its log reached (the sibling's acks, its own
// retained state record); the node refuses to lead, stays a standby and reports the gap.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { cp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { startMosquitto } from '../support/mosquitto.ts';
import { startAgent, startPair, type AgentProcess } from '../support/agents.ts';
import { killAll } from '../support/processes.ts';
import { tempDir, waitFor } from '../support/ports.ts';

after(killAll);

async function writeAndReplicate(a: AgentProcess, b: AgentProcess, count: number, tag: string): Promise<number> {
  let last = 0;
  for (let index = 0; index < count; index++) last = (await a.client.put(`${tag}${index}`, tag)).seq;
  await waitFor(`the sibling to hold seq ${last}`, async () => ((await b.client.status()).watermarks.committed >= last ? true : undefined), 20_000);
  return last;
}

for (const how of ['restored from an older copy', 'lost whole'] as const) {
  test(`a primary whose data directory was ${how} refuses to lead and reports the gap`, async () => {
    const dir = await tempDir('regressed');
    const broker = await startMosquitto(dir.path);
    const { a, b } = await startPair(dir.path, 'regressed', broker.url);
    const dataDir = join(dir.path, 'gw-a');
    const backup = join(dir.path, 'gw-a.backup');
    let restarted: AgentProcess | undefined;
    let again: AgentProcess | undefined;
    try {
      const before = await writeAndReplicate(a, b, 50, 'early');
      await a.stop('SIGTERM');
      await cp(dataDir, backup, { recursive: true });
      again = await startAgent('gw-a', a.configFile, a.api);
      await again.waitForEvent('role', (line) => line.role === 'primary');
      const reached = await writeAndReplicate(again, b, 50, 'late');
      await waitFor('gw-b\'s ack of the last seq', async () => ((await again!.client.status()).watermarks.replicaAcked >= reached ? true : undefined), 20_000);
      await again.stop('SIGKILL');
      await rm(dataDir, { recursive: true, force: true });
      if (how === 'restored from an older copy') await cp(backup, dataDir, { recursive: true });

      restarted = await startAgent('gw-a', a.configFile, a.api);
      const report = await restarted.waitForEvent('state-regressed');
      const holds = how === 'lost whole' ? 0 : before;
      assert.deepEqual(report.gap, { from: holds + 1, to: reached });
      await restarted.waitForEvent('role', (line) => line.role === 'standby');
      await assert.rejects(restarted.client.put('reused?', 'x'), (error: { code?: string }) => error.code === 'NOT_PRIMARY');
      const status = await restarted.client.status();
      assert.equal(status.role, 'standby');
      assert.deepEqual(status.regressed.gap, { from: holds + 1, to: reached });
      assert.ok(!restarted.events().some((line) => line.event === 'role' && line.role === 'primary'), 'the regressed node led');
    } finally {
      await restarted?.stop();
      await again?.stop();
      await b.stop();
      await broker.stop();
      await dir.remove();
    }
  });
}
