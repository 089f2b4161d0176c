/**
 * The API's socket: where it listens, with which rights, and how much of the agent its clients may hold.
 *
 * A Unix socket is bound inside a fresh 0700 directory next to its final path, given its mode and group
 * there, and only then renamed into place: no other user can reach it before its rights are right, whatever
 * the umask (a umask change around listen() would be process-wide and race the log's own file creation).
 *
 * Connections are capped in total and per remote address, and the cap is kept well under the process's
 * descriptor limit (RLIMIT_NOFILE): the broker links, the serial link and the log must get descriptors
 * whatever the API's clients do. A connection over a cap is closed the moment it is accepted, and counted.
 * Node cannot read a Unix socket peer's uid (SO_PEERCRED), so there the total cap alone applies.
 *
 * Without TLS, on Node, connections are accepted on a plain net server and go through the fast path first
 * (http/fast-path.ts), which serves single writes in a strict simple form itself and gives every other
 * connection to Node's HTTP server, which then never listens itself. Over TLS, and on Deno, Node's server
 * does all.
 */
import { readFileSync } from 'node:fs';
import { chmod, chown, mkdir, mkdtemp, readFile, rename, rm, unlink } from 'node:fs/promises';
import { createServer as createHttpServer, maxHeaderSize, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import { dirname, join } from 'node:path';
import { LastgaspError, splitHostPort, type Logger } from '../util/index.ts';
import { FastPath, type FastRoutes } from './http/index.ts';

/**
 * Descriptors kept back from the API for the rest of the agent: stdio, the log's segment files and its
 * directory, up to 8 broker links and their DNS lookups, the serial line, libuv's internal pipes, and the
 * files the state snapshot and the leader record write. 256 covers that several times over.
 */
export const API_FD_RESERVE = 256;
/** The API always keeps a few connections, even under a very low descriptor limit. */
const API_CONNECTIONS_FLOOR = 8;
/** Assumed when /proc/self/limits cannot be read: the usual default soft limit. */
const NOFILE_FALLBACK = 1024;
/**
 * A socket on which no byte has moved this long is closed. Longer than any wait the agent itself imposes
 * on a writer (a full log with fullPolicy "wait" holds an append up to 60 s), so only a stuck peer hits it.
 */
const SOCKET_SILENT_MS_MAX = 120_000;
/**
 * Deno 2's node:http takes a socket given with emit('connection') but ends it after the first answer,
 * Keep-Alive announced or not (Deno 2.9.6): every request handed over would cost its connection, and a
 * client that reuses it meets ECONNRESET. On Deno, Node's server (Deno's) serves every request.
 */
const RUNS_ON_DENO = 'Deno' in globalThis;
/** How often Node checks headers and request timeouts (its default, 30 s, lets a slowloris hold sockets long). */
const TIMEOUT_CHECK_MS_MAX = 1000;

export interface ListenerOptions {
  listen: string;
  socketMode: string;
  socketGroup: string | undefined;
  tls: { cert: string; key: string } | undefined;
  connectionsMax: number;
  connectionsPerClientMax: number;
  headersTimeoutMs: number;
  requestTimeoutMs: number;
  idleTimeoutMs: number;
  /** The largest body a route of the fast path takes. */
  bodyBytesMax: number;
  logger: Logger;
}

export interface ListenerCounters {
  apiConnectionsOpen: number;
  apiConnectionsMax: number;
  apiConnectionsRefused: number;
  apiConnectionsRefusedPerClient: number;
  /** Requests the fast path served itself, and connections it handed to Node's server (http/fast-path.ts). */
  apiFastPathRequests: number;
  apiFastPathHandovers: number;
}

export class ApiListener {
  private server: Server | undefined;
  /** Without TLS: what listens, in front of `server`, and its fast path. */
  private front: NetServer | undefined;
  private fast: FastPath | undefined;
  private socketPath: string | undefined;
  private open = 0;
  private readonly perClient = new Map<string, number>();
  private refused = 0;
  private refusedPerClient = 0;
  private readonly firstRequestTimers = new WeakMap<object, NodeJS.Timeout>();
  readonly connectionsMax: number;

  constructor(private readonly options: ListenerOptions) {
    const nofile = descriptorLimit();
    this.connectionsMax = apiConnectionsCap(options.connectionsMax, nofile);
    if (this.connectionsMax < options.connectionsMax) {
      options.logger.warn(`api.connectionsMax lowered from ${options.connectionsMax} to ${this.connectionsMax}: the descriptor limit is ${nofile} and ${API_FD_RESERVE} stay reserved for the log and the broker links (raise LimitNOFILE)`);
    }
  }

  get counters(): ListenerCounters {
    return { apiConnectionsOpen: this.open, apiConnectionsMax: this.connectionsMax, apiConnectionsRefused: this.refused, apiConnectionsRefusedPerClient: this.refusedPerClient, apiFastPathRequests: this.fast?.served ?? 0, apiFastPathHandovers: this.fast?.handedOver ?? 0 };
  }

  /**
   * Listen and return the address as clients should name it (`host:port` with the real port, or `unix:/path`).
   * `fast`: the routes the fast path serves itself (without TLS).
   */
  async start(handler: (request: IncomingMessage, response: ServerResponse) => void, fast?: FastRoutes): Promise<string> {
    const options = this.options;
    const serverOptions = {
      headersTimeout: options.headersTimeoutMs,
      requestTimeout: options.requestTimeoutMs,
      keepAliveTimeout: options.idleTimeoutMs,
      connectionsCheckingInterval: Math.min(TIMEOUT_CHECK_MS_MAX, options.headersTimeoutMs),
    };
    const server = options.tls
      ? createHttpsServer({ ...serverOptions, handshakeTimeout: options.headersTimeoutMs, cert: options.tls.cert, key: options.tls.key }, handler)
      : createHttpServer(serverOptions, handler);
    // A client that stops reading a response must not hold its socket forever.
    server.setTimeout(this.silentMs(), (socket: Socket) => socket.destroy());
    server.on('request', (request: IncomingMessage) => {
      clearTimeout(this.firstRequestTimers.get(request.socket));
      this.firstRequestTimers.delete(request.socket);
    });
    this.server = server;
    const listening = options.tls || !fast || RUNS_ON_DENO ? server : this.frontServer(server, fast, serverOptions.connectionsCheckingInterval);
    if (options.tls) {
      // The raw TCP connection, before any TLS handshake: refusing here costs no handshake. The handshake has
      // its own deadline (handshakeTimeout); the first request's starts after it.
      server.on('connection', (socket: Socket) => void this.admit(socket));
      server.on('secureConnection', (socket: Socket) => this.awaitFirstRequest(socket));
    } else if (listening === server) {
      server.on('connection', (socket: Socket) => {
        if (this.admit(socket)) this.awaitFirstRequest(socket);
      });
    }
    if (options.listen.startsWith('unix:')) {
      const path = options.listen.slice('unix:'.length);
      await this.listenUnix(listening, path);
      this.socketPath = path;
      return options.listen;
    }
    const { host, port } = splitHostPort(options.listen);
    await listenOn(listening, { port, host });
    const address = listening.address();
    return typeof address === 'object' && address ? `${options.listen.slice(0, options.listen.lastIndexOf(':'))}:${address.port}` : options.listen;
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.fast?.stop();
    server.closeAllConnections();
    if (this.front) {
      const front = this.front;
      await new Promise<void>((resolve) => front.close(() => resolve()));
      // Node's server never listened: close() only stops its timeout checks (and reports it was not running).
      server.close(() => undefined);
    } else {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
    if (this.socketPath) await unlink(this.socketPath).catch(() => undefined);
  }

  /**
   * The plain net server that listens without TLS: it admits each connection and gives it to the fast path,
   * which hands to Node's `server` every connection it does not serve itself.
   */
  private frontServer(server: Server, routes: FastRoutes, checkMs: number): NetServer {
    const options = this.options;
    // Half-open as Node's HTTP server is: a client's FIN must not cut off the answer it waits for.
    const front = createNetServer({ allowHalfOpen: true });
    const fast = new FastPath({
      routes,
      headBytesMax: maxHeaderSize,
      bodyBytesMax: options.bodyBytesMax,
      headersTimeoutMs: options.headersTimeoutMs,
      requestTimeoutMs: options.requestTimeoutMs,
      idleTimeoutMs: options.idleTimeoutMs,
      silentMs: this.silentMs(),
      checkMs,
      firstRequest: (socket) => {
        clearTimeout(this.firstRequestTimers.get(socket));
        this.firstRequestTimers.delete(socket);
      },
      handOver: (socket) => server.emit('connection', socket),
    });
    front.on('connection', (socket: Socket) => {
      if (!this.admit(socket)) return;
      this.awaitFirstRequest(socket);
      fast.attach(socket);
    });
    // Node's server starts its header and request timeout checks (and its list of connections they run
    // over) when it starts listening; it never listens here, so it is told it does.
    server.emit('listening');
    this.front = front;
    this.fast = fast;
    return front;
  }

  private silentMs(): number {
    return Math.max(this.options.requestTimeoutMs, SOCKET_SILENT_MS_MAX);
  }

  /**
   * Node's headersTimeout starts at a request's first byte, so a connection that sends nothing at all would
   * hold its place until the socket's silence limit. It gets the same deadline for its first request.
   */
  private awaitFirstRequest(socket: Socket): void {
    const timer = setTimeout(() => socket.destroy(), this.options.headersTimeoutMs);
    this.firstRequestTimers.set(socket, timer);
    socket.once('close', () => clearTimeout(timer));
  }

  /** Count the connection in, or close it at once when it is over a cap; true when admitted. */
  private admit(socket: Socket): boolean {
    if (this.open >= this.connectionsMax) {
      this.refused++;
      socket.destroy();
      return false;
    }
    const client = socket.remoteAddress;
    const fromClient = client === undefined ? 0 : (this.perClient.get(client) ?? 0);
    if (client !== undefined && fromClient >= this.options.connectionsPerClientMax) {
      this.refusedPerClient++;
      socket.destroy();
      return false;
    }
    this.open++;
    if (client !== undefined) this.perClient.set(client, fromClient + 1);
    socket.once('close', () => {
      this.open--;
      if (client === undefined) return;
      const left = (this.perClient.get(client) ?? 1) - 1;
      if (left === 0) this.perClient.delete(client);
      else this.perClient.set(client, left);
    });
    return true;
  }

  private async listenUnix(server: NetServer, path: string): Promise<void> {
    const mode = parseInt(this.options.socketMode, 8);
    const gid = this.options.socketGroup === undefined ? undefined : await groupId(this.options.socketGroup);
    await mkdir(dirname(path), { recursive: true });
    // mkdtemp creates the directory 0700: until the rename below, only this user can reach the socket.
    const privateDir = await mkdtemp(join(dirname(path), '.lastgasp-api-'));
    const staging = join(privateDir, 'api.sock');
    try {
      await listenOn(server, { path: staging });
      await chmod(staging, mode);
      if (gid !== undefined) await chown(staging, -1, gid);
      // rename() replaces a stale socket from a previous run atomically: no moment without a socket either.
      await rename(staging, path);
    } catch (error) {
      server.close();
      throw new LastgaspError('CONFIG_INVALID', `config: api.listen: cannot serve the socket ${path} (${(error as Error).message}); check that the directory is writable${gid === undefined ? '' : ` and that this user belongs to group ${this.options.socketGroup} (api.socketGroup)`}`);
    } finally {
      await rm(privateDir, { recursive: true, force: true });
    }
  }
}

/** The API's connection cap: the configured one, lowered to leave API_FD_RESERVE descriptors to the rest. */
export function apiConnectionsCap(configured: number, nofile: number): number {
  return Math.max(API_CONNECTIONS_FLOOR, Math.min(configured, nofile - API_FD_RESERVE));
}

/** The soft RLIMIT_NOFILE, from /proc/self/limits (Node has no getrlimit). */
export function descriptorLimit(): number {
  try {
    const line = readFileSync('/proc/self/limits', 'utf8').split('\n').find((text) => text.startsWith('Max open files'));
    const soft = line ? Number(line.slice('Max open files'.length).trim().split(/\s+/)[0]) : NaN;
    return Number.isSafeInteger(soft) && soft > 0 ? soft : NOFILE_FALLBACK;
  } catch {
    return NOFILE_FALLBACK;
  }
}

function listenOn(server: NetServer, target: { path: string } | { port: number; host: string }): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(target, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

/** A group name or number to its gid, from /etc/group (Node has no getgrnam). */
async function groupId(group: string): Promise<number> {
  if (/^\d+$/.test(group)) return Number(group);
  const text = await readFile('/etc/group', 'utf8').catch(() => '');
  const line = text.split('\n').find((entry) => entry.split(':')[0] === group);
  const gid = line ? Number(line.split(':')[2]) : NaN;
  if (!Number.isSafeInteger(gid)) throw new LastgaspError('CONFIG_INVALID', `config: api.socketGroup: no group "${group}" in /etc/group (create it: groupadd ${group})`);
  return gid;
}
