/**
 * Raw TCP to a serial device server (ser2net's `raw` mode, Moxa/USR "TCP server" mode) or to the simulator:
 * the bytes on the socket are the bytes on the device's UART, with no telnet or RFC 2217 negotiation.
 */
import { connect, type Socket } from 'node:net';
import { describe } from './reconnect.ts';
import { systemBridgeClock, type BridgeClock } from '../clock.ts';
import type { Connection, ConnectionEvents, Connector } from './types.ts';

/** TCP keepalive probes start after this idle time, so that a peer that vanished without a FIN is noticed. */
const TCP_KEEPALIVE_MS = 5000;
/** An open that takes longer than this is abandoned and retried (a device server that accepts nothing). */
export const TCP_CONNECT_TIMEOUT_MS = 3000;

export function tcpConnector(host: string, port: number, clock: BridgeClock = systemBridgeClock): Connector {
  return (events) =>
    new Promise<Connection>((resolve, reject) => {
      const socket = connect({ host, port });
      const timer = clock.setTimeout(() => {
        socket.destroy();
        reject(new Error(`ETIMEDOUT: no TCP connection to ${host}:${port} after ${TCP_CONNECT_TIMEOUT_MS} ms`));
      }, TCP_CONNECT_TIMEOUT_MS);
      const onError = (error: Error) => {
        timer.cancel();
        reject(error);
      };
      socket.once('error', onError);
      socket.once('connect', () => {
        timer.cancel();
        socket.off('error', onError);
        socket.setNoDelay(true);
        socket.setKeepAlive(true, TCP_KEEPALIVE_MS);
        resolve(wrapSocket(socket, events));
      });
    });
}

/** Wrap a connected socket (client or accepted) as a Connection. */
export function wrapSocket(socket: Socket, events: ConnectionEvents): Connection {
  let closed = false;
  let lastError: string | undefined;
  socket.on('data', (chunk: Uint8Array) => events.data(chunk));
  socket.on('error', (error) => {
    lastError = describe(error);
  });
  socket.on('close', () => {
    if (closed) return;
    closed = true;
    events.closed(lastError ?? 'connection closed by peer');
  });
  return {
    write: (bytes) => {
      if (!socket.destroyed) socket.write(bytes);
    },
    close: () =>
      new Promise<void>((resolve) => {
        closed = true;
        if (socket.destroyed) return resolve();
        socket.once('close', () => resolve());
        socket.destroy();
      }),
  };
}
