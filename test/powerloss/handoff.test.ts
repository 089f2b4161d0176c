/**
 * Power cuts during a brownout handoff, on the power-loss file system in both models: the primary gw-a
 * (data on the mount, BMS simulator on a real pty) holds an unreplicated tail when mains fails; its disk
 * loses power at a random instant of the flush and handoff. gw-b (normal disk) takes over, by the handoff
 * record or, if the cut came first, on silence. After the remount `log verify` is clean on gw-a's raw state,
 * gw-a restarts as a standby and converges on gw-b's state, and every write gw-a acknowledged is on gw-b at
 * its seq or set aside in one of gw-a's quarantine files: never lost. LASTGASP_POWERLOSS_CUTS sets the cuts
 * per model (default 2).
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { decodeOp } from '../../agent/app/index.ts';
import { readQuarantineFile } from '../../agent/log/index.ts';
import { settledState, startAgent, writeAgentConfig } from '../support/agents.ts';
import { startBmsSim } from '../support/bms-sim.ts';
import { startMosquitto } from '../support/mosquitto.ts';
import { tempDir, waitFor } from '../support/ports.ts';
import { killAll } from '../support/processes.ts';
import { createPtyPair } from '../support/pty.ts';
import { mountPowerLossFs } from '../support/powerloss-fs/index.ts';
import { mulberry32, randomInt } from '../log/support/random.ts';
import { cutPower, powerLossAgentConfig, verifyRaw, type Acked } from './support.ts';

after(killAll);

const CUTS = Number(process.env.LASTGASP_POWERLOSS_CUTS ?? 2);
const SEED = Number(process.env.LASTGASP_POWERLOSS_CAMPAIGN_SEED ?? Date.now() % 1_000_000);

async function quarantined(logDir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const name of readdirSync(logDir).filter((n) => n.startsWith('quarantine-') && n.endsWith('.log'))) {
    for (const entry of await readQuarantineFile(join(logDir, name))) {
      const decoded = decodeOp(entry.payload);
      if (decoded.ok && decoded.op.op === 2) out.set(decoded.op.key, new TextDecoder().decode(decoded.op.value));
    }
  }
  return out;
}

/** Returns whether the handoff record was out before the cut. */
async function handoffCut(model: 'posix' | 'ext4', cut: number, seed: number): Promise<boolean> {
  const random = mulberry32(seed);
  const context = `handoff (${model}) cut ${cut + 1}/${CUTS} (replay: LASTGASP_POWERLOSS_CAMPAIGN_SEED=${SEED})`;
  const dir = await tempDir(`powerloss-handoff-${model}`);
  const broker = await startMosquitto(dir.path);
  const pty = await createPtyPair(dir.path);
  const sim = await startBmsSim(['--protocol', 'bridge', '--serial', pty.devicePath]);
  const plfs = await mountPowerLossFs(model);
  const base = {
    group: 'handoff',
    replication: { brokers: [{ url: broker.url }], heartbeatMs: 200 },
    takeover: { silenceMs: 1500, brokerWaitMs: 1000 },
    log: { segmentBytes: 64 * 1024, entryBytesMax: 4096 },
  };
  const configA = await powerLossAgentConfig(dir.path, plfs, 'gw-a', {
    ...base,
    role: 'primary',
    siblings: ['gw-b'],
    power: {
      source: { kind: 'bridge', transport: { type: 'serial', path: pty.hostPath } },
      onBatteryDebounceMs: 0,
      flushBudgetMs: 30_000,
      handoffAckTimeoutMs: 5000,
      cutDelayMs: 200,
    },
  });
  const configB = await writeAgentConfig(dir.path, 'gw-b', { ...base, role: 'standby', siblings: ['gw-a'] });
  let a = await startAgent('gw-a', configA.file, configA.api);
  const b = await startAgent('gw-b', configB.file, configB.api);
  try {
    await a.waitForEvent('role', (line) => line.role === 'primary', 30_000);
    await b.waitForEvent('role', (line) => line.role === 'standby', 30_000);
    await a.waitForEvent('power-link', (line) => line.state === 'up');
    const acked: Acked[] = [];
    const put = async (key: string) => acked.push({ ...(await a.client.put(key, `value of ${key}`)), key, value: `value of ${key}` });
    for (let i = 0; i < 100; i++) await put(`steady-${i}`);
    await a.client.setReplicationPaused(true);
    for (let i = 0; i < 200 + randomInt(random, 800); i++) await put(`tail-${i}`);

    sim.send('ac off');
    sim.send('brownout');
    await a.waitForEvent('flush-start', () => true, 20_000);
    // The flush of a tail this size takes about 100 ms: half the cuts land at once, the rest within 300 ms.
    if (random() >= 0.5) await new Promise((resolve) => setTimeout(resolve, randomInt(random, 300)));
    const handedOff = a.events().some((line) => line.event === 'handoff');
    await cutPower(plfs, a, undefined, seed);
    verifyRaw(configA.dataDir, context);
    await b.waitForEvent('takeover', () => true, 30_000);

    a = await startAgent('gw-a', configA.file, configA.api);
    await a.waitForEvent('role', (line) => line.role === 'standby', 30_000);
    const committedB = (await b.client.status()).watermarks.committed as number;
    await waitFor(`${context}: gw-a to catch up with gw-b`, async () => ((await a.client.status()).watermarks.committed >= committedB ? true : undefined), 30_000);
    const [stateA, stateB] = await Promise.all([settledState(a, committedB, 30_000), b.client.list()]);
    assert.equal(stateA.digest, stateB.digest, `${context}: gw-a's state is gw-b's`);
    const setAside = await quarantined(join(configA.dataDir, 'log'));
    const onB = new Map<number, unknown>();
    for (let from = 1; from <= committedB; ) {
      const page = await b.client.entries(from, 1000);
      for (const entry of page.entries) onB.set(entry.seq, entry.key);
      if (page.entries.length === 0) break;
      from = page.next;
    }
    const lost = acked.filter((write) => onB.get(write.seq) !== write.key && setAside.get(write.key) !== write.value);
    assert.deepEqual(lost.map((write) => `${write.seq}:${write.key}`), [], `${context}: acknowledged writes neither on gw-b nor set aside`);
    if (handedOff) assert.equal(setAside.size, 0, `${context}: after a complete handoff nothing is left to set aside`);
    return handedOff;
  } finally {
    await a.stop('SIGKILL');
    await b.stop('SIGKILL');
    await sim.stop();
    await pty.close();
    await plfs.close();
    await broker.stop();
    await dir.remove();
  }
}

for (const model of ['posix', 'ext4'] as const) {
  test(`power cuts during a brownout handoff (${model} model): every acknowledged write is on the sibling or set aside`, async () => {
    const seed = SEED + (model === 'ext4' ? 500 : 0);
    let afterHandoff = 0;
    for (let cut = 0; cut < CUTS; cut++) if (await handoffCut(model, cut, seed + cut)) afterHandoff++;
    console.log(`powerloss campaign: handoff (${model}): ${CUTS} cuts, ${afterHandoff} of them after the handoff record; seed ${SEED}`);
  });
}
