/** The parts of the hold-up benchmark (holdup.ts) that its energy scenario (holdup-energy.ts) shares. */
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Mosquitto } from '../support/mosquitto.ts';
import { createPtyPair } from '../support/pty.ts';
import { startBmsSim } from '../support/bms-sim.ts';
import { startAgent, writeAgentConfig, type AgentProcess } from '../support/agents.ts';
import { waitFor } from '../support/ports.ts';
import type { ShapedLink } from './shaped-link.ts';

/** One way, on the shaped uplink: a typical LTE-M or loaded Wi-Fi hop. */
export const LINK_DELAY_MS = 50;
const WRITERS = 32;
const STARTUP_TIMEOUT_MS = Number(process.env.LASTGASP_HOLDUP_STARTUP_MS ?? 120_000);

import { entryValue, type Data } from './holdup-data.ts';

export { entryValue, type Data };

/** Link shape: a burst of 10 ms at the rate, and a modem buffer of 100 ms (at least a few packets). */
export function shapeFor(rateKbps: number) {
  const bytesPerS = (rateKbps * 1000) / 8;
  return { rateBitsPerS: rateKbps * 1000, delayMs: LINK_DELAY_MS, burstBytes: Math.max(1500, bytesPerS / 100), queueBytesMax: Math.max(8 * 1024, bytesPerS / 10) };
}

/** Write `values` through gw-a's API with concurrent writers; the acknowledged key of each seq. */
export async function writeTail(agent: AgentProcess, values: readonly Uint8Array[], tag: string): Promise<Map<number, string>> {
  const acked = new Map<number, string>();
  let next = 0;
  await Promise.all(
    Array.from({ length: WRITERS }, async () => {
      while (next < values.length) {
        const index = next++;
        const key = `${tag}/${index}`;
        const { seq } = await agent.client.put(key, values[index]!);
        acked.set(seq, key);
      }
    }),
  );
  return acked;
}

/**
 * Write `count` entries and wait until gw-b holds them and nothing is in flight: the link's drain rate is
 * measured, the tail starts empty, and the link idle (a resend that gw-b asked for while the warm-up crawled
 * over a slow link can still be on the wire after the entries arrived, and would take the brownout's budget).
 */
export async function warmUp(a: AgentProcess, data: Data, random: () => number, count = 200): Promise<void> {
  await writeTail(a, Array.from({ length: count }, (_, index) => entryValue(data, random, index)), 'warmup');
  await waitFor('the warm-up to be replicated', async () => {
    const status = await a.client.status();
    const marks = status.watermarks as { committed: number; replicated: number };
    const inflight = (status.replication.publisher as { inflightBatches: number }).inflightBatches;
    return marks.replicated >= marks.committed && inflight === 0 ? true : undefined;
  }, 60_000, 100);
}

/** gw-b's entries from `from` to its end, key by seq (the API's entry listing). */
export async function keysOn(agent: AgentProcess, from: number): Promise<Map<number, string>> {
  const keys = new Map<number, string>();
  for (let seq = from; ; ) {
    const page = await agent.client.entries(seq, 1000);
    for (const entry of page.entries) if (entry.epoch === 1) keys.set(entry.seq, String(entry.key));
    if (page.entries.length === 0 || page.next <= seq) return keys;
    seq = page.next;
  }
}

/** Start a pair with gw-a behind `link`, its power from the simulator; durability replica, so "replicated" means on gw-b. */
export async function startShapedPair(parent: string, group: string, broker: Mosquitto, link: ShapedLink, simArgs: string[], power: Record<string, unknown>, replicationA: Record<string, unknown> = {}) {
  const dir = join(parent, group);
  await mkdir(dir, { recursive: true });
  const pty = await createPtyPair(dir, group);
  const sim = await startBmsSim(['--protocol', 'bridge', '--serial', pty.devicePath, '--low-battery-percent', '0', '--brownout-percent', '0', ...simArgs]);
  const replication = { durability: 'replica' };
  const base = { group, replication: { brokers: [{ url: broker.url }], ...replication } };
  const configA = await writeAgentConfig(dir, 'gw-a', {
    ...base,
    role: 'primary',
    siblings: ['gw-b'],
    replication: { brokers: [{ url: link.url('mqtt') }], ...replication, ...replicationA },
    power: { source: { kind: 'bridge', transport: { type: 'serial', path: pty.hostPath } }, trustDeviceLowBattery: false, socPercentMin: 0, ...power },
  });
  const configB = await writeAgentConfig(dir, 'gw-b', { ...base, role: 'standby', siblings: ['gw-a'] });
  // Started without startPair's 20 s readiness wait: a benchmark runs on a loaded machine too.
  const a = await startAgent('gw-a', configA.file, configA.api, { waitReady: false });
  const b = await startAgent('gw-b', configB.file, configB.api, { waitReady: false });
  await a.waitForEvent('role', (line) => line.role === 'primary', STARTUP_TIMEOUT_MS).catch((error: unknown) => { if (process.env.LASTGASP_HOLDUP_DEBUG) console.error(a.process.output().slice(-4000)); throw error; });
  await b.waitForEvent('role', (line) => line.role === 'standby', STARTUP_TIMEOUT_MS);
  await a.waitForEvent('power-link', (line) => line.state === 'up', STARTUP_TIMEOUT_MS);
  const close = async () => {
    if (process.env.LASTGASP_HOLDUP_DEBUG) for (const line of a.events()) if (/flush|handoff|brownout|power-state/.test(String(line.event))) console.error(group, JSON.stringify(line));
    await a.stop('SIGKILL');
    await b.stop();
    await sim.stop();
    await pty.close();
    // Each case's logs go at once: a full run writes tens of thousands of entries per case, on a shared disk.
    await rm(dir, { recursive: true, force: true });
  };
  return { a, b, sim, close };
}

export function round(value: number): number {
  return Number(value.toFixed(3));
}

