/**
 * When the primary answers a sibling's resend request (an ack with `want`). An answer makes the publisher
 * rewind to that seq and send everything from there again, so it can cost the whole tail of the log: a
 * misbehaving member repeating a request without pause would make the primary republish it again and
 * again. So the same request (node, epoch, position) is answered once, and again only after the sibling
 * made progress or after a back-off that doubles with each answer, from REWIND_BACKOFF_MS up to
 * REWIND_BACKOFF_MS_MAX. A receiver repeats a want after 1 s (receiver.ts WANT_REPEAT_MS) while the
 * resend is on its way (publisher.ts REWIND_GRACE_MS covers that second); a batch lost twice is sent
 * again from 2 s on.
 */
const REWIND_BACKOFF_MS = 2000;
const REWIND_BACKOFF_MS_MAX = 32_000;
/** Resend requests remembered for that rule (a few per sibling; the oldest is forgotten first). */
const REWINDS_REMEMBERED_MAX = 64;

export class ResendRule {
  /** Requests answered, by `node/epoch/want`: when, how often, and the sibling's position then. */
  private readonly answered = new Map<string, { atMs: number; answers: number; position: number }>();

  /**
   * Whether to answer the request `key` from a sibling now at `position` (its acknowledged seq); records
   * the answer when it allows one.
   */
  mayAnswer(key: string, position: number, nowMs: number): boolean {
    const prior = this.answered.get(key);
    if (prior && position <= prior.position && nowMs - prior.atMs < Math.min(REWIND_BACKOFF_MS * 2 ** (prior.answers - 1), REWIND_BACKOFF_MS_MAX)) return false;
    this.answered.delete(key);
    if (this.answered.size >= REWINDS_REMEMBERED_MAX) this.answered.delete(this.answered.keys().next().value!);
    this.answered.set(key, { atMs: nowMs, answers: (prior?.answers ?? 0) + 1, position });
    return true;
  }
}
