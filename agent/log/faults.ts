/**
 * I/O faults: a failed write or fdatasync stops appends at once: the kernel may already have dropped the
 * dirty pages and a retried fsync could then "succeed" over lost data (fsyncgate; PostgreSQL panics here).
 * Every waiter of the batch and everything staged fails, and the log reopens its files and recovers from
 * what is on disk, treating everything past the last synced offset as torn; a recovery that fails is tried
 * again with a doubling backoff. A part of the flash log (flash-log.ts is its only importer).
 */
import { LastgaspError, type Clock, type Logger, type TimerHandle } from '../util/index.ts';
import type { Batch } from './batch.ts';
import { ioError, type Counters, type ResolvedOptions } from './options.ts';

/** After a fault, recovery is retried with this backoff (doubling) until it succeeds. */
const FAULT_RETRY_MS_MIN = 1000;
const FAULT_RETRY_MS_MAX = 30_000;

/** The last position known durable: recovery treats anything past it as torn. */
export interface DurablePoint {
  readonly segmentId: number;
  readonly offset: number;
}

export interface FaultHost {
  readonly options: Readonly<ResolvedOptions>;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly counters: Counters;
  committed(): number;
  /** The log is closing or closed: a failed recovery is not retried. */
  isClosing(): boolean;
  /** Fail everything staged and everyone waiting for a checkpoint or for idle. */
  stopAll(stopped: LastgaspError): void;
  durablePoint(): DurablePoint;
  /** Close the files, recover from disk (nothing past `hint`) and take over what recovery found. */
  reopen(hint: DurablePoint): Promise<void>;
  /** Recovered: appends may go on. */
  resumed(): void;
}

export class FaultRecovery {
  /** The fault the log stopped on, until a recovery succeeds. */
  fault: LastgaspError | undefined;
  private retryMs = FAULT_RETRY_MS_MIN;
  private timer: TimerHandle | undefined;
  private recovering: Promise<void> | undefined;

  constructor(private readonly host: FaultHost) {}

  /** Stop on `error` (while doing `what`): fail the batch from `waiter` on, everything staged, and start recovery. */
  enter(error: unknown, what: string, batch: Batch, waiter: number): LastgaspError {
    const { host } = this;
    const typed = ioError(error, what);
    const hint = host.durablePoint();
    this.fault = typed;
    host.counters.faults++;
    host.logger.error(`${typed.message}; appends stopped, reopening the log to recover from what is on disk (no retry of the sync)`, {
      code: typed.code,
      committed: host.committed(),
    });
    batch.rejectFrom(waiter, typed);
    host.stopAll(new LastgaspError('LOG_FAULT', `log ${host.options.dir} stopped after an I/O fault: ${typed.message}`, { cause: typed.code }));
    this.recovering = this.recover(hint);
    return typed;
  }

  private async recover(hint: DurablePoint): Promise<void> {
    const { host } = this;
    try {
      await host.reopen(hint);
      this.fault = undefined;
      this.retryMs = FAULT_RETRY_MS_MIN;
      host.counters.faultRecoveries++;
      this.recovering = undefined;
      host.resumed();
    } catch (error) {
      const typed = error instanceof LastgaspError ? error : ioError(error, `recovering ${host.options.dir}`);
      this.fault = typed;
      host.logger.error(`recovery after the fault failed: ${typed.message}; retrying in ${this.retryMs} ms`);
      const delay = this.retryMs;
      this.retryMs = Math.min(FAULT_RETRY_MS_MAX, this.retryMs * 2);
      this.recovering = new Promise<void>((resolve) => {
        if (host.isClosing()) {
          resolve();
          return;
        }
        this.timer = host.clock.setTimeout(() => {
          this.timer = undefined;
          resolve(this.recover(hint));
        }, delay);
      });
    }
  }

  /** The log closes: a recovery waiting to retry gives up rather than wait out the backoff; a running one is waited for. */
  async settleForClose(): Promise<void> {
    if (this.timer) {
      this.timer.cancel();
      this.timer = undefined;
    } else if (this.recovering) await this.recovering;
  }

  cancelTimer(): void {
    this.timer?.cancel();
    this.timer = undefined;
  }

  async whenRecovered(): Promise<void> {
    while (this.recovering) await this.recovering;
  }
}
