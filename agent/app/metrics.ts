/**
 * `GET /metrics`: the agent's status in the Prometheus text exposition format (version 0.0.4), for the
 * scrapers that gateway fleets already run. Nothing is counted twice: every sample is read from the same
 * status object that `GET /v1/status` returns, so the two never disagree, and a counter added to a
 * subsystem's status appears here without an edit. Three histograms (append latency, log batch size,
 * brownout flush time) are kept here, observed by the agent.
 *
 * Names follow the Prometheus conventions (https://prometheus.io/docs/practices/naming/): a `lastgasp_`
 * prefix, the subsystem, snake_case, the base unit last (`_bytes`, `_seconds`), and `_total` on counters.
 * Status keys in milliseconds are exported in seconds.
 */
import { createServer, type Server } from 'node:http';
import { splitHostPort, type Logger } from '../util/index.ts';

/** The content type Prometheus scrapers ask for (text format 0.0.4). */
export const METRICS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

/** Status keys that are levels, not running totals (they can go down): exported as gauges. */
const GAUGE_KEYS = new Set([
  'spares', 'inflight', 'waiting', 'receiveMaximum', 'windowMax', 'inflightBatches', 'nextSeq', 'brokerAcked', 'replicaAcked',
  'apiConnectionsOpen', 'apiConnectionsMax', 'kvKeys', 'kvAppliedSeq', 'kvSnapshotSeq', 'lastAckAgeMs', 'oldestUnackedMs',
  'drainBytesPerS', 'linkBytesPerS', 'watermarkStalledMs', 'inflightPeak', 'batchEntriesMaxSeen', 'quorum', 'protocolVersion', 'onBatteryMs', 'hooksRunning',
]);

const POWER_STATES = ['ONLINE', 'ON_BATTERY', 'BROWNOUT', 'FLUSHING', 'HANDED_OFF', 'POWER_OFF'] as const;
const ROLES = ['starting', 'primary', 'standby'] as const;

type Labels = Readonly<Record<string, string>>;
interface Family {
  readonly name: string;
  readonly type: 'counter' | 'gauge' | 'histogram';
  readonly help: string;
  readonly samples: Array<{ suffix?: string; labels?: Labels; value: number }>;
}

/** A histogram with fixed upper bounds (le), cumulative when rendered. */
export class Histogram {
  private readonly counts: number[];
  private sum = 0;
  private count = 0;

  constructor(
    readonly name: string,
    readonly help: string,
    private readonly bounds: readonly number[],
  ) {
    this.counts = bounds.map(() => 0);
  }

  observe(value: number): void {
    this.sum += value;
    this.count++;
    for (let i = 0; i < this.bounds.length; i++) if (value <= this.bounds[i]!) this.counts[i]!++;
  }

  family(): Family {
    const samples: Family['samples'] = this.bounds.map((le, i) => ({ suffix: '_bucket', labels: { le: formatNumber(le) }, value: this.counts[i]! }));
    samples.push({ suffix: '_bucket', labels: { le: '+Inf' }, value: this.count }, { suffix: '_sum', value: this.sum }, { suffix: '_count', value: this.count });
    return { name: this.name, type: 'histogram', help: this.help, samples };
  }
}

/** The agent's three histograms; bounds chosen for an fsynced flash log and a battery-sized flush budget. */
export function agentHistograms() {
  return {
    // An fdatasync on eMMC takes 1-20 ms; a group commit that lingers adds lingerMs; seconds mean a stall.
    appendSeconds: new Histogram('lastgasp_append_duration_seconds', 'Time from an append call to its acknowledgement (on flash, and copied when asked).', [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10]),
    batchEntries: new Histogram('lastgasp_log_batch_entries', 'Entries per group commit (one write and one fdatasync).', [1, 2, 4, 8, 16, 32, 64, 128, 256, 1024, 4096]),
    flushSeconds: new Histogram('lastgasp_flush_duration_seconds', 'Duration of each brownout flush of the unreplicated tail.', [0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 60]),
  };
}
export type AgentHistograms = ReturnType<typeof agentHistograms>;

/** Render the status (as GET /v1/status returns it) and the histograms in the text format. */
export function renderMetrics(status: Record<string, unknown>, histograms: readonly Histogram[]): string {
  const families: Family[] = [];
  const gauge = (name: string, help: string, value: unknown, labels?: Labels) => {
    if (typeof value === 'number' || typeof value === 'boolean') families.push({ name, type: 'gauge', help, samples: [{ value: Number(value), ...(labels ? { labels } : {}) }] });
  };
  gauge('lastgasp_info', 'Always 1; the labels name this node and its group.', 1, { node: String(status.node), group: String(status.group) });
  gauge('lastgasp_start_time_seconds', 'When the agent started (Unix time).', num(status.startedAtMs) / 1000);
  gauge('lastgasp_epoch', 'The epoch of this node\'s log.', status.epoch);
  gauge('lastgasp_serving', '1 while this node acknowledges writes.', status.serving);
  gauge('lastgasp_ready', '1 while GET /v1/ready says ready.', (status.ready as { ready?: boolean } | undefined)?.ready);
  families.push(oneOf('lastgasp_role', 'The node\'s role: 1 for the current one.', 'role', ROLES, String(status.role ?? 'starting')));
  const marks = (status.watermarks ?? {}) as Record<string, unknown>;
  gauge('lastgasp_log_committed_seq', 'The last seq on flash.', marks.committed);
  gauge('lastgasp_log_replicated_seq', 'The last seq replicated at the configured durability.', marks.replicated);
  gauge('lastgasp_log_replica_acked_seq', 'The last seq a sibling holds on its flash.', marks.replicaAcked);
  const log = (status.log ?? {}) as Record<string, unknown>;
  gauge('lastgasp_log_unreplicated_bytes', 'Bytes of log not yet replicated.', log.unreplicatedBytes);
  gauge('lastgasp_log_disk_bytes', 'Bytes the log\'s segment files take on disk.', log.bytesOnDisk);
  gauge('lastgasp_log_recent_sync_max_seconds', 'The longest of the last 64 group commits\' fdatasyncs.', typeof log.recentSyncMsMax === 'number' ? log.recentSyncMsMax / 1000 : undefined);
  families.push(...counterFamilies('lastgasp_log', log.counters));
  families.push(...counterFamilies('lastgasp_state', status.state), ...counterFamilies('lastgasp_writes', status.writes));
  families.push(...counterFamilies('lastgasp_mqtt_ingest', status.mqttIngest), ...counterFamilies('lastgasp', status.api), ...counterFamilies('lastgasp', status.hooks));
  families.push(...powerFamilies((status.power ?? {}) as Record<string, unknown>));
  families.push(...replicationFamilies((status.replication ?? {}) as Record<string, unknown>));
  families.push(...histograms.map((histogram) => histogram.family()));
  return families.map(renderFamily).join('');
}

function powerFamilies(power: Record<string, unknown>): Family[] {
  const out = [oneOf('lastgasp_power_state', 'The power supervisor\'s state: 1 for the current one.', 'state', POWER_STATES, String(power.state ?? 'ONLINE'))];
  if (typeof power.link === 'string') out.push({ name: 'lastgasp_power_link_up', type: 'gauge', help: '1 while the link to the power source is up.', samples: [{ labels: { source: String(power.source) }, value: Number(power.link === 'up') }] });
  if (typeof power.onBatteryMs === 'number') out.push({ name: 'lastgasp_power_on_battery_seconds', type: 'gauge', help: 'Time on battery so far (0 on mains).', samples: [{ value: power.onBatteryMs / 1000 }] });
  // The bridge's counters are named "drop.<reason>.frames|bytes" and "frames", "reconnects", ...: a drop
  // reason becomes a label, so that a new reason is a new series of the same family.
  const counters = (power.counters ?? {}) as Record<string, number>;
  const drops: Record<string, Family> = {};
  const plain: Record<string, number> = {};
  for (const [key, value] of Object.entries(counters)) {
    const drop = /^drop\.(.+)\.(frames|bytes)$/.exec(key);
    if (!drop) {
      plain[key.replace(/\./g, '_')] = value;
      continue;
    }
    const name = drop[2] === 'bytes' ? 'lastgasp_bridge_dropped_bytes_total' : 'lastgasp_bridge_dropped_frames_total';
    drops[name] ??= { name, type: 'counter', help: `${drop[2] === 'bytes' ? 'Bytes' : 'Frames'} the BMS link dropped, by reason.`, samples: [] };
    drops[name].samples.push({ labels: { reason: drop[1]! }, value });
  }
  return [...out, ...Object.values(drops), ...counterFamilies('lastgasp_bridge', plain)];
}

function replicationFamilies(replication: Record<string, unknown>): Family[] {
  const out: Family[] = [];
  if (typeof replication.connected === 'boolean') out.push({ name: 'lastgasp_replication_connected', type: 'gauge', help: '1 while enough broker links are up.', samples: [{ value: Number(replication.connected) }] });
  const publisher = { ...(replication.publisher as Record<string, unknown> | undefined) };
  const siblings = (publisher.siblings ?? {}) as Record<string, number>;
  delete publisher.siblings;
  out.push(...counterFamilies('lastgasp_publisher', publisher), ...counterFamilies('lastgasp_receiver', replication.receiver));
  out.push({ name: 'lastgasp_sibling_acked_seq', type: 'gauge', help: 'The last seq each sibling acknowledged.', samples: Object.entries(siblings).map(([sibling, value]) => ({ labels: { sibling }, value })) });
  const rejected = (replication.rejected ?? {}) as Record<string, number>;
  out.push({ name: 'lastgasp_replication_rejected_total', type: 'counter', help: 'Messages from the brokers refused, by reason.', samples: Object.entries(rejected).map(([reason, value]) => ({ labels: { reason }, value })) });
  if (typeof replication.duplicates === 'number') out.push({ name: 'lastgasp_replication_duplicates_total', type: 'counter', help: 'Duplicate messages from the brokers.', samples: [{ value: replication.duplicates }] });
  // One series per broker link, labelled by its configured URL.
  const byName = new Map<string, Family>();
  for (const link of (replication.links ?? []) as Array<Record<string, unknown>>) {
    const labels = { broker: String(link.broker) };
    const values = Object.fromEntries(Object.entries(link).filter(([, value]) => typeof value === 'number' || typeof value === 'boolean'));
    for (const family of counterFamilies('lastgasp_link', values)) {
      const known = byName.get(family.name);
      const samples = family.samples.map((sample) => ({ ...sample, labels }));
      if (known) known.samples.push(...samples);
      else byName.set(family.name, { ...family, samples });
    }
  }
  return [...out, ...byName.values()];
}

/**
 * Every numeric or boolean field of a counters object as its own family: levels (GAUGE_KEYS, booleans) as
 * gauges, everything else as a counter. `bytesWritten` becomes `<prefix>_written_bytes_total`, `lastAckAgeMs`
 * `<prefix>_last_ack_age_seconds`, `drainBytesPerS` `<prefix>_drain_bytes_per_second`.
 */
export function counterFamilies(prefix: string, counters: unknown): Family[] {
  if (typeof counters !== 'object' || counters === null) return [];
  const out: Family[] = [];
  for (const [key, raw] of Object.entries(counters)) {
    if (typeof raw !== 'number' && typeof raw !== 'boolean') continue;
    const isGauge = typeof raw === 'boolean' || GAUGE_KEYS.has(key);
    let base = snake(key);
    let value = Number(raw);
    if (base.endsWith('_per_s')) {
      base = base.slice(0, -2) + '_second';
    } else if (base.endsWith('_ms')) {
      base = base.slice(0, -3) + '_seconds';
      value /= 1000;
    } else if (/(^|_)bytes(_|$)/.test(base) && !base.endsWith('_bytes')) {
      base = base.replace(/(^|_)bytes(?=_|$)/, '').replace(/^_/, '') + '_bytes';
    }
    const name = `${prefix}_${base}${isGauge ? '' : '_total'}`;
    out.push({ name, type: isGauge ? 'gauge' : 'counter', help: `${isGauge ? 'Level' : 'Count'} "${key}" of ${prefix.replace(/^lastgasp_?/, '') || 'the API'} in /v1/status.`, samples: [{ value }] });
  }
  return out;
}

function oneOf(name: string, help: string, label: string, values: readonly string[], current: string): Family {
  const all = values.includes(current) ? values : [...values, current];
  return { name, type: 'gauge', help, samples: all.map((value) => ({ labels: { [label]: value }, value: value === current ? 1 : 0 })) };
}

function renderFamily(family: Family): string {
  if (family.samples.length === 0) return '';
  let text = `# HELP ${family.name} ${family.help.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')}\n# TYPE ${family.name} ${family.type}\n`;
  for (const sample of family.samples) {
    const labels = Object.entries(sample.labels ?? {});
    const labelText = labels.length === 0 ? '' : `{${labels.map(([key, value]) => `${key}="${escapeLabel(value)}"`).join(',')}}`;
    text += `${family.name}${sample.suffix ?? ''}${labelText} ${formatNumber(sample.value)}\n`;
  }
  return text;
}

function escapeLabel(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

function formatNumber(value: number): string {
  if (Number.isNaN(value)) return 'NaN';
  if (!Number.isFinite(value)) return value > 0 ? '+Inf' : '-Inf';
  return String(value);
}

function snake(key: string): string {
  return key.replace(/\./g, '_').replace(/([a-z0-9])([A-Z])/g, '$1_$2').replace(/([A-Z])([A-Z][a-z])/g, '$1_$2').toLowerCase();
}

function num(value: unknown): number {
  return typeof value === 'number' ? value : 0;
}

/**
 * `metrics.listen`: a second, read-only listener on a loopback port that serves only GET /metrics, without
 * a token, for a scraper that cannot reach a Unix socket (as node_exporter serves its own port).
 */
export class MetricsListener {
  private server: Server | undefined;

  constructor(
    private readonly listen: string,
    private readonly render: () => Promise<string>,
    private readonly logger: Logger,
  ) {}

  async start(): Promise<string> {
    const { host, port } = splitHostPort(this.listen);
    this.server = createServer((request, response) => {
      if (request.method !== 'GET' || new URL(request.url ?? '/', 'http://local').pathname !== '/metrics') {
        response.writeHead(404, { 'content-type': 'text/plain' }).end('only GET /metrics is served here\n');
        return;
      }
      this.render().then(
        (text) => response.writeHead(200, { 'content-type': METRICS_CONTENT_TYPE }).end(text),
        (error: unknown) => {
          this.logger.warn('metrics could not be rendered', { error });
          response.writeHead(500).end();
        },
      );
    });
    const server = this.server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => resolve());
    });
    const address = server.address();
    return typeof address === 'object' && address ? `${host}:${address.port}` : this.listen;
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
