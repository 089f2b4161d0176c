/**
 * Time is passed in rather than read from globals, so that state machines (power supervisor, takeover
 * watchdog) can be stepped explicitly in tests, as MQTT.js does with its injectable `Timer`.
 */
export interface TimerHandle {
  cancel(): void;
}

export interface Clock {
  /** Wall-clock milliseconds since the epoch; for timestamps that leave the process. */
  nowMs(): number;
  /** Monotonic milliseconds; for every duration and deadline. */
  monotonicMs(): number;
  setTimeout(callback: () => void, delayMs: number): TimerHandle;
}

export const systemClock: Clock = {
  nowMs: () => Date.now(),
  monotonicMs: () => performance.now(),
  setTimeout(callback, delayMs) {
    const timer = setTimeout(callback, delayMs);
    return { cancel: () => clearTimeout(timer) };
  },
};

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Wait for `work` at most `ms` (its failure ignored): a hung broker must not hold up a stop or a power cut. */
export async function boundedWait(clock: Clock, work: Promise<unknown>, ms: number): Promise<void> {
  let timer: TimerHandle | undefined;
  await Promise.race([work.catch(() => undefined), new Promise<void>((resolve) => (timer = clock.setTimeout(resolve, ms)))]);
  timer?.cancel();
}
