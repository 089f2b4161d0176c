/**
 * A standby's watch over the primary's silence (`takeover.silenceMs` > 0), and the election among several
 * standbys. The standby takes over only when all of these hold, checked on its monotonic clock:
 *
 * 1. nothing fresh from any primary for `silenceMs`, counted only over a time in which this node's own
 *    heartbeats kept coming back (a standby cut from the brokers hears nobody and proves nothing);
 * 2. the check did not run late: a tick that fires long after it was due (the process was paused, or
 *    starved) is not acted on; the next one runs after the input that piled up meanwhile was read;
 * 3. a heartbeat sent *now* came back, and the primary is still silent after it: brokers deliver in order,
 *    so anything the primary managed to publish before that round trip has been received;
 * 4. this node is the best-placed standby: the highest committed seq among the standbys heard from within
 *    the silence window, ties to the smallest node name (every standby computes the same answer from the
 *    same heartbeats; the others wait, and take over in turn if the winner falls silent too).
 */
import type { StateMessage } from '../replication/index.ts';
import type { Clock, Logger, TimerHandle } from '../util/index.ts';
import type { Heartbeats } from './heartbeats.ts';

export interface SilenceWatchOptions {
  node: string;
  silenceMs: number;
  heartbeatMs: number;
  heartbeats: Heartbeats;
  /** This node's committed seq (its claim in the election). */
  committed: () => number;
  /** The primary has been silent for `silentMs` and this node won the election: take over. */
  onSilent: (silentMs: number) => Promise<void>;
  clock: Clock;
  logger: Logger;
}

interface Peer {
  readonly role: StateMessage['role'];
  readonly state: StateMessage['state'];
  readonly committed: number;
  readonly seenMs: number;
}

export class SilenceWatch {
  private leaderNode: string | undefined;
  private leaderHeardMs = -Infinity;
  private readonly peers = new Map<string, Peer>();
  private timer: TimerHandle | undefined;
  private dueMs = 0;
  private acting = false;
  private waitingFor: string | undefined;
  /** Ticks skipped because they fired late (a paused or starved process); in status. */
  lateTicks = 0;

  constructor(private readonly options: SilenceWatchOptions) {}

  /** Watch `leaderNode` (undefined: no leader known; the group's silence counts). The window starts now. */
  watch(leaderNode: string | undefined): void {
    this.leaderNode = leaderNode;
    this.leaderHeardMs = this.options.clock.monotonicMs();
    this.waitingFor = undefined;
    if (!this.timer) this.schedule();
  }

  stop(): void {
    this.timer?.cancel();
    this.timer = undefined;
    this.leaderNode = undefined;
  }

  get active(): boolean {
    return this.timer !== undefined;
  }

  /** Every state record from another node (never this node's own). */
  onState(message: StateMessage): void {
    const now = this.options.clock.monotonicMs();
    this.peers.set(message.node, { role: message.role, state: message.state, committed: message.committed, seenMs: now });
    // Any node that says it is primary counts, not only the one this node follows: a standby that follows
    // a stale record must still not take over from a primary that is alive.
    if (message.role === 'primary' && message.state !== 'offline' && message.state !== 'handed-off') this.leaderHeardMs = now;
  }

  status(): Record<string, unknown> {
    const now = this.options.clock.monotonicMs();
    return {
      watching: this.leaderNode,
      leaderSilentMs: Number.isFinite(this.leaderHeardMs) ? Math.round(now - this.leaderHeardMs) : undefined,
      hearingOwnHeartbeats: Number.isFinite(this.options.heartbeats.hearingSinceMs()),
      lateTicks: this.lateTicks,
    };
  }

  private tickMs(): number {
    return Math.max(50, Math.min(250, this.options.heartbeatMs / 2));
  }

  private schedule(): void {
    const delay = this.tickMs();
    this.dueMs = this.options.clock.monotonicMs() + delay;
    this.timer = this.options.clock.setTimeout(() => {
      const late = this.options.clock.monotonicMs() - this.dueMs > delay * 2 + 100;
      this.schedule();
      if (late) {
        this.lateTicks++;
        this.options.logger.info('a silence check ran late (paused or starved); not acting on it', { event: 'late-tick' });
        return;
      }
      void this.check().catch((error: unknown) => this.options.logger.error('silence check failed', { error }));
    }, delay);
  }

  /** Silent since when, or undefined when this node cannot tell (it does not hear its own heartbeats). */
  private silentSinceMs(): number | undefined {
    const hearing = this.options.heartbeats.hearingSinceMs();
    if (!Number.isFinite(hearing)) return undefined;
    return Math.max(this.leaderHeardMs, hearing);
  }

  private async check(): Promise<void> {
    const { clock, silenceMs, node, heartbeatMs, heartbeats } = this.options;
    if (this.acting || !this.timer) return;
    const since = this.silentSinceMs();
    if (since === undefined || clock.monotonicMs() - since < silenceMs) return;
    const best = this.bestCandidate();
    if (best !== node) {
      if (this.waitingFor !== best) this.options.logger.info(`the primary is silent; ${best} is more caught up and should take over`, { event: 'election', winner: best });
      this.waitingFor = best;
      return;
    }
    this.acting = true;
    try {
      if (!(await heartbeats.waitEcho(heartbeatMs * 2))) return;
      const again = this.silentSinceMs();
      if (!this.timer || again === undefined) return;
      const silentMs = clock.monotonicMs() - again;
      if (silentMs < silenceMs || this.bestCandidate() !== node) return;
      await this.options.onSilent(Math.round(silentMs));
    } finally {
      this.acting = false;
    }
  }

  /** The standby that should take over: highest committed among those heard within the window, then name. */
  private bestCandidate(): string {
    const now = this.options.clock.monotonicMs();
    let best = { node: this.options.node, committed: this.options.committed() };
    for (const [node, peer] of this.peers) {
      if (node === this.leaderNode || peer.role !== 'standby' || peer.state === 'offline' || peer.state === 'handed-off') continue;
      if (now - peer.seenMs > this.options.silenceMs) continue;
      if (peer.committed > best.committed || (peer.committed === best.committed && node < best.node)) best = { node, committed: peer.committed };
    }
    return best.node;
  }
}
