/**
 * The API client's connections: HTTP/1.1 keep-alive over node:net (TCP or a Unix socket) or node:tls, one
 * request at a time per connection, each request written as one buffer and its response read by
 * response-reader.ts. Node's http client spent about 35 µs of CPU per request on this machine (its agent,
 * its parser, its message objects), several times what the agent spends storing a small entry; this costs
 * about 6 (measured with 16 connections, one 256-byte POST in flight on each).
 *
 * It keeps what the client had with Node's keep-alive agent:
 * - at most `socketsMax` connections; a request beyond them waits for a free one, in order;
 * - a connection left idle is closed by this side a second before the server's announced Keep-Alive timeout
 *   (or after `timeoutMs` when that is shorter), so that no request is ever written on a connection the server
 *   is closing; an idle connection does not keep the process alive;
 * - a request without an answer for `timeoutMs` (no byte moved) fails, and its connection is closed;
 * - transport errors are the socket's own (ECONNREFUSED, ENOENT, ECONNRESET, ...); a response that breaks
 *   the grammar fails with code HPE_INVALID_RESPONSE, a connection closed before the whole answer with
 *   ECONNRESET ("socket hang up").
 */
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { ResponseReader, type ReadResult } from './response-reader.ts';

export type PoolTarget = { socketPath: string } | { host: string; port: number };

export interface PoolOptions {
  target: PoolTarget;
  /** The CA (PEM) that signed the server's certificate: connect with TLS. */
  ca?: string;
  socketsMax: number;
  timeoutMs: number;
}

export interface PoolReply {
  status: number;
  body: Uint8Array;
}

/** How often idle connections and unanswered requests are looked at. */
const SWEEP_MS = 250;
/** This side closes an idle connection this long before the server said it would (Node's agent does the same). */
const IDLE_MARGIN_MS = 1000;

interface Pending {
  readonly bytes: Uint8Array;
  readonly what: string;
  readonly resolve: (reply: PoolReply) => void;
  readonly reject: (error: Error) => void;
}

class Connection {
  reader: ResponseReader | undefined;
  pending: Pending | undefined;
  /** performance.now() of the last byte moved (in flight), or of the moment it went idle. */
  lastActivityMs = 0;
  /** How long this connection may stay idle, from the server's last Keep-Alive hint. */
  idleMs: number;
  closed = false;

  constructor(readonly socket: Socket, idleMs: number) {
    this.idleMs = idleMs;
  }
}

export class ClientPool {
  private readonly idle: Connection[] = [];
  private readonly waiting: Pending[] = [];
  private readonly busy = new Set<Connection>();
  private open = 0;
  private sweeper: ReturnType<typeof setInterval> | undefined;

  constructor(private readonly options: PoolOptions) {}

  /** Send one request (encodeRequest's bytes) and resolve with its response. */
  request(bytes: Uint8Array, what: string): Promise<PoolReply> {
    return new Promise((resolve, reject) => {
      const pending: Pending = { bytes, what, resolve, reject };
      const connection = this.idle.pop();
      if (connection) return this.send(connection, pending);
      if (this.open < this.options.socketsMax) return this.send(this.connect(), pending);
      this.waiting.push(pending);
    });
  }

  /**
   * Close every connection; requests in flight and waiting fail. As with Node's agent.destroy(), a later
   * request opens a new connection.
   */
  close(): void {
    if (this.sweeper) clearInterval(this.sweeper);
    this.sweeper = undefined;
    for (const connection of [...this.idle, ...this.busy]) connection.socket.destroy();
    for (const pending of this.waiting.splice(0)) pending.reject(Object.assign(new Error(`${pending.what}: the client is closed`), { code: 'ERR_CLIENT_CLOSED' }));
  }

  private connect(): Connection {
    const { target, ca } = this.options;
    const socket = ca
      ? tlsConnect({ ...('socketPath' in target ? { path: target.socketPath } : { host: target.host, port: target.port, servername: isIp(target.host) ? undefined : target.host }), ca })
      : 'socketPath' in target
        ? netConnect({ path: target.socketPath })
        : netConnect({ host: target.host, port: target.port, noDelay: true });
    const connection = new Connection(socket, this.options.timeoutMs);
    this.open++;
    socket.on('data', (chunk: Uint8Array) => this.onData(connection, chunk));
    socket.on('end', () => this.onEnd(connection));
    socket.on('error', (error: Error) => this.onClose(connection, error));
    socket.on('close', () => this.onClose(connection, undefined));
    this.startSweeper();
    return connection;
  }

  private send(connection: Connection, pending: Pending): void {
    connection.pending = pending;
    connection.reader = new ResponseReader();
    connection.lastActivityMs = performance.now();
    this.busy.add(connection);
    connection.socket.ref();
    connection.socket.write(pending.bytes);
  }

  private onData(connection: Connection, chunk: Uint8Array): void {
    connection.lastActivityMs = performance.now();
    if (!connection.reader) {
      // Nothing was asked on this connection: the server is out of step with it.
      connection.socket.destroy();
      return;
    }
    this.settle(connection, connection.reader.push(chunk));
  }

  private onEnd(connection: Connection): void {
    // A body that runs to the close ends here; a response cut short is the peer hanging up, as Node reports it.
    if (connection.reader) this.settle(connection, connection.reader.end(), 'ECONNRESET');
    connection.socket.destroy();
  }

  private settle(connection: Connection, result: ReadResult, errorCode = 'HPE_INVALID_RESPONSE'): void {
    if (result.kind === 'incomplete') return;
    const pending = connection.pending!;
    connection.pending = undefined;
    connection.reader = undefined;
    this.busy.delete(connection);
    if (result.kind === 'error') {
      connection.socket.destroy();
      const what = errorCode === 'ECONNRESET' ? 'socket hang up' : 'invalid response from the API';
      pending.reject(Object.assign(new Error(`${pending.what}: ${what} (${result.reason})`), { code: errorCode }));
      return;
    }
    const { head, body, extraBytes } = result;
    if (head.close || extraBytes > 0) connection.socket.destroy();
    else this.release(connection, head.keepAliveS);
    pending.resolve({ status: head.status, body });
  }

  private release(connection: Connection, keepAliveS: number | undefined): void {
    if (keepAliveS !== undefined) connection.idleMs = Math.min(this.options.timeoutMs, Math.max(keepAliveS * 1000 - IDLE_MARGIN_MS, 0));
    const next = this.waiting.shift();
    if (next) return this.send(connection, next);
    if (connection.idleMs === 0) return void connection.socket.end();
    connection.lastActivityMs = performance.now();
    connection.socket.unref();
    this.idle.push(connection);
  }

  private onClose(connection: Connection, error: Error | undefined): void {
    if (connection.closed) return;
    connection.closed = true;
    this.open--;
    this.busy.delete(connection);
    const idleAt = this.idle.indexOf(connection);
    if (idleAt >= 0) this.idle.splice(idleAt, 1);
    connection.socket.destroy();
    const pending = connection.pending;
    connection.pending = undefined;
    connection.reader = undefined;
    if (pending) pending.reject(error ?? Object.assign(new Error(`${pending.what}: the connection closed before the answer (socket hang up)`), { code: 'ECONNRESET' }));
    // A slot is free: the first waiting request gets a new connection.
    const next = this.waiting.shift();
    if (next) this.send(this.connect(), next);
    if (this.open === 0 && this.sweeper) {
      clearInterval(this.sweeper);
      this.sweeper = undefined;
    }
  }

  private startSweeper(): void {
    if (this.sweeper) return;
    this.sweeper = setInterval(() => this.sweep(), SWEEP_MS);
    this.sweeper.unref();
  }

  /** Close connections idle for their time, and fail requests that got no byte for timeoutMs. */
  private sweep(): void {
    const now = performance.now();
    for (const connection of [...this.idle]) {
      if (now - connection.lastActivityMs >= connection.idleMs) {
        this.idle.splice(this.idle.indexOf(connection), 1);
        // end(), not destroy(): the server sees this side's FIN, as with Node's agent.
        connection.socket.end();
      }
    }
    for (const connection of [...this.busy]) {
      if (now - connection.lastActivityMs < this.options.timeoutMs) continue;
      const pending = connection.pending;
      connection.pending = undefined;
      connection.socket.destroy();
      pending?.reject(Object.assign(new Error(`${pending.what}: no answer in ${this.options.timeoutMs} ms`), { code: 'ETIMEDOUT' }));
    }
  }
}

function isIp(host: string): boolean {
  return /^[\d.]+$/.test(host) || host.includes(':');
}
