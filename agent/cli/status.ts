/**
 * `lastgasp status`: a running agent's role, epoch, power state and watermarks. The agent is found from its
 * config file (its api.listen, and on TCP the token in its api.tokenFile), from --api, or at the default
 * socket.
 */
import { readFile } from 'node:fs/promises';
import { ApiClient, type ApiClientOptions } from '../app/index.ts';
import { sqliteStatusLines } from '../sqlite/index.ts';
import { apiTokenFile, configSchema, loadConfig } from '../config/index.ts';
import { parseCommand, type CommandSpec, type Io, type ParsedCommand } from './io.ts';

const DEFAULT_SOCKET = String(configSchema.children!.api!.children!.listen!.defaultValue);

/** The options that say which agent to talk to (status, quarantine replay, watch). */
export const API_TARGET_OPTIONS = { config: { type: 'string' }, api: { type: 'string' }, 'token-file': { type: 'string' }, ca: { type: 'string' } } as const;

const STATUS: CommandSpec = {
  help: `Usage: lastgasp status [--config FILE | --api ADDR] [--token-file FILE] [--ca FILE] [--json]

Print a running agent's role, epoch, readiness, power state, watermarks and counters.
  --config FILE      The agent's config: its api.listen, and on TCP the token from its api.tokenFile.
  --api ADDR         The agent's address: unix:/path, /path (a socket) or host:port (default ${DEFAULT_SOCKET}).
  --token-file FILE  The bearer token for a TCP address (default: the config's api.tokenFile).
  --ca FILE          The CA certificate (PEM) of an agent that serves HTTPS.
  --json             The raw status object.`,
  options: { ...API_TARGET_OPTIONS, json: { type: 'boolean' } },
};

export async function statusCommand(argv: readonly string[], io: Io): Promise<number> {
  const options = parseCommand(argv, STATUS);
  const target = await apiClientOptions(options);
  const client = new ApiClient({ ...target, timeoutMs: 5000 });
  try {
    const status = await client.status();
    if (options.has('json')) io.stdout(JSON.stringify(status));
    else {
      const marks = status.watermarks as { committed: number; replicated: number; replicaAcked: number };
      const ready = status.ready as { ready: boolean; reason?: string } | undefined;
      io.stdout(`${status.node} (${status.group}): ${status.role}, epoch ${status.epoch}, power ${status.power?.state}${ready ? `, ${ready.ready ? 'ready' : `not ready (${ready.reason})`}` : ''}`);
      io.stdout(`  log: committed ${marks.committed}, replicated ${marks.replicated}, replica-acked ${marks.replicaAcked}`);
      io.stdout(`  state: ${status.state?.kvKeys} keys, applied to seq ${status.state?.kvAppliedSeq}`);
      for (const line of linkLines(status)) io.stdout(line);
      for (const line of appLines(status)) io.stdout(line);
      for (const line of sqliteStatusLines(status)) io.stdout(line);
    }
    return 0;
  } catch (error) {
    io.stderr(`lastgasp status: no agent answered at ${target.address}: ${(error as Error).message}`);
    return 1;
  } finally {
    client.close();
  }
}

/** A replicated watermark frozen this long with a tail is flagged (a sibling acks within a second or so). */
const WATERMARK_STALLED_MS = 5000;

interface LinkStatus {
  broker: string;
  state: string;
  server: string;
  lastAckAgeMs: number;
  oldestUnackedMs: number;
  inflight: number;
  connects: number;
  failovers: number;
  causes?: Array<{ server: string; cause: string }>;
}

/**
 * One line per broker link (state, server, last acknowledgement, publishes in flight, reconnects and the
 * latest cause), a line flagging a stalled watermark, and one for an incomplete handoff this node took over.
 */
export function linkLines(status: Record<string, unknown>): string[] {
  const lines: string[] = [];
  const replication = status.replication as { links?: LinkStatus[] } | undefined;
  for (const link of replication?.links ?? []) {
    const ack = link.lastAckAgeMs < 0 ? 'no connection' : `last ack ${link.lastAckAgeMs} ms ago`;
    const cause = link.causes?.at(-1);
    const flag = link.state === 'stalled' ? `  STALLED: a publish unacknowledged for ${link.oldestUnackedMs} ms` : '';
    lines.push(`  broker ${link.broker}: ${link.state}${link.server ? ` on ${link.server}` : ''}, ${ack}, ${link.inflight} in flight, ${Math.max(0, link.connects - 1)} reconnects, ${link.failovers} failovers${cause ? ` (last: ${cause.server}: ${cause.cause})` : ''}${flag}`);
  }
  lines.push(...peerLines(status));
  const stalledMs = (status.replication as { publisher?: { watermarkStalledMs?: number } } | undefined)?.publisher?.watermarkStalledMs ?? 0;
  if (stalledMs >= WATERMARK_STALLED_MS) lines.push(`  STALLED: the replicated watermark has not moved for ${stalledMs} ms with entries waiting`);
  const takeover = status.lastTakeover as { fromNode: string; complete: boolean; since?: number; handoffLastSeq: number; handoffCommitted?: number } | undefined;
  if (takeover && !takeover.complete && takeover.handoffCommitted !== undefined) {
    // From `since`: what arrived past the record's lastSeq (in the tail behind it) is here.
    lines.push(`  INCOMPLETE HANDOFF from ${takeover.fromNode}: seqs ${takeover.since ?? takeover.handoffLastSeq + 1}..${takeover.handoffCommitted} acknowledged there never arrived here`);
  }
  return lines;
}

/**
 * The application (config app:), the local MQTT listener and the upstream forwarding, one line each when
 * configured; a crash-looping application is flagged.
 */
export function appLines(status: Record<string, any>): string[] {
  const lines: string[] = [];
  const app = status.app as { state: string; pid?: number; crashLoop: boolean; backoffMs: number; starts: number; exits: number; restarts: number; lastExit?: { code: number | null; signal: string | null; ranMs: number } } | undefined;
  if (app) {
    const last = app.lastExit ? `, last exit ${app.lastExit.signal ?? `code ${app.lastExit.code}`} after ${app.lastExit.ranMs} ms` : '';
    const flag = app.crashLoop ? `  CRASH LOOP: restarting in ${app.backoffMs} ms` : '';
    lines.push(`  app: ${app.state}${app.pid !== undefined ? ` (pid ${app.pid})` : ''}, ${app.starts} starts, ${app.exits} exits, ${app.restarts} restarts${last}${flag}`);
  }
  const ingest = status.mqttIngest as { mqttJournaled: number; mqttPassedThrough: number; mqttRefused: number; mqttAuthFailures: number } | undefined;
  if (ingest) lines.push(`  mqtt ingest: ${ingest.mqttJournaled} journaled, ${ingest.mqttPassedThrough} relayed only, ${ingest.mqttRefused} refused, ${ingest.mqttAuthFailures} bad passwords`);
  const forward = status.forward as { running: boolean; connected: boolean; lastAcked: number; marked: number; inFlight: number; forwarded: number; forwardDuplicates: number; forwardExpired: number; forwardReconnects: number; forwardGaps: number } | undefined;
  if (forward) {
    const state = !forward.running ? 'stopped (not primary)' : forward.connected ? 'connected' : 'NOT CONNECTED';
    const gaps = forward.forwardGaps > 0 ? `  GAPS: ${forward.forwardGaps} (entries gone before they were forwarded)` : '';
    lines.push(`  forward upstream: ${state}, PUBACKed to seq ${forward.lastAcked} (recorded ${forward.marked}), ${forward.inFlight} in flight, ${forward.forwarded} forwarded, ${forward.forwardDuplicates} marked duplicate, ${forward.forwardExpired} expired, ${forward.forwardReconnects} reconnects${gaps}`);
  }
  return lines;
}

interface PeerStatus {
  node: string;
  address: string;
  state: string;
  inboundConnected: boolean;
  lastAckAgeMs: number;
  inflight: number;
  reconnects: number;
  causes?: Array<{ cause: string }>;
}

/** One line per peer of the direct path (replication.direct): its state each way, last ack, in flight, reconnects. */
function peerLines(status: Record<string, unknown>): string[] {
  const direct = (status.replication as { direct?: { peers?: PeerStatus[] } } | undefined)?.direct;
  return (direct?.peers ?? []).map((peer) => {
    const ack = peer.lastAckAgeMs < 0 ? 'no ack on this path yet' : `last ack ${peer.lastAckAgeMs} ms ago`;
    const cause = peer.causes?.at(-1);
    return `  peer ${peer.node} (direct, ${peer.address}): ${peer.state}, ${peer.inboundConnected ? 'connected to this node' : 'NOT connected to this node'}, ${ack}, ${peer.inflight} in flight, ${peer.reconnects} reconnects${cause ? ` (last: ${cause.cause})` : ''}`;
  });
}

/** The agent to talk to from --config, --api, --token-file and --ca (also used by `lastgasp quarantine replay`). */
export async function apiClientOptions(options: Pick<ParsedCommand, 'string'>): Promise<ApiClientOptions> {
  const configFile = options.string('config');
  const config = configFile ? await loadConfig(configFile) : undefined;
  const address = options.string('api') ?? config?.api.listen ?? DEFAULT_SOCKET;
  const out: ApiClientOptions = { address };
  const tokenFile = options.string('token-file') ?? (config && !address.startsWith('unix:') && !address.startsWith('/') ? apiTokenFile(config) : undefined);
  if (tokenFile) out.tokenFile = tokenFile;
  const caFile = options.string('ca');
  if (caFile) out.ca = await readFile(caFile, 'utf8');
  return out;
}
