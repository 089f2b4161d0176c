/** What each protocol the simulator can speak (bridge, JBD, Daly, Q1) implements. */
export interface SimProtocol {
  start(): void;
  stop(): void;
  receive(chunk: Uint8Array): void;
  linkUp(): void;
  linkDown(): void;
  counters(): Record<string, number>;
}
