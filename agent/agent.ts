/**
 * The daemon: one flash log, the application state derived from it, the local API, replication, the role
 * (primary or standby) and the power supervisor, wired together. `lastgasp run` builds one from the config
 * file; the tests and the demo run it as a separate process.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createPowerSource } from '../firmware-bridge/index.ts';
import type { PowerStatus } from '../firmware-bridge/index.ts';
import { HttpApi, KvState, encodeOp, type AppBackend, type Op } from './app/index.ts';
import type { AgentConfig } from './config/index.ts';
import { createFlashLog, type AppendResult, type FlashLog } from './log/index.ts';
import { PowerSupervisor, type FlushOutcome, type PowerStateName, type SupervisorHost } from './power/index.ts';
import { Replication, type NodeStateName } from './replication/index.ts';
import { RoleManager, type RoleHost } from './takeover/index.ts';
import { LastgaspError, makeDataDir, nodeFs, removeTemporaries, systemClock, type Clock, type Logger, type TimerHandle } from './util/index.ts';

/** CBOR framing an op adds around its key and value (array header, op code, string and byte-string heads). */
const OP_FRAMING_BYTES_MAX = 16;

const STATE_NAMES: Record<PowerStateName, NodeStateName> = {
  ONLINE: 'online',
  ON_BATTERY: 'on-battery',
  BROWNOUT: 'flushing',
  FLUSHING: 'flushing',
  HANDED_OFF: 'handed-off',
  POWER_OFF: 'handed-off',
};

export interface AgentDeps {
  logger: Logger;
  clock?: Clock;
  /** Ends the process (`lastgasp run` exits with this code so that systemd restarts it). */
  exit?: (code: number) => void;
}

/** Exit code after a handoff whose power cut never came: "restart me" (EX_TEMPFAIL, sysexits.h). */
export const EXIT_RESTART_AS_STANDBY = 75;

export class Agent implements AppBackend, SupervisorHost, RoleHost {
  readonly log: FlashLog;
  readonly state: KvState;
  private readonly api: HttpApi;
  private replicationValue: Replication | undefined;
  private roles: RoleManager | undefined;
  private supervisor: PowerSupervisor | undefined;
  private readonly clock: Clock;
  private handingOff = false;
  private poweredOff = false;
  private heartbeat: TimerHandle | undefined;
  private apiAddress: string | undefined;
  private readonly startedAtMs: number;

  constructor(
    private readonly config: AgentConfig,
    private readonly deps: AgentDeps,
  ) {
    this.clock = deps.clock ?? systemClock;
    this.startedAtMs = this.clock.nowMs();
    const logger = deps.logger;
    this.log = createFlashLog({
      dir: join(config.dataDir, 'log'),
      segmentBytes: config.log.segmentBytes,
      entryBytesMax: config.log.entryBytesMax,
      lingerMs: config.log.lingerMs,
      lingerBytes: config.log.lingerBytes,
      quotaBytes: config.log.quotaBytes,
      unreplicatedSoftBytes: config.log.unreplicatedSoftBytes,
      unreplicatedHardBytes: config.log.unreplicatedHardBytes,
      fullPolicy: config.log.fullPolicy,
      logger: logger.child('agent:log'),
      clock: this.clock,
    });
    this.state = new KvState({ dataDir: config.dataDir, log: this.log, logger: logger.child('agent:app:kv'), snapshotEveryEntries: config.log.snapshotEveryEntries });
    this.api = new HttpApi({ listen: config.api.listen, bodyBytesMax: config.log.entryBytesMax + OP_FRAMING_BYTES_MAX, backend: this, logger: logger.child('agent:app:api') });
  }

  get replication(): Replication {
    if (!this.replicationValue) throw new Error('agent not started');
    return this.replicationValue;
  }

  /** Open the log, derive the state, connect, decide the role, start supervising power, serve the API. */
  async start(): Promise<{ api: string }> {
    const { config, deps } = this;
    const logger = deps.logger;
    await makeDataDir(config.dataDir);
    const recovery = await this.log.open();
    // Under the log's lock now: no other writer of the leader record runs, so its crash leftovers can go.
    await removeTemporaries(nodeFs, config.dataDir, 'leader.json');
    logger.info('log opened', { event: 'log-open', ...recovery });
    await this.state.start();
    this.replicationValue = new Replication({
      log: this.log,
      group: config.group,
      node: config.node,
      siblings: config.siblings,
      brokers: config.replication.brokers.map((broker) => broker.url),
      mode: config.replication.mode,
      quorum: config.replication.quorum,
      durability: config.replication.durability,
      replicaAcks: config.replication.replicaAcks,
      topicPrefix: config.replication.topicPrefix,
      protocol: config.replication.protocol,
      batchEntriesMax: config.replication.batchEntriesMax,
      batchBytesMax: config.replication.batchBytesMax,
      windowMax: config.replication.windowMax,
      keepaliveS: config.replication.keepaliveS,
      ...(await this.credentials()),
      logger: logger.child('agent:replication'),
      clock: this.clock,
    });
    this.roles = new RoleManager({
      node: config.node,
      group: config.group,
      configuredRole: config.role,
      onHandoff: config.takeover.onHandoff,
      silenceMs: config.takeover.silenceMs,
      brokerWaitMs: config.takeover.brokerWaitMs,
      leaderFile: join(config.dataDir, 'leader.json'),
      log: this.log,
      replication: this.replicationValue,
      host: this,
      logger: logger.child('agent:takeover'),
      clock: this.clock,
    });
    this.apiAddress = await this.api.start();
    logger.info('api listening', { event: 'api', address: this.apiAddress });
    await this.replicationValue.start();
    await this.roles.start();
    await this.startSupervisor();
    this.scheduleHeartbeat();
    return { api: this.apiAddress };
  }

  async stop(): Promise<void> {
    this.heartbeat?.cancel();
    this.roles?.stop();
    await this.supervisor?.stop();
    await this.api.stop();
    await this.replicationValue?.stop();
    await this.state.stop();
    await this.log.close();
  }

  // ---- AppBackend -------------------------------------------------------------------------------------

  async append(op: Op): Promise<AppendResult> {
    const role = this.roles?.role;
    if (role !== 'primary') {
      const leader = this.roles?.leaderRecord;
      throw new LastgaspError('NOT_PRIMARY', `this node (${this.config.node}) is ${role ?? 'starting'}; write to the primary${leader ? ` (${leader.node})` : ''}`, { leader: leader?.node, epoch: leader?.epoch });
    }
    if (this.handingOff) {
      throw new LastgaspError('HANDING_OFF', `power is failing and this node is handing off to its sibling; retry against ${this.config.siblings.join(' or ')}`, { siblings: this.config.siblings });
    }
    const payload = encodeOp(op);
    if (payload.length > this.config.log.entryBytesMax) {
      throw new LastgaspError('ENTRY_TOO_LARGE', `entry of ${payload.length} bytes is over log.entryBytesMax (${this.config.log.entryBytesMax})`, { bytes: payload.length });
    }
    return this.log.append(payload);
  }

  serving(): boolean {
    return this.roles?.role === 'primary' && !this.handingOff && !this.poweredOff;
  }

  setReplicationPaused(paused: boolean): void {
    this.replication.publisher.setPaused(paused);
  }

  status(): Record<string, unknown> {
    return {
      node: this.config.node,
      group: this.config.group,
      startedAtMs: this.startedAtMs,
      serving: this.serving(),
      epoch: this.log.epoch,
      ...this.roles?.status(),
      handingOff: this.handingOff,
      watermarks: this.log.watermarks(),
      log: this.log.status(),
      state: this.state.counters,
      power: this.supervisor?.status() ?? { state: 'ONLINE', source: 'none' },
      powerTimeline: this.supervisor?.timeline() ?? [],
      replication: this.replicationValue?.stats(),
    };
  }

  // ---- RoleHost ---------------------------------------------------------------------------------------

  async prepareRole(role: 'primary' | 'standby'): Promise<void> {
    // The state must include every replicated entry before the first write of the new epoch is served.
    if (role === 'primary') {
      await this.state.waitApplied(this.log.watermarks().committed);
      this.handingOff = false;
    }
  }

  roleChanged(role: 'primary' | 'standby', info: { epoch: number; reason: string }): void {
    this.deps.logger.debug(`role ${role}`, { epoch: info.epoch, reason: info.reason });
    void this.publishState(this.supervisor ? STATE_NAMES[this.supervisor.state] : 'online');
  }

  async stateRewound(): Promise<void> {
    await this.state.rebuild();
  }

  // ---- SupervisorHost ---------------------------------------------------------------------------------

  shrinkTail(onBattery: boolean): void {
    this.log.setSyncMode(onBattery ? 'immediate' : 'batched');
    this.replicationValue?.publisher.setFlushing(onBattery);
  }

  async flushTail(budgetMs: number, signal: AbortSignal): Promise<FlushOutcome> {
    const replication = this.replication;
    const started = this.clock.monotonicMs();
    this.handingOff = true;
    this.log.setSyncMode('immediate');
    replication.setControlPaused(true);
    replication.publisher.setFlushing(true);
    const marks = this.log.watermarks();
    const tailAtStart = marks.committed - marks.replicated;
    this.deps.logger.info('flushing the unreplicated tail', { event: 'flush-start', tail: tailAtStart, committed: marks.committed, replicated: marks.replicated, budgetMs });
    if (this.roles?.role === 'primary') await replication.publisher.waitReplicated(marks.committed, budgetMs, signal);
    await this.log.syncWatermarks();
    const after = this.log.watermarks();
    return {
      tailAtStart,
      lastSeq: after.replicated,
      committed: after.committed,
      complete: after.replicated >= after.committed,
      flushMs: Math.round(this.clock.monotonicMs() - started),
    };
  }

  async publishHandoff(outcome: FlushOutcome, reason: string): Promise<void> {
    if (this.roles?.role !== 'primary') return;
    const atMs = this.clock.nowMs();
    await this.replication.publishLeader({
      group: this.config.group,
      kind: 'handoff',
      epoch: this.log.epoch,
      node: this.config.node,
      to: this.config.siblings[0],
      lastSeq: outcome.lastSeq,
      committed: outcome.committed,
      complete: outcome.complete,
      reason,
      atMs,
    });
    this.deps.logger.info('handoff record published', { event: 'handoff', atMs, lastSeq: outcome.lastSeq, committed: outcome.committed, complete: outcome.complete, to: this.config.siblings[0] });
  }

  waitForSuccessor(timeoutMs: number): Promise<boolean> {
    if (this.roles?.role !== 'primary') return Promise.resolve(false);
    return this.roles.waitForSuccessor(timeoutMs);
  }

  resume(): void {
    this.handingOff = false;
    this.replicationValue?.setControlPaused(false);
    this.replicationValue?.publisher.setFlushing(false);
    this.deps.logger.info('mains back before the handoff: accepting writes again');
  }

  async powerOff(): Promise<void> {
    this.poweredOff = true;
    this.heartbeat?.cancel();
    await this.replicationValue?.publishStateNow(this.stateMessage('handed-off')).catch(() => undefined);
    await this.replicationValue?.abort();
    this.deps.logger.info('waiting for the power to go', { event: 'power-off' });
    // The handoff is latched: this node must not serve again in this life. If the power never goes (mains
    // came back, or the source cannot cut), a restart makes it rejoin as a standby through the usual path.
    const afterMs = this.config.power.restartAfterPowerOffMs;
    this.clock.setTimeout(() => {
      this.deps.logger.warn(`still running ${afterMs} ms after handing off: the power was not cut; exiting so that the service manager restarts this node as a standby`, { event: 'power-off-timeout' });
      this.deps.exit?.(EXIT_RESTART_AS_STANDBY);
    }, afterMs);
  }

  publishPower(status: PowerStatus, state: PowerStateName): void {
    this.replicationValue?.publishPower({ node: this.config.node, state, ...status });
  }

  stateChanged(state: PowerStateName): void {
    void this.publishState(STATE_NAMES[state]);
  }

  // ---- internals --------------------------------------------------------------------------------------

  private async startSupervisor(): Promise<void> {
    const power = this.config.power;
    if (power.source.kind === 'none') {
      this.deps.logger.warn('no power source configured (power.source.kind: none): a power cut will not be seen coming');
      return;
    }
    const source = createPowerSource(power.source, { logger: this.deps.logger.child(`bridge:${power.source.kind}`) });
    this.supervisor = new PowerSupervisor({
      source,
      host: this,
      thresholds: {
        socPercentMin: power.socPercentMin,
        runtimeSMin: power.runtimeSMin,
        onBatterySMax: power.onBatterySMax,
        trustDeviceLowBattery: power.trustDeviceLowBattery,
        onBatteryDebounceMs: power.onBatteryDebounceMs,
        linkDeadMs: power.linkDeadMs,
      },
      flushBudgetMs: power.flushBudgetMs,
      handoffAckTimeoutMs: power.handoffAckTimeoutMs,
      cutDelayMs: power.cutDelayMs,
      logger: this.deps.logger.child('agent:power'),
      clock: this.clock,
    });
    await this.supervisor.start();
  }

  private scheduleHeartbeat(): void {
    this.heartbeat = this.clock.setTimeout(() => {
      if (this.poweredOff) return;
      void this.publishState(this.supervisor ? STATE_NAMES[this.supervisor.state] : 'online');
      this.scheduleHeartbeat();
    }, this.config.replication.heartbeatMs);
  }

  private async publishState(state: NodeStateName): Promise<void> {
    if (!this.replicationValue?.connected) return;
    await this.replicationValue.publishState(this.stateMessage(state)).catch(() => undefined);
  }

  private stateMessage(state: NodeStateName) {
    const role = this.roles?.role;
    return {
      group: this.config.group,
      node: this.config.node,
      role: role === 'primary' || role === 'standby' ? role : ('unknown' as const),
      state,
      epoch: this.log.epoch,
      committed: this.log.watermarks().committed,
      atMs: this.clock.nowMs(),
    };
  }

  /** Secrets come from files or the environment, never from the config file itself. */
  private async credentials(): Promise<{ username?: string; password?: string; hmacKey?: Uint8Array; tls?: { ca?: string; cert?: string; key?: string } }> {
    const replication = this.config.replication;
    const out: { username?: string; password?: string; hmacKey?: Uint8Array; tls?: { ca?: string; cert?: string; key?: string } } = {};
    if (replication.username) out.username = replication.username;
    if (replication.passwordFile) out.password = (await readSecret(replication.passwordFile, 'replication.passwordFile')).toString('utf8').trim();
    if (replication.passwordEnv) {
      const value = process.env[replication.passwordEnv];
      if (value === undefined) throw new LastgaspError('CONFIG_INVALID', `config: replication.passwordEnv: environment variable ${replication.passwordEnv} is not set`);
      out.password = value;
    }
    if (replication.hmacKeyFile) {
      const key = await readSecret(replication.hmacKeyFile, 'replication.hmacKeyFile');
      if (key.length < 16) throw new LastgaspError('CONFIG_INVALID', `config: replication.hmacKeyFile: ${replication.hmacKeyFile} holds ${key.length} bytes; use at least 16 (e.g. head -c 32 /dev/urandom > key)`);
      out.hmacKey = new Uint8Array(key);
    }
    const tls = replication.tls;
    if (tls.caFile || tls.certFile || tls.keyFile) out.tls = { ca: tls.caFile, cert: tls.certFile, key: tls.keyFile };
    return out;
  }
}

async function readSecret(path: string, field: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (error) {
    throw new LastgaspError('CONFIG_INVALID', `config: ${field}: cannot read ${path} (${(error as Error).message})`);
  }
}
