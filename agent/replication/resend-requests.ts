/**
 * Which of a sibling's resend requests (an ack with `want`) the publisher answers by rewinding (go-back-N):
 * not one for seqs still on their way, not one for a batch sent a moment ago (the request and the batch
 * crossed), and not one the once-per-position rule refuses (resend-rule.ts). Owns the list of recently
 * published batches that the second check needs.
 */
import type { Logger } from '../util/index.ts';
import { ResendRule } from './resend-rule.ts';

/**
 * A resend request for a seq published less than this long ago is not answered: the request and the batch
 * crossed on the way (a sibling's stall check firing just as a paused stream resumes). If the batch was
 * really lost, the sibling asks again after WANT_REPEAT_MS and is answered then.
 */
export const REWIND_GRACE_MS = 1000;
/** Recently published batches remembered for that check: more than a window's worth. */
const RECENT_BATCHES_MAX = 64;

export class ResendRequests {
  private readonly recent: Array<{ first: number; last: number; atMs: number }> = [];
  private readonly rule = new ResendRule();
  readonly counters = {
    rewinds: 0,
    wantsInFlight: 0,
    /** Resend requests refused by the once-per-position rule. */
    wantsRefused: 0,
  };

  constructor(private readonly logger: Logger) {}

  /** A batch of seqs first..last was handed to the links at `atMs`. */
  published(first: number, last: number, atMs: number): void {
    this.recent.push({ first, last, atMs });
    if (this.recent.length > RECENT_BATCHES_MAX) this.recent.shift();
  }

  /**
   * The request of sibling `from` (now at `position`) in `epoch` for a resend from `want`, while the
   * publisher's next seq is `nextSeq` and the log starts at `firstSeq`: the seq to rewind to, or undefined
   * when the seqs are on their way anyway or the request came too often (both counted).
   */
  answer(request: { want: number; from: string; epoch: number; position: number }, nextSeq: number, firstSeq: number, nowMs: number): number | undefined {
    const { want, from, epoch, position } = request;
    if (want >= nextSeq || this.recent.some((batch) => batch.first <= want && want <= batch.last && nowMs - batch.atMs < REWIND_GRACE_MS)) {
      this.counters.wantsInFlight++;
      return undefined;
    }
    if (!this.rule.mayAnswer(`${from}/${epoch}/${want}`, position, nowMs)) {
      this.counters.wantsRefused++;
      return undefined;
    }
    this.counters.rewinds++;
    if (want < firstSeq) {
      this.logger.error(`sibling ${from} asked for seq ${want}, but retention already removed everything below ${firstSeq}; it needs a fresh copy of the log`, { sibling: from, want, firstSeq });
    }
    const target = Math.max(want, firstSeq);
    this.logger.info('sibling asked for a resend', { sibling: from, from: target, was: nextSeq });
    return target;
  }
}
