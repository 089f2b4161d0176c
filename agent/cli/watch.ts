/**
 * `lastgasp watch`: every message on a group's topics, decoded, one line each (or one JSON object each),
 * starting with the retained records that give the group's current state (leader, state and availability
 * of each node, power telemetry). Signatures are verified when the group's keys are given (from --config,
 * --public-key, or --hmac-key-file); without keys messages are decoded and marked unverified.
 *
 * It only subscribes: it never publishes, and it holds no private key (the keyring's own key below is a
 * throwaway that signs nothing).
 */
import { readFile } from 'node:fs/promises';
import mqtt from 'mqtt';
import { loadConfig, readPrivateFile } from '../config/index.ts';
import { WireCodec, generateNodeKeyPair, readPublicKey, type DecodeResult } from '../replication/index.ts';
import { UsageError, parseCommand, type CommandSpec, type Io, type ParsedCommand } from './io.ts';

const WATCH: CommandSpec = {
  help: `Usage: lastgasp watch [--config FILE] [--broker URL] [--group G] [--prefix P]
                     [--public-key NODE=KEY ...] [--hmac-key-file FILE] [--username U --password-file F]
                     [--json] [--count N]

Print every message on the group's MQTT topics as it arrives, decoded: batches, acks, state records,
the leader/handoff record, availability and power telemetry. Retained records come first, so a watch
started late shows the group's current state at once.
  --config FILE         An agent's config: its first broker, topic prefix, group, keys and credentials.
  --broker URL          The broker (mqtt://host:port or mqtts://...); overrides the config's.
  --group G             The group to watch (default: the config's, or every group).
  --prefix P            The topic prefix (default: the config's replication.topicPrefix, or lastgasp).
  --public-key NODE=KEY A member's Ed25519 public key (base64, "lastgasp keys show" prints it); repeat
                        for every member. Messages are then verified, and forged ones shown as REJECTED.
  --hmac-key-file FILE  The group's HMAC key, for groups that use one.
  --username U          MQTT user name; --password-file F its password.
  --json                One JSON object per message.
  --count N             Exit after N messages (default: run until interrupted).`,
  options: {
    config: { type: 'string' },
    broker: { type: 'string' },
    group: { type: 'string' },
    prefix: { type: 'string' },
    'public-key': { type: 'string', multiple: true },
    'hmac-key-file': { type: 'string' },
    username: { type: 'string' },
    'password-file': { type: 'string' },
    json: { type: 'boolean' },
    count: { type: 'string' },
  },
};

interface WatchTarget {
  url: string;
  prefix: string;
  group: string | undefined;
  codec: WireCodec;
  verifying: boolean;
  username?: string;
  password?: string;
}

export async function watchCommand(argv: readonly string[], io: Io): Promise<number> {
  const args = parseCommand(argv, WATCH);
  const countMax = args.integer('count', 0, 1, Number.MAX_SAFE_INTEGER);
  const target = await watchTarget(args);
  const client = await mqtt.connectAsync(target.url, {
    clientId: `lastgasp-watch-${process.pid}-${Date.now().toString(36)}`,
    clean: true,
    reconnectPeriod: 1000,
    ...(target.username ? { username: target.username } : {}),
    ...(target.password ? { password: target.password } : {}),
  });
  const base = `${target.prefix}/v1`;
  let seen = 0;
  let finish: (code: number) => void = () => undefined;
  const done = new Promise<number>((resolve) => {
    finish = (code) => {
      process.off('SIGINT', interrupt);
      process.off('SIGTERM', interrupt);
      void client.endAsync().finally(() => resolve(code));
    };
  });
  const interrupt = () => finish(0);
  process.once('SIGINT', interrupt);
  process.once('SIGTERM', interrupt);
  // Listening before subscribing: the retained records arrive right behind the SUBACK.
  client.on('message', (topic, payload, packet) => {
    const line = describeMessage(target, topic, new Uint8Array(payload.buffer, payload.byteOffset, payload.byteLength), packet.retain);
    if (!line) return;
    io.stdout(args.has('json') ? JSON.stringify(line, jsonBytes) : textLine(line));
    if (countMax > 0 && ++seen >= countMax) finish(0);
  });
  // Power telemetry is per node, outside the group's tree: it is watched for every node.
  await client.subscribeAsync(target.group ? [`${base}/${target.group}/#`, `${base}/+/power`] : [`${base}/#`], { qos: 1 });
  return done;
}

async function watchTarget(args: ParsedCommand): Promise<WatchTarget> {
  const configFile = args.string('config');
  const config = configFile ? await loadConfig(configFile) : undefined;
  const url = args.string('broker') ?? config?.replication.brokers[0]?.url;
  if (!url) throw new UsageError('--broker URL or --config FILE is required');
  const group = args.string('group') ?? config?.group;
  const prefix = args.string('prefix') ?? config?.replication.topicPrefix ?? 'lastgasp';
  const publicKeys: Record<string, string> = { ...config?.replication.signing?.publicKeys };
  for (const pair of args.strings('public-key')) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new UsageError(`--public-key ${pair}: expected NODE=KEY (the base64 key "lastgasp keys show" prints)`);
    publicKeys[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  const hmacFile = args.string('hmac-key-file') ?? config?.replication.hmacKeyFile;
  let codec: WireCodec;
  let verifying = true;
  if (Object.keys(publicKeys).length > 0) {
    const keys = new Map(await Promise.all(Object.entries(publicKeys).map(async ([node, key]) => [node, await readPublicKey(key, `--public-key ${node}`)] as const)));
    codec = new WireCodec({ mode: 'ed25519', keyring: { node: 'watch', privateKey: generateNodeKeyPair().privateKey, publicKeys: keys } });
  } else if (hmacFile) {
    codec = new WireCodec(new Uint8Array(await readPrivateFile(hmacFile, '--hmac-key-file')));
  } else {
    codec = new WireCodec();
    verifying = false;
  }
  const passwordFile = args.string('password-file') ?? config?.replication.passwordFile;
  const password = passwordFile ? (await readFile(passwordFile, 'utf8')).trim() : config?.replication.passwordEnv ? process.env[config.replication.passwordEnv] : undefined;
  const username = args.string('username') ?? config?.replication.username;
  return { url, prefix, group, codec, verifying, ...(username ? { username } : {}), ...(password ? { password } : {}) };
}

export interface WatchLine {
  atMs: number;
  topic: string;
  retained: boolean;
  type: string;
  node?: string;
  /** true: signature checked; false: not checked (no keys); absent on plain topics (availability, power). */
  verified?: boolean;
  rejected?: string;
  message?: unknown;
}

/** One message as a line; undefined for an empty retained payload (a cleared topic). */
export function describeMessage(target: Pick<WatchTarget, 'prefix' | 'codec' | 'verifying'>, topic: string, payload: Uint8Array, retained: boolean): WatchLine | undefined {
  if (payload.length === 0) return undefined;
  const atMs = Date.now();
  const levels = topic.slice(target.prefix.length + '/v1/'.length).split('/');
  if (levels.length === 2 && levels[1] === 'power') return { atMs, topic, retained, type: 'power', node: levels[0], message: parseJson(payload) };
  if (levels.length === 3 && levels[2] === 'availability') return { atMs, topic, retained, type: 'availability', node: levels[1], message: new TextDecoder().decode(payload) };
  const decoded: DecodeResult = target.codec.decode(payload);
  if (!decoded.ok) return { atMs, topic, retained, type: levels[1] ?? 'unknown', rejected: decoded.reason };
  const message = decoded.kind === 'batch' ? summarizeBatch(decoded.message) : decoded.message;
  return { atMs, topic, retained, type: decoded.kind, node: decoded.message.node, verified: target.verifying, message };
}

function summarizeBatch(message: { group: string; node: string; epoch: number; entries: ReadonlyArray<{ seq: number; epoch: number; payload: Uint8Array }> }) {
  const entries = message.entries;
  return { group: message.group, node: message.node, epoch: message.epoch, first: entries[0]?.seq ?? 0, last: entries.at(-1)?.seq ?? 0, entries: entries.length, bytes: entries.reduce((sum, entry) => sum + entry.payload.length, 0) };
}

export function textLine(line: WatchLine): string {
  const time = new Date(line.atMs).toISOString().slice(11, 23);
  const head = `${time} ${line.retained ? 'R' : ' '} ${line.topic}`;
  if (line.rejected) return `${head}  REJECTED ${line.rejected}`;
  const m = (line.message ?? {}) as Record<string, unknown>;
  const check = line.verified === undefined ? '' : line.verified ? '  (verified)' : '  (unverified)';
  switch (line.type) {
    case 'availability':
      return `${head}  ${line.node} ${String(line.message)}`;
    case 'power':
      return `${head}  ${line.node} power ${String(m.state ?? '?')}${m.socPercent !== undefined ? ` ${String(m.socPercent)}%` : ''}${m.acPresent !== undefined ? ` mains ${m.acPresent ? 'on' : 'off'}` : ''}`;
    case 'batch':
      return `${head}  batch ${String(m.node)} epoch ${String(m.epoch)} seq ${String(m.first)}..${String(m.last)} (${String(m.entries)} entries, ${String(m.bytes)} bytes)${check}`;
    case 'ack':
      return `${head}  ack ${String(m.node)} epoch ${String(m.epoch)} seq ${String(m.seq)}${m.want !== undefined ? ` want ${String(m.want)}` : ''}${check}`;
    case 'state':
      return `${head}  state ${String(m.node)} ${String(m.role)} ${String(m.state)} epoch ${String(m.epoch)} committed ${String(m.committed)}${check}`;
    case 'leader':
      return m.kind === 'handoff'
        ? `${head}  handoff ${String(m.node)} -> ${String(m.to ?? '?')} epoch ${String(m.epoch)} lastSeq ${String(m.lastSeq)} committed ${String(m.committed)} ${m.complete ? 'complete' : 'INCOMPLETE'}${m.tailMs !== undefined ? `, the tail goes on for ${String(m.tailMs)} ms` : ''}${check}`
        : `${head}  leader ${String(m.node)} epoch ${String(m.epoch)} since ${String(m.since)}${check}`;
    default:
      return `${head}  ${line.type}${check}`;
  }
}

function parseJson(payload: Uint8Array): unknown {
  try {
    return JSON.parse(new TextDecoder().decode(payload));
  } catch {
    return { undecodable: payload.length };
  }
}

/** Bytes in JSON output as base64. */
function jsonBytes(_key: string, value: unknown): unknown {
  return value instanceof Uint8Array ? Buffer.from(value).toString('base64') : value;
}
