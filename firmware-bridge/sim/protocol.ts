import { Counters } from '../core/index.ts';

/** What each protocol the simulator can speak (bridge, JBD, Daly, Q1) implements. */
export interface SimProtocol {
  start(): void;
  stop(): void;
  receive(chunk: Uint8Array): void;
  linkUp(): void;
  linkDown(): void;
  counters(): Record<string, number>;
}

/**
 * What every request/response device (JBD, Daly, Megatec Q1) shares: it never speaks first, only answers
 * the frames its accumulator finds, and has nothing to start or stop. Subclasses build the accumulator in
 * their constructor around `stats` and their request handler.
 */
export abstract class PolledSimProtocol implements SimProtocol {
  protected readonly stats = new Counters();
  protected abstract readonly accumulator: { push(chunk: Uint8Array): void; flush(): void };

  start(): void {}
  stop(): void {}
  linkUp(): void {}
  linkDown(): void {
    this.accumulator.flush();
  }
  receive(chunk: Uint8Array): void {
    this.accumulator.push(chunk);
  }
  counters(): Record<string, number> {
    return this.stats.snapshot();
  }
}

