/**
 * Serial on Node through the `serialport` package. The package is loaded on first use, so that this folder
 * still loads under Deno, where its native binding does not work (see tty-deno.ts).
 */
import { describe } from './reconnect.ts';
import type { Connection, Connector } from './types.ts';

export function nodeSerialConnector(path: string, baudRate: number): Connector {
  return async (events) => {
    const { SerialPort } = await import('serialport');
    const port = new SerialPort({ path, baudRate, autoOpen: false, dataBits: 8, parity: 'none', stopBits: 1, hupcl: false });
    await new Promise<void>((resolve, reject) => port.open((error) => (error ? reject(error) : resolve())));
    let closed = false;
    let lastError: string | undefined;
    const finish = (reason: string) => {
      if (closed) return;
      closed = true;
      events.closed(reason);
    };
    port.on('data', (chunk: Uint8Array) => events.data(chunk));
    port.on('error', (error: Error) => {
      lastError = describe(error);
      // A read error (EIO when the USB adapter is unplugged or the pty's other end closes) leaves the port
      // useless; close it so that the reconnect loop can reopen the path once it exists again.
      if (port.isOpen) port.close(() => finish(lastError ?? 'serial error'));
      else finish(lastError ?? 'serial error');
    });
    port.on('close', (error?: Error & { disconnected?: boolean }) => finish(error ? describe(error) : (lastError ?? 'serial port closed')));
    const connection: Connection = {
      write: (bytes) => {
        if (port.isOpen) port.write(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength), (error) => error && (lastError = describe(error)));
      },
      close: () =>
        new Promise<void>((resolve) => {
          closed = true;
          if (!port.isOpen) return resolve();
          port.close(() => resolve());
        }),
    };
    return connection;
  };
}
