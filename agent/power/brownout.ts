/**
 * The brownout: the one sequence the battery is spent on, each step here in the order the supervisor runs
 * them (supervisor.ts flushAndHandoff, which feeds the power machine between them and asks the power
 * source to hold and to cut):
 *
 *   1. flushTail        stop what runs only on the primary, fence the log, replicate its tail within the budget;
 *   2. publishHandoff   latch, and publish the record naming the last entry the sibling can rely on;
 *   3. waitForSuccessor until the sibling announces its epoch, or the timeout;
 *   4. powerOff         the last state and power records, then the links dropped so that the Will goes out.
 *
 * Around them: shrinkTail while on battery, and resume when mains returns before the handoff. It talks to
 * narrow views of the log, replication, the role and the application (below), never to the agent; whether
 * this node is handing off or powered off it reads from the power machine's state, which alone holds it.
 */
import { boundedWait, type Clock, type Logger, type TimerHandle } from '../util/index.ts';
import type { PowerStateName } from './machine.ts';
import type { FlushEnd, FlushOutcome, SupervisorHost } from './supervisor.ts';

/** The most the brownout flush waits for the forwarder's last position before it fences the log. */
const FORWARD_FINAL_MARK_WAIT_MS = 1000;
/** The publisher's deadline in the brownout flush lies this far past the budget (see waitFlushed). */
const FLUSH_DEADLINE_SLACK_MS = 1000;
/**
 * The flush ends this much earlier than the measured lead of the handoff record asks (publisher
 * handoffLeadMs): the watermarks' and the latched handoff's fsyncs come first, tens of ms on a busy flash.
 */
const FLUSH_HANDOFF_MARGIN_MS = 100;
/** How often the flush looks again at that lead: it moves with the bytes in flight (at most ~300 ms of them). */
const FLUSH_LEAD_CHECK_MS = 25;
/**
 * How long the "handed-off" state record may wait for a broker before the links are dropped: with no broker
 * answering (the handoff went by the direct path) it would wait for ever, and the Will says "offline" anyway.
 */
const POWER_OFF_STATE_WAIT_MS = 1000;
/** After the handoff, the last power record gets this long to be acknowledged before the connections drop. */
const POWER_OFF_RECORD_WAIT_MS = 500;
/**
 * The power states from the flush on: writes are refused (HANDING_OFF). The machine enters FLUSHING in the
 * same turn as the flush begins, and leaves these states only for ONLINE, when mains returns before the
 * handoff (resume). A standby promoted while in them is refused too: its log stays fenced until then.
 */
const HANDING_OFF_STATES: ReadonlySet<PowerStateName> = new Set(['FLUSHING', 'HANDED_OFF', 'POWER_OFF']);
/** Exit code after a handoff whose power cut never came: "restart me" (EX_TEMPFAIL, sysexits.h). */
export const EXIT_RESTART_AS_STANDBY = 75;

/** The handoff record (replication's leader record of kind "handoff"). */
export interface HandoffRecord {
  readonly group: string;
  readonly kind: 'handoff';
  readonly epoch: number;
  readonly node: string;
  readonly to?: string;
  readonly lastSeq: number;
  readonly committed: number;
  readonly complete: boolean;
  readonly sqlite?: Readonly<Record<string, number>>;
  readonly reason: string;
  readonly atMs: number;
}

/** What the brownout does to the flash log (log/FlashLog offers it). */
export interface BrownoutLog {
  readonly epoch: number;
  watermarks(): { readonly committed: number; readonly replicated: number };
  setSyncMode(mode: 'immediate' | 'batched'): void;
  fence(code: 'HANDING_OFF', message: string): Promise<number>;
  unfence(): void;
  syncWatermarks(): Promise<void>;
}

/** What it asks of replication (replication/Replication offers it, so nothing reaches into the publisher). */
export interface BrownoutReplication {
  beginFlush(budgetMs: number): void;
  endFlush(): void;
  setOnBattery(onBattery: boolean): void;
  handoffLeadMs(): number | undefined;
  waitReplicated(seq: number, timeoutMs: number, signal: AbortSignal): Promise<boolean>;
  siblingPositions(): Readonly<Record<string, number>>;
  publishHandoff(record: HandoffRecord): Promise<void>;
  publishPowerNow(status: object): Promise<void>;
  abort(): Promise<void>;
}

/** What it asks of the role (takeover/RoleManager offers it). */
export interface BrownoutRoles {
  readonly role: string;
  latchHandoff(record: HandoffRecord): Promise<void>;
  latch(reason: string): void;
  waitForSuccessor(timeoutMs: number): Promise<boolean>;
}

/** What runs only on the primary (app/): stopped before the fence, started again if mains returns first. */
export interface BrownoutApplication {
  readonly app?: { stop(reason: string): Promise<void> };
  readonly forwarder?: { stop(reason: string, options?: { finalMark?: boolean }): Promise<void> };
  readonly sqlite?: { captureFinal(): Promise<Record<string, number>> };
  /** Mains came back before the handoff and this node is still the primary: start the application and the forwarder. */
  restart(): void;
}

export interface BrownoutOptions {
  log: BrownoutLog;
  replication: BrownoutReplication;
  roles: BrownoutRoles;
  application: BrownoutApplication;
  /** The power machine's state (supervisor.ts), ONLINE without a power source. */
  powerState(): PowerStateName;
  group: string;
  node: string;
  siblings: readonly string[];
  /** power.restartAfterPowerOffMs: how long after the handoff a node whose power never went exits. */
  restartAfterPowerOffMs: number;
  /** Publish this node's "handed-off" state record (the agent composes its state records). */
  publishHandedOff(): Promise<void>;
  /** The power source's last status, for the last power record. */
  lastPowerStatus(): object | undefined;
  /** The flushDone and handoff hooks (config hooks). */
  hooks: { fire(event: 'flushDone' | 'handoff', fields: Readonly<Record<string, string | number | boolean | undefined>>): void };
  /** The flush-time histogram of GET /metrics. */
  flushSeconds: { observe(seconds: number): void };
  /** Ends the process (`lastgasp run` exits with this code so that systemd restarts it). */
  exit?: (code: number) => void;
  logger: Logger;
  clock: Clock;
}

export type BrownoutSteps = Pick<SupervisorHost, 'shrinkTail' | 'flushTail' | 'publishHandoff' | 'waitForSuccessor' | 'resume' | 'powerOff'>;

export class Brownout implements BrownoutSteps {
  /** The application's stop begun by the flush, awaited by the handoff. */
  private appStopping: Promise<void> | undefined;
  /** The log seq of each database's last commit, captured as the flush began (named in the handoff). */
  private sqliteCommits: Record<string, number> | undefined;

  constructor(private readonly options: BrownoutOptions) {}

  /** From the flush on, until mains returns: writes are refused (HANDING_OFF). */
  get handingOff(): boolean {
    return HANDING_OFF_STATES.has(this.options.powerState());
  }

  /** The sequence reached its end (the power cut was asked for): this node serves nothing again in this life. */
  get poweredOff(): boolean {
    return this.options.powerState() === 'POWER_OFF';
  }

  /** Mains lost (true) or back (false): sync every batch at once and replicate regardless of the operator's pause. */
  shrinkTail(onBattery: boolean): void {
    this.options.log.setSyncMode(onBattery ? 'immediate' : 'batched');
    this.options.replication.setOnBattery(onBattery);
  }

  /**
   * Step 1, the flush. It first fences the log: new writes are refused (HANDING_OFF), and the batches
   * already inside the group commit are carried through their fdatasync and acknowledged, so the fence's seq
   * is the last write this node will ever have acknowledged. Then it replicates up to that seq, not up to the
   * `committed` of the moment the flush began: writes acknowledged just after that moment are the sibling's
   * to hold too. `end` says how it ended; only "flushed" is complete.
   */
  async flushTail(budgetMs: number, signal: AbortSignal): Promise<FlushOutcome> {
    const { log, replication, clock, logger } = this.options;
    const started = clock.monotonicMs();
    log.setSyncMode('immediate');
    replication.beginFlush(budgetMs);
    const atStart = log.watermarks();
    const sqliteCommits = await this.stopPrimaryWork();
    const fenceSeq = await log.fence('HANDING_OFF', `power is failing and this node is handing off to its sibling; retry against ${this.options.siblings.join(' or ')}`);
    const replicated = log.watermarks().replicated;
    logger.info('flushing the unreplicated tail', {
      event: 'flush-start',
      tail: fenceSeq - replicated,
      committed: fenceSeq,
      committedAtBrownout: atStart.committed,
      replicated,
      budgetMs,
      ...(sqliteCommits ? { sqliteCommits } : {}),
    });
    const end: FlushEnd = this.options.roles.role === 'primary' ? await this.waitFlushed(fenceSeq, budgetMs - (clock.monotonicMs() - started), signal) : 'not-primary';
    // The handoff names what the sibling holds whether or not this checkpoint lands: a failed sync on a
    // dying node must not keep the handoff from going out.
    await log.syncWatermarks().catch((error: unknown) => logger.warn('could not make the watermarks durable before the handoff', { error }));
    const after = log.watermarks();
    const flushMs = Math.round(clock.monotonicMs() - started);
    this.options.flushSeconds.observe((clock.monotonicMs() - started) / 1000);
    this.options.hooks.fire('flushDone', { complete: end === 'flushed', end, lastSeq: Math.min(after.replicated, fenceSeq), committed: fenceSeq, flushMs });
    return { tailAtStart: fenceSeq - atStart.replicated, lastSeq: Math.min(after.replicated, fenceSeq), committed: fenceSeq, complete: end === 'flushed', end, flushMs };
  }

  /**
   * Before the fence: the application stops (writes are refused from here on, and the handoff waits for it to
   * be gone, so that it never runs on both nodes), the forwarder writes its last position, and the
   * application's last SQLite transactions are captured. Returns those databases' last commits.
   */
  private async stopPrimaryWork(): Promise<Record<string, number> | undefined> {
    const { app, forwarder, sqlite } = this.options.application;
    this.appStopping = app?.stop('power is failing: handing off');
    // The forwarder's last position goes in before the fence, so the sibling forwards from the message
    // after the last one upstream acknowledged (a mark costs one group commit of the flush).
    const forwarderStopped = forwarder?.stop('power is failing: handing off', { finalMark: true });
    // The last SQLite transactions are in the application's WAL, not yet in the log: once it has stopped
    // (it commits nothing more), they are captured, so that the fence's seq covers its last commit.
    let sqliteCommits: Record<string, number> | undefined;
    if (sqlite) {
      await this.appStopping;
      sqliteCommits = await sqlite.captureFinal().catch((error: unknown) => {
        this.options.logger.error('could not capture the last SQLite transactions before the flush', { error });
        return undefined;
      });
      this.sqliteCommits = sqliteCommits;
    }
    if (forwarderStopped) await boundedWait(this.options.clock, forwarderStopped, FORWARD_FINAL_MARK_WAIT_MS);
    return sqliteCommits;
  }

  /** Wait until `seq` is replicated, and say why not when it is not: the budget, an abort, or replication stopped. */
  private async waitFlushed(seq: number, budgetMs: number, signal: AbortSignal): Promise<FlushEnd> {
    const { log, replication, clock } = this.options;
    if (budgetMs <= 0) return log.watermarks().replicated >= seq ? 'flushed' : 'budget';
    const expire = new AbortController();
    let budgetOver = false;
    // The budget is the time until the handoff record must be on the brokers: the flush stops waiting as
    // long before it as the record needs to get out behind what is in flight, measured on this link.
    const deadlineMs = clock.monotonicMs() + budgetMs;
    let timer: TimerHandle;
    const check = () => {
      const leftMs = deadlineMs - clock.monotonicMs() - (replication.handoffLeadMs() ?? 0) - FLUSH_HANDOFF_MARGIN_MS;
      if (leftMs > 0) {
        timer = clock.setTimeout(check, Math.min(leftMs, FLUSH_LEAD_CHECK_MS));
        return;
      }
      budgetOver = true;
      expire.abort();
    };
    timer = clock.setTimeout(check, 0);
    const onAbort = () => expire.abort();
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      // The publisher's own deadline lies past the budget, so that only the budget's timer says "budget" and
      // a false without either means that replication stopped under the flush.
      const ok = await replication.waitReplicated(seq, budgetMs + FLUSH_DEADLINE_SLACK_MS, expire.signal);
      if (ok) return 'flushed';
      if (budgetOver) return 'budget';
      return signal.aborted ? 'aborted' : 'replication-stopped';
    } finally {
      timer.cancel();
      signal.removeEventListener('abort', onAbort);
    }
  }

  /** Step 2: latch, and publish the handoff record naming outcome.lastSeq (only a primary has one to publish). */
  async publishHandoff(outcome: FlushOutcome, reason: string): Promise<void> {
    const { roles, application, log, clock, logger } = this.options;
    if (roles.role !== 'primary') return;
    await (this.appStopping ?? application.app?.stop(`handing off: ${reason}`));
    const atMs = clock.nowMs();
    const to = this.successor();
    const record: HandoffRecord = {
      group: this.options.group,
      kind: 'handoff',
      epoch: log.epoch,
      node: this.options.node,
      to,
      lastSeq: outcome.lastSeq,
      committed: outcome.committed,
      complete: outcome.complete,
      ...(this.sqliteCommits ? { sqlite: this.sqliteCommits } : {}),
      reason,
      atMs,
    };
    // On flash before it leaves: restarted, this node finds its own handoff and comes back as a standby.
    await roles.latchHandoff(record);
    await this.options.replication.publishHandoff(record);
    this.options.hooks.fire('handoff', { to, complete: outcome.complete, lastSeq: outcome.lastSeq, committed: outcome.committed, epoch: record.epoch });
    const fields = { event: 'handoff', atMs, lastSeq: outcome.lastSeq, committed: outcome.committed, complete: outcome.complete, to, ...(record.sqlite ? { sqlite: record.sqlite } : {}) };
    if (outcome.complete) logger.info('handoff record published', fields);
    else logger.warn(`incomplete handoff published: seqs ${outcome.lastSeq + 1}..${outcome.committed} were acknowledged here and had not reached ${to ?? 'the sibling'}; they will be set aside here (lastgasp quarantine)`, { ...fields, missing: outcome.committed - outcome.lastSeq });
  }

  /** The best-caught-up sibling (highest acknowledged seq), ties to the order of `siblings` in the config. */
  private successor(): string | undefined {
    const positions = this.options.replication.siblingPositions();
    let best: string | undefined;
    for (const sibling of this.options.siblings) if (best === undefined || (positions[sibling] ?? 0) > (positions[best] ?? 0)) best = sibling;
    return best;
  }

  /** Step 3: true once the successor announced a newer epoch, false at the timeout (or when not the primary). */
  waitForSuccessor(timeoutMs: number): Promise<boolean> {
    const roles = this.options.roles;
    if (roles.role !== 'primary') return Promise.resolve(false);
    return roles.waitForSuccessor(timeoutMs);
  }

  /** Mains came back before the handoff: accept writes again, and replicate as before. */
  resume(): void {
    this.appStopping = undefined;
    if (this.options.roles.role === 'primary') this.options.application.restart();
    this.options.log.unfence();
    this.options.replication.endFlush();
    this.options.logger.info('mains back before the handoff: accepting writes again');
  }

  /** Step 4, the end: the last records out (bounded), the broker links dropped so that the Will goes out. */
  async powerOff(): Promise<void> {
    const { roles, application, replication, clock, logger } = this.options;
    roles.latch('powering off');
    await application.app?.stop('powering off');
    await application.forwarder?.stop('powering off');
    // Bounded: with no broker answering (the direct path carried the handoff) this must not hang the cut.
    await boundedWait(clock, this.options.publishHandedOff(), POWER_OFF_STATE_WAIT_MS);
    // The retained power record's last word: a dashboard must not go on showing the state before the cut.
    const last = this.options.lastPowerStatus();
    await boundedWait(clock, replication.publishPowerNow({ node: this.options.node, ...last, state: 'POWER_OFF', atMs: clock.nowMs() }), POWER_OFF_RECORD_WAIT_MS);
    await replication.abort();
    logger.info('waiting for the power to go', { event: 'power-off' });
    // The handoff is latched: this node must not serve again in this life. If the power never goes (mains
    // came back, or the source cannot cut), a restart makes it rejoin as a standby through the usual path.
    const afterMs = this.options.restartAfterPowerOffMs;
    clock.setTimeout(() => {
      logger.warn(`still running ${afterMs} ms after handing off: the power was not cut; exiting so that the service manager restarts this node as a standby`, { event: 'power-off-timeout' });
      this.options.exit?.(EXIT_RESTART_AS_STANDBY);
    }, afterMs);
  }
}
