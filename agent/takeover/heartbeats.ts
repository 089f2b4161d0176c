/**
 * Heartbeats that come back. Every node publishes its state record every `heartbeatMs` and subscribes to its
 * own state topic, so each heartbeat returns to it through every broker that took it. What comes back is the
 * node's proof that the brokers hear it and that it hears them, and it is measured on this node's monotonic
 * clock from the moment the heartbeat was *sent* (so a heartbeat that took long to come back proves less):
 *
 * - a primary's lease runs until `leaseMs` after sending the newest heartbeat that a quorum of brokers echoed
 *   (LEADERSHIP.md: why that fences its writes before any standby may take over);
 * - a standby may count the primary's silence only over a time in which its own heartbeats kept coming back
 *   (a standby cut from the brokers hears nothing and must not mistake that for the primary's death);
 * - `waitEcho` is the round trip a node makes before it acts on silence: brokers deliver in order, so once a
 *   heartbeat sent now has come back, every record that reached the brokers before it has been received too,
 *   including whatever piled up in the socket while this process was paused.
 */
import type { Clock, Logger, TimerHandle } from '../util/index.ts';

/** Heartbeats older than this many intervals are forgotten if they never came back. */
const PENDING_INTERVALS_MAX = 8;

export interface HeartbeatOptions {
  clock: Clock;
  heartbeatMs: number;
  /** Brokers that must echo a heartbeat for it to count (1 in cluster mode, the quorum with independent brokers). */
  quorum: number;
  /** Publish this node's state record stamped `atMs` (the key the echo is matched by). */
  send: (atMs: number) => Promise<void>;
  logger: Logger;
}

interface Pending {
  readonly sentMs: number;
  readonly links: Set<number>;
}

export class Heartbeats {
  private timer: TimerHandle | undefined;
  private readonly pending = new Map<number, Pending>();
  private lastKey = 0;
  private lastEchoSentMs = -Infinity;
  private lastEchoAtMs = -Infinity;
  /** When the current unbroken run of echoes began (reset by a gap longer than the allowed one). */
  private healthySinceMs = Infinity;
  private waiters: Array<{ afterMs: number; resolve: (ok: boolean) => void }> = [];
  private stopped = true;

  constructor(private readonly options: HeartbeatOptions) {}

  start(): void {
    this.stopped = false;
    this.beat();
  }

  stop(): void {
    this.stopped = true;
    this.timer?.cancel();
    for (const waiter of this.waiters.splice(0)) waiter.resolve(false);
  }

  /** Send one now (and restart the interval from here). */
  beat(): void {
    if (this.stopped) return;
    this.timer?.cancel();
    const { clock, heartbeatMs } = this.options;
    // Strictly increasing keys, so that an echo names exactly one heartbeat of this life.
    const key = Math.max(clock.nowMs(), this.lastKey + 1);
    this.lastKey = key;
    const sentMs = clock.monotonicMs();
    this.pending.set(key, { sentMs, links: new Set() });
    for (const [old, entry] of this.pending) if (sentMs - entry.sentMs > heartbeatMs * PENDING_INTERVALS_MAX) this.pending.delete(old);
    void this.options.send(key).catch(() => undefined);
    this.timer = clock.setTimeout(() => this.beat(), heartbeatMs);
  }

  /** This node's own state record came back through broker `link`. */
  onEcho(atMs: number, link: number): void {
    const entry = this.pending.get(atMs);
    if (!entry) return;
    entry.links.add(link);
    if (entry.links.size < this.options.quorum) return;
    this.pending.delete(atMs);
    const now = this.options.clock.monotonicMs();
    if (now - this.lastEchoAtMs > this.gapMs()) this.healthySinceMs = now;
    this.lastEchoAtMs = now;
    this.lastEchoSentMs = Math.max(this.lastEchoSentMs, entry.sentMs);
    for (const waiter of this.waiters.filter((w) => entry.sentMs >= w.afterMs)) {
      this.waiters.splice(this.waiters.indexOf(waiter), 1);
      waiter.resolve(true);
    }
  }

  /** Monotonic send time of the newest heartbeat a quorum echoed (-Infinity: none yet). */
  get echoedSentMs(): number {
    return this.lastEchoSentMs;
  }

  /**
   * Since when this node has heard its own heartbeats without a gap (Infinity while it does not): the
   * start of the time over which it may count another node's silence.
   */
  hearingSinceMs(): number {
    const now = this.options.clock.monotonicMs();
    return now - this.lastEchoAtMs > this.gapMs() ? Infinity : this.healthySinceMs;
  }

  /** Send a heartbeat now and resolve true once one sent from now on came back, false at the timeout. */
  waitEcho(timeoutMs: number): Promise<boolean> {
    const afterMs = this.options.clock.monotonicMs();
    return new Promise((resolve) => {
      const timer = this.options.clock.setTimeout(() => finish(false), timeoutMs);
      const finish = (ok: boolean) => {
        timer.cancel();
        const index = this.waiters.indexOf(waiter);
        if (index >= 0) this.waiters.splice(index, 1);
        resolve(ok);
      };
      const waiter = { afterMs, resolve: finish };
      this.waiters.push(waiter);
      this.beat();
    });
  }

  /** Two missed heartbeats and a half: longer than that without an echo is a gap in hearing. */
  private gapMs(): number {
    return this.options.heartbeatMs * 2.5;
  }
}
