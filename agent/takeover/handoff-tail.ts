/**
 * The tail that goes on after an incomplete handoff. A primary whose flush budget runs out publishes its
 * handoff record while the bytes ahead of it can still reach the brokers, and keeps flushing behind it until
 * the power goes: the record names `tailMs`, the rest of its budget. The successor keeps applying those
 * batches, which come on in order behind the record, and claims its epoch only when the tail has ended:
 *
 *   - every entry the old primary acknowledged is here (`committed` reached the record's), or
 *   - the old primary's last word arrived after the record: its `handed-off` state record (sent at the end of
 *     its brownout, behind the tail on the same connection) or its Will (`offline`, the brokers' word that its
 *     connection is gone, so nothing more comes), or
 *   - `tailMs` and TAIL_GRACE_MS have passed since the record arrived (the power went, and the Will waits for
 *     the brokers' keep-alive).
 *
 * Nothing here changes who may lead: the old primary is latched and its log fenced at `committed`, so every
 * batch of the tail is an acknowledged write of its epoch, and the successor's epoch begins after whatever it
 * holds when it claims; the old primary sets aside, when it returns, only what never arrived (from `since`).
 */
import type { LeaderMessage, StateMessage } from '../replication/index.ts';
import type { Clock } from '../util/index.ts';

/** Past `tailMs`: the bytes the old primary wrote just before its budget ended still crossing the uplink. */
export const TAIL_GRACE_MS = 250;
/** How often the wait looks again at the committed seq. */
const TAIL_POLL_MS = 10;

/** How the wait ended: all of it arrived, the old primary said it was gone, or the time ran out. */
export type TailEnd = 'complete' | 'ended' | 'timeout';

export class HandoffTail {
  /** Per node, when (this node's monotonic ms) its last `handed-off` or `offline` state record arrived. */
  private readonly lastWords = new Map<string, number>();

  constructor(private readonly clock: Clock) {}

  /** Every state record passes here: a `handed-off` or `offline` one ends its sender's tail. */
  onState(message: StateMessage): void {
    if (message.state === 'handed-off' || message.state === 'offline') this.lastWords.set(message.node, this.clock.monotonicMs());
  }

  /** Whether `record` announces a tail worth waiting for: a live handoff record whose budget ran out. */
  static announced(record: LeaderMessage): boolean {
    return record.kind === 'handoff' && record.tailMs !== undefined && record.tailMs > 0 && record.committed !== undefined && record.complete === false;
  }

  /**
   * Resolves once the tail announced by `record`, which arrived at `receivedMs` (monotonic), has ended:
   * `committed()` reached the record's committed seq, the sender's last word arrived after the record, or the
   * time ran out.
   */
  async wait(record: LeaderMessage, receivedMs: number, committed: () => number): Promise<TailEnd> {
    const until = receivedMs + (record.tailMs ?? 0) + TAIL_GRACE_MS;
    for (;;) {
      if (committed() >= (record.committed ?? 0)) return 'complete';
      if ((this.lastWords.get(record.node) ?? -Infinity) >= receivedMs) return 'ended';
      const leftMs = until - this.clock.monotonicMs();
      if (leftMs <= 0) return 'timeout';
      await new Promise<void>((resolve) => this.clock.setTimeout(resolve, Math.min(TAIL_POLL_MS, leftMs)));
    }
  }
}
