/**
 * Who may accept writes. The rules, and why each holds, are in LEADERSHIP.md beside this file; in short:
 *
 * - Epochs only grow, from a durable floor (the leader record on flash and the log's epoch); a record below
 *   it moves nothing, whatever a broker retains or lost. Each member owns its own epochs (epochs.ts).
 * - The configured role decides only for a group this node has never seen led.
 * - Leadership moves by a handoff record (at once), or, with `takeover.silenceMs` set, only after the primary
 *   has surely stopped writing: a primary in that mode writes only while it holds a lease renewed by its own
 *   heartbeats coming back (heartbeats.ts), and a standby acts on silence only as silence-watch.ts allows.
 * - A node that handed off (or is powering off) is latched: it never leads again in this life.
 * - A demotion stops writes before it touches the log; a takeover stops the receiver before it counts.
 * - A node whose flash went backwards does not lead (regression.ts).
 *
 * The file is longer than the project's usual few hundred lines on purpose: every decision about the role is a
 * step of one sequence (start, follow, claim, lead, stand down) that reads top to bottom in one room, as the
 * brownout does; the parts that own state or a rule of their own live beside it (leader-store, heartbeats,
 * lease, silence-watch, regression, epochs, and leader-rules: which leader records are followed). Promotion,
 * demotion and the lease's loss each call into the others (a lost lease demotes, a demotion may end in a new
 * claim), so apart they would read as three halves of one sequence.
 */
import type { FlashLog } from '../log/index.ts';
import type { LeaderMessage, Replication, StateMessage } from '../replication/index.ts';
import { boundedWait, type Clock, type Logger } from '../util/index.ts';
import { groupMembers, nextOwnedEpoch } from './epochs.ts';
import { judgeLeaderRecord } from './leader-rules.ts';
import { HandoffTail, type TailEnd } from './handoff-tail.ts';
import { Heartbeats } from './heartbeats.ts';
import { Lease } from './lease.ts';
import { LeaderStore } from './leader-store.ts';
import { RegressionGuard } from './regression.ts';
import { SilenceWatch } from './silence-watch.ts';

/**
 * After connecting, the longest wait for the broker's retained leader record before deciding alone. The wait
 * ends sooner, at the first echo of this node's own heartbeat: the leader topic is in the same subscription as
 * the heartbeats, a broker sends a subscription's retained records when it takes the subscription, and it
 * delivers in order, so a heartbeat that came back through that subscription came after them. With
 * independent brokers the echo needs the quorum, which meets every quorum a leader record was accepted by.
 */
const RETAINED_GRACE_MS = 1500;
/** A successor may still be receiving the tail named in the handoff; wait this long for it. */
const HANDOFF_CATCH_UP_MS = 3000;
/** A primary restores its leader record on the broker at most this often. */
const REPUBLISH_INTERVAL_MS = 1000;

export type Role = 'starting' | 'primary' | 'standby';

export interface RoleHost {
  /** Before the role flips: the agent brings its state up to date with the log. */
  prepareRole(role: 'primary' | 'standby'): Promise<void>;
  /** After the role flipped (writes are open to a primary from here). */
  roleChanged(role: 'primary' | 'standby', info: { epoch: number; reason: string }): void;
  /**
   * This primary is about to stand down (a newer leader, a lost lease): stop what writes through it (the
   * application) and resolve once it has stopped. Writes are already refused while it runs.
   */
  beforeStandDown(reason: string): Promise<void>;
  /** The log lost a suffix (demotion): rebuild the application state. */
  stateRewound(): Promise<void>;
  /** Publish this node's state record stamped `atMs` (a heartbeat). */
  publishHeartbeat(atMs: number): Promise<void>;
}

export interface RoleManagerOptions {
  node: string;
  group: string;
  siblings: readonly string[];
  configuredRole: 'primary' | 'standby';
  onHandoff: boolean;
  silenceMs: number;
  /** With silenceMs: how long a primary may write after sending the last heartbeat a quorum echoed. */
  leaseMs: number;
  heartbeatMs: number;
  /** At start, how long to wait for a broker before deciding from the last leader record this node saw. */
  brokerWaitMs: number;
  /** Where that last leader record is kept (JSON, replaced atomically before the node acts on it). */
  leaderFile: string;
  log: FlashLog;
  replication: Replication;
  host: RoleHost;
  logger: Logger;
  clock: Clock;
}

export interface TakeoverRecord {
  readonly fromNode: string;
  readonly epoch: number;
  /** First seq of the new epoch (the old primary's entries up to since - 1 are kept). */
  readonly since: number;
  readonly handoffLastSeq: number;
  /**
   * handoff: what the old primary had acknowledged; from `since` to it is the gap of an incomplete handoff
   * (what arrived past handoffLastSeq, ahead of the record or in the tail behind it, is kept).
   */
  readonly handoffCommitted?: number;
  /** handoff with a tail (tailMs): how the wait for it ended, and how long it took. */
  readonly tail?: { readonly end: TailEnd; readonly waitedMs: number };
  /** handoff: per SQLite database, the log seq of its last commit (the successor's copy is as of that commit). */
  readonly handoffSqlite?: Readonly<Record<string, number>>;
  readonly complete: boolean;
  readonly cause: 'handoff' | 'silence';
  /** handoff: from the handoff record's arrival to serving. silence: from the decision to serving. */
  readonly takeoverMs: number;
  /** silence: how long the primary had been silent when this node decided. */
  readonly silentMs?: number;
  /** handoff: the record's time on the old primary's wall clock (comparable to servingAtMs only on one host). */
  readonly handoffAtMs?: number;
  readonly servingAtMs: number;
}

/** Why a write is refused, or undefined when this node may acknowledge it now. */
export type WriteRefusal = { code: 'NOT_PRIMARY' | 'HANDING_OFF' | 'LEASE_LOST'; message: string; leader?: string };

export class RoleManager {
  private roleValue: Role = 'starting';
  private latchedReason: string | undefined;
  private demoting = false;
  private pendingClaim: { epoch: number; resolve: (won: boolean) => void } | undefined;
  /**
   * The epoch of this node's last claim that came back first. It is the newest epoch from that moment, before
   * the claim is saved: a rival's claim delivered right behind it must be judged against it.
   */
  private claimWon = 0;
  private successorWaiters: Array<(ok: boolean) => void> = [];
  private takingOver = false;
  private lastTakeover: TakeoverRecord | undefined;
  private primarySinceMs: number | undefined;
  private lastRepublishMs = -Infinity;
  private readonly members: readonly string[];
  private readonly store: LeaderStore;
  private readonly heartbeats: Heartbeats;
  /** Held while this primary's heartbeats come back (lease.ts); consulted only with silence takeover. */
  private readonly lease: Lease;
  private readonly silence: SilenceWatch | undefined;
  private readonly dropped: Record<string, number> = {};
  private readonly regression: RegressionGuard;
  private readonly handoffTail: HandoffTail;
  private leaderTurn: Promise<void> = Promise.resolve();

  constructor(private readonly options: RoleManagerOptions) {
    this.members = groupMembers(options.node, options.siblings);
    this.store = new LeaderStore(options.leaderFile, options.group, options.logger);
    this.regression = new RegressionGuard(options.node, this.members, options.logger);
    this.handoffTail = new HandoffTail(options.clock);
    this.heartbeats = new Heartbeats({
      clock: options.clock,
      heartbeatMs: options.heartbeatMs,
      quorum: options.replication.brokerQuorum,
      send: (atMs) => options.host.publishHeartbeat(atMs),
      logger: options.logger,
    });
    this.lease = new Lease({ leaseMs: options.leaseMs, heartbeatMs: options.heartbeatMs, heartbeats: this.heartbeats, clock: options.clock });
    if (options.silenceMs > 0) {
      this.silence = new SilenceWatch({
        node: options.node,
        silenceMs: options.silenceMs,
        heartbeatMs: options.heartbeatMs,
        heartbeats: this.heartbeats,
        committed: () => options.log.watermarks().committed,
        onSilent: (silentMs) => this.takeOverBySilence(silentMs),
        clock: options.clock,
        logger: options.logger,
      });
    }
  }

  get role(): Role {
    return this.roleValue;
  }

  get leaderRecord(): LeaderMessage | undefined {
    return this.store.current;
  }

  get latched(): boolean {
    return this.latchedReason !== undefined;
  }

  /**
   * The epoch floor: no leader at or below it other than the one recorded is ever followed. Durable (the
   * leader record, the log's epoch), and from the moment this node's claim came back first, that claim.
   */
  floor(): number {
    return Math.max(this.logEpochSeen(), this.store.current?.epoch ?? 0, this.claimWon);
  }

  /** The log's epoch, once it means something: a fresh log starts at epoch 1 with nothing in it. */
  private logEpochSeen(): number {
    const { log } = this.options;
    return log.epoch > 1 || log.watermarks().committed > 0 ? log.epoch : 0;
  }

  /** Whether a write may be acknowledged now (checked at admission and again before the answer). */
  refusal(): WriteRefusal | undefined {
    const leader = this.store.current;
    if (this.roleValue !== 'primary' || this.demoting) {
      const name = leader && leader.node !== this.options.node ? leader.node : undefined;
      return { code: 'NOT_PRIMARY', message: `this node (${this.options.node}) is ${this.demoting ? 'demoting' : this.roleValue}; write to the primary${name ? ` (${name})` : ''}`, leader: name };
    }
    if (this.latchedReason) return { code: 'HANDING_OFF', message: `this node handed off (${this.latchedReason}); write to ${this.options.siblings.join(' or ')}` };
    if (this.silence && !this.lease.held) {
      return { code: 'LEASE_LOST', message: `this primary has not heard its own heartbeats back within takeover.leaseMs (${this.options.leaseMs} ms); writes wait until the brokers answer again` };
    }
    return undefined;
  }

  status(): Record<string, unknown> {
    const lease = this.silence
      ? { leaseMs: this.options.leaseMs, held: this.roleValue === 'primary' && this.lease.held, remainingMs: Math.round(this.lease.remainingMs) || 0 }
      : undefined;
    return {
      role: this.roleValue,
      leader: this.store.current,
      epochFloor: this.floor(),
      latched: this.latchedReason,
      primarySinceMs: this.primarySinceMs,
      lastTakeover: this.lastTakeover,
      lease,
      silence: this.silence?.status(),
      leaderRecordsDropped: { ...this.dropped },
      regressed: this.regression.report,
    };
  }

  /** Subscribe to leader and state records, then decide the starting role. */
  async start(): Promise<void> {
    const { replication, logger } = this.options;
    // One leader record at a time, in the brokers' order: a record is judged against the floor that every record
    // before it set (two at once both saw the old floor, and a claim that lost the race could count as won).
    replication.on('leader', (message) => {
      // When it arrived, not when its turn came: a handoff's tail ends with a record that may arrive meanwhile.
      const receivedMs = this.options.clock.monotonicMs();
      this.leaderTurn = this.leaderTurn.then(() => this.onLeader(message, receivedMs)).catch((error: unknown) => logger.error('leader record handling failed', { error }));
    });
    replication.on('state', (message) => this.onState(message));
    replication.on('ownState', (message, link) => this.heartbeats.onEcho(message.atMs, link));
    replication.on('leaderNoise', () => this.restoreRecord('the leader topic holds something that is not a valid record'));
    replication.on('evidence', (evidence) => this.regression.note(evidence));
    const stored = await this.store.load();
    if (stored) replication.followEpoch(stored.epoch, stored.kind === 'leader' ? stored.since : undefined);
    this.heartbeats.start();
    if (!(await this.waitForConnection())) {
      const leader = this.store.current;
      const basis = leader ? `the last leader record this node saw (${leader.kind} by ${leader.node}, epoch ${leader.epoch})` : `its configured role (${this.options.configuredRole})`;
      logger.warn(`no broker answered within ${this.options.brokerWaitMs} ms; deciding the role from ${basis}. A newer epoch seen later demotes this node.`);
    }
    // The retained records received so far are judged (and saved) before the decision reads them.
    await this.leaderTurn;
    await this.decideInitialRole();
  }

  stop(): void {
    this.heartbeats.stop();
    this.silence?.stop();
  }

  /**
   * The handoff record is about to leave: latch (no more writes, no takeover, whatever the broker says later),
   * and put the record on flash before it goes (restarted, this node finds it and comes back as a standby).
   */
  async latchHandoff(record: LeaderMessage): Promise<void> {
    this.latch('handed off');
    await this.store.save(record);
  }

  /** Power is going (or gone): never lead again in this life. */
  latch(reason: string): void {
    if (this.latchedReason) return;
    this.latchedReason = reason;
    this.silence?.stop();
    this.options.logger.info(`latched: ${reason}; this node will not lead again until it restarts as a standby`, { event: 'latched', reason });
  }

  /** The primary, after publishing its handoff: resolves true when a successor announced a newer epoch. */
  waitForSuccessor(timeoutMs: number): Promise<boolean> {
    const leader = this.store.current;
    if (leader && leader.kind === 'leader' && leader.node !== this.options.node && leader.epoch > this.options.log.epoch) return Promise.resolve(true);
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

  // ---- deciding -----------------------------------------------------------------------------------------

  private async decideInitialRole(): Promise<void> {
    const { log, node, configuredRole } = this.options;
    const leader = this.store.current;
    const wouldLead = leader ? leader.kind === 'leader' && leader.node === node : configuredRole === 'primary';
    if (wouldLead && this.wentBackwards()) return this.becomeStandby(undefined, 'its flash holds less than it told the group; refusing to lead with seqs it may already have used');
    if (!leader) {
      const neverLed = this.logEpochSeen() === 0;
      if (neverLed && configuredRole === 'primary') {
        await this.promote('no leader record yet and this node is configured as primary');
        return;
      }
      const why = neverLed ? 'no leader yet; configured as standby' : `this node has seen epoch ${log.epoch} but knows no leader record; a missing record is not a licence to lead`;
      return this.becomeStandby(undefined, why);
    }
    if (leader.kind === 'handoff' && leader.node === node) return this.becomeStandby(leader, 'this node handed off before it stopped; waiting for the successor');
    if (leader.kind === 'handoff' && (leader.to === node || leader.to === undefined) && this.options.onHandoff) return this.takeOver(leader, 'handoff');
    if (leader.kind === 'leader' && leader.node === node) {
      // With leases, a restarted primary cannot know what happened while it was away: it acquires the lead
      // anew like any standby (silence, election, a new epoch). Without, only a handoff moves the lead.
      if (this.silence) return this.becomeStandby(leader, `this node led epoch ${leader.epoch} before it restarted; it leads again once the group is silent for takeover.silenceMs`);
      await this.becomePrimary('the last leader record names this node');
      return;
    }
    return this.becomeStandby(leader, `the group's leader is ${leader.node} (epoch ${leader.epoch})`);
  }

  private wentBackwards(): boolean {
    return this.regression.wentBackwards({ epoch: this.logEpochSeen(), committed: this.options.log.watermarks().committed });
  }

  private async onLeader(message: LeaderMessage, receivedMs: number): Promise<void> {
    const { node } = this.options;
    const known = this.store.current;
    if (known && message.epoch === known.epoch && message.node === known.node && message.kind === known.kind && message.atMs <= known.atMs) return;
    const floor = this.floor();
    if (this.pendingClaim && message.node === node && message.epoch === this.pendingClaim.epoch) {
      // This node's own claim came back: it won if nothing newer arrived first.
      const won = (message.prev ?? 0) >= floor;
      if (won) this.claimWon = message.epoch;
      this.pendingClaim.resolve(won);
      return;
    }
    const verdict = judgeLeaderRecord(message, { node, members: this.members, floor, known });
    if (!verdict.follow) return this.drop(verdict.reason, message, verdict.why);
    // A primary that is about to follow someone else stops acknowledging before anything else happens.
    if (message.kind === 'leader' && message.node !== node && this.roleValue === 'primary') this.demoting = true;
    await this.store.save(message);
    this.options.replication.followEpoch(message.epoch, message.kind === 'leader' && message.node !== node ? message.since : undefined);
    if (message.kind === 'leader' && message.node !== node) for (const waiter of this.successorWaiters.splice(0)) waiter(true);
    if (this.latchedReason || this.roleValue === 'starting') {
      this.demoting = false;
      return;
    }
    if (message.kind === 'leader' && message.node !== node) {
      if (this.roleValue === 'primary') return this.demote(message);
      await this.setAsideSuffix(message);
      this.silence?.watch(message.node);
      return;
    }
    if (message.kind === 'handoff' && message.node !== node && this.roleValue === 'standby' && this.options.onHandoff) {
      // Not awaited: the takeover's own claim comes back as a leader record, which must not wait behind this one.
      if (message.to === undefined || message.to === node) void this.takeOver(message, 'handoff', { receivedMs }).catch((error: unknown) => this.options.logger.error('takeover failed', { error }));
      else this.silence?.watch(message.to);
    }
  }

  private onState(message: StateMessage): void {
    this.handoffTail.onState(message);
    this.silence?.onState(message);
  }

  private drop(reason: string, message: LeaderMessage, why: string): void {
    this.dropped[reason] = (this.dropped[reason] ?? 0) + 1;
    this.options.logger.warn(`ignored a leader record: ${why}`, { event: 'leader-dropped', reason, from: message.node, epoch: message.epoch, kind: message.kind });
    this.restoreRecord(`a ${reason} record replaced it`);
  }

  /** A primary whose record is missing or replaced on the broker publishes it again (rate-limited). */
  private restoreRecord(why: string): void {
    const record = this.store.current;
    if (this.roleValue !== 'primary' || this.latchedReason || !record || record.node !== this.options.node) return;
    const now = this.options.clock.monotonicMs();
    if (now - this.lastRepublishMs < REPUBLISH_INTERVAL_MS) return;
    this.lastRepublishMs = now;
    this.options.logger.info(`republishing the leader record: ${why}`, { event: 'leader-republish' });
    void this.options.replication.publishLeader(record).catch((error: unknown) => this.options.logger.warn('leader record not republished', { error }));
  }

  // ---- moving -------------------------------------------------------------------------------------------

  /**
   * Lead in a new epoch of this node's own (first start, or a takeover): the leader record it leads by, or
   * undefined if it does not lead.
   */
  private async promote(reason: string): Promise<LeaderMessage | undefined> {
    if (this.wentBackwards()) {
      if (this.roleValue === 'starting') await this.becomeStandby(undefined, 'its flash holds less than it told the group; refusing to lead');
      return undefined;
    }
    const epoch = nextOwnedEpoch(this.members, this.options.node, this.floor());
    if (epoch === undefined) {
      this.options.logger.error(`cannot lead: no epoch above ${this.floor()} is left for this node (32-bit epochs)`, { event: 'epochs-exhausted' });
      if (this.roleValue === 'starting') await this.becomeStandby(this.store.current, 'no epoch left to lead in');
      return undefined;
    }
    return this.becomePrimary(reason, epoch);
  }

  /**
   * `epoch`: claim this new epoch; undefined: lead again in the recorded one (a restart without leases).
   * Order matters: the receiver stops first (nothing from the old primary lands after the position is taken);
   * with leases the claim must win before anything is written; the record is on flash before the epoch
   * begins in the log; writes open last. Returns the leader record this node leads by (undefined: it does
   * not lead), which the store's current record need not be by then: a rival's claim may have come after.
   */
  private async becomePrimary(reason: string, epoch?: number): Promise<LeaderMessage | undefined> {
    const { log, replication, node, group, clock, logger } = this.options;
    await replication.setRole('primary', { fromSeq: epoch === undefined ? undefined : log.watermarks().committed + 1 });
    let record = this.store.current!;
    if (epoch !== undefined) {
      record = { group, kind: 'leader', epoch, node, since: log.watermarks().committed + 1, prev: this.floor(), atMs: clock.nowMs() };
      if (this.silence) {
        const outcome = await this.claimEpoch(record);
        if (outcome !== 'won') {
          await this.becomeStandby(this.store.current, outcome === 'lost' ? `another node's claim reached the brokers before this node's claim to epoch ${epoch}` : `the claim to epoch ${epoch} did not come back from the brokers`);
          return undefined;
        }
      }
      await this.store.save(record);
      replication.followEpoch(epoch);
      if (log.epoch < epoch) await log.beginEpoch(epoch);
    }
    await this.options.host.prepareRole('primary');
    if (this.silence && !(await this.lease.acquire())) {
      await this.becomeStandby(this.store.current, 'no heartbeat came back from the brokers: no lease');
      return undefined;
    }
    // Retained and QoS 1: delivered when a broker is reachable. Not awaited: without leases a node whose
    // uplink is down still serves (store-and-forward), since nobody else can take the lead but by handoff.
    if (!this.silence || epoch === undefined) void replication.publishLeader(record).catch((error: unknown) => logger.warn('leader record not published yet', { error }));
    this.silence?.stop();
    // From here the API accepts writes: this is the moment the takeover time is measured to.
    this.roleValue = 'primary';
    if (this.silence) this.watchLease();
    this.primarySinceMs = clock.nowMs();
    this.options.host.roleChanged('primary', { epoch: log.epoch, reason });
    logger.info(`primary in epoch ${log.epoch}: ${reason}`, { event: 'role', role: 'primary', epoch: log.epoch, since: record.since });
    return record;
  }

  /**
   * Publish a claim and wait for it to come back. The brokers order the records on the leader topic; a claim
   * counts only if its `prev` is still the newest epoch when it arrives, so of two racing claims every node
   * takes the one delivered first, the claimers included (onLeader resolves the wait).
   */
  private async claimEpoch(record: LeaderMessage): Promise<'won' | 'lost' | 'timeout'> {
    const { replication, clock, logger } = this.options;
    const outcome = new Promise<'won' | 'lost' | 'timeout'>((resolve) => {
      const timer = clock.setTimeout(() => resolve('timeout'), this.lease.roundTripMs());
      this.pendingClaim = {
        epoch: record.epoch,
        resolve: (won) => {
          timer.cancel();
          resolve(won ? 'won' : 'lost');
        },
      };
    });
    void replication.publishLeader(record).catch((error: unknown) => logger.warn('leader claim not published', { error }));
    const result = await outcome;
    this.pendingClaim = undefined;
    return result;
  }

  /**
   * A lease that ran out is not renewed by a late echo: the primary stands by and acquires the lead anew
   * (silence, election, a new epoch's claim).
   */
  private watchLease(): void {
    this.lease.watch(
      () => this.roleValue === 'primary' && !this.latchedReason && !this.demoting,
      () => {
        this.demoting = true;
        const record = this.store.current;
        this.options.logger.warn(`lease lost: no heartbeat came back from the brokers within takeover.leaseMs (${this.options.leaseMs} ms); standing by, and leading again only by a new claim`, { event: 'lease-lost' });
        void this.options.host
          .beforeStandDown('lost its lease')
          .then(() => this.becomeStandby(record, 'lost its lease'))
          .catch((error: unknown) => this.options.logger.error('standing by after the lease failed', { error }))
          .finally(() => (this.demoting = false));
      },
    );
  }

  private async becomeStandby(leader: LeaderMessage | undefined, reason: string): Promise<void> {
    const { log, replication } = this.options;
    if (leader) await this.setAsideSuffix(leader);
    await replication.setRole('standby');
    await this.options.host.prepareRole('standby');
    this.roleValue = 'standby';
    this.primarySinceMs = undefined;
    this.options.host.roleChanged('standby', { epoch: log.epoch, reason });
    this.options.logger.info(`standby: ${reason}`, { event: 'role', role: 'standby', epoch: log.epoch });
    if (!this.latchedReason) this.silence?.watch(leader?.kind === 'handoff' ? (leader.to ?? leader.node) : leader?.node);
  }

  /**
   * A newer leader appeared while this node was primary: stop writes first (the API refuses them, and the log
   * fence carries the appends already admitted through their fsync), then cut, then follow.
   */
  private async demote(leader: LeaderMessage): Promise<void> {
    const { log } = this.options;
    this.demoting = true;
    try {
      await this.options.host.beforeStandDown(`a newer leader appeared: ${leader.node} in epoch ${leader.epoch}`);
      await log.fence('NOT_PRIMARY', `this node (${this.options.node}) is demoting: ${leader.node} leads epoch ${leader.epoch}`);
      try {
        await this.setAsideSuffix(leader);
      } finally {
        log.unfence();
      }
      await this.becomeStandby(leader, `a newer leader appeared: ${leader.node} in epoch ${leader.epoch}`);
    } finally {
      this.demoting = false;
    }
  }

  /**
   * Entries after the new leader's start were written in an epoch it does not share: quarantine them. Whether
   * they were is read from the entry at the leader's first seq, not from the log's epoch: after a partition
   * heals, the new leader's batches (a resend from this node's committed + 1) can land before its leader
   * record does, and then the log's epoch is already the leader's while this node's own entries of the older
   * epoch still sit between `since` and them.
   */
  private async setAsideSuffix(leader: LeaderMessage): Promise<void> {
    const { log, logger } = this.options;
    if (leader.kind !== 'leader' || leader.node === this.options.node || leader.since === undefined) return;
    const keep = leader.since - 1;
    if (log.watermarks().committed <= keep) return;
    // Retention may have released the entry at `since` already: then the log's epoch is all there is to go by.
    const [first] = leader.since >= log.firstSeq ? await log.read(leader.since, { entriesMax: 1, bytesMax: Number.MAX_SAFE_INTEGER }) : [];
    const following = first !== undefined && first.seq === leader.since ? first.epoch >= leader.epoch : leader.epoch <= log.epoch;
    if (following) return;
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

  private async takeOverBySilence(silentMs: number): Promise<void> {
    const leader = this.store.current;
    const from = leader ? (leader.kind === 'handoff' ? (leader.to ?? leader.node) : leader.node) : 'the group';
    this.options.logger.warn(`primary ${from} silent for ${silentMs} ms (takeover.silenceMs ${this.options.silenceMs}); taking over`, { event: 'silence', silentMs });
    await this.takeOver(leader, 'silence', { silentMs });
  }

  /**
   * Take the lead after `record` (a handoff) or the primary's silence. A handoff received live
   * (`receivedMs`) that announces a tail is followed until the tail ends (handoff-tail.ts); one found at
   * start is old news, and its tail, if any, is over.
   */
  private async takeOver(record: LeaderMessage | undefined, cause: 'handoff' | 'silence', at: { receivedMs?: number; silentMs?: number } = {}): Promise<void> {
    if (this.takingOver || this.roleValue === 'primary' || this.latchedReason) return;
    this.takingOver = true;
    const { log, clock, logger } = this.options;
    const startedMs = clock.monotonicMs();
    try {
      const expected = record?.kind === 'handoff' ? (record.lastSeq ?? 0) : 0;
      await this.waitCommitted(expected, HANDOFF_CATCH_UP_MS);
      if (log.watermarks().committed < expected) logger.error('taking over without every entry the handoff named', { committed: log.watermarks().committed, expected });
      const tail = record && at.receivedMs !== undefined && HandoffTail.announced(record) ? await this.followTail(record, at.receivedMs) : undefined;
      const fromNode = record?.node ?? 'nobody';
      const led = await this.promote(cause === 'handoff' ? `handoff from ${fromNode}` : `${fromNode} went silent`);
      if (!led) return;
      // From the record this node claimed, not the store's current one: a rival's later claim (which lost)
      // may be there by now, with a `since` of its own.
      const since = led.since ?? log.watermarks().committed + 1;
      const servingAtMs = this.primarySinceMs ?? clock.nowMs();
      const complete = cause === 'handoff' ? record?.complete !== false || (record.committed !== undefined && since > record.committed) : false;
      this.lastTakeover = {
        fromNode,
        epoch: log.epoch,
        since,
        handoffLastSeq: expected,
        ...(record?.kind === 'handoff' && record.committed !== undefined ? { handoffCommitted: record.committed } : {}),
        ...(record?.kind === 'handoff' && record.sqlite ? { handoffSqlite: record.sqlite } : {}),
        ...(tail ? { tail } : {}),
        complete,
        cause,
        takeoverMs: Math.round(clock.monotonicMs() - startedMs),
        ...(at.silentMs !== undefined ? { silentMs: at.silentMs } : {}),
        ...(cause === 'handoff' && record ? { handoffAtMs: record.atMs } : {}),
        servingAtMs,
      };
      logger.info(`took over from ${fromNode}`, { event: 'takeover', ...this.lastTakeover });
      if (record?.kind === 'handoff' && !complete) logger.warn(`incomplete handoff from ${fromNode}: it acknowledged seqs ${since}..${record.committed ?? '?'} that never arrived here; this epoch reuses those seqs, and ${fromNode} sets its copies aside (lastgasp quarantine list on it)`, { event: 'handoff-incomplete', fromNode, lastSeq: expected, since, committed: record.committed, missing: Math.max(0, (record.committed ?? expected) - since + 1) });
    } finally {
      this.takingOver = false;
    }
  }

  /**
   * Resolves true once connected (after a grace for the retained leader record), false when no broker
   * answered within brokerWaitMs: a gateway whose uplink is down at boot must still decide.
   */
  private waitForConnection(): Promise<boolean> {
    const { replication, clock, brokerWaitMs } = this.options;
    return new Promise((resolve) => {
      const settle = () => {
        timer.cancel();
        void this.heartbeats.waitEcho(RETAINED_GRACE_MS).then(() => resolve(true));
      };
      const timer = clock.setTimeout(() => {
        replication.off('up', settle);
        resolve(false);
      }, brokerWaitMs);
      if (replication.connected) settle();
      else replication.once('up', settle);
    });
  }

  /** Keep applying the tail the handoff announced until it ends (handoff-tail.ts), and say how it ended. */
  private async followTail(record: LeaderMessage, receivedMs: number): Promise<NonNullable<TakeoverRecord['tail']>> {
    const { log, clock, logger } = this.options;
    const startedMs = clock.monotonicMs();
    logger.info(`${record.node}'s tail goes on behind its handoff for up to ${record.tailMs} ms: taking over when it ends`, { event: 'handoff-tail', fromNode: record.node, lastSeq: record.lastSeq, committed: record.committed, tailMs: record.tailMs, have: log.watermarks().committed });
    const end = await this.handoffTail.wait(record, receivedMs, () => log.watermarks().committed);
    // The batches that came before the tail's end are stored before the claim, which stops the receiver
    // and drops what is still queued (bench:holdup lost two 46 KB batches that way to a Will).
    await boundedWait(clock, this.options.replication.batchesSettled(), HANDOFF_CATCH_UP_MS);
    return { end, waitedMs: Math.round(clock.monotonicMs() - startedMs) };
  }

  private async waitCommitted(seq: number, timeoutMs: number): Promise<void> {
    const { log, clock } = this.options;
    const deadline = clock.monotonicMs() + timeoutMs;
    while (log.watermarks().committed < seq && clock.monotonicMs() < deadline) {
      await new Promise<void>((resolve) => clock.setTimeout(resolve, 20));
    }
  }
}
