import { createServer, connect, type Server, type Socket } from 'node:net';

/**
 * A slow uplink for the hold-up benchmark: a loopback TCP relay that lets bytes through at `rateBitsPerS`
 * (a token bucket of `burstBytes`) and delivers each byte `delayMs` after it left the bucket, in both
 * directions, like an LTE-M or a congested Wi-Fi hop. The relay holds at most `queueBytesMax` waiting in
 * each direction (the modem's buffer) and stops reading from the sender beyond it, so TCP's own
 * backpressure reaches the agent as it would on a real link. `cut()` is the power cut: every connection is
 * reset and whatever the modem still held is lost.
 */
export interface ShapedLinkOptions {
  readonly rateBitsPerS: number;
  readonly delayMs: number;
  readonly burstBytes: number;
  readonly queueBytesMax: number;
  /** Each piece towards the broker as it leaves the bucket (performance.now() ms): the benchmark's trace. */
  readonly onUp?: (piece: Buffer, releasedAtMs: number) => void;
}

export interface ShapedLink {
  readonly port: number;
  /** Bytes that left the bucket towards the broker. */
  readonly bytesUp: number;
  url(scheme: string): string;
  cut(): Promise<void>;
}

/** Bytes released per timer turn at most: about one MTU-sized burst keeps the pacing smooth at every rate. */
const PIECE_BYTES_MAX = 1500;

interface Direction {
  readonly from: Socket;
  readonly to: Socket;
  readonly queue: Buffer[];
  queuedBytes: number;
  /** When the bucket last left off (ms) and the tokens (bytes) it then held. */
  tokenAtMs: number;
  tokens: number;
  timer: NodeJS.Timeout | undefined;
}

export async function startShapedLink(targetPort: number, options: ShapedLinkOptions): Promise<ShapedLink> {
  const bytesPerMs = options.rateBitsPerS / 8 / 1000;
  const sockets = new Set<Socket>();
  const timers = new Set<NodeJS.Timeout>();
  let bytesUp = 0;

  /**
   * `waited`: the bucket's own timer, the queue waiting for tokens all along. Then the tokens the timer's
   * lateness (a millisecond or so) earned are the link's too, not capped at the burst: with a burst of one
   * piece (1 Mbit/s and below) the cap threw them away, and the link ran at about 0.96 of its rate.
   */
  const pump = (direction: Direction, countUp: boolean, waited: boolean) => {
    direction.timer = undefined;
    const now = performance.now();
    direction.tokens = Math.min(options.burstBytes + (waited ? PIECE_BYTES_MAX : 0), direction.tokens + (now - direction.tokenAtMs) * bytesPerMs);
    direction.tokenAtMs = now;
    while (direction.queue.length > 0 && direction.tokens >= 1) {
      const head = direction.queue[0]!;
      const take = Math.min(head.length, PIECE_BYTES_MAX, Math.floor(direction.tokens));
      const piece = head.subarray(0, take);
      if (take === head.length) direction.queue.shift();
      else direction.queue[0] = head.subarray(take);
      direction.queuedBytes -= take;
      direction.tokens -= take;
      if (countUp) {
        bytesUp += take;
        options.onUp?.(piece, now);
      }
      const delivery = setTimeout(() => {
        timers.delete(delivery);
        if (!direction.to.destroyed) direction.to.write(piece);
      }, options.delayMs);
      timers.add(delivery);
    }
    if (direction.queuedBytes < options.queueBytesMax && direction.from.isPaused()) direction.from.resume();
    if (direction.queue.length > 0) direction.timer = setTimeout(() => pump(direction, countUp, true), Math.max(1, Math.ceil((Math.min(PIECE_BYTES_MAX, direction.queue[0]!.length) - direction.tokens) / bytesPerMs)));
  };

  const relay = (from: Socket, to: Socket, countUp: boolean) => {
    const direction: Direction = { from, to, queue: [], queuedBytes: 0, tokenAtMs: performance.now(), tokens: options.burstBytes, timer: undefined };
    from.on('data', (chunk: Buffer) => {
      direction.queue.push(chunk);
      direction.queuedBytes += chunk.length;
      if (direction.queuedBytes >= options.queueBytesMax) from.pause();
      if (!direction.timer) pump(direction, countUp, false);
    });
    from.on('close', () => {
      if (direction.timer) clearTimeout(direction.timer);
      to.destroy();
    });
  };

  const server: Server = createServer((client) => {
    const upstream = connect(targetPort, '127.0.0.1');
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on('error', () => undefined);
      socket.on('close', () => sockets.delete(socket));
    }
    relay(client, upstream, true);
    relay(upstream, client, false);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return {
    port,
    get bytesUp() {
      return bytesUp;
    },
    url: (scheme) => `${scheme}://127.0.0.1:${port}`,
    async cut() {
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
      for (const socket of sockets) socket.resetAndDestroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/**
 * How much of its nominal rate a link of `options` lets through while saturated (bytes leaving the bucket
 * over `measureMs`, after a 200 ms start): the hold-up benchmark's physical limit assumes the nominal rate,
 * so the relay's own accuracy is printed beside it.
 */
export async function measureShapedLink(options: ShapedLinkOptions, measureMs = 1000): Promise<number> {
  const sink = createServer((socket) => socket.on('data', () => undefined).on('error', () => undefined));
  await new Promise<void>((resolve) => sink.listen(0, '127.0.0.1', resolve));
  const address = sink.address();
  const link = await startShapedLink(typeof address === 'object' && address ? address.port : 0, options);
  const client = connect(link.port, '127.0.0.1');
  client.on('error', () => undefined);
  try {
    await new Promise((resolve) => client.once('connect', resolve));
    const chunk = Buffer.alloc(16 * 1024);
    let sending = true;
    const fill = () => {
      while (sending && client.write(chunk));
    };
    client.on('drain', fill);
    fill();
    await new Promise((resolve) => setTimeout(resolve, 200));
    const startBytes = link.bytesUp;
    const startMs = performance.now();
    await new Promise((resolve) => setTimeout(resolve, measureMs));
    const bytesPerS = ((link.bytesUp - startBytes) * 1000) / (performance.now() - startMs);
    sending = false;
    return (bytesPerS * 8) / options.rateBitsPerS;
  } finally {
    client.destroy();
    await link.cut();
    await new Promise<void>((resolve) => sink.close(() => resolve()));
  }
}
