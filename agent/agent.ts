/**
 * The daemon: one flash log, the application state derived from it, the local API, replication, the role
 * (primary or standby) and the power supervisor, wired together. `lastgasp run` builds one from the config
 * file; the tests and the demo run it as a separate process.
 *
 * This file is wiring: it makes the parts, connects them, starts and stops them. The brownout lives in
 * power/brownout.ts, the write rules and readiness in app/write-rules.ts, what runs only on the primary in
 * app/primary-work.ts, the hosts the roles and the supervisor call back into in hosts.ts, this node's
 * records on the brokers in node-records.ts, and what the config means to each part in config/options.ts.
 * Its public methods beyond start/stop are the in-process library's (append, appendMany, readiness,
 * status) and SIGHUP's, each handed to the part that owns it.
 */
import { createPowerSource } from './power/index.ts';
import { HttpApi, KvState, MetricsListener, agentHistograms, encodeOp, type AppBackend, type BatchResult, type Op, type Readiness } from './app/index.ts';
import type { AppControl } from './app/unit-runner.ts';
import { Hooks } from './app/hooks.ts';
import { PrimaryWork, appEnvironment, createAppControl } from './app/primary-work.ts';
import { CopyWait, type CopyOptions } from './app/copy-wait.ts';
import { WriteRules } from './app/write-rules.ts';
import { MqttIngest } from './app/mqtt-ingest.ts';
import { FORWARD_POSITION_KEY, createForwarder, type Forwarder } from './app/forwarder.ts';
import { apiTokenFile, hookOptions, kvSnapshotOptions, logOptions, loadOrCreateToken, powerThresholds, readSecrets, replicationOptions, roleOptions, supervisorOptions, type AgentConfig } from './config/index.ts';
import { createFlashLog, type AppendResult, type FlashLog, type Storage } from './log/index.ts';
import { Brownout, PowerSupervisor, throttleBytes } from './power/index.ts';
import { Replication, loadKeyring, type WireAuth } from './replication/index.ts';
import { RoleManager } from './takeover/index.ts';
import { HookEvents, roleHost, supervisorHost } from './hosts.ts';
import { NodeRecords } from './node-records.ts';
import { SqliteDatabases } from './sqlite/index.ts';
import { boundedWait, makeDataDir, nodeFs, removeTemporaries, systemClock, type Clock, type Logger, type TimerHandle } from './util/index.ts';

/** CBOR framing an op adds around its key and value (array header, op code, string and byte-string heads). */
const OP_FRAMING_BYTES_MAX = 16;

/** A clean stop waits this long for the brokers to take its `offline` state record (a hung broker gets the Will). */
const STOP_STATE_WAIT_MS = 2000;

/** How often a throttle given in seconds (log.unreplicated*S) is re-sized from the measured drain rate. */
const THROTTLE_RESIZE_MS = 1000;

export interface AgentDeps {
  logger: Logger;
  clock?: Clock;
  /** Ends the process (`lastgasp run` exits with this code so that systemd restarts it). */
  exit?: (code: number) => void;
  /** The log's file operations (the real file system by default); tests inject faults a disk gives only rarely. */
  storage?: Storage;
}

export class Agent {
  readonly log: FlashLog;
  readonly state: KvState;
  private readonly api: HttpApi;
  private replicationValue: Replication | undefined;
  private roles: RoleManager | undefined;
  private supervisor: PowerSupervisor | undefined;
  private readonly clock: Clock;
  /** The brownout's steps, and whether this node is handing off or powered off (made once replication exists). */
  private brownout: Brownout | undefined;
  /** The rules every write follows (app/write-rules.ts): who may write, what fits, when it is acknowledged. */
  private readonly writes: WriteRules;
  private apiAddress: string | undefined;
  private readonly startedAtMs: number;
  private throttleTimer: TimerHandle | undefined;
  /** The application that runs while this node is primary (config `app:`), if one is configured. */
  private readonly app: AppControl | undefined;
  private readonly ingest: MqttIngest | undefined;
  /** Forwards journaled MQTT messages upstream while this node is primary (config mqttIngest.forward). */
  private forwarder: Forwarder | undefined;
  /** The application's SQLite databases (config `app.sqlite`): captured while primary, kept while standby. */
  private readonly sqlite: SqliteDatabases | undefined;
  /** Writes that asked to be acknowledged once replicated wait here. */
  private readonly copies: CopyWait;
  /** Append latency, batch size and flush time for GET /metrics; the loopback scrape port (metrics.listen). */
  private readonly metrics = agentHistograms();
  private readonly metricsListener: MetricsListener | undefined;
  /** Event hooks (config `hooks`), and what role, power and quarantine events fire them. */
  private readonly hooks: Hooks;
  private readonly hookEvents: HookEvents;
  /** What runs only while primary: the application, the forwarder, the SQLite capture. */
  private readonly primaryWork: PrimaryWork;
  /** This node's state and power records on the brokers. */
  private readonly records: NodeRecords;

  constructor(
    private readonly config: AgentConfig,
    private readonly deps: AgentDeps,
  ) {
    this.clock = deps.clock ?? systemClock;
    this.startedAtMs = this.clock.nowMs();
    const logger = deps.logger;
    this.log = createFlashLog({
      ...logOptions(config),
      logger: logger.child('agent:log'),
      clock: this.clock,
      onBatchSynced: (entries) => this.metrics.batchEntries.observe(entries),
      ...(deps.storage ? { storage: deps.storage } : {}),
    });
    this.state = new KvState({ dataDir: config.dataDir, log: this.log, logger: logger.child('agent:app:kv'), ...kvSnapshotOptions(config), ...(config.mqttIngest.forward ? { holdKey: FORWARD_POSITION_KEY } : {}), ...(config.app.sqlite.length ? { neededFrom: () => this.sqlite?.neededFrom() ?? Infinity } : {}) });
    // The token and the TLS key are secrets: start() gets them from config/secrets.ts, not from here.
    const { allowedHosts, allowedOrigins, tls: _tlsFiles, tokenFile: _tokenFile, ackAfter, ackAfterTimeoutMs, ...listener } = config.api;
    this.copies = new CopyWait(this.log, this.clock, { ackAfter, timeoutMs: ackAfterTimeoutMs });
    this.writes = new WriteRules({ log: this.log, copies: this.copies, node: config.node, siblings: config.siblings, entryBytesMax: config.log.entryBytesMax, dataDir: config.dataDir, segmentBytes: config.log.segmentBytes, roles: () => this.roles, handingOff: () => this.brownout?.handingOff ?? false, appendSeconds: this.metrics.appendSeconds, clock: this.clock });
    this.app = createAppControl(config, logger, this.clock);
    this.sqlite = config.app.sqlite.length
      ? new SqliteDatabases({ databases: config.app.sqlite, node: config.node, dataDir: config.dataDir, entryBytesMax: config.log.entryBytesMax, log: this.log, logger, clock: this.clock })
      : undefined;
    const mqtt = config.mqttIngest;
    this.ingest = mqtt.listen
      ? new MqttIngest({ listen: mqtt.listen, journal: mqtt.journal, socketMode: mqtt.socketMode, ackAfter: mqtt.ackAfter, entryBytesMax: config.log.entryBytesMax, appendMany: (payloads, copy) => this.writes.appendEncoded(payloads, copy), logger: logger.child('agent:app:mqtt') })
      : undefined;
    this.api = new HttpApi({ listener, allowedHosts, allowedOrigins, bodyBytesMax: config.log.entryBytesMax + OP_FRAMING_BYTES_MAX, backend: this.apiBackend(), logger: logger.child('agent:app:api') });
    this.hooks = new Hooks({ ...hookOptions(config.hooks), base: { node: config.node, group: config.group }, powerState: () => this.supervisor?.state ?? 'ONLINE', logger: logger.child('agent:hooks') });
    this.hookEvents = new HookEvents(this.hooks, () => this.log.status().quarantine);
    this.primaryWork = new PrimaryWork({ app: this.app, forwarder: () => this.forwarder, sqlite: this.sqlite, state: this.state, committed: () => this.log.watermarks().committed, environment: () => appEnvironment(config, { epoch: this.log.epoch, apiAddress: this.apiAddress, applied: this.state.applied, tokenFile: apiTokenFile(config) }) });
    this.records = new NodeRecords({ group: config.group, node: config.node, log: this.log, replication: () => this.replicationValue, role: () => this.roles?.role, powerState: () => this.supervisor?.state, clock: this.clock });
    this.metricsListener = config.metrics.listen ? new MetricsListener(config.metrics.listen, () => this.api.metricsText(), logger.child('agent:metrics')) : undefined;
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
    const secrets = await readSecrets(config);
    const recovery = await this.log.open();
    // Under the log's lock now: no other writer of the leader record runs, so its crash leftovers can go.
    await removeTemporaries(nodeFs, config.dataDir, 'leader.json');
    logger.info('log opened', { event: 'log-open', ...recovery });
    this.hookEvents.quarantined('recovery');
    await this.state.start();
    await this.sqlite?.load();
    this.replicationValue = new Replication({
      ...replicationOptions(config),
      log: this.log,
      ...secrets.replication,
      ...(await this.wireAuth()),
      logger: logger.child('agent:replication'),
      clock: this.clock,
    });
    this.roles = new RoleManager({
      ...roleOptions(config),
      log: this.log,
      replication: this.replicationValue,
      host: roleHost({ work: this.primaryWork, events: this.hookEvents, records: this.records, state: this.state, logger }),
      logger: logger.child('agent:takeover'),
      clock: this.clock,
    });
    this.apiAddress = await this.api.start(secrets.api);
    logger.info('api listening', { event: 'api', address: this.apiAddress });
    if (this.metricsListener) logger.info('metrics listening', { event: 'metrics', address: await this.metricsListener.start() });
    if (this.ingest) {
      // An MQTT listener on TCP wants the API token as password even when the HTTP API is on a socket.
      const token = secrets.api.token ?? (config.mqttIngest.listen!.startsWith('unix:') ? undefined : await loadOrCreateToken(apiTokenFile(config)));
      logger.info('mqtt listening', { event: 'mqtt-ingest', address: await this.ingest.start(token) });
    }
    this.forwarder = await createForwarder(config, { log: this.log, state: this.state, append: (op) => this.writes.appendForwardMark(op), logger: logger.child('agent:app:forward'), clock: this.clock });
    this.brownout = this.makeBrownout(this.replicationValue, this.roles);
    await this.replicationValue.start();
    await this.roles.start();
    await this.startSupervisor();
    this.resizeThrottle();
    return { api: this.apiAddress };
  }

  async stop(): Promise<void> {
    this.throttleTimer?.cancel();
    await this.app?.stop('the agent is stopping');
    await this.forwarder?.stop('the agent is stopping');
    this.roles?.stop();
    await this.sqlite?.stop();
    await this.supervisor?.stop();
    await this.ingest?.stop();
    await this.api.stop();
    await this.metricsListener?.stop();
    // After the roles stopped (no heartbeat follows it): the retained state says `offline` at once, with this
    // node's last position; the Will is for a death, and carries the position of its connect.
    if (this.replicationValue?.connected && !this.brownout?.poweredOff) await boundedWait(this.clock, this.records.publishNow('offline'), STOP_STATE_WAIT_MS);
    await this.replicationValue?.stop();
    this.copies.stop();
    await this.state.stop();
    await this.log.close();
  }

  // ---- the in-process library (the API's backend hands these to the same parts) ------------------------

  append(op: Op, copy?: CopyOptions): Promise<AppendResult> {
    return this.writes.append(op, copy);
  }

  /**
   * Many ops in one log batch (one promise, one group commit): every one of them acknowledged, or none. The
   * embedded counterpart of POST /v1/batch; entry i has seq `firstSeq + i`.
   */
  appendMany(ops: readonly Op[], copy?: CopyOptions): Promise<BatchResult> {
    return this.writes.appendEncoded(ops.map(encodeOp), copy);
  }

  /** Accepting writes, or why not (app/write-rules.ts). */
  readiness(): Promise<Readiness> {
    return this.writes.readiness();
  }

  status(): Record<string, unknown> {
    return {
      node: this.config.node,
      group: this.config.group,
      startedAtMs: this.startedAtMs,
      serving: this.writes.serving(),
      epoch: this.log.epoch,
      ...this.roles?.status(),
      handingOff: this.brownout?.handingOff ?? false,
      watermarks: this.log.watermarks(),
      log: this.log.status(),
      state: this.state.counters,
      writes: this.copies.counters,
      ...(this.ingest ? { mqttIngest: this.ingest.counters } : {}),
      ...(this.sqlite ? { sqlite: this.sqlite.status() } : {}),
      power: this.supervisor?.status() ?? { state: 'ONLINE', source: 'none' },
      powerTimeline: this.supervisor?.timeline() ?? [],
      ...(this.app ? { app: this.app.status() } : {}),
      ...(this.forwarder ? { forward: this.forwarder.status() } : {}),
      hooks: this.hooks.counters,
      replication: this.replicationValue?.stats(),
    };
  }

  /** SIGHUP: the power thresholds of a re-read config take effect now (cli/reload.ts says which keys may change). */
  setPowerThresholds(power: AgentConfig['power']): void {
    this.supervisor?.setThresholds(powerThresholds(power));
  }

  /** SIGHUP: the hooks of a re-read config run from the next event on. */
  setHooks(hooks: AgentConfig['hooks']): void {
    this.hooks.reconfigure(hookOptions(hooks));
  }

  // ---- internals --------------------------------------------------------------------------------------

  /** The API's backend: writes and readiness go to the write rules, the rest to the part that owns it. */
  private apiBackend(): AppBackend {
    return {
      append: (op, copy) => this.writes.append(op, copy),
      appendEncoded: (payloads, copy) => this.writes.appendEncoded(payloads, copy),
      state: this.state,
      log: this.log,
      status: () => this.status(),
      readiness: () => this.writes.readiness(),
      setReplicationPaused: (paused) => this.replication.setOperatorPaused(paused),
      histograms: () => Object.values(this.metrics),
    };
  }

  /** The brownout's steps (power/brownout.ts), given the parts they act on. */
  private makeBrownout(replication: Replication, roles: RoleManager): Brownout {
    return new Brownout({
      log: this.log,
      replication,
      roles,
      powerState: () => this.supervisor?.state ?? 'ONLINE',
      application: this.primaryWork,
      group: this.config.group,
      node: this.config.node,
      siblings: this.config.siblings,
      restartAfterPowerOffMs: this.config.power.restartAfterPowerOffMs,
      publishHandedOff: () => this.records.publishNow('handed-off'),
      lastPowerStatus: () => this.supervisor?.lastStatus,
      hooks: this.hooks,
      flushSeconds: this.metrics.flushSeconds,
      ...(this.deps.exit ? { exit: this.deps.exit } : {}),
      logger: this.deps.logger,
      clock: this.clock,
    });
  }

  private async startSupervisor(): Promise<void> {
    const power = this.config.power;
    if (power.source.kind === 'none') {
      this.deps.logger.warn('no power source configured (power.source.kind: none): a power cut will not be seen coming');
      return;
    }
    const source = createPowerSource(power.source, { logger: this.deps.logger.child(`bridge:${power.source.kind}`), clock: this.clock });
    const host = supervisorHost(this.brownout!, {
      events: this.hookEvents,
      records: this.records,
      lastPowerStatus: () => this.supervisor?.lastStatus,
      tailEnergy: () => ({ unreplicatedBytes: this.log.status().unreplicatedBytes, drainBytesPerS: this.replicationValue?.drainBytesPerS() }),
    });
    this.supervisor = new PowerSupervisor({ source, host, ...supervisorOptions(power), logger: this.deps.logger.child('agent:power'), clock: this.clock });
    await this.supervisor.start();
  }

  /** log.unreplicated*S: the throttle follows the drain rate, so what it admits can still leave in that time. */
  private resizeThrottle(): void {
    const { unreplicatedSoftS, unreplicatedHardS, unreplicatedSoftBytes, unreplicatedHardBytes } = this.config.log;
    if (unreplicatedSoftS === 0 && unreplicatedHardS === 0) return;
    const rate = this.replicationValue?.drainBytesPerS();
    const hard = throttleBytes(unreplicatedHardS, rate, unreplicatedHardBytes);
    const field = rate === undefined || unreplicatedHardS === 0 ? 'log.unreplicatedHardBytes' : `log.unreplicatedHardS: ${unreplicatedHardS} s at the measured ${Math.round(rate)} B/s`;
    this.log.setUnreplicatedLimits(throttleBytes(unreplicatedSoftS, rate, unreplicatedSoftBytes), hard, field);
    this.throttleTimer = this.clock.setTimeout(() => this.resizeThrottle(), THROTTLE_RESIZE_MS);
  }

  /** Per-node Ed25519 keys (or the group's HMAC key, read with the other secrets); unsigned only when the config says so. */
  private async wireAuth(): Promise<{ auth?: WireAuth }> {
    const replication = this.config.replication;
    if (replication.signing) return { auth: { mode: 'ed25519', keyring: await loadKeyring(this.config.node, replication.signing) } };
    if (!replication.hmacKeyFile) {
      this.deps.logger.warn('replication.insecureUnsigned is set: messages are not signed, and anyone who can publish to the brokers can forge leader records, acks and batches; make keys with "lastgasp keys generate"', { event: 'unsigned' });
    }
    return {};
  }
}
