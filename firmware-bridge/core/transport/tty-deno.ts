/**
 * Serial on Deno without `serialport`: under Deno 2 its native binding opens the port, but a write fails
 * with "Bad file descriptor" (issue 4). Instead the line is configured with `stty` (raw, no echo, the baud
 * rate) and the tty is opened through Deno's own file API, which reads and writes it like any file.
 */
import { describe } from './reconnect.ts';
import type { Connection, Connector } from './types.ts';

/** The slice of the Deno namespace this file uses; declared here because the project type-checks for Node. */
interface DenoFile {
  read(buffer: Uint8Array): Promise<number | null>;
  write(bytes: Uint8Array): Promise<number>;
  close(): void;
}
interface DenoNamespace {
  open(path: string, options: { read: boolean; write: boolean }): Promise<DenoFile>;
  Command: new (command: string, options: { args: string[]; stdout: 'piped'; stderr: 'piped' }) => {
    output(): Promise<{ code: number; stderr: Uint8Array }>;
  };
}

/** Read chunk size: larger than any frame of the protocols we speak, small enough to keep latency low. */
const TTY_READ_CHUNK = 1024;

export function denoNamespace(): DenoNamespace | undefined {
  return (globalThis as { Deno?: DenoNamespace }).Deno;
}

/** Runs under Deno? (Then serial paths use this transport instead of `serialport`.) */
export function isDeno(): boolean {
  return denoNamespace() !== undefined;
}

/** `stty` arguments for a raw 8N1 line at `baudRate`, with no flow control, echo or signals. */
export function sttyArgs(path: string, baudRate: number): string[] {
  return ['-F', path, String(baudRate), 'raw', '-echo', '-echoe', '-echok', '-echoctl', '-echoke', 'cs8', '-cstopb', '-parenb', '-crtscts', '-ixon', '-ixoff', '-hupcl', 'clocal'];
}

export function denoTtyConnector(path: string, baudRate: number): Connector {
  return async (events) => {
    const deno = denoNamespace();
    if (!deno) throw new Error('the Deno tty transport runs only under Deno');
    const stty = await new deno.Command('stty', { args: sttyArgs(path, baudRate), stdout: 'piped', stderr: 'piped' }).output();
    if (stty.code !== 0) throw new Error(`stty ${path}: ${new TextDecoder().decode(stty.stderr).trim() || `exit ${stty.code}`}`);
    const file = await deno.open(path, { read: true, write: true });
    let closed = false;
    const finish = (reason: string) => {
      if (closed) return;
      closed = true;
      try {
        file.close();
      } catch {
        // Already closed by a failed read; nothing left to release.
      }
      events.closed(reason);
    };
    void (async () => {
      const buffer = new Uint8Array(TTY_READ_CHUNK);
      for (;;) {
        let count: number | null;
        try {
          count = await file.read(buffer);
        } catch (error) {
          return finish(describe(error));
        }
        if (count === null) return finish('end of file on tty');
        if (closed) return;
        events.data(buffer.slice(0, count));
      }
    })();
    // Writes are chained so that frames never interleave, whatever the caller's timing.
    let writing: Promise<void> = Promise.resolve();
    const connection: Connection = {
      write: (bytes) => {
        writing = writing.then(async () => {
          let offset = 0;
          while (offset < bytes.length && !closed) offset += await file.write(bytes.subarray(offset));
        }).catch((error: unknown) => finish(describe(error)));
      },
      close: async () => {
        finish('closed');
      },
    };
    return connection;
  };
}
