/**
 * Issue 16's loss, as it was found: a fresh data directory on a file system where a name is durable only
 * once its directory is fsynced (strict POSIX, as f2fs, btrfs or UBIFS may behave), the agent creates the
 * directory itself, acknowledges writes, the power goes, and on restart every acknowledged write must be
 * there. With a bare recursive mkdir nothing ever fsynced the mount's root, so the data directory's name,
 * and with it every acknowledged write, was gone after the cut.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { startAgent } from '../support/agents.ts';
import { startMosquitto } from '../support/mosquitto.ts';
import { tempDir } from '../support/ports.ts';
import { killAll } from '../support/processes.ts';
import { mountPowerLossFs } from '../support/powerloss-fs/index.ts';
import { checkLife, cutPower, powerLossAgentConfig, verifyRaw, type Acked } from './support.ts';

after(killAll);

test('an agent on a fresh data directory keeps every acknowledged write across a power cut (strict POSIX directory fsync)', async () => {
  const dir = await tempDir('powerloss-fresh');
  const broker = await startMosquitto(dir.path);
  const plfs = await mountPowerLossFs('posix');
  try {
    const config = await powerLossAgentConfig(dir.path, plfs, 'gw-a', {
      group: 'fresh',
      role: 'primary',
      siblings: ['gw-b'],
      replication: { brokers: [{ url: broker.url }] },
      takeover: { brokerWaitMs: 1000 },
      // Small segments: the file system is in Python and keeps every byte in memory.
      log: { segmentBytes: 256 * 1024, entryBytesMax: 16 * 1024 },
    });
    let agent = await startAgent('gw-a', config.file, config.api);
    await agent.waitForEvent('role', (line) => line.role === 'primary', 30_000);
    const acked: Acked[] = [];
    for (let i = 0; i < 40; i++) {
      const key = `fresh-${i}`;
      const { seq } = await agent.client.put(key, `value-${i}`);
      acked.push({ seq, key, value: `value-${i}` });
    }
    await cutPower(plfs, agent, undefined, 1);
    verifyRaw(config.dataDir, 'after the cut');
    agent = await startAgent('gw-a', config.file, config.api);
    try {
      await agent.waitForEvent('role', (line) => line.role === 'primary', 30_000);
      const { committed } = await checkLife(agent, acked, 'after the cut');
      assert.ok(committed >= 40);
    } finally {
      await agent.stop('SIGKILL');
    }
  } finally {
    await plfs.close();
    await broker.stop();
    await dir.remove();
  }
});
