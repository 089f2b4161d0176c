/**
 * From the config file to the options of each part: the log, replication, the roles, the power supervisor
 * and the hooks. Pure functions of a validated config, so that what a config means to each part is read
 * (and tested) here, beside the schema, and agent.ts only adds what lives at run time (the logger, the
 * clock, the other parts, the secrets). Only types are imported from the parts: nothing here loads them.
 */
import { join } from 'node:path';
import type { LogOptions } from '../log/index.ts';
import type { SupervisorOptions, Thresholds } from '../power/index.ts';
import type { ReplicationOptions } from '../replication/index.ts';
import type { RoleManagerOptions } from '../takeover/index.ts';
import type { AgentConfig } from './schema.ts';

/** The log's options that the config sets (the agent adds its logger, clock, metrics and storage). */
export function logOptions(config: AgentConfig) {
  const log = config.log;
  return {
    dir: join(config.dataDir, 'log'),
    segmentBytes: log.segmentBytes,
    entryBytesMax: log.entryBytesMax,
    lingerMs: log.lingerMs,
    lingerBytes: log.lingerBytes,
    quotaBytes: log.quotaBytes,
    unreplicatedSoftBytes: log.unreplicatedSoftBytes,
    unreplicatedHardBytes: log.unreplicatedHardBytes,
    fullPolicy: log.fullPolicy,
  } satisfies Partial<LogOptions>;
}

/**
 * How often the key-value state is snapshotted: every log.snapshotEveryEntries entries, and every quarter of
 * log.quotaBytes of entries (so a log of large entries is not pinned behind an old snapshot); 0 turns both off.
 */
export function kvSnapshotOptions(config: AgentConfig): { snapshotEveryEntries: number; snapshotEveryBytes: number } {
  const { snapshotEveryEntries, quotaBytes } = config.log;
  return { snapshotEveryEntries, snapshotEveryBytes: snapshotEveryEntries > 0 ? Math.floor(quotaBytes / 4) : 0 };
}

/** Replication's options that the config sets (the agent adds the log, the secrets, the keys, logger and clock). */
export function replicationOptions(config: AgentConfig) {
  const replication = config.replication;
  return {
    group: config.group,
    node: config.node,
    siblings: config.siblings,
    brokers: replication.brokers.map((broker) => broker.url),
    mode: replication.mode,
    quorum: replication.quorum,
    durability: replication.durability,
    replicaAcks: replication.replicaAcks,
    topicPrefix: replication.topicPrefix,
    protocol: replication.protocol,
    batchEntriesMax: replication.batchEntriesMax,
    batchBytesMax: replication.batchBytesMax,
    compression: replication.compression,
    windowMax: replication.windowMax,
    coalesce: replication.coalesce,
    prepareAheadBytes: replication.prepareAheadBytes,
    keepaliveS: replication.keepaliveS,
    direct: replication.direct,
    counterFile: join(config.dataDir, 'wire-counter.json'),
  } satisfies Partial<ReplicationOptions>;
}

/** The roles' options that the config sets (the agent adds the log, replication, itself as host, logger and clock). */
export function roleOptions(config: AgentConfig) {
  return {
    node: config.node,
    group: config.group,
    siblings: config.siblings,
    configuredRole: config.role,
    onHandoff: config.takeover.onHandoff,
    silenceMs: config.takeover.silenceMs,
    leaseMs: leaseMsFor(config),
    heartbeatMs: config.replication.heartbeatMs,
    brokerWaitMs: config.takeover.brokerWaitMs,
    leaderFile: join(config.dataDir, 'leader.json'),
  } satisfies Partial<RoleManagerOptions>;
}

/**
 * takeover.leaseMs, or by default the largest lease the silence allows: silenceMs less a tenth for clock-rate
 * error and two heartbeats for the round trips (takeover/LEADERSHIP.md); 0 without silence takeover.
 */
export function leaseMsFor(config: AgentConfig): number {
  const { silenceMs, leaseMs } = config.takeover;
  if (silenceMs === 0) return 0;
  return leaseMs ?? Math.floor(silenceMs * 0.9 - 2 * config.replication.heartbeatMs);
}

/** The supervisor's options that the config sets (the agent adds the source, itself as host, logger and clock). */
export function supervisorOptions(power: AgentConfig['power']) {
  return {
    thresholds: powerThresholds(power),
    flushBudgetMs: power.flushBudgetMs,
    handoffAckTimeoutMs: power.handoffAckTimeoutMs,
    cutDelayMs: power.cutDelayMs,
  } satisfies Partial<SupervisorOptions>;
}

/** The supervisor's thresholds from the config's power section, at start and at each SIGHUP. */
export function powerThresholds(power: AgentConfig['power']): Thresholds {
  return {
    socPercentMin: power.socPercentMin,
    runtimeSMin: power.runtimeSMin,
    onBatterySMax: power.onBatterySMax,
    trustDeviceLowBattery: power.trustDeviceLowBattery,
    onBatteryDebounceMs: power.onBatteryDebounceMs,
    linkDeadMs: power.linkDeadMs,
    ...(power.energyAware ? { energyMarginMs: power.energyMarginMs, batteryMah: power.batteryMah } : {}),
  };
}

/** The hooks' commands apart from how they run (shell, timeout), at start and at each SIGHUP. */
export function hookOptions(hooks: AgentConfig['hooks']) {
  const { shell, timeoutMs, ...commands } = hooks;
  return { commands, shell, timeoutMs };
}
