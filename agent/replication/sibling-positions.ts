/**
 * What the siblings hold on flash, as their acks say: one position per configured sibling, moved only by an
 * ack that is believable (from a configured sibling, of this epoch or an older one, for seqs this primary
 * committed), and the seq that enough of them hold for the `replicaAcked` watermark (durability "replica").
 * The publisher owns what an ack then does (watermarks, resends).
 */
import type { Logger } from '../util/index.ts';
import type { AckMessage } from './wire.ts';

export class SiblingPositions {
  private readonly positions = new Map<string, number>();
  readonly counters = {
    acksReceived: 0,
    /** Acks dropped: from a node that is not a sibling, or naming seqs this primary never committed, or from a newer epoch. */
    acksFromStrangers: 0,
    acksBeyondCommitted: 0,
    acksFromNewerEpoch: 0,
  };

  constructor(
    private readonly siblings: readonly string[],
    /** Siblings that must hold an entry before it counts as replica-acknowledged. */
    private readonly replicaAcks: number,
    private readonly logger: Logger,
  ) {}

  /**
   * Take the ack's position if it is believable, with this primary at `epoch` having committed `committed`;
   * false (counted) otherwise. A sibling that follows a newer leader counts seqs of another history, and a
   * sibling cannot hold what was never written here, so such an ack is forged or from another history.
   */
  admit(ack: AckMessage, epoch: number, committed: number): boolean {
    if (!this.siblings.includes(ack.node)) return void this.counters.acksFromStrangers++, false;
    if (ack.epoch > epoch) return void this.counters.acksFromNewerEpoch++, false;
    if (ack.seq > committed || (ack.want !== undefined && ack.want > committed + 1)) {
      const count = ++this.counters.acksBeyondCommitted;
      // Logged the 1st, 2nd, 4th, 8th... time: a flood of them must not flood the journal.
      if ((count & (count - 1)) === 0) this.logger.warn('dropped an ack for seqs this primary never committed', { sibling: ack.node, seq: ack.seq, want: ack.want, committed, count });
      return false;
    }
    this.counters.acksReceived++;
    if (ack.seq > this.position(ack.node)) this.positions.set(ack.node, ack.seq);
    return true;
  }

  position(sibling: string): number {
    return this.positions.get(sibling) ?? 0;
  }

  /** The seq that `replicaAcks` siblings hold: the N-th highest of their positions. */
  acked(): number {
    const positions = this.siblings.map((sibling) => this.position(sibling)).sort((a, b) => b - a);
    return positions[this.replicaAcks - 1] ?? 0;
  }

  /** The seq every sibling holds (Infinity with no siblings). */
  lowest(): number {
    let lowest = Infinity;
    for (const sibling of this.siblings) lowest = Math.min(lowest, this.position(sibling));
    return lowest;
  }

  /** Each sibling's position, for status. */
  snapshot(): Record<string, number> {
    return Object.fromEntries(this.siblings.map((sibling) => [sibling, this.position(sibling)]));
  }
}
