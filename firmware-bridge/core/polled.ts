/**
 * What every request/response driver (JBD, Daly, Megatec Q1, NUT) shares: a transport, a parser, one
 * exchange at a time, a poll loop, link state from answers (a device that stops answering is `down` after
 * three silent polls even while its port stays open), and edge-triggered events derived from status.
 */
import type { BridgeLogger, CommandResult, LinkState, PowerSource, PowerSourceCapabilities, PowerSourceListener, PowerStatus } from './types.ts';
import { Counters } from './counters.ts';
import { EventEdges } from './edges.ts';
import type { Transport } from './transport/types.ts';
import { systemBridgeClock, type BridgeClock, type BridgeTimer } from './clock.ts';

/** Polls that may go unanswered in a row before the link is declared down; one bad frame never is. */
export const POLL_FAILURES_MAX = 3;

export interface StreamParser {
  push(chunk: Uint8Array): void;
  flush(): void;
}

export interface PollResult {
  readonly status: PowerStatus;
  /** The device signals an imminent collapse (a bridge brownout has no equivalent in most devices). */
  readonly brownout?: boolean;
  /** The device has a shutdown of its output pending (Megatec "shutdown active", NUT FSD). */
  readonly powerOffPending?: boolean;
}

export interface PolledOptions {
  readonly pollMs: number;
  /** How long one answer may take. */
  readonly answerTimeoutMs: number;
  readonly logger?: BridgeLogger;
  /** Times the poll period and the answer timeout, and stamps statuses; the system clock by default. */
  readonly clock?: BridgeClock;
}

/** A collector gets each frame while an exchange is open and returns true when the answer is complete. */
type Collector<F> = (frame: F) => boolean;

export abstract class PolledPowerSource<F> implements PowerSource {
  abstract readonly capabilities: PowerSourceCapabilities;
  protected readonly counters_ = new Counters(['rx.bytes', 'rx.frames', 'polls', 'poll.failures']);
  protected listener: PowerSourceListener | undefined;
  private parser: StreamParser | undefined;
  private collector: { collect: Collector<F>; done: (complete: boolean) => void } | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  private timer: BridgeTimer | undefined;
  private linkState: LinkState = 'down';
  private transportUp = false;
  private failures = 0;
  private stopped = false;
  private readonly edges = new EventEdges((event) => this.listener?.event(event));

  protected readonly clock: BridgeClock;

  constructor(readonly name: string, protected readonly transport: Transport, protected readonly options: PolledOptions) {
    this.clock = options.clock ?? systemBridgeClock;
  }

  /** The driver's framing: frames go to `onFrame`, drops to the counters. */
  protected abstract createParser(counters: Counters, onFrame: (frame: F) => void): StreamParser;
  /** One poll cycle through `exchange`; throws PollError (or returns undefined) when the device did not answer. */
  protected abstract poll(): Promise<PollResult | undefined>;
  /** Called when the link (re)opens, before the first poll: reset per-connection state. */
  protected onOpen(): void {}

  async start(listener: PowerSourceListener): Promise<void> {
    this.listener = listener;
    this.stopped = false;
    this.parser = this.createParser(this.counters_, (frame) => this.onFrame(frame));
    this.transport.start({
      data: (chunk) => this.parser?.push(chunk),
      state: (state, reason) => this.onTransportState(state, reason),
    });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.timer?.cancel();
    this.timer = undefined;
    this.collector?.done(false);
    await this.transport.stop();
  }

  holdPower(_durationMs: number): Promise<CommandResult> {
    return Promise.resolve({ ok: false, reason: 'unsupported' });
  }

  cutPower(_delayMs: number): Promise<CommandResult> {
    return Promise.resolve({ ok: false, reason: 'unsupported' });
  }

  cancelCut(): Promise<CommandResult> {
    return Promise.resolve({ ok: false, reason: 'unsupported' });
  }

  counters(): Readonly<Record<string, number>> {
    return { ...this.counters_.snapshot(), ...this.transport.counters() };
  }

  protected get linkUp(): boolean {
    return this.linkState === 'up';
  }

  /**
   * Send `request` and feed the frames that follow to `collect` until it says the answer is complete, or
   * until `timeoutMs`. Exchanges never overlap: a command waits for the poll in progress.
   */
  protected exchange(request: Uint8Array | undefined, collect: Collector<F>, timeoutMs = this.options.answerTimeoutMs): Promise<boolean> {
    const run = () =>
      new Promise<boolean>((resolve) => {
        if (!this.transportUp || this.stopped) return resolve(false);
        const timer = this.clock.setTimeout(() => done(false), timeoutMs);
        const done = (complete: boolean) => {
          timer.cancel();
          this.collector = undefined;
          resolve(complete);
        };
        this.collector = { collect, done };
        if (request && !this.transport.write(request)) done(false);
      });
    const next = this.queue.then(run, run);
    this.queue = next;
    return next;
  }

  /** Run a command through the exchange queue, so that it never interleaves with a poll. */
  protected serialized<T>(work: () => Promise<T>): Promise<T> {
    const next = this.queue.then(work, work);
    this.queue = next.catch(() => undefined);
    return next;
  }

  private onFrame(frame: F): void {
    const collector = this.collector;
    if (!collector) {
      this.counters_.add('rx.unsolicited');
      return;
    }
    if (collector.collect(frame)) collector.done(true);
  }

  private onTransportState(state: LinkState, reason?: string): void {
    this.transportUp = state === 'up';
    if (state === 'up') {
      this.failures = 0;
      this.onOpen();
      this.setLink('connecting', 'port open, waiting for the first answer');
      this.schedulePoll(0);
      return;
    }
    this.parser?.flush();
    this.collector?.done(false);
    this.timer?.cancel();
    this.timer = undefined;
    this.setLink(state, reason);
  }

  private schedulePoll(delayMs: number): void {
    if (this.stopped) return;
    this.timer?.cancel();
    this.timer = this.clock.setTimeout(() => {
      this.timer = undefined;
      void this.pollOnce();
    }, delayMs);
  }

  private async pollOnce(): Promise<void> {
    if (!this.transportUp || this.stopped) return;
    this.counters_.add('polls');
    let result: PollResult | undefined;
    try {
      result = await this.poll();
    } catch (error) {
      this.options.logger?.debug(() => `${this.name}: poll failed: ${(error as Error).message}`);
      result = undefined;
    }
    if (!this.transportUp || this.stopped) return;
    if (result) {
      this.failures = 0;
      this.setLink('up');
      this.listener?.status(result.status);
      this.edges.status(result.status, result.brownout ?? false, result.powerOffPending ?? false);
    } else {
      this.failures++;
      this.counters_.add('poll.failures');
      if (this.failures >= POLL_FAILURES_MAX) this.setLink('down', `no valid answer to ${this.failures} polls in a row`);
    }
    this.schedulePoll(this.options.pollMs);
  }

  private setLink(state: LinkState, reason?: string): void {
    if (state === this.linkState) return;
    this.linkState = state;
    this.options.logger?.info(`${this.name} link ${state}${reason ? `: ${reason}` : ''}`);
    this.listener?.link(state, reason);
  }
}

/** Mains is inferred from the pack current on a BMS that cannot see it: discharging beyond this means lost. */
export const AC_DISCHARGE_THRESHOLD_MA_DEFAULT = 100;

export function acFromCurrent(currentMa: number | undefined, thresholdMa: number): boolean | undefined {
  if (currentMa === undefined) return undefined;
  return currentMa > -thresholdMa;
}
