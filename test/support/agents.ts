import { readdirSync, readFileSync, statSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ApiClient } from '../../agent/app/index.ts';
import { groupKeys } from './keys.ts';
import { freePort, waitFor } from './ports.ts';
import { startProcess, type Managed } from './processes.ts';

const ROOT = join(fileURLToPath(import.meta.url), '..', '..', '..');
const BIN = join(ROOT, 'agent', 'cli', 'bin.mjs');
const ENTRY = join(ROOT, 'agent', 'cli', 'entry.ts');
const DENO = join(ROOT, 'node_modules', '.bin', 'deno');
/** The script agents run with on Node: bin.mjs, or a bundle (test/packaging/bundle.test.ts runs e2e files on one). */
const AGENT_BIN = process.env.LASTGASP_TEST_AGENT_BIN ?? BIN;
/** Extra node options for every agent process, e.g. LASTGASP_TEST_NODE_ARGS="--cpu-prof --cpu-prof-dir=prof" to profile a benchmark's agents. */
const NODE_ARGS = (process.env.LASTGASP_TEST_NODE_ARGS ?? '').split(' ').filter((arg) => arg !== '');

/**
 * bin.mjs runs dist/lastgasp.mjs when it exists (the test runner sets LASTGASP_BIN=sources, benchmarks do not, so
 * that they measure what a gateway runs). A bundle older than a source file would measure old code: refuse.
 */
function checkBundleFresh(): void {
  if (AGENT_BIN !== BIN || process.env.LASTGASP_BIN === 'sources') return;
  let built: number;
  try {
    built = statSync(join(ROOT, 'dist', 'lastgasp.mjs')).mtimeMs;
  } catch {
    return;
  }
  const stale = readdirSync(join(ROOT, 'agent'), { recursive: true, encoding: 'utf8' }).find((name) => name.endsWith('.ts') && statSync(join(ROOT, 'agent', name)).mtimeMs > built);
  if (stale) throw new Error(`dist/lastgasp.mjs is older than agent/${stale}: run "npm run build" first (or set LASTGASP_BIN=sources to run the sources)`);
}
let bundleChecked = false;

export interface AgentProcess {
  readonly node: string;
  readonly api: string;
  readonly configFile: string;
  readonly process: Managed;
  readonly client: ApiClient;
  /** Parsed JSON log lines with an `event` field, in order. */
  events(): Array<Record<string, unknown>>;
  waitForEvent(event: string, match?: (line: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/**
 * Write a config (JSON) for `node` with test defaults: JSON logs, a free loopback API port, and signed as in
 * production: per-node Ed25519 keys under `<dir>/keys/`, made once per test directory, with the public keys
 * of this node and its siblings. A config that names its own way (replication.signing, hmacKeyFile, or
 * insecureUnsigned: true, the opt-out for a test that needs unsigned agents) is left as it is.
 */
export async function writeAgentConfig(dir: string, node: string, config: Record<string, unknown>): Promise<{ file: string; api: string }> {
  const api = `127.0.0.1:${await freePort()}`;
  const file = join(dir, `${node}.json`);
  const full = { node, dataDir: join(dir, node), api: { listen: api }, logging: { level: 'info', json: true }, ...withSigning(dir, node, config) };
  await writeFile(file, JSON.stringify(full, null, 2));
  return { file, api };
}

function withSigning(dir: string, node: string, config: Record<string, unknown>): Record<string, unknown> {
  const replication = config.replication as Record<string, unknown> | undefined;
  if (!replication || replication.signing !== undefined || replication.hmacKeyFile !== undefined || replication.insecureUnsigned !== undefined) return config;
  const siblings = Array.isArray(config.siblings) ? (config.siblings as string[]) : [];
  return { ...config, replication: { ...replication, signing: groupKeys(dir).signing(node, siblings) } };
}

/** Start `lastgasp run` as a real child process and wait until it says it is ready. */
export async function startAgent(node: string, configFile: string, api: string, options: { waitReady?: boolean; runtime?: 'node' | 'deno'; nofile?: number; env?: NodeJS.ProcessEnv } = {}): Promise<AgentProcess> {
  if (!bundleChecked) {
    checkBundleFresh();
    bundleChecked = true;
  }
  const env = options.env ? { env: { ...globalThis.process.env, ...options.env } } : {};
  const process =
    options.runtime === 'deno'
      ? startProcess(`agent:${node}`, DENO, ['run', '-A', ENTRY, 'run', '--config', configFile], { cwd: ROOT })
      : options.nofile !== undefined
        ? // A descriptor limit as a service manager would set it (LimitNOFILE); exec keeps the agent's pid.
          startProcess(`agent:${node}`, 'sh', ['-c', `ulimit -n ${options.nofile} && exec "$@"`, 'sh', globalThis.process.execPath, ...NODE_ARGS, AGENT_BIN, 'run', '--config', configFile], env)
        : startProcess(`agent:${node}`, globalThis.process.execPath, [...NODE_ARGS, AGENT_BIN, 'run', '--config', configFile], env);
  const client = new ApiClient({ address: api, socketsMax: 64, ...apiCredentials(configFile, api) });
  const events = () => process.jsonLines().filter((line) => line.event !== undefined);
  const agent: AgentProcess = {
    node,
    api,
    configFile,
    process,
    client,
    events,
    waitForEvent: (event, match = () => true, timeoutMs = 20_000) =>
      waitFor(
        `${node}: event ${event}`,
        () => {
          if (process.child.exitCode !== null) throw new Error(`${node} exited (${process.child.exitCode}) before event ${event}:\n${process.output().slice(-3000)}`);
          return events().find((line) => line.event === event && match(line));
        },
        timeoutMs,
      ),
    async stop(signal = 'SIGTERM') {
      client.close();
      await process.kill(signal);
    },
  };
  // Starting takes several fsyncs (the data directory's parents, the lock, the leader record, the token) whose
  // latency on a disk busy with the rest of the suite can reach seconds each, and up to brokerWaitMs for a broker.
  if (options.waitReady !== false) {
    const ready = await agent.waitForEvent('ready', () => true, 60_000);
    // A run meant for the bundle must not pass on the sources.
    if (AGENT_BIN !== BIN && ready.bundled !== true) throw new Error(`${node}: LASTGASP_TEST_AGENT_BIN=${AGENT_BIN} but the agent did not run a bundle`);
  }
  return agent;
}

/** On TCP the API wants the token the agent keeps in api.tokenFile (by default <dataDir>/api.token). */
export function apiCredentials(configFile: string, api: string): { tokenFile?: string } {
  if (api.startsWith('unix:')) return {};
  const config = JSON.parse(readFileSync(configFile, 'utf8')) as { dataDir: string; api?: { tokenFile?: string } };
  return { tokenFile: config.api?.tokenFile ?? join(config.dataDir, 'api.token') };
}

export interface Pair {
  readonly a: AgentProcess;
  readonly b: AgentProcess;
}

/**
 * The usual cast of an end-to-end test: `gw-a` configured as primary and `gw-b` as standby in `group`, on the
 * given brokers, each started as a real process and settled in its role. `extra` is merged into both
 * configs (per-node keys can be given in `extraA` / `extraB`).
 */
export async function startPair(
  dir: string,
  group: string,
  brokerUrl: string,
  options: { extra?: Record<string, unknown>; extraA?: Record<string, unknown>; extraB?: Record<string, unknown>; runtimeA?: 'node' | 'deno' } = {},
): Promise<Pair> {
  const base = { group, ...options.extra, replication: { brokers: [{ url: brokerUrl }], ...(options.extra?.replication as object | undefined) } };
  const configA = await writeAgentConfig(dir, 'gw-a', { ...base, role: 'primary', siblings: ['gw-b'], ...options.extraA });
  const configB = await writeAgentConfig(dir, 'gw-b', { ...base, role: 'standby', siblings: ['gw-a'], ...options.extraB });
  const a = await startAgent('gw-a', configA.file, configA.api, { runtime: options.runtimeA });
  const b = await startAgent('gw-b', configB.file, configB.api);
  await a.waitForEvent('role', (line) => line.role === 'primary', 30_000);
  await b.waitForEvent('role', (line) => line.role === 'standby', 30_000);
  return { a, b };
}

/**
 * The node's key-value listing once its state has applied every entry up to `seq`. A standby applies what
 * it stores asynchronously (the state tails the log), so a digest taken the moment `committed` reaches a
 * seq can still be one entry behind.
 */
export function settledState(agent: AgentProcess, seq: number, timeoutMs = 20_000): Promise<{ keys: string[]; count: number; digest: string; appliedSeq: number }> {
  return waitFor(`${agent.node}: state applied to seq ${seq}`, async () => {
    const listing = await agent.client.list();
    return listing.appliedSeq >= seq ? listing : undefined;
  }, timeoutMs);
}
