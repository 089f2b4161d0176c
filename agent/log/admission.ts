/**
 * Admission of appends: the hard and soft limits on bytes not yet replicated (refuse or throttle), the quota
 * on disk, and the full policy (reject at once, or wait up to fullWaitMs for space). Writes it holds back go
 * in the order they came. A part of the flash log (flash-log.ts is its only importer); it measures nothing
 * itself, the log tells it how many bytes are unreplicated and how many still fit.
 */
import { LastgaspError, type Clock } from '../util/index.ts';
import { BATCH_PREFIX_BYTES } from './batch.ts';
import type { Counters, ResolvedOptions } from './options.ts';

export interface AdmissionHost {
  readonly options: Readonly<ResolvedOptions>;
  readonly clock: Clock;
  readonly counters: Counters;
  /** Bytes of records above the replicated mark, synced or still staged. */
  unreplicatedBytes(): number;
  /** Bytes that can still be appended without a new file beyond the quota. */
  spaceLeft(): number;
  /** The quota is full: let retention release what it may. */
  scheduleRetention(): void;
  /** Appends are refused now (a fence, a fault, a demotion's cut, the close): a held write stops waiting and meets it. */
  refusing(): boolean;
}

const noop = (): void => undefined;

/** What a held write already met: a throttle delay (it may go no sooner), or a full log (counted). */
interface HeldWait {
  readonly notBeforeMs?: number;
  readonly countedFull?: boolean;
}

export class Admission {
  /** The throttle's limits: the options' at first, then as setUnreplicatedLimits sizes them. */
  private limits: { soft: number; hard: number; field: string };
  private spaceWaiters: Array<() => void> = [];
  /** Writes held back (throttled, or waiting for space), and the gate of the last of them. */
  private held = 0;
  private lastHeld: Promise<void> | undefined;

  constructor(private readonly host: AdmissionHost) {
    this.limits = { soft: host.options.unreplicatedSoftBytes, hard: host.options.unreplicatedHardBytes, field: 'log.unreplicatedHardBytes' };
  }

  setUnreplicatedLimits(softBytes: number, hardBytes: number, field: string): void {
    if (!(softBytes >= 0 && hardBytes >= 0)) throw new Error(`unreplicated limits must be >= 0 (soft ${softBytes}, hard ${hardBytes})`);
    this.limits = { soft: hardBytes > 0 ? Math.min(softBytes, hardBytes) : softBytes, hard: hardBytes, field };
    // A write waiting for room asks again: a limit in seconds of flush grows as the measured rate does.
    this.wakeSpaceWaiters();
  }

  /** Bytes an append could add now before `admit` refuses it (the hard limit, the quota); see FlashLog.appendRoom. */
  room(): number {
    const { hard } = this.limits;
    const byHard = hard > 0 ? hard - this.host.unreplicatedBytes() : Number.POSITIVE_INFINITY;
    return Math.max(0, Math.min(byHard, this.host.spaceLeft() - BATCH_PREFIX_BYTES));
  }

  /**
   * A write of `bytes` record bytes that the hard limit could never admit, not even into a log with nothing
   * unreplicated: refused as too large, not as full. LOG_FULL tells a writer to try again as replication
   * catches up, and for this write that time never comes (a capture or a client would retry it for ever).
   * `detail.max` is the limit, so that a batching writer can split (sqlite/entry.ts appendGrouped, the MQTT
   * journal). With the limit in seconds of flush (log.unreplicatedHardS) it moves with the measured rate.
   */
  private tooLargeForLimit(bytes: number): LastgaspError | undefined {
    const { hard, field } = this.limits;
    if (!(hard > 0 && bytes > hard)) return undefined;
    return new LastgaspError('ENTRY_TOO_LARGE', `a write of ${bytes} bytes of records is over the ${hard} bytes ${field} lets be unreplicated at once: the log could never admit it whole; send it in smaller batches, or raise ${field}`, {
      bytes,
      max: hard,
      field,
    });
  }

  /**
   * undefined: go ahead now; a promise: the write is held back (the throttle, or a full log with fullPolicy
   * "wait") and may go when it resolves (ask again, `throttled`: it is not throttled twice); throws LOG_FULL
   * to refuse at once, ENTRY_TOO_LARGE for a write over the hard limit itself (tooLargeForLimit). Writes held back go in the order they came, and a write that arrives while any is held
   * waits behind them even if it would fit: otherwise a later write could overtake an earlier one (an MQTT
   * client's messages, whose order the log keeps: a throttle's delay is computed per write, and a small write
   * fits where a large one waits). `copy`: a standby's replicated entries, which the quota bounds but the
   * unreplicated limits do not: they are the primary's tail, not this node's (the receiver counts them
   * replicated as it stores them), and a batch of the primary's larger than this node's hard limit would
   * otherwise be refused for ever.
   */
  admit(bytes: number, throttled: boolean, copy = false): Promise<void> | undefined {
    const { counters, clock, options } = this.host;
    const tooLarge = copy ? undefined : this.tooLargeForLimit(bytes);
    if (tooLarge) throw tooLarge;
    const verdict = this.verdict(bytes, throttled, copy);
    const behind = !throttled && this.held > 0;
    if (verdict === undefined && !behind) return undefined;
    if (verdict?.full) {
      counters.fullRejections++;
      if (options.fullPolicy === 'reject') throw verdict.full;
      return this.hold(bytes, copy, { countedFull: true });
    }
    // Fine now, but behind others: it goes after them. No held write is throttled at its turn: its wait in
    // line is its delay (throttled there, each would wait its own delay after the one before, one at a time).
    if (verdict === undefined) return this.hold(bytes, copy, {});
    // Throttled from now, whatever it waits behind: the delays of writes held together run at once.
    counters.throttledAppends++;
    return this.hold(bytes, copy, { notBeforeMs: clock.monotonicMs() + verdict.delayMs });
  }

  /** Why a write of `bytes` cannot go now: the log is full (the error to refuse it with), or a throttle delay. */
  private verdict(bytes: number, throttled: boolean, copy: boolean): { full: LastgaspError } | { full?: undefined; delayMs: number } | undefined {
    const { host } = this;
    const { hard: ownHard, soft, field } = this.limits;
    const hard = copy ? 0 : ownHard;
    const needsUnreplicated = hard > 0 || soft > 0;
    const unreplicated = needsUnreplicated ? host.unreplicatedBytes() : 0;
    if (hard > 0 && unreplicated + bytes > hard) {
      return { full: this.fullError(`${unreplicated} bytes are not replicated yet, at the hard limit of ${hard} (${field})`) };
    }
    if (bytes + BATCH_PREFIX_BYTES > host.spaceLeft()) {
      host.scheduleRetention();
      return { full: this.fullError(`the log's quota of ${host.options.quotaBytes} bytes is full of entries that are not yet replicated or are held by the retention floor`) };
    }
    if (!throttled && soft > 0 && unreplicated > soft) {
      const span = hard > soft ? hard - soft : soft;
      const delayMs = Math.max(1, Math.ceil((host.options.throttleDelayMsMax * (unreplicated - soft)) / span));
      return { delayMs: Math.min(delayMs, host.options.throttleDelayMsMax) };
    }
    return undefined;
  }

  private fullError(why: string): LastgaspError {
    return new LastgaspError('LOG_FULL', `log ${this.host.options.dir} is full: ${why}; appends resume as replication catches up`, { dir: this.host.options.dir });
  }

  /**
   * Hold a write back behind those already held: its gate resolves once it may go (it is then the first in
   * line, and its caller stages it in the same turn, before the next one is asked), or once appends are
   * refused (the caller meets the refusal); it rejects with LOG_FULL when fullWaitMs ran out.
   */
  private hold(bytes: number, copy: boolean, wait: HeldWait): Promise<void> {
    const before = this.lastHeld;
    const gate = (before ? before.then(noop, noop) : Promise.resolve()).then(() => this.whenAdmissible(bytes, copy, wait));
    this.held++;
    this.lastHeld = gate;
    const release = () => {
      if (--this.held === 0) this.lastHeld = undefined;
    };
    gate.then(release, release);
    return gate;
  }

  private async whenAdmissible(bytes: number, copy: boolean, wait: HeldWait): Promise<void> {
    const { counters, clock, options } = this.host;
    let { countedFull = false } = wait;
    const throttleLeftMs = (wait.notBeforeMs ?? 0) - clock.monotonicMs();
    if (throttleLeftMs > 0) await new Promise<void>((resolve) => clock.setTimeout(resolve, throttleLeftMs));
    let fullSinceMs: number | undefined;
    for (;;) {
      if (this.host.refusing()) return;
      const verdict = this.verdict(bytes, true, copy);
      if (!verdict?.full) return;
      if (!countedFull) counters.fullRejections++;
      countedFull = true;
      if (options.fullPolicy === 'reject') throw verdict.full;
      fullSinceMs ??= clock.monotonicMs();
      const leftMs = fullSinceMs + options.fullWaitMs - clock.monotonicMs();
      if (leftMs <= 0) throw verdict.full;
      await this.spaceOrTimeout(leftMs);
    }
  }

  /** Resolves when space may have been freed (wakeSpaceWaiters) or after `ms`. */
  private spaceOrTimeout(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = this.host.clock.setTimeout(() => {
        const at = this.spaceWaiters.indexOf(wake);
        if (at >= 0) this.spaceWaiters.splice(at, 1);
        resolve();
      }, ms);
      const wake = () => {
        timer.cancel();
        resolve();
      };
      this.spaceWaiters.push(wake);
    });
  }

  /** Space was freed, the replicated mark moved, a fence stands or the log closes: writers held for space ask again. */
  wakeSpaceWaiters(): void {
    if (this.spaceWaiters.length === 0) return;
    for (const wake of this.spaceWaiters.splice(0)) wake();
  }
}
