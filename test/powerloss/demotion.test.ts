/**
 * Power cuts during a demotion, on the power-loss file system in both models. The primary gw-a (data on
 * the mount) writes entries that never reach its sibling, dies (SIGKILL: its unsynced work stays in the
 * page cache), gw-b (normal disk) takes over on silence and acknowledges more; gw-a restarts, sees the newer
 * epoch and sets its unreplicated suffix aside, and the power goes at a random instant of that restart.
 * After the remount, `log verify` is clean on the raw state and gw-a's next life is a standby that holds
 * every write gw-b acknowledged, the state gw-b holds, and every stranded write of its own in a quarantine
 * file (never merged, never lost). LASTGASP_POWERLOSS_CUTS sets the cuts per model (default 2).
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { decodeOp } from '../../agent/app/index.ts';
import { readQuarantineFile } from '../../agent/log/index.ts';
import { settledState, startAgent, writeAgentConfig } from '../support/agents.ts';
import { startMosquitto } from '../support/mosquitto.ts';
import { tempDir, waitFor } from '../support/ports.ts';
import { killAll } from '../support/processes.ts';
import { mountPowerLossFs } from '../support/powerloss-fs/index.ts';
import { mulberry32, randomInt } from '../log/support/random.ts';
import { cutPower, powerLossAgentConfig, startUnready, verifyRaw } from './support.ts';

after(killAll);

const CUTS = Number(process.env.LASTGASP_POWERLOSS_CUTS ?? 2);
const SEED = Number(process.env.LASTGASP_POWERLOSS_CAMPAIGN_SEED ?? Date.now() % 1_000_000);

async function quarantinedKeys(logDir: string): Promise<Set<string>> {
  const keys = new Set<string>();
  for (const name of readdirSync(logDir).filter((n) => n.startsWith('quarantine-') && n.endsWith('.log'))) {
    for (const entry of await readQuarantineFile(join(logDir, name))) {
      const decoded = decodeOp(entry.payload);
      if (decoded.ok && decoded.op.op === 2) keys.add(decoded.op.key);
    }
  }
  return keys;
}

/** Returns whether the cut came after the cut life had reported its demotion. */
async function demotionCut(model: 'posix' | 'ext4', cut: number, seed: number): Promise<boolean> {
  const random = mulberry32(seed);
  const context = `demotion (${model}) cut ${cut + 1}/${CUTS} (replay: LASTGASP_POWERLOSS_CAMPAIGN_SEED=${SEED})`;
  const dir = await tempDir(`powerloss-demotion-${model}`);
  const broker = await startMosquitto(dir.path);
  const plfs = await mountPowerLossFs(model);
  const base = {
    group: 'demotion',
    replication: { brokers: [{ url: broker.url }], heartbeatMs: 200 },
    takeover: { silenceMs: 1500, brokerWaitMs: 1000 },
    log: { segmentBytes: 64 * 1024, entryBytesMax: 4096 },
  };
  const configA = await powerLossAgentConfig(dir.path, plfs, 'gw-a', { ...base, role: 'primary', siblings: ['gw-b'] });
  const configB = await writeAgentConfig(dir.path, 'gw-b', { ...base, role: 'standby', siblings: ['gw-a'] });
  let a = await startAgent('gw-a', configA.file, configA.api);
  const b = await startAgent('gw-b', configB.file, configB.api);
  try {
    await a.waitForEvent('role', (line) => line.role === 'primary', 30_000);
    await b.waitForEvent('role', (line) => line.role === 'standby', 30_000);
    for (let i = 0; i < 50; i++) await a.client.put(`replicated-${i}`, 'from gw-a');
    await waitFor(`${context}: gw-b to hold 50 entries`, async () => ((await b.client.status()).watermarks.committed >= 50 ? true : undefined), 20_000);
    await a.client.setReplicationPaused(true);
    const stranded: string[] = [];
    for (let i = 0; i < 10 + randomInt(random, 40); i++) {
      await a.client.put(`stranded-${i}`, 'only on gw-a');
      stranded.push(`stranded-${i}`);
    }
    await a.stop('SIGKILL');
    await b.waitForEvent('takeover', () => true, 20_000);
    const ackedByB: Array<{ seq: number; key: string }> = [];
    for (let i = 0; i < 30; i++) ackedByB.push({ ...(await b.client.put(`after-${i}`, 'from gw-b')), key: `after-${i}` });

    a = await startUnready('gw-a', configA);
    // Half the cuts from spawn on (before or during the demotion), half right after it was reported.
    if (random() < 0.5) await new Promise((resolve) => setTimeout(resolve, randomInt(random, 4000)));
    else {
      await a.waitForEvent('quarantine', () => true, 30_000).catch(() => undefined);
      await new Promise((resolve) => setTimeout(resolve, randomInt(random, 300)));
    }
    const demotedBeforeCut = a.events().some((line) => line.event === 'quarantine');
    await cutPower(plfs, a, undefined, seed);
    verifyRaw(configA.dataDir, context);

    a = await startAgent('gw-a', configA.file, configA.api);
    await a.waitForEvent('role', (line) => line.role === 'standby', 30_000);
    const committedB = (await b.client.status()).watermarks.committed as number;
    await waitFor(`${context}: gw-a to catch up with gw-b`, async () => ((await a.client.status()).watermarks.committed >= committedB ? true : undefined), 30_000);
    const [stateA, stateB] = await Promise.all([settledState(a, committedB, 30_000), b.client.list()]);
    assert.equal(stateA.digest, stateB.digest, `${context}: gw-a's state is gw-b's`);
    for (const write of ackedByB) {
      const page = await a.client.entries(write.seq, 1);
      assert.equal(page.entries[0]?.key, write.key, `${context}: gw-b's acknowledged write ${write.key} at seq ${write.seq} on gw-a`);
    }
    const inQuarantine = await quarantinedKeys(join(configA.dataDir, 'log'));
    const missing = stranded.filter((key) => !inQuarantine.has(key));
    assert.deepEqual(missing, [], `${context}: every stranded write of gw-a is in a quarantine file`);
    for (const key of stranded) assert.equal(await a.client.get(key), undefined, `${context}: ${key} is not merged into the state`);
    return demotedBeforeCut;
  } finally {
    await a.stop('SIGKILL');
    await b.stop('SIGKILL');
    await plfs.close();
    await broker.stop();
    await dir.remove();
  }
}

for (const model of ['posix', 'ext4'] as const) {
  test(`power cuts during a demotion (${model} model): the suffix is set aside, never lost, and the sibling's writes are all there`, async () => {
    const seed = SEED + (model === 'ext4' ? 500 : 0);
    let afterDemotion = 0;
    for (let cut = 0; cut < CUTS; cut++) if (await demotionCut(model, cut, seed + cut)) afterDemotion++;
    console.log(`powerloss campaign: demotion (${model}): ${CUTS} cuts, ${afterDemotion} of them after the demotion was reported; seed ${SEED}`);
  });
}
