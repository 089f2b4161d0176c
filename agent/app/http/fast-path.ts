/**
 * The API server's fast path: connections are accepted on a plain node:net server, and a request in the
 * strict simple form of request-head.ts whose route is a single write is read, answered and written here, a
 * few microseconds each; Node's HTTP server spent about 20 µs of CPU on a request before any route ran.
 *
 * Everything else goes to Node's HTTP server, unread: the first request the fast path does not take (another
 * route, a chunked body, Expect, an obs-fold, a bad byte, a head at the size limit) and every later one on
 * that connection. The bytes read of it are put back in front of the socket's stream (socket.unshift) and the
 * socket is given to Node's server as a new connection (emit('connection')), whose parser, llhttp, reads it
 * from its first byte. So all parsing of unusual input, and every answer to it, stays with llhttp.
 *
 * What Node's server does for a connection, the fast path does the same way for the requests it serves: one
 * request at a time (pipelined ones wait, answered in order), the head within headersTimeoutMs of its first
 * byte and the whole request within requestTimeoutMs (else 408 and close, checked every checkMs as Node
 * does), an idle kept-alive connection closed after idleTimeoutMs (plus the second Node 20 adds), a socket on
 * which nothing moves for silentMs destroyed, `Connection: close` honoured, a refused request answered
 * without its body being read and its connection closed.
 */
import { Buffer } from 'node:buffer';
import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import { parseSimpleHead, type SimpleHead } from './request-head.ts';

/** An answer the fast path writes: a JSON body, extra header lines, and whether the connection closes after it. */
export interface FastAnswer {
  readonly status: number;
  readonly json: string;
  readonly headers?: Readonly<Record<string, string>>;
  readonly close?: boolean;
}

/** What the API gives the fast path: which routes it serves, and how. */
export interface FastRoutes {
  /** Whether the route is one the fast path serves (a single write); otherwise the connection goes to Node's server. */
  takes(head: SimpleHead): boolean;
  /** Who may call it, decided on the head alone; an answer refuses the request (its body is not read). */
  access(head: SimpleHead, connection: object): FastAnswer | undefined;
  /** The request, its body read; never rejects (errors are answers). */
  serve(head: SimpleHead, body: Uint8Array): Promise<FastAnswer>;
}

export interface FastPathOptions {
  routes: FastRoutes;
  /** Node's header size limit (http.maxHeaderSize): a head that reaches it is llhttp's to refuse (431). */
  headBytesMax: number;
  /** The largest body of a single write: a larger one is llhttp's and the API's to refuse (413). */
  bodyBytesMax: number;
  headersTimeoutMs: number;
  requestTimeoutMs: number;
  idleTimeoutMs: number;
  silentMs: number;
  checkMs: number;
  /** The connection's first request head is in (the listener's first-request deadline ends). */
  firstRequest(socket: Socket): void;
  /** Give the socket to Node's HTTP server (its unread bytes already put back). */
  handOver(socket: Socket): void;
}

/** Node 20 keeps an idle kept-alive connection this long past its keepAliveTimeout (HTTP_SERVER_KEEP_ALIVE_TIMEOUT_BUFFER). */
const IDLE_GRACE_MS = 1000;
const EMPTY = new Uint8Array(0);
const CR = 0x0d;
const LF = 0x0a;
/** Bytes enough to tell the method: "POST /" (a shorter input that matches so far stays undecided). */
const METHOD_PREFIX_BYTES = 6;
/** What Node's server writes when a request runs out of time. */
const REQUEST_TIMEOUT_ANSWER = 'HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n\r\n';

/**
 * The bytes read and not yet served, kept as the reads brought them and joined only once a whole head or
 * body is there: a peer that trickles a request byte by byte costs a copy of it once, not once per byte.
 * The head's end (CR LF CR LF) is looked for in each read as it comes, carried across reads.
 */
class ReadBuffer {
  private chunks: Uint8Array[] = [];
  length = 0;
  /** How much of CR LF CR LF the bytes scanned so far end with (0..4). */
  private matched = 0;
  /** Where the first head's end is (just past its empty line), -1 until it came. */
  headEnd = -1;
  /** A bare CR or LF came before the head's end. */
  oddLineEnd = false;

  push(chunk: Uint8Array): void {
    const start = this.length;
    this.chunks.push(chunk);
    this.length += chunk.length;
    if (this.headEnd >= 0) return;
    let matched = this.matched;
    for (let index = 0; index < chunk.length; index++) {
      const byte = chunk[index];
      const afterCr = matched === 1 || matched === 3;
      // A CR without its LF, or an LF without its CR: not the simple form, whether the head ever ends or not.
      if (afterCr !== (byte === LF)) this.oddLineEnd = true;
      matched = byte === CR ? (matched === 2 ? 3 : 1) : byte === LF && afterCr ? matched + 1 : 0;
      if (matched === 4) {
        this.headEnd = start + index + 1;
        break;
      }
    }
    this.matched = matched;
  }

  /** Everything buffered as one array (and kept so). */
  joined(): Uint8Array {
    if (this.chunks.length === 0) return EMPTY;
    if (this.chunks.length > 1) this.chunks = [Buffer.concat(this.chunks, this.length)];
    return this.chunks[0]!;
  }

  /** Drop the first `bytes` (a request served); what follows is looked at anew for the next head. */
  consume(bytes: number): void {
    const rest = this.joined().subarray(bytes);
    this.clear();
    if (rest.length > 0) this.push(rest);
  }

  clear(): void {
    this.chunks = [];
    this.length = 0;
    this.matched = 0;
    this.headEnd = -1;
    this.oddLineEnd = false;
  }
}

class FastConnection {
  readonly buffer = new ReadBuffer();
  /** The request's first bytes were seen to start as POST or PUT do; the head is parsed again only once whole. */
  methodChecked = false;
  /** The head of the request whose body is being read. */
  head: SimpleHead | undefined;
  /** A request is with the routes; what comes meanwhile waits. */
  busy = false;
  /** The peer sent its FIN: the connection ends once what it asked is answered. */
  ended = false;
  closing = false;
  /** Date.now() of the current request's first byte, 0 between requests. */
  requestStartedMs = 0;
  idleSinceMs: number;
  readonly onData = (chunk: Uint8Array): void => this.path.data(this, chunk);
  readonly onEnd = (): void => this.path.end(this);
  readonly onError = (): void => void this.socket.destroy();
  readonly onTimeout = (): void => void this.socket.destroy();
  readonly onClose = (): void => this.path.forget(this);

  constructor(readonly socket: Socket, private readonly path: FastPath) {
    this.idleSinceMs = Date.now();
  }
}

export class FastPath {
  /** Requests the fast path read and answered itself. */
  served = 0;
  /** Connections given to Node's server (each with the request the fast path did not take). */
  handedOver = 0;
  private readonly connections = new Set<FastConnection>();
  private checker: ReturnType<typeof setInterval> | undefined;
  private dateSecond = -1;
  private dateText = '';
  private readonly keepAliveHeader: string;

  constructor(private readonly options: FastPathOptions) {
    // What Node's server announces: its keepAliveTimeout in whole seconds.
    this.keepAliveHeader = `Connection: keep-alive\r\nKeep-Alive: timeout=${Math.floor(options.idleTimeoutMs / 1000)}\r\n`;
  }

  /** Take a new connection. */
  attach(socket: Socket): void {
    const connection = new FastConnection(socket, this);
    this.connections.add(connection);
    socket.setTimeout(this.options.silentMs);
    socket.on('data', connection.onData);
    socket.on('end', connection.onEnd);
    socket.on('error', connection.onError);
    socket.on('timeout', connection.onTimeout);
    socket.on('close', connection.onClose);
    if (!this.checker) {
      this.checker = setInterval(() => this.check(), this.options.checkMs);
      this.checker.unref();
    }
  }

  /** Close every connection the fast path still holds. */
  stop(): void {
    if (this.checker) clearInterval(this.checker);
    this.checker = undefined;
    for (const connection of this.connections) connection.socket.destroy();
  }

  data(connection: FastConnection, chunk: Uint8Array): void {
    if (connection.closing) return;
    if (connection.buffer.length === 0) connection.requestStartedMs = Date.now();
    connection.buffer.push(chunk);
    // Pipelined requests wait while one is served; a peer that sends more than one request's worth meanwhile
    // is not read until it is answered.
    if (connection.busy) {
      if (connection.buffer.length > this.options.headBytesMax + this.options.bodyBytesMax) connection.socket.pause();
      return;
    }
    this.next(connection);
  }

  end(connection: FastConnection): void {
    connection.ended = true;
    if (!connection.busy) connection.socket.end();
  }

  forget(connection: FastConnection): void {
    this.connections.delete(connection);
    if (this.connections.size === 0 && this.checker) {
      clearInterval(this.checker);
      this.checker = undefined;
    }
  }

  /** Serve what the buffer holds, one request at a time, until it needs more bytes or gives the connection up. */
  private next(connection: FastConnection): void {
    const options = this.options;
    const buffer = connection.buffer;
    if (buffer.length === 0) return;
    if (!connection.head) {
      if (buffer.oddLineEnd) return this.handOver(connection);
      // Parsed when the head is whole, at the size limit, or while its first bytes may still not be POST or PUT.
      if (buffer.headEnd < 0 && buffer.length < options.headBytesMax && connection.methodChecked) return;
      const bytes = buffer.joined();
      const scanFrom = buffer.headEnd >= 0 ? buffer.headEnd - 4 : bytes.length - 3;
      const parsed = parseSimpleHead(bytes, scanFrom, options.headBytesMax, options.bodyBytesMax);
      if (parsed.kind === 'incomplete') {
        connection.methodChecked = bytes.length >= METHOD_PREFIX_BYTES;
        return;
      }
      if (parsed.kind === 'other' || !options.routes.takes(parsed.head)) return this.handOver(connection);
      options.firstRequest(connection.socket);
      const refusal = options.routes.access(parsed.head, connection.socket);
      if (refusal) return this.answer(connection, { ...refusal, close: true });
      connection.head = parsed.head;
    }
    const head = connection.head;
    const end = head.headBytes + head.bodyBytes;
    if (buffer.length < end) return;
    const body = buffer.joined().subarray(head.headBytes, end);
    buffer.consume(end);
    connection.head = undefined;
    connection.methodChecked = false;
    connection.busy = true;
    connection.requestStartedMs = 0;
    this.served++;
    options.routes.serve(head, body).then(
      (answer) => this.answer(connection, head.keepAlive ? answer : { ...answer, close: true }),
      () => connection.socket.destroy(),
    );
  }

  private answer(connection: FastConnection, answer: FastAnswer): void {
    const socket = connection.socket;
    connection.busy = false;
    if (socket.destroyed) return;
    const close = answer.close === true || connection.ended;
    let text = `HTTP/1.1 ${answer.status} ${STATUS_CODES[answer.status] ?? 'Unknown'}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(answer.json)}\r\n`;
    if (answer.headers) for (const [name, value] of Object.entries(answer.headers)) text += `${name}: ${value}\r\n`;
    text += `Date: ${this.date()}\r\n${close ? 'Connection: close\r\n' : this.keepAliveHeader}\r\n${answer.json}`;
    socket.write(text);
    if (close) {
      connection.closing = true;
      socket.end(() => socket.destroy());
      return;
    }
    connection.requestStartedMs = connection.buffer.length > 0 ? Date.now() : 0;
    connection.idleSinceMs = Date.now();
    if (socket.isPaused()) socket.resume();
    this.next(connection);
  }

  /** Node's server takes the connection from here, the bytes not yet served put back in front of it. */
  private handOver(connection: FastConnection): void {
    const socket = connection.socket;
    socket.off('data', connection.onData);
    socket.off('end', connection.onEnd);
    socket.off('error', connection.onError);
    socket.off('timeout', connection.onTimeout);
    socket.off('close', connection.onClose);
    this.forget(connection);
    this.handedOver++;
    if (connection.buffer.length > 0) socket.unshift(connection.buffer.joined());
    connection.buffer.clear();
    this.options.handOver(socket);
  }

  /** Requests over their time get Node's 408; idle kept-alive connections past theirs are closed. */
  private check(): void {
    const now = Date.now();
    const { headersTimeoutMs, requestTimeoutMs, idleTimeoutMs } = this.options;
    for (const connection of this.connections) {
      if (connection.closing) continue;
      const started = connection.requestStartedMs;
      if (started !== 0 && !connection.busy) {
        const late = connection.head === undefined ? now - started > headersTimeoutMs : now - started > requestTimeoutMs;
        if (late) {
          connection.closing = true;
          connection.socket.end(REQUEST_TIMEOUT_ANSWER, () => connection.socket.destroy());
        }
      } else if (!connection.busy && connection.buffer.length === 0 && now - connection.idleSinceMs > idleTimeoutMs + IDLE_GRACE_MS) {
        connection.socket.destroy();
      }
    }
  }

  /** The Date header (RFC 9110 §6.6.1), made once a second. */
  private date(): string {
    const now = Date.now();
    const second = Math.floor(now / 1000);
    if (second !== this.dateSecond) {
      this.dateSecond = second;
      this.dateText = new Date(now).toUTCString();
    }
    return this.dateText;
  }
}
