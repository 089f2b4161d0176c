/**
 * Real agents on the power-loss file system: start one with its data directory on the mount, keep writers
 * busy against it, cut the power, and check what the next life of the agent holds against what was
 * acknowledged. Keys are unique per write (life, writer, counter), so the key-value state must hold exactly
 * one key per entry of the log: that makes "the KV state equals the log's" checkable even after retention
 * removed the log's oldest entries.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startAgent, writeAgentConfig, type AgentProcess } from '../support/agents.ts';
import { waitFor } from '../support/ports.ts';
import type { PowerLossFs } from '../support/powerloss-fs/index.ts';

const BIN = join(fileURLToPath(import.meta.url), '..', '..', '..', 'agent', 'cli', 'bin.mjs');

export interface Acked {
  readonly seq: number;
  readonly key: string;
  readonly value: string;
}

/** Writers that put unique keys as fast as the agent takes them, remembering every acknowledged write. */
export class Writers {
  readonly acked: Acked[] = [];
  private running = true;
  private readonly loops: Promise<void>[] = [];

  constructor(agent: AgentProcess, life: string, count: number, valueBytes: number) {
    const filler = 'v'.repeat(valueBytes);
    for (let w = 0; w < count; w++) {
      this.loops.push(
        (async () => {
          for (let i = 0; this.running; i++) {
            const key = `${life}-w${w}-${i}`;
            const value = `${key}:${filler}`;
            try {
              const { seq } = await agent.client.put(key, value);
              this.acked.push({ seq, key, value });
            } catch {
              // Not started yet, not primary yet, or the disk is gone: nothing was acknowledged; try again.
              await new Promise((resolve) => setTimeout(resolve, 20));
            }
          }
        })(),
      );
    }
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
  }
}

/** Config and start of an agent whose data directory lives on the power-loss mount. */
export async function powerLossAgentConfig(configDir: string, plfs: PowerLossFs, node: string, config: Record<string, unknown>, dataDirName = node): Promise<{ file: string; api: string; dataDir: string }> {
  const dataDir = join(plfs.mountpoint, dataDirName);
  const written = await writeAgentConfig(configDir, node, { dataDir, ...config });
  return { ...written, dataDir };
}

export function startUnready(node: string, config: { file: string; api: string }): Promise<AgentProcess> {
  return startAgent(node, config.file, config.api, { waitReady: false });
}

/**
 * The power cut: the disk dies first (every sync after this fails, so nothing more can be acknowledged),
 * then the process goes, then the durable state is mounted again. With `tornProbability`, writes pending at
 * the cut reach the disk in part (sector by sector).
 */
export async function cutPower(plfs: PowerLossFs, agent: AgentProcess, writers: Writers | undefined, seed: number, tornProbability = 0): Promise<void> {
  await plfs.cut({ seed, tornProbability });
  await agent.stop('SIGKILL');
  await writers?.stop();
  await plfs.remount();
}

/** `lastgasp log verify` on the raw state a cut left, before any agent touches it. */
export function verifyRaw(dataDir: string, context: string): void {
  const result = spawnSync(process.execPath, [BIN, 'log', 'verify', join(dataDir, 'log')], { encoding: 'utf8' });
  // A cut before the log directory was durable leaves nothing to verify: that is only fine if nothing was acknowledged, which the caller checks.
  if (result.status === 2 && /ENOENT|no such file/i.test(result.stderr + result.stdout)) return;
  assert.equal(result.status, 0, `${context}: lastgasp log verify on the raw state:\n${result.stdout}\n${result.stderr}`);
}

function digestOf(pairs: Array<[string, Uint8Array]>): string {
  const hash = createHash('sha256');
  for (const [key, value] of pairs.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    hash.update(`${key.length}:${key}:${value.length}:`);
    hash.update(value);
  }
  return hash.digest('hex');
}

/**
 * On the agent's next life: every acknowledged write is in the log at its seq (so no seq was lost or
 * reused), and the key-value state is the one the log implies.
 */
export async function checkLife(agent: AgentProcess, acked: readonly Acked[], context: string): Promise<{ committed: number; firstSeq: number }> {
  const status = await agent.client.status();
  const committed = status.watermarks.committed as number;
  const firstSeq = (status.log.firstSeq as number | undefined) ?? 1;
  const maxAcked = acked.reduce((max, a) => Math.max(max, a.seq), 0);
  assert.ok(committed >= maxAcked, `${context}: committed ${committed} is behind the highest acknowledged seq ${maxAcked}`);
  const entries = new Map<number, Record<string, unknown>>();
  for (let from = firstSeq; from <= committed; ) {
    const page = await agent.client.entries(from, 1000);
    for (const entry of page.entries) entries.set(entry.seq, entry);
    if (page.entries.length === 0) break;
    from = page.next;
  }
  const state = await waitFor(`${context}: state applied to ${committed}`, async () => {
    const listing = await agent.client.list();
    return listing.appliedSeq >= committed ? listing : undefined;
  }, 30_000);
  let lost = 0;
  for (const write of acked) {
    if (write.seq >= firstSeq) {
      const entry = entries.get(write.seq);
      if (entry?.key !== write.key || Buffer.from(String(entry.value), 'base64').toString('utf8') !== write.value) lost++;
    } else if (Buffer.from((await agent.client.get(write.key)) ?? new Uint8Array(0)).toString('utf8') !== write.value) lost++;
  }
  assert.equal(lost, 0, `${context}: ${lost} of ${acked.length} acknowledged writes are missing or different after the cut`);
  assert.equal(state.count, committed, `${context}: the state holds ${state.count} keys for ${committed} entries, each of which put a new key`);
  if (firstSeq === 1) {
    const pairs: Array<[string, Uint8Array]> = [...entries.values()].map((e) => [String(e.key), new Uint8Array(Buffer.from(String(e.value), 'base64'))]);
    assert.equal(state.digest, digestOf(pairs), `${context}: the state's digest is the one the log implies`);
  }
  return { committed, firstSeq };
}
