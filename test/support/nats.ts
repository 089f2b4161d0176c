import { execFile } from 'node:child_process';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import mqtt from 'mqtt';
import { BROKER_CONFIG_DIR, renderTemplate } from '../../broker-config/index.ts';
import { freePort, waitFor } from './ports.ts';
import { startProcess, type Managed } from './processes.ts';

const TEMPLATE = join(BROKER_CONFIG_DIR, 'nats', 'node.conf');
const NATS_SERVER = 'nats-server';
const NODE_NAMES = ['n1', 'n2', 'n3'] as const;

/**
 * How long a node or the whole cluster may take to become ready: processes up, routes formed, a JetStream
 * meta leader elected, the MQTT streams created with three replicas. About 3 s here when idle; an election
 * after a kill can take several 4-second rounds (nats-server's internal JetStream API timeout for MQTT).
 */
const NATS_READY_TIMEOUT_MS = 60_000;
/** How long one probe (an HTTP request to the monitor port, or an MQTT CONNECT) may take. */
const PROBE_TIMEOUT_MS = 5_000;
/** Retries of a whole cluster start when one of its twelve picked ports was taken before it was bound. */
const PORT_RACE_ATTEMPTS = 3;
/** The three streams nats-server's MQTT gateway keeps per account (server/mqtt.go). */
export const NATS_MQTT_STREAMS = ['$MQTT_sess', '$MQTT_msgs', '$MQTT_rmsgs'] as const;

export interface NatsNode {
  readonly name: string;
  readonly mqttPort: number;
  readonly clientPort: number;
  readonly clusterPort: number;
  readonly monitorPort: number;
  /** `mqtt://127.0.0.1:<port>`: what a gateway connects to (MQTT 3.1.1 only, see broker-config/README.md). */
  readonly mqttUrl: string;
  /** `nats://127.0.0.1:<port>`: core NATS, for tools. */
  readonly clientUrl: string;
  /** `http://127.0.0.1:<port>`: /healthz, /jsz, /varz. */
  readonly monitorUrl: string;
  /** Its store directory (JetStream data lives in `<dataDir>/jetstream`). */
  readonly dataDir: string;
  /** The current process (a new one after each restart). */
  readonly process: Managed;
  readonly running: boolean;
  /**
   * Send `signal` and wait until the process has exited. Default SIGKILL: a crash, no clean shutdown.
   * For SIGSTOP/SIGCONT use `suspend()`/`resume()`, which do not wait for an exit.
   */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** SIGSTOP: the node stays in the cluster's view but answers nothing until `resume()`. */
  suspend(): void;
  /** SIGCONT after `suspend()`. */
  resume(): void;
  /**
   * Start again with the same ports and store, and wait until it is back: in touch with the JetStream
   * meta leader, accepting MQTT, and its replicas of the three MQTT streams current according to each
   * stream's leader. Not its consumers: on nats-server 2.9.10 the replica of an idle consumer on a
   * restarted node can stay "not current" (and /healthz 503) until that consumer sees traffic, which for
   * another server's $MQTT_rmsgs_* consumer may be never. `health()` shows what /healthz says.
   */
  restart(): Promise<void>;
  /** The node's full `/healthz` verdict (all streams and consumers current) and its reason. */
  health(): Promise<{ ok: boolean; detail: string }>;
}

export interface NatsCluster {
  readonly nodes: readonly NatsNode[];
  /** The MQTT URLs of all nodes, in node order: the agent's list of broker addresses. */
  readonly mqttUrls: readonly string[];
  /** The nats-server version that runs, e.g. `2.9.10`. */
  readonly version: string;
  /** Node `name`; throws if there is none. */
  node(name: string): NatsNode;
  /** The name of the node that leads stream `stream` now, as a running node reports it. */
  streamLeader(stream: string): Promise<string>;
  /** The name of the node that leads the first consumer of `stream` (a persistent QoS 1 subscription on $MQTT_msgs). */
  consumerLeader(stream: string): Promise<string>;
  /** `/jsz` of a running node, with streams and consumers (the raw monitoring JSON). */
  jsz(): Promise<JszReport>;
  /** Stop every node (SIGTERM) and wait for them to exit. */
  stop(): Promise<void>;
}

/** The parts of nats-server's `/jsz?accounts=true&streams=true&consumers=true&config=true` used here. */
export interface JszReport {
  meta_cluster?: { leader?: string; cluster_size?: number };
  account_details?: Array<{ stream_detail?: JszStream[] }>;
}
export interface JszStream {
  name: string;
  config?: { num_replicas?: number };
  state: { messages: number };
  cluster?: { leader?: string; replicas?: Array<{ name: string; current: boolean }> };
  consumer_detail?: Array<{ name: string; num_pending: number; num_ack_pending: number; cluster?: { leader?: string } }>;
}

/**
 * Start a real three-node NATS cluster (JetStream + MQTT gateway) from broker-config/nats/node.conf, each
 * node with its own store under `dir/<name>` and its own loopback ports. Resolves when every node is
 * healthy, a JetStream meta leader is elected, every node accepts an MQTT connection, and the three MQTT
 * streams exist with three replicas. `vars` override template defaults (e.g. `MQTT_ACK_WAIT`).
 */
export async function startNatsCluster(dir: string, options: { vars?: Record<string, string> } = {}): Promise<NatsCluster> {
  const version = await natsServerVersion();
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await startOnce(dir, version, options.vars ?? {});
    } catch (error) {
      if (!(error instanceof PortTakenError) || attempt >= PORT_RACE_ATTEMPTS) throw error;
    }
  }
}

class PortTakenError extends Error {}

interface Ports {
  client: number;
  mqtt: number;
  cluster: number;
  monitor: number;
}

async function startOnce(dir: string, version: string, vars: Record<string, string>): Promise<NatsCluster> {
  const ports: Ports[] = [];
  for (const _name of NODE_NAMES) ports.push({ client: await freePort(), mqtt: await freePort(), cluster: await freePort(), monitor: await freePort() });
  const routes = ports.map((p) => `nats://127.0.0.1:${p.cluster}`).join(', ');
  const template = await readFile(TEMPLATE, 'utf8');
  const nodes: NodeHandle[] = [];
  for (const [i, name] of NODE_NAMES.entries()) {
    const p = ports[i] as Ports;
    const dataDir = join(dir, name);
    // A fresh store: a start retried after a port race must not find the half-formed cluster of the last try.
    await rm(dataDir, { recursive: true, force: true });
    await mkdir(dataDir, { recursive: true });
    const rendered = renderTemplate(template, {
      NAME: name,
      DATA_DIR: dataDir,
      CLIENT_PORT: String(p.client),
      MQTT_PORT: String(p.mqtt),
      CLUSTER_PORT: String(p.cluster),
      MONITOR_PORT: String(p.monitor),
      ROUTES: routes,
      JETSTREAM_SYNC: syncSetting(version),
      ...vars,
    });
    if (!rendered.ok) throw new Error(`nats node.conf: ${rendered.problems.join('; ')}`);
    const configFile = join(dataDir, 'node.conf');
    await writeFile(configFile, rendered.text);
    nodes.push(new NodeHandle(name, p, dataDir, configFile, () => nodes));
  }
  const cluster = makeCluster(nodes, version);
  try {
    for (const node of nodes) node.spawn();
    await waitFor('NATS cluster ready (health, meta leader, MQTT on every node, R3 MQTT streams)', () => clusterReady(nodes), NATS_READY_TIMEOUT_MS, 100);
  } catch (error) {
    await cluster.stop();
    throw error;
  }
  return cluster;
}

/** `sync_interval` exists from nats-server 2.10; on 2.9 the template keeps its empty default. */
function syncSetting(version: string): string {
  const [major = 0, minor = 0] = version.split('.').map(Number);
  return major > 2 || (major === 2 && minor >= 10) ? 'sync_interval: always' : '';
}

async function natsServerVersion(): Promise<string> {
  const { stdout } = await promisify(execFile)(NATS_SERVER, ['--version']);
  const match = /v(\d+\.\d+\.\d+)/.exec(stdout);
  if (!match) throw new Error(`cannot read the nats-server version from "${stdout.trim()}"`);
  return match[1] as string;
}

class NodeHandle implements NatsNode {
  current: Managed | undefined;

  constructor(
    readonly name: string,
    private readonly ports: Ports,
    readonly dataDir: string,
    private readonly configFile: string,
    private readonly peers: () => readonly NodeHandle[],
  ) {}

  get mqttPort() {
    return this.ports.mqtt;
  }
  get clientPort() {
    return this.ports.client;
  }
  get clusterPort() {
    return this.ports.cluster;
  }
  get monitorPort() {
    return this.ports.monitor;
  }
  get mqttUrl() {
    return `mqtt://127.0.0.1:${this.ports.mqtt}`;
  }
  get clientUrl() {
    return `nats://127.0.0.1:${this.ports.client}`;
  }
  get monitorUrl() {
    return `http://127.0.0.1:${this.ports.monitor}`;
  }
  get process(): Managed {
    if (!this.current) throw new Error(`nats node ${this.name} was never started`);
    return this.current;
  }
  get running() {
    return this.current !== undefined && this.current.child.exitCode === null && this.current.child.signalCode === null;
  }

  spawn(): void {
    this.current = startProcess(`nats:${this.name}`, NATS_SERVER, ['-c', this.configFile]);
  }

  /** Throws when the node has exited: PortTakenError if it could not bind, the log otherwise. */
  assertAlive(): void {
    if (this.running) return;
    const output = this.current?.output() ?? '';
    if (/address already in use/i.test(output)) throw new PortTakenError(`nats ${this.name}: a port was taken`);
    throw new Error(`nats node ${this.name} exited:\n${output.slice(-4000)}`);
  }

  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    if (!this.current) return;
    // A suspended node would hold a SIGTERM until it is continued.
    if (this.running) this.current.child.kill('SIGCONT');
    await this.current.kill(signal);
  }

  suspend(): void {
    this.process.child.kill('SIGSTOP');
  }

  resume(): void {
    this.process.child.kill('SIGCONT');
  }

  health(): Promise<{ ok: boolean; detail: string }> {
    return healthz(this);
  }

  async restart(): Promise<void> {
    if (this.running) throw new Error(`nats node ${this.name} is still running; kill() it first`);
    this.spawn();
    let last = 'not probed yet';
    await waitFor(
      `nats node ${this.name} back in the cluster after restart`,
      async () => {
        this.assertAlive();
        const server = await healthz(this, '?js-server-only=true');
        last = server.detail;
        if (!server.ok) return undefined;
        if (!(await acceptsMqtt(this))) {
          last = 'in touch with the meta leader, but the MQTT CONNECT was refused';
          return undefined;
        }
        const lagging = await laggingStreams(this, this.peers());
        last = lagging.length === 0 ? 'ready' : `its replicas of ${lagging.join(', ')} are not current yet`;
        return lagging.length === 0 ? true : undefined;
      },
      NATS_READY_TIMEOUT_MS,
      100,
    ).catch((error: Error) => {
      throw new Error(`${error.message}; last: ${last}`);
    });
  }
}

/**
 * The MQTT streams whose replica on `node` its stream leader does not report as current. A leader is the
 * one node whose view of its followers is authoritative, so each stream is asked of its own leader.
 */
async function laggingStreams(node: NodeHandle, nodes: readonly NodeHandle[]): Promise<string[]> {
  const streamsOf = async (from: NodeHandle) =>
    (await monitorJson<JszReport>(from, '/jsz?accounts=true&streams=true')).account_details?.flatMap((a) => a.stream_detail ?? []) ?? [];
  const lagging: string[] = [];
  const local = await streamsOf(node).catch(() => []);
  for (const name of NATS_MQTT_STREAMS) {
    const leaderName = local.find((s) => s.name === name)?.cluster?.leader;
    const leader = nodes.find((n) => n.name === leaderName && n.running);
    if (!leader) {
      lagging.push(name);
      continue;
    }
    if (leader === node) continue;
    const stream = (await streamsOf(leader).catch(() => [])).find((s) => s.name === name);
    if (!stream?.cluster?.replicas?.some((r) => r.name === node.name && r.current)) lagging.push(name);
  }
  return lagging;
}

function makeCluster(nodes: NodeHandle[], version: string): NatsCluster {
  const anyRunning = () => {
    const node = nodes.find((n) => n.running);
    if (!node) throw new Error('no NATS node is running');
    return node;
  };
  const jsz = () => monitorJson<JszReport>(anyRunning(), '/jsz?accounts=true&streams=true&consumers=true&config=true');
  const findStream = async (stream: string) => {
    const report = await jsz();
    return report.account_details?.flatMap((a) => a.stream_detail ?? []).find((s) => s.name === stream);
  };
  return {
    nodes,
    mqttUrls: nodes.map((n) => n.mqttUrl),
    version,
    node(name) {
      const node = nodes.find((n) => n.name === name);
      if (!node) throw new Error(`no NATS node named ${name} (have ${nodes.map((n) => n.name).join(', ')})`);
      return node;
    },
    streamLeader: (stream) => waitFor(`a leader for stream ${stream}`, async () => (await findStream(stream))?.cluster?.leader, NATS_READY_TIMEOUT_MS, 100),
    consumerLeader: (stream) =>
      waitFor(`a leader for the consumer of ${stream}`, async () => (await findStream(stream))?.consumer_detail?.[0]?.cluster?.leader, NATS_READY_TIMEOUT_MS, 100),
    jsz,
    stop: async () => void (await Promise.all(nodes.map((n) => n.kill('SIGTERM')))),
  };
}

async function clusterReady(nodes: NodeHandle[]): Promise<true | undefined> {
  for (const node of nodes) node.assertAlive();
  for (const node of nodes) if (!(await healthy(node))) return undefined;
  const meta = await monitorJson<JszReport>(nodes[0] as NodeHandle, '/jsz').catch(() => undefined);
  if (!meta?.meta_cluster?.leader) return undefined;
  // The first MQTT connection creates the MQTT streams; every node must accept one before a test relies
  // on failing over to it.
  for (const node of nodes) if (!(await acceptsMqtt(node))) return undefined;
  const report = await monitorJson<JszReport>(nodes[0] as NodeHandle, '/jsz?accounts=true&streams=true&config=true').catch(() => undefined);
  const streams = report?.account_details?.flatMap((a) => a.stream_detail ?? []) ?? [];
  const replicated = NATS_MQTT_STREAMS.every((name) => {
    const stream = streams.find((s) => s.name === name);
    return stream?.config?.num_replicas === 3 && stream.cluster?.leader !== undefined;
  });
  return replicated ? true : undefined;
}

async function healthy(node: NodeHandle): Promise<boolean> {
  return (await healthz(node)).ok;
}

/**
 * `/healthz` of a node: ok, or why not (nats-server 2.9 names the stream or consumer that is not current).
 * `?js-server-only=true` asks only whether the node is in touch with the JetStream meta leader.
 */
async function healthz(node: NodeHandle, query = ''): Promise<{ ok: boolean; detail: string }> {
  try {
    const response = await fetch(`${node.monitorUrl}/healthz${query}`, { signal: AbortSignal.timeout(PROBE_TIMEOUT_MS) });
    return { ok: response.ok, detail: `HTTP ${response.status} ${(await response.text()).trim()}` };
  } catch (error) {
    return { ok: false, detail: String(error) };
  }
}

async function monitorJson<T>(node: NodeHandle, path: string): Promise<T> {
  const response = await fetch(`${node.monitorUrl}${path}`, { signal: AbortSignal.timeout(PROBE_TIMEOUT_MS) });
  if (!response.ok) throw new Error(`nats ${node.name} ${path}: HTTP ${response.status}`);
  return (await response.json()) as T;
}

let probes = 0;

/** One MQTT 3.1.1 CONNECT with a throw-away clean session; true if CONNACK accepted it. */
function acceptsMqtt(node: NodeHandle): Promise<boolean> {
  probes += 1;
  return new Promise((resolve) => {
    const client = mqtt.connect(node.mqttUrl, {
      protocolVersion: 4,
      clean: true,
      clientId: `lastgasp-probe-${process.pid}-${probes}`,
      reconnectPeriod: 0,
      connectTimeout: PROBE_TIMEOUT_MS,
    });
    const done = (ok: boolean) => {
      client.removeAllListeners();
      client.on('error', () => {});
      client.end(true, () => resolve(ok));
    };
    client.once('connect', () => done(true));
    client.once('error', () => done(false));
    client.once('close', () => done(false));
  });
}
