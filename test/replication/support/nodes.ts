// Gateways in the test process: a real flash log on disk and a real Replication against real brokers,
// without the rest of the agent. The tests drive the role themselves and read the counters directly; the
// brokers they talk to are real processes (mosquitto, nats-server) that the tests kill and stop.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { createFlashLog, type FlashLogEngine, type LogEntry } from '../../../agent/log/index.ts';
import { Replication, type ReplicationOptions, type WireAuth } from '../../../agent/replication/index.ts';
import { createLogger, systemClock, type Clock, type Logger } from '../../../agent/util/index.ts';
import { waitFor } from '../../support/ports.ts';

/** The group and node names of broker-config/mosquitto/acl.conf, so that every test can run under the ACL. */
export const GROUP = 'line1';

export interface LogLine {
  readonly level: string;
  readonly ns: string;
  readonly msg: string;
  readonly [field: string]: unknown;
}

export interface NodeOptions {
  /** Parent directory; the node keeps its log in `<dir>/<name>`. */
  dir: string;
  name: string;
  role: 'primary' | 'standby';
  brokers: readonly string[];
  siblings: readonly string[];
  mode?: 'cluster' | 'independent';
  quorum?: number;
  durability?: 'replica' | 'broker';
  replicaAcks?: number;
  protocol?: 'auto' | '5' | '3.1.1';
  batchEntriesMax?: number;
  batchBytesMax?: number;
  windowMax?: number;
  /** 'off': batches go out as they are, whatever the measured link rate would make the codec choose. */
  compression?: 'auto' | 'off';
  keepaliveS?: number;
  username?: string;
  password?: string;
  tls?: ReplicationOptions['tls'];
  hmacKey?: Uint8Array;
  /** How the node signs and verifies (a keyring from ./keys.ts for per-node keys); unsigned by default here. */
  auth?: WireAuth;
  segmentBytes?: number;
  /** A primary publishes its state (with `committed`) this often, as the agent's heartbeat does; 0 = never. */
  heartbeatMs?: number;
  /** The Replication's clock (the log keeps the system clock); a test may skew its monotonic time. */
  clock?: Clock;
  /** Called with the Replication before it starts (to listen to its events from the first message on). */
  onCreated?: (replication: Replication) => void;
}

export interface TestNode {
  readonly name: string;
  readonly log: FlashLogEngine;
  readonly replication: Replication;
  /** Every log line the node wrote, parsed. */
  readonly lines: LogLine[];
  /** Append `count` entries `<tag>-<i>` one after another; resolves with the acknowledged seqs. */
  append(count: number, tag: string, concurrency?: number): Promise<number[]>;
  /** Every entry of the log, in order. */
  entries(): Promise<LogEntry[]>;
  receiver(): Record<string, number>;
  publisher(): Record<string, number | boolean> & { siblings: Record<string, number> };
  links(): Array<Record<string, unknown>>;
  rejected(): Record<string, number>;
  /** DISCONNECT from the brokers and close the log (the broker keeps the session). */
  stop(): Promise<void>;
}

export function captureLogger(lines: LogLine[], node: string): Logger {
  const echo = process.env.LASTGASP_TEST_LOG === '1';
  return createLogger(
    {
      level: 'debug',
      json: true,
      node,
      write: (line) => {
        lines.push(JSON.parse(line) as LogLine);
        if (echo) process.stderr.write(line + '\n');
      },
    },
    'test',
  );
}

export async function startNode(options: NodeOptions): Promise<TestNode> {
  const lines: LogLine[] = [];
  const logger = captureLogger(lines, options.name);
  const log = createFlashLog({
    dir: join(options.dir, options.name),
    segmentBytes: options.segmentBytes,
    lingerMs: 1,
    logger: logger.child('agent:log'),
    clock: systemClock,
  });
  await log.open();
  // A standby counts what it stores as replicated, so its retention goes as far as its floor lets it; in the
  // agent the state's snapshot sets that floor. These tests compare whole copies: nothing set, nothing freed.
  if (options.role === 'standby') log.setRetentionFloor(1);
  const replication = new Replication({
    log,
    group: GROUP,
    node: options.name,
    siblings: options.siblings,
    brokers: options.brokers,
    mode: options.mode ?? 'cluster',
    quorum: options.quorum,
    durability: options.durability ?? 'replica',
    replicaAcks: options.replicaAcks,
    topicPrefix: 'lastgasp',
    protocol: options.protocol ?? 'auto',
    batchEntriesMax: options.batchEntriesMax ?? 2048,
    batchBytesMax: options.batchBytesMax ?? 512 * 1024,
    windowMax: options.windowMax ?? 8,
    compression: options.compression,
    keepaliveS: options.keepaliveS ?? 2,
    username: options.username,
    password: options.password,
    tls: options.tls,
    hmacKey: options.hmacKey,
    auth: options.auth,
    counterFile: join(options.dir, `${options.name}.wire-counter.json`),
    logger: logger.child('agent:replication'),
    clock: options.clock ?? systemClock,
  });
  options.onCreated?.(replication);
  await replication.start();
  await waitFor(`${options.name} connected to its brokers`, () => (replication.connected ? true : undefined), 30_000);
  await replication.setRole(options.role);
  let heartbeat: NodeJS.Timeout | undefined;
  if (options.role === 'primary' && (options.heartbeatMs ?? 500) > 0) {
    heartbeat = setInterval(() => {
      if (!replication.connected) return;
      const message = { group: GROUP, node: options.name, role: 'primary' as const, state: 'online' as const, epoch: log.epoch, committed: log.watermarks().committed, atMs: Date.now() };
      void replication.publishState(message).catch(() => undefined);
    }, options.heartbeatMs ?? 500);
  }
  const stats = () => replication.stats() as { publisher: Record<string, number | boolean> & { siblings: Record<string, number> }; receiver: Record<string, number>; links: Array<Record<string, unknown>>; rejected: Record<string, number> };
  return {
    name: options.name,
    log,
    replication,
    lines,
    async append(count, tag, concurrency = 1) {
      const seqs: number[] = [];
      let next = 0;
      await Promise.all(
        Array.from({ length: concurrency }, async () => {
          while (next < count) {
            const index = next++;
            const { seq } = await log.append(new TextEncoder().encode(`${tag}-${index}`));
            seqs.push(seq);
          }
        }),
      );
      return seqs.sort((a, b) => a - b);
    },
    async entries() {
      const out: LogEntry[] = [];
      for await (const entry of log.entries(log.firstSeq)) out.push(entry);
      return out;
    },
    receiver: () => stats().receiver,
    publisher: () => stats().publisher,
    links: () => stats().links,
    rejected: () => stats().rejected,
    async stop() {
      if (heartbeat) clearInterval(heartbeat);
      await replication.stop();
      await log.close();
    },
  };
}

/** Wait until `node` has committed `seq` (replicated into it, for a standby). */
export function waitCommitted(node: TestNode, seq: number, timeoutMs = 30_000): Promise<true> {
  return waitFor(`${node.name} to hold seq ${seq} (has ${node.log.watermarks().committed})`, () => (node.log.watermarks().committed >= seq ? true : undefined), timeoutMs);
}

/** Wait until the primary counts `seq` as replicated at its configured level. */
export function waitReplicated(node: TestNode, seq: number, timeoutMs = 30_000): Promise<true> {
  return waitFor(`${node.name} to count seq ${seq} as replicated (has ${node.log.watermarks().replicated})`, () => (node.log.watermarks().replicated >= seq ? true : undefined), timeoutMs);
}

/**
 * The contract after every fault: the sibling holds exactly the primary's entries 1..upTo, in order, with
 * the same epoch, timestamp and payload, no gap, and each applied once (the flash log refuses a seq that is
 * not `committed + 1`, so a duplicate apply would have shown as an append failure).
 */
export async function assertSameLog(primary: TestNode, sibling: TestNode, upTo: number, appliedHere = upTo): Promise<void> {
  const [ours, theirs] = await Promise.all([primary.entries(), sibling.entries()]);
  assert.ok(theirs.length >= upTo, `${sibling.name} holds ${theirs.length} entries, expected at least ${upTo}`);
  // The primary's retention may already have freed its oldest segments; compare what it still holds.
  const offset = primary.log.firstSeq - 1;
  for (let index = 0; index < upTo; index++) {
    const b = theirs[index]!;
    assert.equal(b.seq, index + 1, `${sibling.name}: entry ${index} has seq ${b.seq}`);
    const a = ours[index - offset];
    if (!a) continue;
    assert.equal(a.seq, b.seq);
    assert.equal(b.epoch, a.epoch, `seq ${a.seq}: epoch differs`);
    assert.equal(b.timestampMs, a.timestampMs, `seq ${a.seq}: timestamp differs`);
    assert.deepEqual(b.payload, a.payload, `seq ${a.seq}: payload differs`);
  }
  const receiver = sibling.receiver();
  assert.equal(receiver.appendFailures, 0, 'a batch was applied out of order or twice');
  assert.equal(receiver.conflicts, 0);
  assert.equal(receiver.entriesApplied, appliedHere, `${sibling.name} applied ${receiver.entriesApplied} entries, expected ${appliedHere} (each exactly once)`);
}

export function errorLines(node: TestNode, pattern: RegExp): LogLine[] {
  return node.lines.filter((line) => line.level === 'error' && pattern.test(line.msg));
}

export interface Writer {
  /** Seqs the log acknowledged so far. */
  readonly acked: number[];
  /** Stop writing; resolves with every acknowledged seq, sorted. */
  stop(): Promise<number[]>;
}

/** An application writing to `node` without pause, `concurrency` appends at a time, until stopped. */
export function startWriter(node: TestNode, tag: string, concurrency = 4): Writer {
  const acked: number[] = [];
  let stopped = false;
  let index = 0;
  let failure: unknown;
  const loops = Array.from({ length: concurrency }, async () => {
    while (!stopped) {
      try {
        const { seq } = await node.log.append(new TextEncoder().encode(`${tag}-${index++}`));
        acked.push(seq);
      } catch (error) {
        // A test that failed closes the log under the writer; stop quietly and let stop() report it.
        failure ??= error;
        return;
      }
    }
  });
  return {
    acked,
    async stop() {
      stopped = true;
      await Promise.all(loops);
      if (failure) throw failure;
      return acked.sort((a, b) => a - b);
    },
  };
}

/** Wait until `writer` has `count` acknowledged appends. */
export function waitWritten(writer: Writer, count: number, timeoutMs = 30_000): Promise<true> {
  return waitFor(`${count} acknowledged appends (have ${writer.acked.length})`, () => (writer.acked.length >= count ? true : undefined), timeoutMs);
}
