/**
 * A write that waits for its copy (`ackAfter`). Every acknowledged write is fdatasynced on this node; a
 * write may also ask to be acknowledged only once it is replicated:
 *
 * - `flash` (the default): on this node's flash. Survives a crash of the process and a power cut of this
 *   node. Lost for the group with the node itself (a dead board, a kernel panic before replication), and
 *   set aside by a silence takeover if it had not reached the node that took over.
 * - `broker`: the log's replicated mark covers it: with `replication.durability: broker` the broker quorum
 *   PUBACKed its batch; with `durability: replica` (the default) that mark is the sibling's copy, so
 *   `broker` waits as long as `replica`. Survives the loss of this node as long as the broker delivers it
 *   to a sibling before a takeover; a silence takeover by a sibling that had not stored it sets it aside.
 * - `replica`: a sibling (`replication.replicaAcks` of them) holds it on its own flash. Survives the loss
 *   of this node and of the brokers; a silence takeover never sets it aside, since the best-placed standby
 *   (the highest committed seq) holds it (with replicaAcks below the number of siblings, only if the one
 *   that holds it is the one that takes over).
 *
 * Waiting costs a place in a list, no timer per write when none is asked for. A write whose copy does not
 * come within its timeout fails with NOT_REPLICATED: it is on this node's flash and may still replicate.
 */
import type { FlashLog, Watermarks } from '../log/index.ts';
import { LastgaspError, type Clock, type TimerHandle } from '../util/index.ts';

export type AckAfter = 'flash' | 'broker' | 'replica';
export const ACK_AFTER_LEVELS: readonly AckAfter[] = ['flash', 'broker', 'replica'];

export interface CopyOptions {
  ackAfter?: AckAfter;
  timeoutMs?: number;
}

interface Waiter {
  seq: number;
  level: 'broker' | 'replica';
  resolve: () => void;
  timer: TimerHandle;
}

export class CopyWait {
  private readonly waiters = new Set<Waiter>();
  private unsubscribe: (() => void) | undefined;
  readonly counters = { copyWaits: 0, copyTimeouts: 0 };

  constructor(
    private readonly log: FlashLog,
    private readonly clock: Clock,
    private readonly defaults: { ackAfter: AckAfter; timeoutMs: number },
  ) {}

  /** Resolve once `seq` is copied at the level asked for (or the default), or throw NOT_REPLICATED. */
  wait(seq: number, options: CopyOptions | undefined): Promise<void> | undefined {
    const level = options?.ackAfter ?? this.defaults.ackAfter;
    if (level === 'flash' || reached(this.log.watermarks(), level, seq)) return undefined;
    const timeoutMs = options?.timeoutMs ?? this.defaults.timeoutMs;
    this.counters.copyWaits++;
    this.unsubscribe ??= this.log.onReplicated((marks) => this.advance(marks));
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        seq,
        level,
        resolve,
        timer: this.clock.setTimeout(() => {
          this.waiters.delete(waiter);
          this.counters.copyTimeouts++;
          const marks = this.log.watermarks();
          reject(
            new LastgaspError('NOT_REPLICATED', `seq ${seq} is on this node's flash but was not copied at the ${level} level within ${timeoutMs} ms (replicated ${marks.replicated}, sibling-acked ${marks.replicaAcked}); it may still be, and it is set aside if another node takes over by silence without it`, {
              seq,
              ackAfter: level,
              replicated: marks.replicated,
              replicaAcked: marks.replicaAcked,
            }),
          );
        }, timeoutMs),
      };
      this.waiters.add(waiter);
    });
  }

  stop(): void {
    this.unsubscribe?.();
    this.unsubscribe = undefined;
  }

  private advance(marks: Watermarks): void {
    for (const waiter of this.waiters) {
      if (!reached(marks, waiter.level, waiter.seq)) continue;
      this.waiters.delete(waiter);
      waiter.timer.cancel();
      waiter.resolve();
    }
  }
}

function reached(marks: Watermarks, level: 'broker' | 'replica', seq: number): boolean {
  return level === 'replica' ? marks.replicaAcked >= seq : marks.replicated >= seq || marks.replicaAcked >= seq;
}
