import { createServer, connect, type Server, type Socket } from 'node:net';
import { waitFor } from './ports.ts';

/**
 * What the proxy does with the path between a client (the agent) and its target (a broker):
 * - `pass`: forwards bytes both ways, accepts new connections.
 * - `cut`: every connection was reset (both sides get an RST) and new ones are refused (nothing listens):
 *   a broker host that went away, a firewall that rejects.
 * - `paused`: nothing is forwarded and nothing is closed; new connections are accepted but get no answer
 *   from the target. Both ends see a silent peer, as behind a dead switch or a dropped route: only their
 *   keep-alive or their own timeouts can notice. What was sent meanwhile is delivered on `restore()`, as
 *   TCP would retransmit it after the path heals.
 */
export type TcpProxyMode = 'pass' | 'cut' | 'paused';

export interface TcpProxy {
  readonly host: string;
  readonly port: number;
  readonly mode: TcpProxyMode;
  /** Connections currently open on the client side. */
  readonly connections: number;
  /** Connections accepted since the proxy started. */
  readonly accepted: number;
  /** Bytes forwarded from clients to the target, and from the target to clients. */
  readonly bytesUp: number;
  readonly bytesDown: number;
  /** `scheme://host:port` of the proxy, e.g. `url('mqtt')` for an MQTT client. */
  url(scheme: string): string;
  /** Reset every connection and stop listening. Resolves when the listener is closed. */
  cut(): Promise<void>;
  /** Stop forwarding without closing anything. */
  pause(): void;
  /** Forward again: listen again after a cut, release what a pause held back. */
  restore(): Promise<void>;
  /** Reset every connection and stop for good (call it in `finally`). */
  close(): Promise<void>;
}

/** How long `restore()` keeps trying to listen on its old port after a cut before it gives up. */
const RELISTEN_TIMEOUT_MS = 5_000;

interface Link {
  readonly client: Socket;
  upstream: Socket | undefined;
}

/**
 * A loopback TCP proxy inside the test process, in front of `target`. It listens on `options.port` or on a
 * free port the kernel picks, and keeps that port across cut and restore so that clients reconnect to the
 * same address.
 */
export async function startTcpProxy(target: { port: number; host?: string }, options: { port?: number } = {}): Promise<TcpProxy> {
  const host = '127.0.0.1';
  const targetHost = target.host ?? '127.0.0.1';
  const links = new Set<Link>();
  let mode: TcpProxyMode = 'pass';
  let closed = false;
  let accepted = 0;
  let bytesUp = 0;
  let bytesDown = 0;

  const forward = (from: Socket, to: Socket, count: (bytes: number) => void) => {
    from.on('data', (chunk: Buffer) => {
      count(chunk.length);
      // Backpressure: stop reading while the other side's buffer is full, as a real relay must.
      if (!to.write(chunk)) from.pause();
    });
    to.on('drain', () => {
      if (mode === 'pass') from.resume();
    });
    from.on('end', () => to.end());
  };

  const drop = (link: Link) => {
    links.delete(link);
    link.client.destroy();
    link.upstream?.destroy();
  };

  const connectUpstream = (link: Link) => {
    const upstream = connect(target.port, targetHost);
    link.upstream = upstream;
    upstream.pause();
    upstream.once('connect', () => {
      forward(link.client, upstream, (n) => (bytesUp += n));
      forward(upstream, link.client, (n) => (bytesDown += n));
      if (mode === 'pass') {
        link.client.resume();
        upstream.resume();
      }
    });
    // The target refusing or closing is passed on to the client as a close, as a real relay would.
    upstream.on('error', () => drop(link));
    upstream.on('close', () => drop(link));
  };

  const onConnection = (client: Socket) => {
    accepted += 1;
    const link: Link = { client, upstream: undefined };
    links.add(link);
    client.on('error', () => drop(link));
    client.on('close', () => drop(link));
    // In `paused` mode the connection is held without an upstream until restore(), like a SYN-ACK from a
    // middlebox whose onward path is dead.
    if (mode === 'pass') connectUpstream(link);
  };

  const server: Server = createServer({ pauseOnConnect: true }, onConnection);
  const listen = (port: number) =>
    new Promise<number>((resolve, reject) => {
      const onError = (error: Error) => reject(error);
      server.once('error', onError);
      server.listen(port, host, () => {
        server.off('error', onError);
        const address = server.address();
        resolve(typeof address === 'object' && address ? address.port : port);
      });
    });
  const port = await listen(options.port ?? 0);

  const resetAll = async () => {
    const closing = server.listening ? new Promise<void>((resolve) => server.close(() => resolve())) : Promise.resolve();
    for (const link of [...links]) {
      links.delete(link);
      link.client.resetAndDestroy();
      link.upstream?.resetAndDestroy();
    }
    await closing;
  };

  return {
    host,
    port,
    get mode() {
      return mode;
    },
    get connections() {
      return links.size;
    },
    get accepted() {
      return accepted;
    },
    get bytesUp() {
      return bytesUp;
    },
    get bytesDown() {
      return bytesDown;
    },
    url: (scheme) => `${scheme}://${host}:${port}`,
    async cut() {
      mode = 'cut';
      await resetAll();
    },
    pause() {
      if (mode === 'cut') throw new Error('tcp proxy: pause() after cut(); restore() first');
      mode = 'paused';
      for (const link of links) {
        link.client.pause();
        link.upstream?.pause();
      }
    },
    async restore() {
      if (closed) throw new Error('tcp proxy: restore() after close()');
      if (!server.listening) {
        // Between cut() and now another process may briefly hold the port (as the local end of an outgoing
        // connection); wait for it rather than move, because clients know only this address.
        await waitFor(`tcp proxy listening again on ${port}`, () => listen(port).then(() => true, () => undefined), RELISTEN_TIMEOUT_MS, 50);
      }
      mode = 'pass';
      for (const link of links) {
        if (link.upstream === undefined) connectUpstream(link);
        else {
          link.client.resume();
          link.upstream.resume();
        }
      }
    },
    async close() {
      closed = true;
      mode = 'cut';
      await resetAll();
    },
  };
}
