/**
 * Who leads the group, decided by epochs in the retained leader record:
 *
 * - At start a node waits briefly for the retained record. A newer epoch naming another node makes it a
 *   standby (and a suffix of its log that the new leader never had is set aside, quarantined); a record
 *   naming itself, or none at all with `role: primary` configured, makes it the primary.
 * - A standby takes over on a handoff record addressed to it (at once), or after the primary's silence
 *   (its Will or missing heartbeats) when `takeover.silenceMs` is set: it bumps the epoch durably, turns
 *   its replica into the primary's log, and announces itself with a leader record.
 * - A primary that sees a newer epoch naming another node demotes itself.
 */
import type { FlashLog } from '../log/index.ts';
import type { LeaderMessage, Replication, StateMessage } from '../replication/index.ts';
import { readFile } from 'node:fs/promises';
import { writeFileAtomic, type Clock, type Logger, type TimerHandle } from '../util/index.ts';

/** How long to wait for the broker's retained leader record after connecting before deciding alone. */
const RETAINED_GRACE_MS = 1500;
/** A successor may still be receiving the tail named in the handoff; wait this long for it. */
const HANDOFF_CATCH_UP_MS = 3000;

export type Role = 'starting' | 'primary' | 'standby';

export interface RoleHost {
  /** Before the role flips: the agent brings its state up to date with the log. */
  prepareRole(role: 'primary' | 'standby'): Promise<void>;
  /** After the role flipped (writes are open to a primary from here). */
  roleChanged(role: 'primary' | 'standby', info: { epoch: number; reason: string }): void;
  /** The log lost a suffix (demotion): rebuild the application state. */
  stateRewound(): Promise<void>;
}

export interface RoleManagerOptions {
  node: string;
  group: string;
  configuredRole: 'primary' | 'standby';
  onHandoff: boolean;
  silenceMs: number;
  /** At start, how long to wait for a broker before deciding from the last leader record this node saw. */
  brokerWaitMs: number;
  /** Where that last leader record is kept (JSON, replaced atomically when the leader changes). */
  leaderFile: string;
  log: FlashLog;
  replication: Replication;
  host: RoleHost;
  logger: Logger;
  clock: Clock;
}

export interface TakeoverRecord {
  readonly fromNode: string;
  readonly handoffAtMs: number;
  readonly servingAtMs: number;
  readonly takeoverMs: number;
  readonly epoch: number;
  readonly since: number;
  readonly handoffLastSeq: number;
  readonly complete: boolean;
  readonly cause: 'handoff' | 'silence';
}

export class RoleManager {
  private roleValue: Role = 'starting';
  private leader: LeaderMessage | undefined;
  private successorWaiters: Array<(ok: boolean) => void> = [];
  private silenceTimer: TimerHandle | undefined;
  private takingOver = false;
  private lastTakeover: TakeoverRecord | undefined;
  private primarySinceMs: number | undefined;

  constructor(private readonly options: RoleManagerOptions) {}

  get role(): Role {
    return this.roleValue;
  }

  get leaderRecord(): LeaderMessage | undefined {
    return this.leader;
  }

  status(): Record<string, unknown> {
    return { role: this.roleValue, leader: this.leader, primarySinceMs: this.primarySinceMs, lastTakeover: this.lastTakeover };
  }

  /** Subscribe to leader and state records, then decide the starting role. */
  async start(): Promise<void> {
    const { replication } = this.options;
    replication.on('leader', (message) => void this.onLeader(message).catch((error: unknown) => this.options.logger.error('leader record handling failed', { error })));
    replication.on('state', (message) => this.onState(message));
    if (!(await this.waitForConnection())) {
      this.leader ??= await this.loadLeader();
      const basis = this.leader ? `the last leader record this node saw (${this.leader.kind} by ${this.leader.node}, epoch ${this.leader.epoch})` : `its configured role (${this.options.configuredRole})`;
      this.options.logger.warn(`no broker answered within ${this.options.brokerWaitMs} ms; deciding the role from ${basis}. A newer epoch seen later demotes this node.`);
    }
    await this.decideInitialRole();
  }

  stop(): void {
    this.silenceTimer?.cancel();
  }

  /** The primary, after publishing its handoff: resolves true when a successor announced a newer epoch. */
  waitForSuccessor(timeoutMs: number): Promise<boolean> {
    if (this.leader && this.leader.kind === 'leader' && this.leader.node !== this.options.node && this.leader.epoch > this.options.log.epoch) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = this.options.clock.setTimeout(() => {
        this.successorWaiters = this.successorWaiters.filter((waiter) => waiter !== done);
        resolve(false);
      }, timeoutMs);
      const done = (ok: boolean) => {
        timer.cancel();
        resolve(ok);
      };
      this.successorWaiters.push(done);
    });
  }

  /**
   * Resolves true once connected (after a grace for the retained leader record), false when no broker
   * answered within brokerWaitMs: a gateway whose uplink is down at boot must still accept writes.
   */
  private waitForConnection(): Promise<boolean> {
    const { replication, clock, brokerWaitMs } = this.options;
    return new Promise((resolve) => {
      const settle = () => {
        timer.cancel();
        clock.setTimeout(() => resolve(true), RETAINED_GRACE_MS);
      };
      const timer = clock.setTimeout(() => {
        replication.off('up', settle);
        resolve(false);
      }, brokerWaitMs);
      if (replication.connected) settle();
      else replication.once('up', settle);
    });
  }

  private async loadLeader(): Promise<LeaderMessage | undefined> {
    try {
      const record = JSON.parse(await readFile(this.options.leaderFile, 'utf8')) as LeaderMessage;
      return record.group === this.options.group ? record : undefined;
    } catch {
      return undefined;
    }
  }

  /** Remember the leader record across restarts; rare (leader changes only), so a full atomic replace. */
  private rememberLeader(record: LeaderMessage): void {
    void writeFileAtomic(this.options.leaderFile, new TextEncoder().encode(JSON.stringify(record) + '\n')).catch((error: unknown) =>
      this.options.logger.warn('could not save the leader record', { file: this.options.leaderFile, error }),
    );
  }

  private async decideInitialRole(): Promise<void> {
    const { log, node, configuredRole } = this.options;
    const leader = this.leader;
    if (leader && leader.epoch >= log.epoch && leader.node !== node && leader.kind === 'leader') {
      await this.becomeStandby(leader, `the group's leader is ${leader.node} (epoch ${leader.epoch})`);
      return;
    }
    if (leader?.kind === 'handoff' && leader.to === node && leader.epoch >= log.epoch) {
      await this.takeOver(leader, 'handoff');
      return;
    }
    if (leader?.kind === 'handoff' && leader.node === node) {
      await this.becomeStandby(leader, 'this node handed off before it stopped; waiting for the successor');
      return;
    }
    if (leader && leader.kind === 'leader' && leader.node === node) {
      await this.becomePrimary(Math.max(leader.epoch, log.epoch), 'the retained leader record names this node');
      return;
    }
    if (configuredRole === 'primary' && !leader) {
      await this.becomePrimary(Math.max(log.epoch, 1), 'no leader record yet and this node is configured as primary');
      return;
    }
    await this.becomeStandby(leader, leader ? `the group's leader record is from ${leader.node}` : 'no leader yet; configured as standby');
  }

  private async becomePrimary(epoch: number, reason: string, options: { takeover?: boolean } = {}): Promise<void> {
    const { log, replication, node, group, clock } = this.options;
    const fromSeq = options.takeover ? log.watermarks().committed + 1 : undefined;
    if (log.epoch < epoch) await log.beginEpoch(epoch);
    await replication.setRole('primary', { fromSeq });
    await this.options.host.prepareRole('primary');
    // From here the API accepts writes: this is the moment the takeover time is measured to.
    this.roleValue = 'primary';
    this.primarySinceMs = clock.nowMs();
    this.options.host.roleChanged('primary', { epoch: log.epoch, reason });
    const since = log.watermarks().committed + 1;
    this.leader = { group, kind: 'leader', epoch: log.epoch, node, since, atMs: clock.nowMs() };
    this.rememberLeader(this.leader);
    // Retained and QoS 1: delivered when a broker is reachable. Not awaited, so that a node whose uplink is
    // down still finishes starting (its power supervisor above all).
    void replication.publishLeader(this.leader).catch((error: unknown) => this.options.logger.warn('leader record not published yet', { error }));
    this.options.logger.info(`primary in epoch ${log.epoch}: ${reason}`, { event: 'role', role: 'primary', epoch: log.epoch });
  }

  private async becomeStandby(leader: LeaderMessage | undefined, reason: string): Promise<void> {
    const { log, replication } = this.options;
    if (leader?.kind === 'leader' && leader.node !== this.options.node && leader.since !== undefined && leader.epoch > log.epoch) {
      await this.setAsideSuffix(leader.since - 1, leader);
    }
    await replication.setRole('standby');
    await this.options.host.prepareRole('standby');
    this.roleValue = 'standby';
    this.primarySinceMs = undefined;
    this.options.host.roleChanged('standby', { epoch: log.epoch, reason });
    this.options.logger.info(`standby: ${reason}`, { event: 'role', role: 'standby', epoch: log.epoch });
    this.armSilence();
  }

  /** Entries after `keep` were written in an epoch the new leader does not share: quarantine them. */
  private async setAsideSuffix(keep: number, leader: LeaderMessage): Promise<void> {
    const { log, logger } = this.options;
    if (log.watermarks().committed <= keep) return;
    const result = await log.quarantineAfter(keep);
    logger.warn('demoted: entries this node wrote that never reached the new leader were set aside', {
      event: 'quarantine',
      after: keep,
      records: result.records,
      file: result.file,
      leader: leader.node,
      leaderEpoch: leader.epoch,
    });
    await this.options.host.stateRewound();
  }

  private async onLeader(message: LeaderMessage): Promise<void> {
    const { node, log, onHandoff } = this.options;
    const known = this.leader;
    const newer = !known || message.epoch > known.epoch || (message.epoch === known.epoch && message.atMs > known.atMs);
    if (!newer) return;
    this.leader = message;
    this.rememberLeader(message);
    if (this.roleValue === 'starting') return;
    if (message.kind === 'leader' && message.node !== node && message.epoch > log.epoch) {
      for (const waiter of this.successorWaiters.splice(0)) waiter(true);
      if (this.roleValue === 'primary') await this.becomeStandby(message, `a newer leader appeared: ${message.node} in epoch ${message.epoch}`);
      return;
    }
    if (message.kind === 'handoff' && message.node !== node && this.roleValue === 'standby' && onHandoff) {
      const addressed = message.to === undefined || message.to === node;
      if (addressed) await this.takeOver(message, 'handoff');
    }
  }

  private onState(message: StateMessage): void {
    if (this.roleValue !== 'standby' || this.options.silenceMs === 0) return;
    if (this.leader?.node !== message.node) return;
    // A heartbeat proves the primary alive; its Will ("offline") starts the same countdown from now, which
    // is the configured delay after the broker noticed it gone.
    this.armSilence();
  }

  /** (Re)start the silence timer: any record from the primary proves it alive. */
  private armSilence(): void {
    const { silenceMs, clock } = this.options;
    this.silenceTimer?.cancel();
    if (silenceMs === 0 || this.roleValue !== 'standby') return;
    this.silenceTimer = clock.setTimeout(() => {
      const leader = this.leader;
      if (this.roleValue !== 'standby' || !leader) return;
      this.options.logger.warn(`primary ${leader.node} silent for ${silenceMs} ms; taking over`);
      void this.takeOver(leader, 'silence').catch((error: unknown) => this.options.logger.error('takeover failed', { error }));
    }, silenceMs);
  }

  private async takeOver(record: LeaderMessage, cause: 'handoff' | 'silence'): Promise<void> {
    if (this.takingOver || this.roleValue === 'primary') return;
    this.takingOver = true;
    const { log, clock, logger } = this.options;
    try {
      const expected = record.kind === 'handoff' ? (record.lastSeq ?? 0) : 0;
      await this.waitCommitted(expected, HANDOFF_CATCH_UP_MS);
      const committed = log.watermarks().committed;
      if (committed < expected) logger.error('taking over without every entry the handoff named', { committed, expected });
      const epoch = Math.max(log.epoch, record.epoch) + 1;
      this.silenceTimer?.cancel();
      await this.becomePrimary(epoch, cause === 'handoff' ? `handoff from ${record.node}` : `${record.node} went silent`, { takeover: true });
      const servingAtMs = this.primarySinceMs ?? clock.nowMs();
      this.lastTakeover = {
        fromNode: record.node,
        handoffAtMs: record.atMs,
        servingAtMs,
        takeoverMs: servingAtMs - record.atMs,
        epoch,
        since: committed + 1,
        handoffLastSeq: expected,
        complete: record.complete ?? cause === 'handoff',
        cause,
      };
      logger.info(`took over from ${record.node}`, { event: 'takeover', ...this.lastTakeover });
    } finally {
      this.takingOver = false;
    }
  }

  private async waitCommitted(seq: number, timeoutMs: number): Promise<void> {
    const { log, clock } = this.options;
    const deadline = clock.monotonicMs() + timeoutMs;
    while (log.watermarks().committed < seq && clock.monotonicMs() < deadline) {
      await new Promise<void>((resolve) => clock.setTimeout(resolve, 20));
    }
  }
}
