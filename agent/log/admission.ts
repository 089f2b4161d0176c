/**
 * Admission of appends: the hard and soft limits on bytes not yet replicated (refuse or throttle), the quota
 * on disk, and the full policy (reject at once, or wait up to fullWaitMs for space). A part of the flash log
 * (flash-log.ts is its only importer); it measures nothing itself, the log tells it how many bytes are
 * unreplicated and how many still fit.
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
}

export class Admission {
  /** The throttle's limits: the options' at first, then as setUnreplicatedLimits sizes them. */
  private limits: { soft: number; hard: number; field: string };
  private spaceWaiters: Array<() => void> = [];

  constructor(private readonly host: AdmissionHost) {
    this.limits = { soft: host.options.unreplicatedSoftBytes, hard: host.options.unreplicatedHardBytes, field: 'log.unreplicatedHardBytes' };
  }

  setUnreplicatedLimits(softBytes: number, hardBytes: number, field: string): void {
    if (!(softBytes >= 0 && hardBytes >= 0)) throw new Error(`unreplicated limits must be >= 0 (soft ${softBytes}, hard ${hardBytes})`);
    this.limits = { soft: hardBytes > 0 ? Math.min(softBytes, hardBytes) : softBytes, hard: hardBytes, field };
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
  tooLargeForLimit(bytes: number): LastgaspError | undefined {
    const { hard, field } = this.limits;
    if (!(hard > 0 && bytes > hard)) return undefined;
    return new LastgaspError('ENTRY_TOO_LARGE', `a write of ${bytes} bytes of records is over the ${hard} bytes ${field} lets be unreplicated at once: the log could never admit it whole; send it in smaller batches, or raise ${field}`, {
      bytes,
      max: hard,
      field,
    });
  }

  /**
   * undefined: go ahead now; a promise: wait (throttle or space) and ask again; throws LOG_FULL to refuse.
   * `copy`: a standby's replicated entries, which the quota bounds but the unreplicated limits do not: they
   * are the primary's tail, not this node's (the receiver counts them replicated as it stores them), and a
   * batch of the primary's larger than this node's hard limit would otherwise be refused for ever.
   */
  admit(bytes: number, throttled: boolean, copy = false): Promise<void> | undefined {
    const { host } = this;
    const { hard: ownHard, soft, field } = this.limits;
    const hard = copy ? 0 : ownHard;
    const needsUnreplicated = hard > 0 || soft > 0;
    const unreplicated = needsUnreplicated ? host.unreplicatedBytes() : 0;
    if (hard > 0 && unreplicated + bytes > hard) {
      return this.full(`${unreplicated} bytes are not replicated yet, at the hard limit of ${hard} (${field})`);
    }
    if (bytes + BATCH_PREFIX_BYTES > host.spaceLeft()) {
      host.scheduleRetention();
      return this.full(`the log's quota of ${host.options.quotaBytes} bytes is full of entries that are not yet replicated or are held by the retention floor`);
    }
    if (!throttled && soft > 0 && unreplicated > soft) {
      host.counters.throttledAppends++;
      const span = hard > soft ? hard - soft : soft;
      const delayMs = Math.max(1, Math.ceil((host.options.throttleDelayMsMax * (unreplicated - soft)) / span));
      return new Promise((resolve) => host.clock.setTimeout(resolve, Math.min(delayMs, host.options.throttleDelayMsMax)));
    }
    return undefined;
  }

  private full(why: string): Promise<void> {
    const { options, counters, clock } = this.host;
    counters.fullRejections++;
    const error = new LastgaspError('LOG_FULL', `log ${options.dir} is full: ${why}; appends resume as replication catches up`, {
      dir: options.dir,
    });
    if (options.fullPolicy === 'reject') throw error;
    return new Promise<void>((resolve, reject) => {
      let done = false;
      const timer = clock.setTimeout(() => {
        if (done) return;
        done = true;
        const at = this.spaceWaiters.indexOf(wake);
        if (at >= 0) this.spaceWaiters.splice(at, 1);
        reject(error);
      }, options.fullWaitMs);
      const wake = () => {
        if (done) return;
        done = true;
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
