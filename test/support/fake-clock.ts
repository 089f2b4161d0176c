import type { Clock, TimerHandle } from '../../agent/util/index.ts';

/**
 * A clock the test moves by hand. `advance(ms)` runs every timer that falls due, in order, with the clock
 * set to each one's due time; `jump(ms)` moves time without running anything (a paused process: its timers
 * fire late, all at once, when it runs again).
 */
export class FakeClock implements Clock {
  private now = 1_000_000;
  private readonly wallOffsetMs = 1_700_000_000_000;
  private timers: Array<{ dueMs: number; id: number; callback: () => void }> = [];
  private nextId = 0;

  nowMs(): number {
    return this.wallOffsetMs + this.now;
  }

  monotonicMs(): number {
    return this.now;
  }

  setTimeout(callback: () => void, delayMs: number): TimerHandle {
    const timer = { dueMs: this.now + Math.max(0, delayMs), id: this.nextId++, callback };
    this.timers.push(timer);
    return { cancel: () => void (this.timers = this.timers.filter((other) => other !== timer)) };
  }

  advance(ms: number): void {
    const end = this.now + ms;
    for (let due = this.takeDue(end); due; due = this.takeDue(end)) due();
    this.now = end;
  }

  /**
   * `advance` for code that awaits between timers: one timer at a time, and the event loop turns (a
   * setImmediate) after each, so the promise chains a callback starts have run before the next is due.
   */
  async advanceSettling(ms: number): Promise<void> {
    const end = this.now + ms;
    for (let due = this.takeDue(end); due; due = this.takeDue(end)) {
      due();
      await new Promise((resolve) => setImmediate(resolve));
    }
    this.now = end;
  }

  /** The next timer due by `end`, removed, with the clock set to its due time. */
  private takeDue(end: number): (() => void) | undefined {
    const due = this.timers.filter((timer) => timer.dueMs <= end).sort((x, y) => x.dueMs - y.dueMs || x.id - y.id)[0];
    if (!due) return undefined;
    this.timers = this.timers.filter((timer) => timer !== due);
    this.now = Math.max(this.now, due.dueMs);
    return due.callback;
  }

  jump(ms: number): void {
    this.now += ms;
  }
}

/** Let promise callbacks run (the code under test awaits between timer steps). */
export async function settle(): Promise<void> {
  for (let index = 0; index < 10; index++) await Promise.resolve();
}
