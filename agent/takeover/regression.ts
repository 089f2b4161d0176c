/**
 * A node whose durable state went backwards (flash that lost work it had acknowledged, a data directory
 * restored from an older copy) must not lead: it would give seqs it already acknowledged to new writes. The
 * group remembers how far this node's log reached: its own retained state record from an earlier life, and
 * the siblings' acks of the epochs this node owns (acks of other epochs speak of someone else's log). Before a
 * node leads, RoleManager asks `wentBackwards`; a node that follows a newer leader sets aside and catches up
 * as usual and is not judged.
 */
import type { Logger } from '../util/index.ts';
import { epochOwner } from './epochs.ts';

export interface Evidence {
  readonly node: string;
  readonly epoch: number;
  readonly seq: number;
  readonly what: 'own state' | 'ack';
}

export class RegressionGuard {
  private told: Evidence | undefined;
  /** The gap found, for status; undefined while none was. */
  report: Record<string, unknown> | undefined;

  constructor(
    private readonly node: string,
    private readonly members: readonly string[],
    private readonly logger: Logger,
  ) {}

  /** Something the group saw of this node's log (Replication's `evidence` event). */
  note(evidence: Evidence): void {
    if (evidence.what === 'ack' && epochOwner(this.members, evidence.epoch) !== this.node) return;
    const told = this.told;
    if (!told || evidence.epoch > told.epoch || (evidence.epoch === told.epoch && evidence.seq > told.seq)) this.told = evidence;
  }

  /** True (and logged, and kept for status) when the group saw this log reach further than it does now. */
  wentBackwards(holds: { epoch: number; committed: number }): boolean {
    const told = this.told;
    // Seqs are what can be reused; an ack of nothing (seq 0, a sibling that just started) proves nothing.
    if (!told || told.seq <= holds.committed || told.epoch < holds.epoch) return false;
    const by = told.what === 'ack' ? `${told.node}'s ack` : "this node's own state record";
    this.report = { holds, told: { epoch: told.epoch, seq: told.seq, by }, gap: { from: holds.committed + 1, to: told.seq } };
    this.logger.error(
      `this node's log went backwards: it holds epoch ${holds.epoch} up to seq ${holds.committed}, but ${told.what === 'ack' ? `${told.node} acknowledged` : 'it told the group it had'} epoch ${told.epoch} up to seq ${told.seq}; seqs ${holds.committed + 1}..${told.seq} may have been acknowledged and are not on this flash. It will not lead (that would reuse them); restore the data directory or let a sibling that holds them lead`,
      { event: 'state-regressed', ...this.report },
    );
    return true;
  }
}
