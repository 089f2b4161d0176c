/**
 * Byte pipes to one device: raw TCP (ser2net, the simulator), serial through `serialport` on Node, a tty
 * through stty and Deno's file API under Deno, all wrapped in the reconnect loop with back-off.
 */
import type { TransportConfig } from '../types.ts';
import { ReconnectingTransport } from './reconnect.ts';
import { nodeSerialConnector } from './serial-node.ts';
import { tcpConnector } from './tcp.ts';
import { denoTtyConnector, isDeno } from './tty-deno.ts';
import type { BackoffOptions, Transport } from './types.ts';
import type { BridgeClock } from '../clock.ts';

export { ReconnectingTransport, RECONNECT_INITIAL_MS, RECONNECT_MAX_MS } from './reconnect.ts';
export { tcpConnector, wrapSocket } from './tcp.ts';
export { nodeSerialConnector } from './serial-node.ts';
export { denoTtyConnector, isDeno, sttyArgs } from './tty-deno.ts';
export type { Transport, TransportHandlers, Connection, ConnectionEvents, Connector, BackoffOptions } from './types.ts';

export interface CreateTransportOptions {
  /** Baud rate when the config gives none (each protocol has its own usual rate). */
  readonly defaultBaudRate: number;
  readonly backoff?: BackoffOptions;
  /** Force the tty transport (`deno`) or `serialport` (`node`) for serial paths; by default, by runtime. */
  readonly serialImplementation?: 'node' | 'deno';
  /** Times the reconnect back-off and the TCP connect timeout; the system clock by default. */
  readonly clock?: BridgeClock;
}

/** A human-readable name for logs and PowerStatus.source. */
export function transportName(config: TransportConfig): string {
  return config.type === 'tcp' ? `${config.host}:${config.port}` : config.path;
}

export function createTransport(config: TransportConfig, options: CreateTransportOptions): Transport {
  if (config.type === 'tcp') return new ReconnectingTransport(transportName(config), tcpConnector(config.host, config.port, options.clock), options.backoff, options.clock);
  const baudRate = config.baudRate ?? options.defaultBaudRate;
  const useDeno = (options.serialImplementation ?? (isDeno() ? 'deno' : 'node')) === 'deno';
  const connector = useDeno ? denoTtyConnector(config.path, baudRate) : nodeSerialConnector(config.path, baudRate);
  return new ReconnectingTransport(transportName(config), connector, options.backoff, options.clock);
}
