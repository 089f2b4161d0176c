/**
 * `npm run bench:footprint`: what the agent costs a gateway, bundled (`npm run build`, dist/lastgasp.mjs)
 * against the TypeScript sources run through tsx (bin.mjs without a bundle), side by side in one run:
 *
 *   - helpMs: wall time of `lastgasp --help` (a process start, the code loaded, one line printed);
 *   - servingMs: from the spawn of `lastgasp run` to its `ready` line (the API listening, the role decided),
 *     against a local mosquitto;
 *   - rssIdleMB: that primary's resident set once it has served and sat idle for IDLE_SETTLE_MS;
 *   - rssPeakMB: the larger resident set of a primary and its sibling (durability replica, in separate
 *     processes) while 256-byte entries are appended through the API by WRITERS concurrent writers until
 *     the sibling holds all of them: the replication benchmark's entry size and durability, with a sibling.
 *
 * The bundle is built into a temporary release layout (dist/, package.json, node_modules). Each measurement
 * runs ROUNDS times, the variants interleaved so both see the same load on a shared machine; the table gives
 * medians. Goals (issue 11): idle RSS < 60 MB, --help < 150 ms, serving < 1 s. The last line is one JSON
 * object: {"bundled":{"rssIdleMB","rssPeakMB","helpMs","servingMs"},"tsx":{...}}. Not part of `npm test`.
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, readFileSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ApiClient } from '../../agent/app/index.ts';
import { apiCredentials, writeAgentConfig } from '../support/agents.ts';
import { startMosquitto } from '../support/mosquitto.ts';
import { tempDir, waitFor } from '../support/ports.ts';
import { killAll, startProcess, type Managed } from '../support/processes.ts';
// @ts-expect-error: a plain JavaScript build script, run by node without a loader
import { buildBundle } from '../../agent/packaging/build.mjs';

const ROOT = join(fileURLToPath(import.meta.url), '..', '..', '..');
const ROUNDS = Number(process.env.LASTGASP_BENCH_ROUNDS ?? 3);
/** Entries appended under load per round: long enough for the heap to reach its working size. */
const LOAD_ENTRIES = Number(process.env.LASTGASP_BENCH_ENTRIES ?? 20_000);
const ENTRY_BYTES = 256;
const WRITERS = 64;
/** An agent that has just served still finishes its start (the first heartbeats, a KV snapshot); then it idles. */
const IDLE_SETTLE_MS = 3000;
const RSS_SAMPLE_MS = 20;
const HELP_RUNS = 5;
const MB = 1024 * 1024;

type Variant = 'bundled' | 'tsx';
interface Figures {
  helpMs: number;
  servingMs: number;
  rssIdleMB: number;
  rssPeakMB: number;
}

/** The command that runs the CLI for a variant: the bundle, or bin.mjs told to take the sources. */
function command(variant: Variant, bundle: string): { args: string[]; env: NodeJS.ProcessEnv } {
  return variant === 'bundled'
    ? { args: [bundle], env: process.env }
    : { args: [join(ROOT, 'agent', 'cli', 'bin.mjs')], env: { ...process.env, LASTGASP_BIN: 'sources' } };
}

function rssMB(pid: number | undefined): number {
  if (pid === undefined) return 0;
  try {
    const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) / 1024 : 0;
  } catch {
    return 0;
  }
}

function helpMs(variant: Variant, bundle: string): number {
  const { args, env } = command(variant, bundle);
  const times: number[] = [];
  for (let run = 0; run < HELP_RUNS; run++) {
    const started = performance.now();
    const result = spawnSync(process.execPath, [...args, '--help'], { env, encoding: 'utf8' });
    times.push(performance.now() - started);
    if (result.status !== 0) throw new Error(`${variant}: --help exited ${result.status}: ${result.stderr}`);
  }
  return median(times);
}

async function startRun(variant: Variant, bundle: string, node: string, file: string): Promise<{ agent: Managed; servingMs: number }> {
  const { args, env } = command(variant, bundle);
  const started = performance.now();
  const agent = startProcess(`${variant}:${node}`, process.execPath, [...args, 'run', '--config', file], { env });
  await waitFor(`${variant}:${node} ready`, () => {
    if (agent.child.exitCode !== null) throw new Error(`${node} exited: ${agent.output().slice(-2000)}`);
    return agent.jsonLines().find((line) => line.event === 'ready');
  }, 60_000, 2);
  return { agent, servingMs: performance.now() - started };
}

/** One round of one variant: start a pair, measure start and idle, load it, measure the peak. */
async function round(variant: Variant, bundle: string, index: number): Promise<Figures> {
  const dir = await tempDir(`footprint-${variant}`);
  const broker = await startMosquitto(dir.path);
  const group = `footprint-${variant}-${index}`;
  const base = { group, replication: { brokers: [{ url: broker.url }], durability: 'replica' }, logging: { level: 'info', json: true } };
  const configA = await writeAgentConfig(dir.path, 'gw-a', { ...base, role: 'primary', siblings: ['gw-b'] });
  const configB = await writeAgentConfig(dir.path, 'gw-b', { ...base, role: 'standby', siblings: ['gw-a'] });
  const agents: Managed[] = [];
  try {
    const a = await startRun(variant, bundle, 'gw-a', configA.file);
    agents.push(a.agent);
    await new Promise((resolve) => setTimeout(resolve, IDLE_SETTLE_MS));
    const rssIdleMB = rssMB(a.agent.child.pid);
    const b = await startRun(variant, bundle, 'gw-b', configB.file);
    agents.push(b.agent);
    const client = new ApiClient({ address: configA.api, socketsMax: WRITERS, ...apiCredentials(configA.file, configA.api) });
    await waitFor('gw-a accepts writes', async () => ((await client.ready()).ready ? true : undefined), 30_000, 50);
    let rssPeakMB = 0;
    const sampler = setInterval(() => (rssPeakMB = Math.max(rssPeakMB, ...agents.map((agent) => rssMB(agent.child.pid)))), RSS_SAMPLE_MS);
    try {
      let next = 0;
      const payload = new Uint8Array(ENTRY_BYTES).fill(0x61);
      await Promise.all(Array.from({ length: WRITERS }, async () => {
        while (next++ < LOAD_ENTRIES) await client.append(payload);
      }));
      await waitFor('the sibling holds every entry', async () => {
        const marks = (await client.status()).watermarks as { committed: number; replicated: number };
        return marks.replicated >= marks.committed ? true : undefined;
      }, 120_000, 50);
    } finally {
      clearInterval(sampler);
      client.close();
    }
    return { helpMs: helpMs(variant, bundle), servingMs: a.servingMs, rssIdleMB, rssPeakMB };
  } finally {
    for (const agent of agents) await agent.kill('SIGTERM');
    await broker.stop();
    await dir.remove();
  }
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((x, y) => x - y);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

async function main(): Promise<void> {
  const release = await tempDir('footprint-release');
  try {
    const bundle = (await buildBundle(join(release.path, 'dist'))) as string;
    copyFileSync(join(ROOT, 'package.json'), join(release.path, 'package.json'));
    symlinkSync(join(ROOT, 'node_modules'), join(release.path, 'node_modules'));
    const samples: Record<Variant, Figures[]> = { bundled: [], tsx: [] };
    for (let index = 0; index < ROUNDS; index++) {
      for (const variant of ['bundled', 'tsx'] as const) samples[variant].push(await round(variant, bundle, index));
    }
    const result = Object.fromEntries(
      (['bundled', 'tsx'] as const).map((variant) => {
        const of = (key: keyof Figures) => Math.round(median(samples[variant].map((figures) => figures[key])) * 10) / 10;
        return [variant, { rssIdleMB: of('rssIdleMB'), rssPeakMB: of('rssPeakMB'), helpMs: of('helpMs'), servingMs: of('servingMs') }];
      }),
    ) as Record<Variant, Figures>;
    const row = (label: string, key: keyof Figures, goal: string) =>
      `${label.padEnd(22)}${String(result.bundled[key]).padStart(10)}${String(result.tsx[key]).padStart(10)}${(result.tsx[key] / result.bundled[key]).toFixed(2).padStart(10)}   ${goal}`;
    console.log(`lastgasp footprint: medians of ${ROUNDS} rounds, ${LOAD_ENTRIES} entries of ${ENTRY_BYTES} B under load, ${WRITERS} writers, durability replica`);
    console.log(`${''.padEnd(22)}${'bundled'.padStart(10)}${'tsx'.padStart(10)}${'tsx/bund'.padStart(10)}   goal (bundled)`);
    console.log(row('idle RSS (MB)', 'rssIdleMB', '< 60'));
    console.log(row('peak RSS, load (MB)', 'rssPeakMB', ''));
    console.log(row('--help (ms)', 'helpMs', '< 150'));
    console.log(row('start to serving (ms)', 'servingMs', '< 1000'));
    console.log(JSON.stringify(result));
  } finally {
    await killAll();
    await release.remove();
  }
}

await main();
