/**
 * The TLS listener of the direct path: the group's peers connect here and send what they send directly
 * (a primary its batches and handoff record, a standby its acks). A client is accepted only when its
 * certificate carries the key listed for one of the configured peers (peer-auth.ts); anything else is
 * refused and counted by reason, as are frames that are not frames (frames.ts). Nothing a client sends
 * can stop the agent: every failure ends that one connection at worst.
 */
import { createServer, type Server, type TLSSocket } from 'node:tls';
import { splitHostPort, type Logger } from '../../util/index.ts';
import type { Keyring } from '../keys.ts';
import { FrameAccumulator, type DirectKind } from './frames.ts';
import { DIRECT_TLS_VERSION_MIN, identifyPeer, type DirectTlsIdentity } from './peer-auth.ts';

/** A connection that has not finished its handshake within this is dropped (a slow or silent client). */
const HANDSHAKE_TIMEOUT_MS = 2000;
/** Open connections at most, authenticated or not: each peer needs one, a restart briefly two. */
const CONNECTIONS_PER_PEER_MAX = 4;
/** Refusals are logged at most this often per reason (they are always counted). */
const REFUSAL_LOG_INTERVAL_MS = 5000;

export interface DirectListenerOptions {
  listen: string;
  peers: readonly string[];
  keyring: Keyring;
  identity: DirectTlsIdentity;
  frameBytesMax: number;
  /** One frame from an authenticated peer; the returned promise holds the next frame of that peer until it settles. */
  onFrame: (node: string, kind: DirectKind, envelope: Uint8Array) => Promise<void>;
  logger: Logger;
}

export class DirectListener {
  private server: Server | undefined;
  private readonly sockets = new Set<TLSSocket>();
  /** Peers with an authenticated connection in: node → count. */
  private readonly inbound = new Map<string, number>();
  private readonly refused: Record<string, number> = {};
  private readonly garbage: Record<string, number> = {};
  private readonly refusalLoggedAtMs = new Map<string, number>();
  private framesReceived = 0;
  private boundPort = 0;

  constructor(private readonly options: DirectListenerOptions) {}

  /** The port actually bound (the configured one, or the kernel's pick for port 0). */
  get port(): number {
    return this.boundPort;
  }

  isConnectedFrom(node: string): boolean {
    return (this.inbound.get(node) ?? 0) > 0;
  }

  async start(): Promise<void> {
    const { identity, listen } = this.options;
    const server = createServer({ key: identity.key, cert: identity.cert, requestCert: true, rejectUnauthorized: false, minVersion: DIRECT_TLS_VERSION_MIN, handshakeTimeout: HANDSHAKE_TIMEOUT_MS });
    this.server = server;
    server.maxConnections = CONNECTIONS_PER_PEER_MAX * Math.max(1, this.options.peers.length);
    server.on('secureConnection', (socket) => this.onSecure(socket));
    // A client that is not TLS at all, or whose handshake failed: the server's own per-connection error.
    server.on('tlsClientError', (error, socket) => {
      this.refuse('handshake-failed', error.message);
      socket.destroy();
    });
    const { host, port } = splitHostPort(listen);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (error) => this.options.logger.error('direct path listener error', { error }));
    const address = server.address();
    this.boundPort = typeof address === 'object' && address ? address.port : port;
  }

  async stop(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    this.sockets.clear();
    const server = this.server;
    this.server = undefined;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  stats(): Record<string, unknown> {
    return { listen: this.options.listen, port: this.boundPort, framesReceived: this.framesReceived, refused: { ...this.refused }, garbage: { ...this.garbage }, inbound: Object.fromEntries(this.inbound) };
  }

  private onSecure(socket: TLSSocket): void {
    const peer = identifyPeer(socket, this.options.keyring, this.options.peers);
    if (!peer.ok) {
      this.refuse(peer.reason, `from ${socket.remoteAddress ?? 'unknown'}`);
      socket.destroy();
      return;
    }
    const node = peer.node;
    this.sockets.add(socket);
    this.inbound.set(node, (this.inbound.get(node) ?? 0) + 1);
    socket.setNoDelay(true);
    const frames = new FrameAccumulator(this.options.frameBytesMax);
    // Frames of one peer are handed on one after another: a batch is stored before the next is looked at.
    let chain: Promise<void> = Promise.resolve();
    socket.on('data', (chunk: Uint8Array) => {
      const result = frames.push(chunk);
      for (const frame of result.frames) {
        if (!frame.ok) {
          this.countGarbage(frame.reason, node);
          continue;
        }
        this.framesReceived++;
        chain = chain.then(() => this.options.onFrame(node, frame.kind, frame.envelope)).catch((error: unknown) => this.options.logger.error('direct path frame handler failed', { peer: node, error }));
      }
      if (result.fatal) {
        this.countGarbage(result.fatal, node);
        socket.destroy();
      }
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      this.sockets.delete(socket);
      this.inbound.set(node, Math.max(0, (this.inbound.get(node) ?? 1) - 1));
    });
  }

  private countGarbage(reason: string, node: string): void {
    this.garbage[reason] = (this.garbage[reason] ?? 0) + 1;
    this.logLimited(`garbage:${reason}`, () => this.options.logger.warn('dropped a direct-path frame', { reason, peer: node, count: this.garbage[reason] }));
  }

  private refuse(reason: string, detail: string): void {
    this.refused[reason] = (this.refused[reason] ?? 0) + 1;
    this.logLimited(`refused:${reason}`, () => this.options.logger.warn(`refused a direct-path connection: ${reason === 'unknown-key' ? 'its certificate carries no key listed for a configured peer' : reason}`, { reason, detail, count: this.refused[reason] }));
  }

  private logLimited(key: string, log: () => void): void {
    const now = performance.now();
    if (now - (this.refusalLoggedAtMs.get(key) ?? -Infinity) < REFUSAL_LOG_INTERVAL_MS) return;
    this.refusalLoggedAtMs.set(key, now);
    log();
  }
}
