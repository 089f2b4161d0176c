/**
 * Drives the power state machine from a PowerSource and carries out its actions through the host: it
 * decides when (thresholds, the energy plan, mains back) and how large the flush budget is. On brownout it
 * starts the one sequence the battery is spent on, whose order and steps are in brownout.ts.
 */
import { EventEmitter } from 'node:events';
import type { LinkState, PowerEvent, PowerSource, PowerStatus } from '../../firmware-bridge/index.ts';
import type { Clock, Logger, TimerHandle } from '../util/index.ts';
import { runBrownout, type BrownoutSteps, type FlushOutcome } from './brownout.ts';
import type { TailEnergy } from './energy.ts';
import { initialState, step, type Action, type BrownoutCheck, type Input, type MachineState, type PowerStateName, type Thresholds } from './machine.ts';

/** Time-based rules (debounce, time on battery, dead link) are re-evaluated this often. */
const TICK_MS = 250;
/** Energy kept back from the runtime estimate for everything after the flush, beyond the configured waits. */
const BUDGET_MARGIN_MS = 500;
const BUDGET_MIN_MS = 100;

/** The brownout's steps (brownout.ts), and what the supervisor reports to the agent. */
export interface SupervisorHost extends BrownoutSteps {
  publishPower(status: PowerStatus, state: PowerStateName): void;
  stateChanged(state: PowerStateName, reason: string): void;
  /**
   * The unreplicated tail and the drain rate measured on the link, asked on every tick while on battery for
   * the energy rule (thresholds.energyMarginMs). A host without it gets thresholds only.
   */
  tailEnergy?(): TailEnergy;
}

export interface SupervisorOptions {
  source: PowerSource;
  host: SupervisorHost;
  thresholds: Thresholds;
  flushBudgetMs: number;
  handoffAckTimeoutMs: number;
  cutDelayMs: number;
  logger: Logger;
  clock: Clock;
}

export interface TimelineEntry {
  readonly atMs: number;
  readonly from: PowerStateName;
  readonly to: PowerStateName;
  readonly reason: string;
}

export interface SupervisorEvents {
  state: [PowerStateName, string];
}

export class PowerSupervisor extends EventEmitter<SupervisorEvents> {
  private machine: MachineState;
  private ticker: TimerHandle | undefined;
  private linkState: LinkState = 'connecting';
  private readonly timelineEntries: TimelineEntry[] = [];
  private lastFlush: FlushOutcome | undefined;
  /** Aborts the brownout routine when mains returns before the handoff. */
  private brownout: AbortController | undefined;
  private stopped = false;
  /**
   * What the supervisor refused to trust: power events that came before the link was up (its handshake not
   * done), and brownout events the telemetry contradicted, by what became of them.
   */
  private readonly distrust = { eventsBeforeLinkUp: 0, brownoutsHeld: 0, brownoutsDismissed: 0, brownoutsConfirmed: 0 };

  constructor(private readonly options: SupervisorOptions) {
    super();
    this.machine = initialState(options.clock.monotonicMs());
  }

  get state(): PowerStateName {
    return this.machine.name;
  }

  get lastStatus(): PowerStatus | undefined {
    return this.machine.lastStatus;
  }

  timeline(): readonly TimelineEntry[] {
    return this.timelineEntries;
  }

  status(): Record<string, unknown> {
    const onBatterySince = this.machine.onBatterySinceMs;
    return {
      state: this.machine.name,
      source: this.options.source.name,
      link: this.linkState,
      onBatteryMs: onBatterySince === undefined ? 0 : Math.round(this.options.clock.monotonicMs() - onBatterySince),
      brownoutReason: this.machine.brownoutReason,
      lastStatus: this.machine.lastStatus,
      lastFlush: this.lastFlush,
      counters: this.options.source.counters(),
      distrust: { ...this.distrust },
    };
  }

  async start(): Promise<void> {
    this.stopped = false;
    await this.options.source.start({
      status: (status) => this.onStatus(status),
      event: (event) => this.onEvent(event),
      link: (state, reason) => this.onLink(state, reason),
    });
    this.scheduleTick();
  }

  /** New thresholds from a reloaded config (SIGHUP); the next status, event or tick is judged by them. */
  setThresholds(thresholds: Thresholds): void {
    this.options.thresholds = thresholds;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.ticker?.cancel();
    await this.options.source.stop();
  }

  private scheduleTick(): void {
    if (this.stopped) return;
    this.ticker = this.options.clock.setTimeout(() => {
      this.feedTail();
      this.feed({ type: 'tick', atMs: this.options.clock.monotonicMs() });
      this.scheduleTick();
    }, TICK_MS);
  }

  /** While on battery and before the brownout, tell the machine how large the tail is and how fast it drains. */
  private feedTail(): void {
    const { host, thresholds, clock } = this.options;
    if (!host.tailEnergy || thresholds.energyMarginMs === undefined) return;
    if (this.machine.onBatterySinceMs === undefined || (this.machine.name !== 'ONLINE' && this.machine.name !== 'ON_BATTERY')) return;
    const energy = host.tailEnergy();
    if (energy.drainBytesPerS === undefined) return;
    this.feed({ type: 'tail', tail: { bytes: energy.unreplicatedBytes, bytesPerS: energy.drainBytesPerS, afterFlushMs: this.afterFlushMs() }, atMs: clock.monotonicMs() });
  }

  private onStatus(status: PowerStatus): void {
    this.feed({ type: 'status', status, atMs: this.options.clock.monotonicMs() });
    this.options.host.publishPower(status, this.machine.name);
  }

  private onEvent(event: PowerEvent): void {
    if (this.linkState !== 'up') {
      // Until the handshake is done nothing on the line is known to come from the device (a stray frame, a
      // different device, a half-open port); the first status once it is up carries the true state.
      this.distrust.eventsBeforeLinkUp++;
      this.options.logger.warn(`power event ${event.kind} ignored: the power-source link is ${this.linkState}, not up`, { event: 'power-event-ignored', kind: event.kind, link: this.linkState });
      return;
    }
    this.options.logger.info(`power event: ${event.kind}`, { detail: event.detail, source: this.options.source.name });
    this.feed({ type: 'event', event, atMs: this.options.clock.monotonicMs() });
  }

  private onLink(state: LinkState, reason?: string): void {
    if (state === this.linkState) return;
    this.linkState = state;
    if (this.stopped) {
      // The agent closed the link itself: nothing to warn about, and nothing for the machine to judge.
      this.options.logger.info(`power-source link ${state}: the agent is stopping`, { event: 'power-link', state, source: this.options.source.name });
      return;
    }
    const log = state === 'up' ? this.options.logger.info : this.options.logger.warn;
    log(`power-source link ${state}`, { event: 'power-link', state, source: this.options.source.name, reason });
    if (state !== 'connecting') this.feed({ type: 'link', up: state === 'up', atMs: this.options.clock.monotonicMs() });
  }

  private feed(input: Input): void {
    const result = step(this.machine, input, this.options.thresholds);
    this.machine = result.state;
    if (result.brownoutCheck) this.countBrownoutCheck(result.brownoutCheck);
    if (result.transition) {
      const { from, to, reason } = result.transition;
      this.timelineEntries.push({ atMs: this.options.clock.nowMs(), from, to, reason });
      this.options.logger.info(`power ${from} → ${to}: ${reason}`, { event: 'power-state', from, to, reason });
      this.options.host.stateChanged(to, reason);
      this.emit('state', to, reason);
    }
    for (const action of result.actions) this.perform(action);
  }

  private countBrownoutCheck(check: BrownoutCheck): void {
    const logger = this.options.logger;
    if (check === 'held') {
      this.distrust.brownoutsHeld++;
      logger.warn('brownout event held: the telemetry says mains is present and the charge is not low; acting only if it persists', { event: 'brownout-held', debounceMs: this.options.thresholds.onBatteryDebounceMs });
    } else if (check === 'dismissed') {
      this.distrust.brownoutsDismissed++;
      logger.warn('held brownout dismissed: the telemetry no longer reports it', { event: 'brownout-dismissed' });
    } else this.distrust.brownoutsConfirmed++;
  }

  private perform(action: Action): void {
    const host = this.options.host;
    switch (action.type) {
      case 'shrink-tail':
        host.shrinkTail(true);
        return;
      case 'resume':
        this.brownout?.abort();
        this.brownout = undefined;
        host.shrinkTail(false);
        host.resume();
        return;
      case 'flush-and-handoff':
        this.options.logger.info(`brownout started by ${action.trigger === 'energy' ? 'the energy plan' : 'a threshold or the power source'}: ${action.reason}`, { event: 'brownout-trigger', trigger: action.trigger, reason: action.reason });
        this.startBrownout(action.reason);
        return;
    }
  }

  /** The sequence (brownout.ts), with the budget sized here; mains back before the handoff aborts it. */
  private startBrownout(reason: string): void {
    const { host, source, handoffAckTimeoutMs, cutDelayMs, logger, clock } = this.options;
    this.brownout = new AbortController();
    const budgetMs = this.flushBudgetMs();
    void runBrownout({
      steps: host,
      source,
      feed: (input) => this.feed(input),
      powerState: () => this.machine.name,
      flushed: (outcome) => (this.lastFlush = outcome),
      reason,
      signal: this.brownout.signal,
      budgetMs,
      holdMs: budgetMs + this.afterFlushMs(),
      handoffAckTimeoutMs,
      cutDelayMs,
      logger,
      clock,
    }).catch((error: unknown) => logger.error('brownout sequence failed', { error }));
  }

  /** The budget for the flush: the configured maximum, cut to what the runtime estimate leaves. */
  private flushBudgetMs(): number {
    const runtimeS = this.machine.lastStatus?.runtimeS;
    let budget = this.options.flushBudgetMs;
    if (runtimeS !== undefined) budget = Math.min(budget, runtimeS * 1000 - this.afterFlushMs());
    return Math.max(BUDGET_MIN_MS, Math.round(budget));
  }

  /** The energy everything after the flush needs: the wait for the successor, the cut's delay, a margin. */
  private afterFlushMs(): number {
    return this.options.handoffAckTimeoutMs + this.options.cutDelayMs + BUDGET_MARGIN_MS;
  }
}
