/**
 * The `replicated` watermark as the publisher moves it: marks it in the log, resolves those waiting for a
 * seq to be replicated (the brownout flush, the handoff, tests), and keeps the age of a watermark that has
 * not moved while a tail waits (a stalled replication, reported in status and metrics).
 */
import type { FlashLog } from '../log/index.ts';
import type { Clock } from '../util/index.ts';

export class ReplicatedWatermark {
  private readonly waiters: Array<{ seq: number; resolve: (ok: boolean) => void }> = [];
  /** When the replicated watermark last moved (monotonic ms): with a tail, its age says replication stalled. */
  private movedAtMs = 0;
  /** Nothing waited at the last move: the next commit starts the stall count (not the idle time before it). */
  private countsFromNextCommit = false;

  constructor(
    private readonly log: FlashLog,
    private readonly clock: Clock,
  ) {}

  /** Entries committed locally but not yet replicated at the configured level. */
  tail(): number {
    const marks = this.log.watermarks();
    return marks.committed - marks.replicated;
  }

  /** The publisher starts: the stall count starts now, or at the next commit if nothing waits. */
  start(): void {
    this.movedAtMs = this.clock.monotonicMs();
    this.countsFromNextCommit = this.tail() === 0;
  }

  /** The publisher stops: nobody waits any longer. */
  stop(): void {
    for (const waiter of this.waiters.splice(0)) waiter.resolve(false);
  }

  /** An entry was committed. */
  committed(): void {
    if (!this.countsFromNextCommit) return;
    this.countsFromNextCommit = false;
    this.movedAtMs = this.clock.monotonicMs();
  }

  /** Everything up to `seq` is replicated at the configured level. */
  advance(seq: number): void {
    const log = this.log;
    if (seq <= log.watermarks().replicated) return;
    log.markReplicated(seq);
    this.movedAtMs = this.clock.monotonicMs();
    this.countsFromNextCommit = this.tail() === 0;
    const replicated = log.watermarks().replicated;
    for (let index = this.waiters.length - 1; index >= 0; index--) {
      const waiter = this.waiters[index]!;
      if (waiter.seq <= replicated) {
        this.waiters.splice(index, 1);
        waiter.resolve(true);
      }
    }
  }

  /** How long the watermark has not moved while entries wait to be replicated (0: no tail). */
  stalledMs(): number {
    if (this.tail() === 0) return 0;
    return Math.round(this.clock.monotonicMs() - this.movedAtMs);
  }

  /** Resolves true once the watermark reaches `seq`; false at the deadline, when aborted, or on stop. */
  wait(seq: number, timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    if (this.log.watermarks().replicated >= seq) return Promise.resolve(true);
    if (signal?.aborted) return Promise.resolve(false);
    return new Promise((resolve) => {
      const finish = (ok: boolean) => {
        timer.cancel();
        signal?.removeEventListener('abort', onAbort);
        const index = this.waiters.indexOf(waiter);
        if (index >= 0) this.waiters.splice(index, 1);
        resolve(ok);
      };
      const onAbort = () => finish(false);
      const waiter = { seq, resolve: finish };
      const timer = this.clock.setTimeout(() => finish(false), timeoutMs);
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiters.push(waiter);
    });
  }
}
