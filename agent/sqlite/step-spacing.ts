/**
 * Steps that events set off, spaced: the capture's copies (file changes, `copyIntervalMs`) and a standby's
 * applies (commits, `applyIntervalMs`). A step asked for sooner than the interval after the last one began
 * waits until then, on one timer however many asks come meanwhile, and that one step takes everything they
 * brought. Timed on the monotonic clock: a wall clock set back (NTP at boot) would otherwise hold the next
 * step for as long as it went back.
 */
import type { Clock, TimerHandle } from '../util/index.ts';

export class StepSpacing {
  private lastStartMs = -Infinity;
  private timer: TimerHandle | undefined;

  constructor(
    private readonly clock: Clock,
    private readonly intervalMs: number,
  ) {}

  /** Whether a step may start now; if not, `later` is called once the interval is over. */
  due(later: () => void): boolean {
    const wait = this.lastStartMs + this.intervalMs - this.clock.monotonicMs();
    if (wait <= 0) return true;
    this.timer ??= this.clock.setTimeout(() => {
      this.timer = undefined;
      later();
    }, wait);
    return false;
  }

  /** A step begins now. */
  started(): void {
    this.lastStartMs = this.clock.monotonicMs();
  }

  cancel(): void {
    this.timer?.cancel();
    this.timer = undefined;
  }
}
