/**
 * The reconnect loop shared by every transport: open, report `up`, and when the connection closes report
 * `down`, wait, and try again, doubling the wait up to a ceiling. Real users lose USB serial exactly when the
 * UPS switches to battery (networkupstools/nut#1786, #2925), so reconnecting is not optional.
 */
import type { LinkState } from '../types.ts';
import { Counters } from '../counters.ts';
import { systemBridgeClock, type BridgeClock, type BridgeTimer } from '../clock.ts';
import type { BackoffOptions, Connection, Connector, Transport, TransportHandlers } from './types.ts';

/** First retry after 100 ms: a USB-serial adapter re-enumerates in a few hundred ms. */
export const RECONNECT_INITIAL_MS = 100;
/** Never wait more than 2 s, so that a returning device is found well within NUT's 15 s DEADTIME. */
export const RECONNECT_MAX_MS = 2000;
/** A connection that stayed up this long resets the backoff to its initial delay. */
const RECONNECT_STABLE_MS = 5000;

export class ReconnectingTransport implements Transport {
  private handlers: TransportHandlers | undefined;
  private connection: Connection | undefined;
  private timer: BridgeTimer | undefined;
  private stopped = false;
  private delayMs: number;
  private upSinceMs = 0;
  private current: LinkState = 'down';
  private readonly link = new Counters(['link.connects', 'link.disconnects', 'link.open-failures', 'tx.bytes', 'tx.dropped-bytes']);
  private readonly initialMs: number;
  private readonly maxMs: number;

  constructor(
    readonly name: string,
    private readonly connector: Connector,
    backoff: BackoffOptions = {},
    private readonly clock: BridgeClock = systemBridgeClock,
  ) {
    this.initialMs = backoff.initialMs ?? RECONNECT_INITIAL_MS;
    this.maxMs = backoff.maxMs ?? RECONNECT_MAX_MS;
    this.delayMs = this.initialMs;
  }

  get state(): LinkState {
    return this.current;
  }

  start(handlers: TransportHandlers): void {
    if (this.handlers && !this.stopped) throw new Error(`transport ${this.name} started twice`);
    this.handlers = handlers;
    this.stopped = false;
    this.delayMs = this.initialMs;
    this.setState('connecting');
    void this.attempt();
  }

  write(bytes: Uint8Array): boolean {
    if (!this.connection || this.current !== 'up') {
      this.link.add('tx.dropped-bytes', bytes.length);
      return false;
    }
    this.link.add('tx.bytes', bytes.length);
    this.connection.write(bytes);
    return true;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.timer?.cancel();
    this.timer = undefined;
    const connection = this.connection;
    this.connection = undefined;
    if (connection) await connection.close();
    this.setState('down', 'stopped');
  }

  counters(): Record<string, number> {
    return this.link.snapshot();
  }

  private async attempt(): Promise<void> {
    if (this.stopped) return;
    let closedEarly: string | undefined;
    let opened = false;
    const events = {
      data: (chunk: Uint8Array) => {
        if (this.connection === connection) this.handlers?.data(chunk);
      },
      closed: (reason: string) => {
        if (!opened) closedEarly = reason;
        else if (this.connection === connection) this.onClosed(reason);
      },
    };
    let connection: Connection | undefined;
    try {
      connection = await this.connector(events);
    } catch (error) {
      this.link.add('link.open-failures');
      this.scheduleRetry(describe(error));
      return;
    }
    opened = true;
    if (this.stopped) {
      await connection.close();
      return;
    }
    if (closedEarly !== undefined) {
      this.link.add('link.open-failures');
      this.scheduleRetry(closedEarly);
      return;
    }
    this.connection = connection;
    this.upSinceMs = this.clock.monotonicMs();
    this.link.add('link.connects');
    this.setState('up');
  }

  private onClosed(reason: string): void {
    this.connection = undefined;
    this.link.add('link.disconnects');
    if (this.clock.monotonicMs() - this.upSinceMs >= RECONNECT_STABLE_MS) this.delayMs = this.initialMs;
    this.scheduleRetry(reason);
  }

  private scheduleRetry(reason: string): void {
    if (this.stopped) return;
    this.setState('down', reason);
    const delayMs = this.delayMs;
    this.delayMs = Math.min(this.delayMs * 2, this.maxMs);
    this.timer = this.clock.setTimeout(() => {
      this.timer = undefined;
      void this.attempt();
    }, delayMs);
  }

  /** Retries while down stay silent: the listener hears `down` once per outage, then `up`. */
  private setState(state: LinkState, reason?: string): void {
    if (state === this.current) return;
    this.current = state;
    this.handlers?.state(state, reason);
  }
}

/** A short reason for a failed open or a closed link: the system error code when there is one. */
export function describe(error: unknown): string {
  if (typeof error === 'object' && error !== null) {
    const code = (error as { code?: unknown }).code;
    const message = (error as { message?: unknown }).message;
    if (typeof code === 'string' && typeof message === 'string') return message.includes(code) ? message : `${code}: ${message}`;
    if (typeof message === 'string') return message;
  }
  return String(error);
}
