/**
 * This node's outgoing TLS connection to one peer of its group: what this node sends directly (batches and
 * the handoff as primary, acks as standby) leaves on it. The peer's own connection to this node carries the
 * other direction (listener.ts), so neither side has to decide who dials whom.
 *
 * The connection is authenticated before anything is written: the peer's certificate must carry the key
 * listed for this peer's node (peer-auth.ts). It reconnects for ever with a short back-off, because the
 * moment it matters (a brownout) is the moment it has no time to wait.
 */
import { EventEmitter } from 'node:events';
import { connect, type TLSSocket } from 'node:tls';
import { splitHostPort, type Logger } from '../../util/index.ts';
import type { Keyring } from '../keys.ts';
import { DIRECT_TLS_VERSION_MIN, identifyPeer, type DirectTlsIdentity } from './peer-auth.ts';

/** First reconnect after this, doubling up to RECONNECT_MS_MAX: a peer restarting comes back within a second or two. */
const RECONNECT_MS_MIN = 100;
const RECONNECT_MS_MAX = 2000;
/** A TCP connection plus a TLS 1.3 handshake on a LAN takes milliseconds; a peer that holds it longer is not answering. */
const HANDSHAKE_TIMEOUT_MS = 2000;
/**
 * Bytes queued on the socket past which a frame is dropped (counted) instead of queued: a peer that stopped
 * reading must not make this node hold an unbounded copy of its log. The receiver asks for what it missed.
 */
const QUEUED_BYTES_MAX = 32 * 1024 * 1024;
/** A stopping link lets queued frames drain this long before it closes the socket. */
const STOP_GRACE_MS = 1000;
/** Reconnect causes kept for status. */
const CAUSES_MAX = 8;

export type PeerLinkState = 'up' | 'connecting' | 'down';

export interface PeerLinkOptions {
  node: string;
  address: string;
  keyring: Keyring;
  identity: DirectTlsIdentity;
  logger: Logger;
}

export interface PeerCause {
  readonly atMs: number;
  readonly cause: string;
}

export class PeerLink extends EventEmitter<{ up: []; down: [] }> {
  private socket: TLSSocket | undefined;
  private authenticated = false;
  private stopped = true;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  private retryMs = RECONNECT_MS_MIN;
  private upAtMs = 0;
  private readonly causes: PeerCause[] = [];
  private readonly counters = { connects: 0, attempts: 0, framesSent: 0, bytesSent: 0, framesDropped: 0, wrongKey: 0 };

  constructor(private readonly options: PeerLinkOptions) {
    super();
  }

  get node(): string {
    return this.options.node;
  }

  get state(): PeerLinkState {
    if (this.authenticated) return 'up';
    return this.socket ? 'connecting' : 'down';
  }

  start(): void {
    this.stopped = false;
    this.connect();
  }

  /** Stop reconnecting; what is queued on the socket still goes out (a handoff record just written), for a moment. */
  stop(): void {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    const socket = this.socket;
    this.socket = undefined;
    this.authenticated = false;
    if (!socket) return;
    socket.end();
    setTimeout(() => socket.destroy(), STOP_GRACE_MS).unref?.();
  }

  /** Try now rather than at the next back-off step (the brownout flush began). */
  hurry(): void {
    if (this.stopped || this.socket) return;
    clearTimeout(this.retryTimer);
    this.retryMs = RECONNECT_MS_MIN;
    this.connect();
  }

  /** Write one frame; false when the peer is not connected or not reading (the frame is dropped, counted). */
  send(frame: Uint8Array): boolean {
    const socket = this.socket;
    if (!socket || !this.authenticated) return false;
    if (socket.writableLength + frame.length > QUEUED_BYTES_MAX) {
      this.counters.framesDropped++;
      return false;
    }
    socket.write(frame);
    this.counters.framesSent++;
    this.counters.bytesSent += frame.length;
    return true;
  }

  /** Write one frame; resolves once it was handed to the kernel, rejects when it could not be written. */
  sendFlushed(frame: Uint8Array): Promise<void> {
    const socket = this.socket;
    if (!socket || !this.authenticated) return Promise.reject(new Error(`direct path to ${this.options.node}: not connected`));
    this.counters.framesSent++;
    this.counters.bytesSent += frame.length;
    return new Promise((resolve, reject) => socket.write(frame, (error) => (error ? reject(error) : resolve())));
  }

  stats(): Record<string, unknown> {
    return { ...this.counters, state: this.state, address: this.options.address, queuedBytes: this.socket?.writableLength ?? 0, reconnects: Math.max(0, this.counters.connects - 1), causes: [...this.causes] };
  }

  private connect(): void {
    const { address, identity, keyring, node, logger } = this.options;
    // The address was checked when the config was loaded (config/load.ts).
    const target = splitHostPort(address);
    this.counters.attempts++;
    const socket = connect({ host: target.host, port: target.port, key: identity.key, cert: identity.cert, rejectUnauthorized: false, minVersion: DIRECT_TLS_VERSION_MIN, servername: '' });
    this.socket = socket;
    socket.setNoDelay(true);
    socket.setTimeout(HANDSHAKE_TIMEOUT_MS, () => socket.destroy(new Error(`no TLS handshake within ${HANDSHAKE_TIMEOUT_MS} ms`)));
    socket.once('secureConnect', () => {
      const peer = identifyPeer(socket, keyring, [node]);
      if (!peer.ok) {
        this.counters.wrongKey++;
        logger.error(`direct path to ${node} at ${address}: the peer's certificate does not carry ${node}'s key from replication.signing.publicKeys (${peer.reason}); not sending to it`, { peer: node, reason: peer.reason });
        socket.destroy(new Error(`peer certificate: ${peer.reason}`));
        return;
      }
      socket.setTimeout(0);
      this.authenticated = true;
      this.upAtMs = performance.now();
      this.counters.connects++;
      logger.info(`direct path to ${node} up`, { peer: node, address });
      this.emit('up');
    });
    // Nothing is expected back on this connection (the peer answers on its own): read and discard.
    socket.on('data', () => undefined);
    socket.on('error', (error: Error) => this.noteCause((error as NodeJS.ErrnoException).code ?? error.message));
    socket.on('close', () => this.onClose(socket));
  }

  private onClose(socket: TLSSocket): void {
    if (this.socket !== socket) return;
    const wasUp = this.authenticated;
    // In TLS 1.3 the client is done before the server checked its certificate: a peer that refuses this
    // node's key closes a connection that looked up. Only one that lasted counts as a success for back-off.
    if (wasUp && performance.now() - this.upAtMs >= RECONNECT_MS_MAX) this.retryMs = RECONNECT_MS_MIN;
    this.socket = undefined;
    this.authenticated = false;
    if (wasUp) {
      this.noteCause('closed by the peer');
      this.options.logger.warn(`direct path to ${this.options.node} lost; reconnecting`, { peer: this.options.node });
      this.emit('down');
    }
    if (this.stopped) return;
    this.retryTimer = setTimeout(() => this.connect(), this.retryMs);
    this.retryTimer.unref?.();
    this.retryMs = Math.min(RECONNECT_MS_MAX, this.retryMs * 2);
  }

  private noteCause(cause: string): void {
    const last = this.causes.at(-1);
    // The same failure every back-off step is one entry with a fresh time, not a list of repeats.
    if (last?.cause === cause) this.causes.pop();
    this.causes.push({ atMs: Date.now(), cause });
    if (this.causes.length > CAUSES_MAX) this.causes.shift();
  }
}
