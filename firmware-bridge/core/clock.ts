/**
 * Time, passed in rather than read from globals, so that the endpoint, the drivers' poll loops and the
 * transports' reconnect back-off can be stepped by a test clock. The shape is the agent's `Clock`
 * (agent/util/clock.ts) written out again, so that the agent hands its own clock in by structural typing
 * while this folder imports nothing from the agent.
 */
export interface BridgeTimer {
  cancel(): void;
}

export interface BridgeClock {
  /** Wall-clock milliseconds since the epoch: for `PowerStatus.atMs` and `PowerEvent.atMs`, which leave the process. */
  nowMs(): number;
  /** Monotonic milliseconds: for every duration and deadline. */
  monotonicMs(): number;
  setTimeout(callback: () => void, delayMs: number): BridgeTimer;
}

export const systemBridgeClock: BridgeClock = {
  nowMs: () => Date.now(),
  monotonicMs: () => performance.now(),
  setTimeout(callback, delayMs) {
    const timer = setTimeout(callback, delayMs);
    return { cancel: () => clearTimeout(timer) };
  },
};
