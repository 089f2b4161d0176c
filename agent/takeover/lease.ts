/**
 * A primary's lease, with silence takeover (LEADERSHIP.md): it may acknowledge writes only until
 * `leaseMs` after sending the newest heartbeat that came back from a quorum of brokers (heartbeats.ts).
 * A standby takes over only after a silence longer than any lease (silence-watch.ts), so a primary that
 * lost its brokers stops writing before anyone else starts. The roles (roles.ts) decide what a lost lease
 * means; this part only says whether the lease is held, and tells them when it ran out.
 */
import type { Clock } from '../util/index.ts';
import type { Heartbeats } from './heartbeats.ts';

/** The shortest round trip through the brokers that counts as lost (a floor under two heartbeats). */
const ROUND_TRIP_MS_MIN = 1000;
/** The watch checks the lease four times a heartbeat, and at least this far apart. */
const WATCH_INTERVAL_MS_MIN = 20;

export interface LeaseOptions {
  leaseMs: number;
  heartbeatMs: number;
  heartbeats: Heartbeats;
  clock: Clock;
}

export class Lease {
  constructor(private readonly options: LeaseOptions) {}

  get held(): boolean {
    return this.remainingMs > 0;
  }

  /** What is left of the lease (0 once it ran out). */
  get remainingMs(): number {
    const { heartbeats, leaseMs, clock } = this.options;
    return Math.max(0, heartbeats.echoedSentMs + leaseMs - clock.monotonicMs());
  }

  /** How long a round trip through the brokers may take before it counts as lost (also a claim's wait). */
  roundTripMs(): number {
    return Math.max(this.options.heartbeatMs * 2, ROUND_TRIP_MS_MIN);
  }

  /** Wait until a heartbeat sent from now on has come back from a quorum of brokers: the lease is held. */
  async acquire(): Promise<boolean> {
    return (await this.options.heartbeats.waitEcho(this.roundTripMs())) && this.held;
  }

  /**
   * Check the lease while `leading()` says so; `onLost` once it ran out. A lease that ran out is not renewed
   * by a late echo: that echo cannot say whether a standby took over meanwhile.
   */
  watch(leading: () => boolean, onLost: () => void): void {
    const check = () => {
      if (!leading()) return;
      if (!this.held) return onLost();
      this.options.clock.setTimeout(check, Math.max(WATCH_INTERVAL_MS_MIN, this.options.heartbeatMs / 4));
    };
    check();
  }
}
