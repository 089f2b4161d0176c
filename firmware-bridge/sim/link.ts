/**
 * Where the simulator's bytes go: a TCP port it listens on (as ser2net would expose a device), a tty it
 * opens (one end of a socat pty pair), or a pty pair it makes itself with socat. Each can be dropped for a
 * while (`drop-link <ms>`) and can answer slowly (`slow <ms>`).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createTransport, wrapSocket, type Connection, type Transport } from '../core/index.ts';

export interface SimLinkHandlers {
  data(chunk: Uint8Array): void;
  /** A host connected (TCP) or the tty opened; protocols reset their session state on it. */
  up(): void;
  down(reason: string): void;
}

export interface SimLink {
  /** The `listening` line's fields: `{tcp: "127.0.0.1:PORT"}` or `{path: "..."}`. */
  readonly where: Record<string, string>;
  write(bytes: Uint8Array): void;
  /** Go away for `ms`: TCP drops the client and refuses new ones, a pty vanishes, a tty goes silent. */
  drop(ms: number): void;
  /** Delay every outgoing byte by this much (a device that answers slowly); 0 restores. */
  slowMs: number;
  /** Spoil the last byte (the checksum or CRC) of this many of the next frames written. */
  corruptFrames: number;
  close(): Promise<void>;
}

/**
 * Flip bits of the byte that carries each protocol's check: the last byte of a Daly frame (its checksum), the
 * byte before a JBD end marker, a bridge frame's CRC before its delimiter. Megatec lines carry no check, so
 * there the leading marker is spoiled instead, which a reader rejects. The flipped byte is never 0x00, so
 * that a COBS frame keeps its boundaries.
 */
function spoil(bytes: Uint8Array): Uint8Array {
  const copy = bytes.slice();
  const last = copy.length - 1;
  const index = copy[last] === 0x0d ? 0 : copy[last] === 0x00 || copy[last] === 0x77 ? last - 1 : last;
  copy[index] = copy[index]! ^ 0x01 || 0x02;
  return copy;
}

/** How long to wait for socat to create the pty pair. */
const SOCAT_START_TIMEOUT_MS = 5000;

abstract class BaseLink implements SimLink {
  abstract readonly where: Record<string, string>;
  slowMs = 0;
  corruptFrames = 0;
  protected droppedUntilMs = 0;

  constructor(protected readonly handlers: SimLinkHandlers) {}

  write(bytes: Uint8Array): void {
    if (this.isDropped()) return;
    if (this.corruptFrames > 0 && bytes.length > 1) {
      this.corruptFrames--;
      bytes = spoil(bytes);
    }
    if (this.slowMs > 0) {
      setTimeout(() => this.isDropped() || this.send(bytes), this.slowMs);
      return;
    }
    this.send(bytes);
  }

  protected isDropped(): boolean {
    return performance.now() < this.droppedUntilMs;
  }

  protected receive(chunk: Uint8Array): void {
    if (!this.isDropped()) this.handlers.data(chunk);
  }

  abstract drop(ms: number): void;
  abstract close(): Promise<void>;
  protected abstract send(bytes: Uint8Array): void;
}

export class TcpSimLink extends BaseLink {
  where: Record<string, string> = {};
  private server: Server | undefined;
  private client: Connection | undefined;
  private clientSocket: Socket | undefined;

  static async listen(host: string, port: number, handlers: SimLinkHandlers): Promise<TcpSimLink> {
    const link = new TcpSimLink(handlers);
    await link.listen(host, port);
    return link;
  }

  private listen(host: string, port: number): Promise<void> {
    const server = createServer((socket) => this.accept(socket));
    this.server = server;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        const address = server.address();
        const actual = typeof address === 'object' && address ? address.port : port;
        this.where = { tcp: `${host}:${actual}` };
        resolve();
      });
    });
  }

  private accept(socket: Socket): void {
    if (this.isDropped()) {
      socket.destroy();
      return;
    }
    // One host at a time, like a UART: a new connection replaces a half-dead old one.
    this.dropClient('replaced by a new connection');
    socket.setNoDelay(true);
    this.clientSocket = socket;
    const connection: Connection = wrapSocket(socket, {
      data: (chunk) => this.receive(chunk),
      closed: (reason) => {
        if (this.client !== connection) return;
        this.client = undefined;
        this.clientSocket = undefined;
        this.handlers.down(reason);
      },
    });
    this.client = connection;
    this.handlers.up();
  }

  protected send(bytes: Uint8Array): void {
    this.client?.write(bytes);
  }

  drop(ms: number): void {
    this.droppedUntilMs = performance.now() + ms;
    this.dropClient('link dropped by the simulator');
  }

  private dropClient(reason: string): void {
    const client = this.client;
    if (!client) return;
    this.client = undefined;
    this.clientSocket = undefined;
    void client.close();
    this.handlers.down(reason);
  }

  async close(): Promise<void> {
    this.dropClient('simulator stopped');
    const server = this.server;
    this.server = undefined;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

/** A tty opened through the same transport the agent uses (serialport on Node, stty + file on Deno). */
export class TtySimLink extends BaseLink {
  readonly where: Record<string, string>;
  private readonly transport: Transport;

  constructor(path: string, handlers: SimLinkHandlers, baudRate: number, advertisedPath = path) {
    super(handlers);
    this.where = { path: advertisedPath };
    this.transport = createTransport({ type: 'serial', path, baudRate }, { defaultBaudRate: baudRate, backoff: { initialMs: 50, maxMs: 500 } });
  }

  /** Open the tty; resolves once it is open, rejects with the reason if the first attempt fails. */
  open(): Promise<void> {
    return new Promise((resolve, reject) => {
      let first = true;
      this.transport.start({
        data: (chunk) => this.receive(chunk),
        state: (state, reason) => {
          if (state === 'up') {
            this.handlers.up();
            if (first) resolve();
            first = false;
          } else if (state === 'down') {
            if (first) {
              first = false;
              void this.transport.stop();
              reject(new Error(`cannot open ${this.where.path}: ${reason ?? 'unknown error'}`));
              return;
            }
            this.handlers.down(reason ?? 'tty closed');
          }
        },
      });
    });
  }

  protected send(bytes: Uint8Array): void {
    this.transport.write(bytes);
  }

  /** A tty that goes silent: no bytes either way, as a controller whose UART hung. */
  drop(ms: number): void {
    this.droppedUntilMs = performance.now() + ms;
  }

  close(): Promise<void> {
    return this.transport.stop();
  }
}

/**
 * A pty pair made with socat: the host end appears at `link`, the simulator opens the other end. socat runs
 * under a small shell that kills it when the simulator's end of a pipe closes, so that a simulator killed
 * with SIGKILL does not leave a socat behind. `drop-link` removes the pair for a while, as a USB adapter
 * that was unplugged, and then makes it again at the same path.
 */
export class PtySimLink extends BaseLink {
  readonly where: Record<string, string>;
  private socat: ChildProcess | undefined;
  private tty: TtySimLink | undefined;
  private restoreTimer: ReturnType<typeof setTimeout> | undefined;
  private closed = false;

  private constructor(
    private readonly hostLink: string,
    private readonly deviceLink: string,
    private readonly privateDir: string,
    handlers: SimLinkHandlers,
    private readonly baudRate: number,
  ) {
    super(handlers);
    this.where = { path: hostLink };
  }

  static async create(hostLink: string, handlers: SimLinkHandlers, baudRate: number): Promise<PtySimLink> {
    const privateDir = await mkdtemp(join(tmpdir(), 'lastgasp-bms-sim-'));
    const link = new PtySimLink(hostLink, join(privateDir, 'device'), privateDir, handlers, baudRate);
    await link.startSocat();
    link.tty = new TtySimLink(link.deviceLink, handlers, baudRate, hostLink);
    await link.tty.open();
    return link;
  }

  private async startSocat(): Promise<void> {
    // The shell waits for a line on its stdin: "keep" (a drop-link, the pair comes back) or end of file (the
    // simulator is gone, even by SIGKILL), then stops socat, and on end of file also removes the private dir.
    const script = 'socat -d -d "$1" "$2" & pid=$!; read what; kill $pid 2>/dev/null; wait $pid; [ "$what" = keep ] || rm -rf "$3"';
    const child = spawn('sh', ['-c', script, 'sh', `pty,raw,echo=0,link=${this.deviceLink}`, `pty,raw,echo=0,link=${this.hostLink}`, this.privateDir], {
      stdio: ['pipe', 'ignore', 'pipe'],
    });
    this.socat = child;
    let stderr = '';
    child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
    const deadline = performance.now() + SOCAT_START_TIMEOUT_MS;
    while (!(stderr.includes('starting data transfer loop') && existsSync(this.hostLink) && existsSync(this.deviceLink))) {
      if (child.exitCode !== null || performance.now() > deadline) {
        throw new Error(`socat could not make a pty pair at ${this.hostLink}: ${stderr.trim() || 'no output (is socat installed?)'}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  private async stopSocat(keepDir: boolean): Promise<void> {
    const child = this.socat;
    this.socat = undefined;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.stdin?.end(keepDir ? 'keep\n' : undefined);
    await exited;
  }

  protected send(bytes: Uint8Array): void {
    this.tty?.write(bytes);
  }

  drop(ms: number): void {
    this.droppedUntilMs = performance.now() + ms;
    void this.stopSocat(true);
    if (this.restoreTimer) clearTimeout(this.restoreTimer);
    this.restoreTimer = setTimeout(() => {
      this.restoreTimer = undefined;
      if (!this.closed) void this.startSocat().catch((error: Error) => this.handlers.down(error.message));
    }, ms);
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.restoreTimer) clearTimeout(this.restoreTimer);
    await this.tty?.close();
    await this.stopSocat(false);
    await rm(this.privateDir, { recursive: true, force: true });
  }
}
