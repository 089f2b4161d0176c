import type { LinkState } from '../types.ts';

/** What a transport reports upward. */
export interface TransportHandlers {
  data(chunk: Uint8Array): void;
  state(state: LinkState, reason?: string): void;
}

/**
 * A byte pipe to one device that opens itself, reports its state, and reconnects with backoff when the
 * device vanishes, until `stop()`.
 */
export interface Transport {
  readonly name: string;
  start(handlers: TransportHandlers): void;
  /** Queue bytes for the device. Returns false (and counts the bytes) when the link is not up. */
  write(bytes: Uint8Array): boolean;
  stop(): Promise<void>;
  readonly state: LinkState;
  counters(): Record<string, number>;
}

/** One open connection; `closed` is called once, when the device or peer goes away. */
export interface Connection {
  write(bytes: Uint8Array): void;
  close(): Promise<void>;
}

export interface ConnectionEvents {
  data(chunk: Uint8Array): void;
  closed(reason: string): void;
}

/** Opens one connection or rejects with an error that says why (ENOENT, ECONNREFUSED, ...). */
export type Connector = (events: ConnectionEvents) => Promise<Connection>;

export interface BackoffOptions {
  /** First retry delay. */
  readonly initialMs?: number;
  /** Longest delay between attempts. */
  readonly maxMs?: number;
}
