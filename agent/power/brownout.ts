/**
 * The brownout: the one sequence the battery is spent on, told here top to bottom. runBrownout keeps its
 * order, feeds the power machine between the steps and asks the power source to hold and to cut; the
 * supervisor (supervisor.ts) only decides when it starts and how large its budget is. The steps:
 *
 *   1. flushTail        stop what runs only on the primary, fence the log, replicate its tail within the budget;
 *   2. publishHandoff   latch, and publish the record naming the last entry the sibling can rely on;
 *   3. waitForSuccessor until the sibling announces its epoch, or the timeout;
 *   4. powerOff         the last state and power records, then the links dropped so that the Will goes out.
 *
 * Around them: shrinkTail while on battery, and resume when mains returns before the handoff. The Brownout
 * class below carries the steps out over narrow views of the log, replication, the role and the application
 * (declared in brownout-parts.ts), never the agent; whether this node is handing off or powered off it reads
 * from the power machine's state, which alone holds it.
 */
import type { PowerSource } from '../../firmware-bridge/index.ts';
import { boundedWait, type Clock, type Logger, type TimerHandle } from '../util/index.ts';
import type { BrownoutOptions, HandoffRecord } from './brownout-parts.ts';
import type { Input, PowerStateName } from './machine.ts';

/** The most the brownout flush waits for the forwarder's last position before it fences the log. */
const FORWARD_FINAL_MARK_WAIT_MS = 1000;
/** The share of the flush budget the last SQLite capture may wait for room in a full log (databases.captureFinal). */
const SQLITE_ROOM_WAIT_SHARE = 0.5;
/** The publisher's deadline in the brownout flush lies this far past the budget (see waitFlushed). */
const FLUSH_DEADLINE_SLACK_MS = 1000;
/**
 * The flush ends earlier than the measured lead of the handoff record asks (publisher handoffLeadMs) by the
 * time of what comes first: the watermarks' checkpoint and the latched handoff's file, FLUSH_HANDOFF_SYNCS
 * fdatasyncs at the longest the log's recent ones took, and FLUSH_HANDOFF_SLACK_MS for the turns of the event
 * loop between them (signing the record among them). With no sync measured yet, FLUSH_HANDOFF_MARGIN_MS.
 * A fixed 100 ms (what a busy eMMC can take) left a tenth of a 1 s hold-up unused on a fast flash
 * (bench:holdup), and is too little on a worn one.
 */
const FLUSH_HANDOFF_SYNCS = 4;
const FLUSH_HANDOFF_SLACK_MS = 20;
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

/**
 * How the brownout flush ended: every acknowledged write replicated ("flushed", the only complete end), the
 * budget ran out, mains came back ("aborted"), replication stopped under it, or this node is not the primary
 * (it has no tail of its own to hand off).
 */
export type FlushEnd = 'flushed' | 'budget' | 'aborted' | 'replication-stopped' | 'not-primary';

export interface FlushOutcome {
  /** Unreplicated entries when the flush began, counting the writes that were inside the group commit. */
  readonly tailAtStart: number;
  /** Highest seq the successor can rely on when the flush ended. */
  readonly lastSeq: number;
  /** Highest seq this node ever acknowledged: the log was fenced at it before the flush. */
  readonly committed: number;
  readonly complete: boolean;
  readonly end: FlushEnd;
  readonly flushMs: number;
}

/** The flush-done log line for each end, each one true of the flush it reports. */
const FLUSH_END_LINES: Record<FlushEnd, string> = {
  flushed: 'tail flushed: the sibling holds every acknowledged write',
  budget: 'flush budget ran out before the tail was gone',
  aborted: 'flush aborted before the tail was gone',
  'replication-stopped': 'replication stopped before the tail was gone',
  'not-primary': 'not the primary: no tail of its own to flush',
};

/** The steps, in the order runBrownout takes them (the Brownout class below carries them out). */
export interface BrownoutSteps {
  /** Mains lost (true) or back (false): sync every batch at once and replicate regardless of pauses. */
  shrinkTail(onBattery: boolean): void;
  /**
   * Refuse new appends, let those already admitted finish, pause all but batches, and replicate up to the
   * last acknowledged write within the budget (or until aborted).
   */
  flushTail(budgetMs: number, signal: AbortSignal): Promise<FlushOutcome>;
  /** Publish the handoff record naming outcome.lastSeq. */
  publishHandoff(outcome: FlushOutcome, reason: string): Promise<void>;
  /** Wait until the successor announced itself (true) or the timeout (false). */
  waitForSuccessor(timeoutMs: number): Promise<boolean>;
  /** Mains came back before the handoff: accept appends again. */
  resume(): void;
  /** The end: drop the broker links (so the Will goes out), close the log. */
  powerOff(): Promise<void>;
}

/** The power machine's inputs that mark where the sequence is. */
export type BrownoutInput = Extract<Input, { type: 'flush-started' | 'handoff-published' | 'power-off-requested' }>;

/** One run of the sequence: what it acts through, and the budget the supervisor sized. */
export interface BrownoutRun {
  steps: BrownoutSteps;
  source: Pick<PowerSource, 'capabilities' | 'holdPower' | 'cutPower'>;
  /** Step the power machine (the supervisor's), which may say mains is back: see powerState. */
  feed(input: BrownoutInput): void;
  /** The machine's state after the flush: anything but FLUSHING means mains came back, and no handoff follows. */
  powerState(): PowerStateName;
  /** The flush's outcome, as soon as it is known (the supervisor's status shows it). */
  flushed(outcome: FlushOutcome): void;
  /** Why the brownout began (named in the handoff record). */
  reason: string;
  /** Aborted when mains returns before the handoff. */
  signal: AbortSignal;
  budgetMs: number;
  /** How long the power source is asked to hold the power: the budget and everything after it. */
  holdMs: number;
  handoffAckTimeoutMs: number;
  cutDelayMs: number;
  logger: Logger;
  clock: Clock;
}

/**
 * The sequence: hold the power, flush the tail, publish the handoff, wait for the successor, let the BMS cut,
 * then power off. Between the steps the power machine hears where it is; when mains returns during the
 * flush the machine leaves FLUSHING and the sequence ends there (resume is the machine's own action).
 */
export async function runBrownout(run: BrownoutRun): Promise<void> {
  const { steps, source, logger, clock } = run;
  if (source.capabilities.holdPower) {
    void source.holdPower(run.holdMs).then((result) => {
      if (!result.ok) logger.warn('the power source did not accept "hold power"', { reason: result.reason, holdMs: run.holdMs });
    });
  }
  run.feed({ type: 'flush-started', atMs: clock.monotonicMs() });
  const outcome = await steps.flushTail(run.budgetMs, run.signal);
  run.flushed(outcome);
  if (run.signal.aborted || run.powerState() !== 'FLUSHING') {
    logger.info('mains came back during the flush: no handoff', { event: 'handoff-cancelled', tailAtStart: outcome.tailAtStart, flushMs: outcome.flushMs });
    return;
  }
  logFlushDone(logger, outcome, run.budgetMs);
  await steps.publishHandoff(outcome, run.reason);
  run.feed({ type: 'handoff-published', atMs: clock.monotonicMs() });
  const acked = await steps.waitForSuccessor(run.handoffAckTimeoutMs);
  logger.info(acked ? 'successor took over' : 'no successor announced itself in time; cutting power anyway', { event: 'handoff-acked', acked });
  if (source.capabilities.cutPower) {
    const result = await source.cutPower(run.cutDelayMs);
    if (!result.ok) logger.error('the power source refused "cut power"; the battery will run down instead', { reason: result.reason });
  }
  run.feed({ type: 'power-off-requested', atMs: clock.monotonicMs() });
  await steps.powerOff();
}

function logFlushDone(logger: Logger, outcome: FlushOutcome, budgetMs: number): void {
  const { end, tailAtStart, flushMs, lastSeq, committed, complete } = outcome;
  (complete ? logger.info : logger.warn)(FLUSH_END_LINES[end], { event: 'flush-done', end, tailAtStart, flushMs, lastSeq, committed, complete, budgetMs });
}

export class Brownout implements BrownoutSteps {
  /** The application's stop begun by the flush, awaited by the handoff. */
  private appStopping: Promise<void> | undefined;
  /** The log seq of each database's last commit, captured as the flush began (named in the handoff). */
  private sqliteCommits: Record<string, number> | undefined;
  /** When the flush budget ends (monotonic ms): an incomplete handoff gives the tail the rest of it. */
  private budgetEndsMs = 0;

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
    this.budgetEndsMs = started + budgetMs;
    log.setSyncMode('immediate');
    replication.beginFlush(budgetMs);
    const atStart = log.watermarks();
    const sqliteCommits = await this.stopPrimaryWork(budgetMs);
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
  private async stopPrimaryWork(budgetMs: number): Promise<Record<string, number> | undefined> {
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
      // A log full of tail not yet replicated takes them as the flush replicates it: for up to half the budget,
      // which leaves the other half to replicate them in turn.
      sqliteCommits = await sqlite.captureFinal(budgetMs * SQLITE_ROOM_WAIT_SHARE).catch((error: unknown) => {
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
    const syncMs = log.recentSyncMsMax();
    const marginMs = syncMs === undefined ? FLUSH_HANDOFF_MARGIN_MS : FLUSH_HANDOFF_SYNCS * syncMs + FLUSH_HANDOFF_SLACK_MS;
    let timer: TimerHandle;
    const check = () => {
      const leftMs = deadlineMs - clock.monotonicMs() - (replication.handoffLeadMs() ?? 0) - marginMs;
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
    // The budget ran out with the tail still going: it goes on behind the record until the power goes, and
    // the successor takes what arrives before it claims (takeover/handoff-tail.ts).
    const tailMs = outcome.end === 'budget' ? Math.max(0, Math.round(this.budgetEndsMs - clock.monotonicMs())) : 0;
    const record: HandoffRecord = {
      group: this.options.group,
      kind: 'handoff',
      epoch: log.epoch,
      node: this.options.node,
      to,
      lastSeq: outcome.lastSeq,
      committed: outcome.committed,
      complete: outcome.complete,
      ...(tailMs > 0 ? { tailMs } : {}),
      ...(this.sqliteCommits ? { sqlite: this.sqliteCommits } : {}),
      reason,
      atMs,
    };
    // On flash before it leaves: restarted, this node finds its own handoff and comes back as a standby.
    await roles.latchHandoff(record);
    await this.options.replication.publishHandoff(record);
    this.options.hooks.fire('handoff', { to, complete: outcome.complete, lastSeq: outcome.lastSeq, committed: outcome.committed, epoch: record.epoch });
    const fields = { event: 'handoff', atMs, lastSeq: outcome.lastSeq, committed: outcome.committed, complete: outcome.complete, to, ...(tailMs > 0 ? { tailMs } : {}), ...(record.sqlite ? { sqlite: record.sqlite } : {}) };
    const sibling = to ?? 'the sibling';
    const gap = `seqs ${outcome.lastSeq + 1}..${outcome.committed} were acknowledged here and had not reached ${sibling}`;
    if (outcome.complete) logger.info('handoff record published', fields);
    else if (tailMs > 0) logger.warn(`incomplete handoff published: ${gap}; the tail goes on behind the record for the ${tailMs} ms of budget left, ${sibling} keeps what arrives, and what does not is set aside here (lastgasp quarantine)`, { ...fields, missing: outcome.committed - outcome.lastSeq });
    else logger.warn(`incomplete handoff published: ${gap}; they will be set aside here (lastgasp quarantine)`, { ...fields, missing: outcome.committed - outcome.lastSeq });
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
