import { LastgaspError, splitHostPort } from '../util/index.ts';
import { configSchema, type AgentConfig } from './schema.ts';
import type { Issue } from './schema-dsl.ts';
import { secretIssues } from './secrets.ts';
import { securityChecks } from './security-checks.ts';
import { readConfigSources, type ConfigSources } from './sources.ts';

/** Room a batch needs beyond one entry's payload (envelope, header, one entry's framing). */
const BATCH_ENVELOPE_BYTES = 1024;

/** Validate an already-parsed config object; returns the typed config or the list of problems. */
export function validateConfig(raw: unknown): { ok: true; config: AgentConfig } | { ok: false; issues: Issue[] } {
  const issues: Issue[] = [];
  const config = configSchema.parse(raw, '', issues);
  if (config) crossCheck(config, issues);
  if (config) securityChecks(config, issues);
  return config && issues.length === 0 ? { ok: true, config } : { ok: false, issues };
}

/** Rules that involve more than one key. */
function crossCheck(config: AgentConfig, issues: Issue[]): void {
  const replication = config.replication;
  if (replication.mode === 'independent' && replication.quorum !== undefined && replication.quorum > replication.brokers.length) {
    issues.push({ path: 'replication.quorum', message: `${replication.quorum} is more than the ${replication.brokers.length} broker(s) listed` });
  }
  if (replication.replicaAcks !== undefined && replication.replicaAcks > config.siblings.length) {
    issues.push({ path: 'replication.replicaAcks', message: `${replication.replicaAcks} is more than the ${config.siblings.length} sibling(s) listed` });
  }
  if (replication.durability === 'replica' && config.siblings.length === 0) {
    issues.push({ path: 'siblings', message: 'is empty, but replication.durability is "replica": name the sibling gateway(s), or set durability to "broker"' });
  }
  if (config.siblings.includes(config.node)) {
    issues.push({ path: 'siblings', message: `lists this node ("${config.node}") itself` });
  }
  if (config.log.entryBytesMax + BATCH_ENVELOPE_BYTES > replication.batchBytesMax) {
    issues.push({ path: 'log.entryBytesMax', message: `${config.log.entryBytesMax} does not fit replication.batchBytesMax (${replication.batchBytesMax}) with ${BATCH_ENVELOPE_BYTES} bytes of envelope: such an entry could never be replicated` });
  }
  if (config.log.segmentBytes > config.log.quotaBytes / 2) {
    issues.push({ path: 'log.segmentBytes', message: `${config.log.segmentBytes} is more than half of log.quotaBytes (${config.log.quotaBytes}): retention frees whole segments, so the quota must hold at least two` });
  }
  checkLease(config, issues);
  checkSigning(config, issues);
  checkDirect(config, issues);
  if (replication.passwordFile && replication.passwordEnv) {
    issues.push({ path: 'replication.passwordEnv', message: 'set either passwordFile or passwordEnv, not both' });
  }
  if (config.app.command && config.app.unit) issues.push({ path: 'app.unit', message: 'set either app.command or app.unit, not both' });
}

/**
 * Silence takeover is safe only if a primary's lease surely ends before a standby may act: the standby waits
 * silenceMs after the last heartbeat it heard, the primary writes until leaseMs after sending the last one
 * that came back; a tenth of the silence covers clock-rate error (5 % each way), two heartbeats cover the
 * standby's probe round trip. And a lease must span three heartbeats, so that one lost heartbeat does not
 * stop writes. agent/takeover/LEADERSHIP.md has the reasoning.
 */
function checkLease(config: AgentConfig, issues: Issue[]): void {
  const { silenceMs, leaseMs } = config.takeover;
  const heartbeatMs = config.replication.heartbeatMs;
  if (silenceMs === 0) {
    if (leaseMs !== undefined) issues.push({ path: 'takeover.leaseMs', message: 'is set but takeover.silenceMs is 0: leases only matter with silence takeover (remove leaseMs, or set silenceMs)' });
    return;
  }
  const { mode, quorum, brokers } = config.replication;
  if (mode === 'independent' && quorum !== undefined && quorum * 2 <= brokers.length) {
    issues.push({ path: 'replication.quorum', message: `${quorum} of ${brokers.length} brokers is not a majority: with takeover.silenceMs two nodes could each hold a quorum that the other never hears; use at least ${Math.floor(brokers.length / 2) + 1}` });
  }
  const lease = leaseMs ?? Math.floor(silenceMs * 0.9 - 2 * heartbeatMs);
  if (lease < 3 * heartbeatMs) {
    const silenceMin = Math.ceil((3 * heartbeatMs + 2 * heartbeatMs) / 0.9);
    issues.push({
      path: leaseMs === undefined ? 'takeover.silenceMs' : 'takeover.leaseMs',
      message: `gives a lease of ${lease} ms, shorter than three heartbeats (replication.heartbeatMs ${heartbeatMs}): raise takeover.silenceMs to at least ${silenceMin}, or lower replication.heartbeatMs`,
    });
    return;
  }
  if (silenceMs * 0.9 < lease + 2 * heartbeatMs) {
    issues.push({
      path: 'takeover.silenceMs',
      message: `${silenceMs} is too short for takeover.leaseMs ${lease}: a standby could take over while the primary still holds its lease; use at least ${Math.ceil((lease + 2 * heartbeatMs) / 0.9)} (or a shorter lease)`,
    });
  }
}

/** The direct path authenticates peers by their node keys, and talks only to siblings. */
function checkDirect(config: AgentConfig, issues: Issue[]): void {
  const direct = config.replication.direct;
  if (!direct) return;
  if (!config.replication.signing) issues.push({ path: 'replication.direct', message: 'needs replication.signing: the peers authenticate each other with their Ed25519 node keys (a group HMAC key cannot tell members apart)' });
  if (!validPort(direct.listen)) issues.push({ path: 'replication.direct.listen', message: `"${direct.listen}" is not host:port (e.g. 0.0.0.0:7884, or [::]:7884)` });
  direct.peers.forEach((peer, index) => {
    if (!config.siblings.includes(peer.node)) issues.push({ path: `replication.direct.peers[${index}].node`, message: `"${peer.node}" is not in siblings (${config.siblings.join(', ') || 'none'}); only siblings may use the direct path` });
    if (!validPort(peer.address) || splitHostPort(peer.address).port === 0) issues.push({ path: `replication.direct.peers[${index}].address`, message: `"${peer.address}" is not host:port (e.g. 192.168.1.12:7884)` });
    if (direct.peers.findIndex((other) => other.node === peer.node) !== index) issues.push({ path: `replication.direct.peers[${index}].node`, message: `"${peer.node}" is listed twice` });
  });
}

function validPort(address: string): boolean {
  const { host, port } = splitHostPort(address);
  return host.length > 0 && Number.isInteger(port) && port >= 0 && port <= 65_535;
}

/** Signed by default: a group without keys runs only when its config says so in `insecureUnsigned`. */
function checkSigning(config: AgentConfig, issues: Issue[]): void {
  const { signing, hmacKeyFile, insecureUnsigned } = config.replication;
  if (!signing && !hmacKeyFile && !insecureUnsigned) {
    issues.push({
      path: 'replication.signing',
      message:
        'is not set: without keys anyone who can publish to the brokers can forge leader records, acks and batches. Make a key per node with "lastgasp keys generate --out DIR --node NAME" and list every node\'s public key under replication.signing.publicKeys (or set replication.hmacKeyFile; or, on a closed test bench only, replication.insecureUnsigned: true)',
    });
  }
  if (signing && hmacKeyFile) issues.push({ path: 'replication.hmacKeyFile', message: 'set either replication.signing or replication.hmacKeyFile, not both' });
  if (signing) {
    for (const member of [config.node, ...config.siblings]) {
      if (signing.publicKeys[member] === undefined) issues.push({ path: `replication.signing.publicKeys.${member}`, message: `is missing: every member's key must be listed (${member === config.node ? 'this node\'s own, which the siblings use' : 'a sibling\'s, without which its messages are refused'}); "lastgasp keys show KEYFILE" prints it` });
    }
  }
}

export function formatIssues(file: string, issues: readonly Issue[]): string {
  return issues.map((issue) => `config ${file}: ${issue.path ? `${issue.path}: ` : ''}${issue.message}`).join('\n');
}

/**
 * Read the file, its drop-ins (`include`) and the LASTGASP_* environment (sources.ts), and validate the
 * result; every problem at once in one CONFIG_INVALID error.
 */
export async function loadConfig(file: string, env: NodeJS.ProcessEnv = process.env): Promise<AgentConfig> {
  const sources = await readConfigSources(file, env);
  const result = sources.issues.length === 0 ? validateConfig(sources.raw) : { ok: false as const, issues: sources.issues };
  if (!result.ok) throw new LastgaspError('CONFIG_INVALID', formatIssues(file, result.issues), { file, issues: result.issues });
  return result.config;
}

/**
 * What `config check` reports: the sources read, and every problem of the config and of the secrets it
 * names (files present, private, of the right size; environment variables set), found in one pass.
 */
export async function checkConfig(file: string, env: NodeJS.ProcessEnv = process.env): Promise<{ sources: ConfigSources; config?: AgentConfig; issues: Issue[] }> {
  const sources = await readConfigSources(file, env);
  if (sources.issues.length > 0 && sources.raw === undefined) return { sources, issues: sources.issues };
  const result = validateConfig(sources.raw);
  const issues = [...sources.issues, ...(result.ok ? [] : result.issues)];
  if (!result.ok) return { sources, issues };
  issues.push(...(await secretIssues(result.config, env)));
  return { sources, config: result.config, issues };
}
