/**
 * The demo's moving parts: an embedded broker, child processes whose JSON lines become events, and the
 * model of what the workload had acknowledged.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createInterface } from 'node:readline';
import { MqttIngest } from '../app/index.ts';
import { silentLogger } from '../util/index.ts';

/** Replication batches are far below this; the broker cuts off only a packet this large. */
const DEMO_BROKER_PACKET_BYTES_MAX = 16 * 1024 * 1024;

export interface EmbeddedBroker {
  readonly url: string;
  close(): Promise<void>;
}

/**
 * A plain MQTT broker in this process for one demo run: the agent's own listener (the one behind
 * `mqttIngest`) with nothing journaled and no password, on a free loopback port. It keeps no sessions: a
 * node that reconnects is told so and asks its primary for what it missed, as after any broker restart.
 */
export async function startEmbeddedBroker(): Promise<EmbeddedBroker> {
  const broker = new MqttIngest({
    listen: '127.0.0.1:0',
    journal: [],
    socketMode: '0600',
    ackAfter: {},
    entryBytesMax: DEMO_BROKER_PACKET_BYTES_MAX,
    appendMany: () => Promise.reject(new Error('the demo broker journals nothing')),
    logger: silentLogger,
  });
  const address = await broker.start(undefined);
  return { url: `mqtt://${address}`, close: () => broker.stop() };
}

export type JsonLine = Record<string, unknown>;

export interface Child {
  readonly name: string;
  readonly process: ChildProcess;
  /** Resolves with the first JSON line matching `match`, or rejects after the timeout. */
  waitFor(what: string, match: (line: JsonLine) => boolean, timeoutMs: number): Promise<JsonLine>;
  send(line: string): void;
  kill(signal: NodeJS.Signals): Promise<void>;
  /** Last lines of non-JSON output, for error messages. */
  tail(): string;
}

/**
 * Spawn a child whose stdout and stderr carry JSON lines (the agents log JSON in the demo; the simulator
 * prints JSON events). Every line goes to `onLine`; lines that are not JSON are kept for diagnostics.
 */
export function spawnChild(name: string, command: string, args: readonly string[], onLine: (line: JsonLine) => void): Child {
  const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  const lines: JsonLine[] = [];
  const waiters: Array<{ match: (line: JsonLine) => boolean; resolve: (line: JsonLine) => void }> = [];
  const raw: string[] = [];
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const consume = (text: string) => {
    let line: JsonLine;
    try {
      line = JSON.parse(text) as JsonLine;
    } catch {
      raw.push(text);
      if (raw.length > 40) raw.shift();
      return;
    }
    if (typeof line !== 'object' || line === null) return;
    lines.push(line);
    if (lines.length > 10_000) lines.splice(0, 5_000);
    onLine(line);
    for (const waiter of [...waiters]) {
      if (waiter.match(line)) {
        waiters.splice(waiters.indexOf(waiter), 1);
        waiter.resolve(line);
      }
    }
  };
  for (const stream of [child.stdout, child.stderr]) createInterface({ input: stream! }).on('line', consume);
  return {
    name,
    process: child,
    waitFor(what, match, timeoutMs) {
      const seen = lines.find(match);
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters.splice(waiters.indexOf(waiter), 1);
          reject(new Error(`${name}: no ${what} after ${timeoutMs} ms${raw.length ? `; its last output:\n${raw.slice(-10).join('\n')}` : ''}`));
        }, timeoutMs);
        const waiter = {
          match,
          resolve: (line: JsonLine) => {
            clearTimeout(timer);
            resolve(line);
          },
        };
        waiters.push(waiter);
        void exited.then(() => {
          if (!waiters.includes(waiter)) return;
          clearTimeout(timer);
          waiters.splice(waiters.indexOf(waiter), 1);
          reject(new Error(`${name} exited before ${what}${raw.length ? `; its last output:\n${raw.slice(-10).join('\n')}` : ''}`));
        });
      });
    },
    send(line) {
      child.stdin?.write(line + '\n');
    },
    async kill(signal) {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    },
    tail: () => raw.slice(-10).join('\n'),
  };
}

/** What the workload had acknowledged: the oracle the sibling is checked against. */
export class AckedModel {
  /** seq → the op acknowledged at that seq. */
  readonly bySeq = new Map<number, { op: 'put'; key: string; value: string } | { op: 'entry'; data: string }>();
  readonly kv = new Map<string, string>();

  put(seq: number, key: string, value: string): void {
    this.bySeq.set(seq, { op: 'put', key, value });
  }

  entry(seq: number, data: string): void {
    this.bySeq.set(seq, { op: 'entry', data });
  }

  /** The values put under `key` at the seqs `which` accepts, in seq order. */
  values(key: string, which: (seq: number) => boolean): string[] {
    const out: string[] = [];
    for (const seq of [...this.bySeq.keys()].sort((a, b) => a - b)) {
      const op = this.bySeq.get(seq)!;
      if (op.op === 'put' && op.key === key && which(seq)) out.push(op.value);
    }
    return out;
  }

  /** Apply puts in seq order (concurrent writers ack out of order). */
  finish(): void {
    this.kv.clear();
    for (const seq of [...this.bySeq.keys()].sort((a, b) => a - b)) {
      const op = this.bySeq.get(seq)!;
      if (op.op === 'put') this.kv.set(op.key, op.value);
    }
  }

  /** Same digest as the agent's KvState.digest(). */
  digest(): string {
    const hash = createHash('sha256');
    for (const key of [...this.kv.keys()].sort()) {
      const value = Buffer.from(this.kv.get(key)!, 'utf8');
      hash.update(`${key.length}:${key}:${value.length}:`);
      hash.update(value);
    }
    return hash.digest('hex');
  }
}
