/**
 * The application's key-value state, derived from the log: it tails the committed log in seq order and
 * applies puts and deletes. The primary and a replica run the same code, so a sibling that takes over
 * serves exactly the state its replica log implies.
 *
 * Retention may delete old segments, so the state is snapshotted now and then (CBOR, replaced atomically)
 * and the log is told not to delete anything the latest snapshot does not cover.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { FlashLog } from '../log/index.ts';
import { LastgaspError, decodeCbor, encodeCbor, nodeFs, removeTemporaries, unlinkDurable, writeFileAtomic, type Logger } from '../util/index.ts';
import { OP_DELETE, OP_ENTRY, OP_MQTT, OP_PUT, OP_SQLITE, decodeOp, peekOpCode, seqFromValue } from './ops.ts';

const SNAPSHOT_FILE = 'kv-snapshot.cbor';
const SNAPSHOT_VERSION = 1;
/** Entries read from the log per apply step: bounds the memory of a catch-up. */
const APPLY_BATCH_ENTRIES = 4096;
const APPLY_BATCH_BYTES = 1024 * 1024;


/** After a failed read of the log, the catch-up is tried again this much later. */
const APPLY_RETRY_MS = 500;

export interface KvStateOptions {
  dataDir: string;
  log: FlashLog;
  logger: Logger;
  /** Write a snapshot after this many applied entries (0 = only at close). */
  snapshotEveryEntries?: number;
  /**
   * Also write one after this many bytes of applied entries (0 = by count only), but never before as many
   * bytes as the last snapshot took: a log of large entries (SQLite pages, big MQTT payloads) reaches its
   * quota long before the entry count, and its retention can free nothing past the last snapshot.
   */
  snapshotEveryBytes?: number;
  /**
   * A key whose value is a seq (decimal text) that retention must keep entries after: the upstream
   * forwarding position (forwarder.ts). Absent key: everything is kept.
   */
  holdKey?: string;
  /** The first seq another reader of this node's log still needs (the standby's SQLite replicas): retention keeps it. */
  neededFrom?: () => number;
}

export class KvState {
  private readonly map = new Map<string, Uint8Array>();
  private appliedSeq = 0;
  private snapshotSeq = 0;
  private appliedSinceSnapshot = 0;
  private appliedBytesSinceSnapshot = 0;
  private lastSnapshotBytes = 0;
  private readonly waiters: Array<{ seq: number; resolve: () => void }> = [];
  private applying: Promise<void> | undefined;
  private again = false;
  private unsubscribe: (() => void) | undefined;
  private undecodable = 0;
  /** Catch-ups that failed to read the log (an I/O fault); each is tried again after APPLY_RETRY_MS. */
  private applyFailures = 0;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  private stopped = false;
  private snapshotting = false;
  /** The catch-up's reads copy payloads here: valid until the next read, so what the map keeps is copied out. */
  private payloads: Uint8Array | undefined;

  constructor(private readonly options: KvStateOptions) {}

  /** Load the snapshot, catch up with the log, and follow every later commit. */
  async start(): Promise<void> {
    // Temporaries of snapshots a crash interrupted (the log's lock is held: no other writer runs).
    await removeTemporaries(nodeFs, this.options.dataDir, SNAPSHOT_FILE);
    await this.loadSnapshot();
    const firstSeq = this.options.log.firstSeq;
    if (this.appliedSeq + 1 < firstSeq) {
      throw new LastgaspError(
        'LOG_CORRUPT',
        `kv state: the snapshot ends at seq ${this.appliedSeq} but the log starts at ${firstSeq}; entries ${this.appliedSeq + 1}..${firstSeq - 1} are gone. Restore ${join(this.options.dataDir, SNAPSHOT_FILE)} from a backup or start with an empty data directory.`,
      );
    }
    this.setFloor();
    this.unsubscribe = this.options.log.onCommit(() => this.kick());
    await this.catchUp();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    this.unsubscribe?.();
    await this.applying;
    await this.writeSnapshot();
  }

  get(key: string): Uint8Array | undefined {
    return this.map.get(key);
  }

  keys(prefix = '', limit = Infinity): string[] {
    const out: string[] = [];
    for (const key of [...this.map.keys()].sort()) {
      if (out.length >= limit) break;
      if (key.startsWith(prefix)) out.push(key);
    }
    return out;
  }

  get size(): number {
    return this.map.size;
  }

  get applied(): number {
    return this.appliedSeq;
  }

  get counters(): Record<string, number> {
    return { kvKeys: this.map.size, kvAppliedSeq: this.appliedSeq, kvSnapshotSeq: this.snapshotSeq, kvUndecodableEntries: this.undecodable, kvApplyFailures: this.applyFailures };
  }

  /** SHA-256 over the sorted (key, value) pairs: two nodes with equal digests hold equal states. */
  digest(): string {
    const hash = createHash('sha256');
    for (const key of [...this.map.keys()].sort()) {
      const value = this.map.get(key)!;
      hash.update(`${key.length}:${key}:${value.length}:`);
      hash.update(value);
    }
    return hash.digest('hex');
  }

  /** Resolve once every entry up to `seq` has been applied (read-your-writes for the API). */
  waitApplied(seq: number): Promise<void> {
    if (seq <= this.appliedSeq) return Promise.resolve();
    return new Promise((resolve) => {
      this.waiters.push({ seq, resolve });
      this.kick();
    });
  }

  /**
   * Forget everything after `seq` and rebuild: used when a demoted primary sets aside a suffix of its log.
   * The snapshot may already contain the suffix, so it is discarded and the state rebuilt from the log.
   */
  async rebuild(): Promise<void> {
    await this.applying;
    this.map.clear();
    this.appliedSeq = 0;
    this.snapshotSeq = 0;
    // Durably: a snapshot that came back after a power cut would hold the entries set aside.
    await unlinkDurable(nodeFs, join(this.options.dataDir, SNAPSHOT_FILE));
    this.setFloor();
    await this.catchUp();
  }

  private kick(): void {
    if (this.applying) {
      this.again = true;
      return;
    }
    this.applying = this.catchUp().catch((error: unknown) => this.applyFailed(error)).finally(() => {
      this.applying = undefined;
      if (this.again) {
        this.again = false;
        this.kick();
      }
    });
  }

  /**
   * Reading the log failed (a dying card, an injected fault): the state stays where it is, waiters keep
   * waiting, and the catch-up is tried again shortly (a commit kicks it sooner). Nothing is lost: it resumes
   * at the first seq it has not applied.
   */
  private applyFailed(error: unknown): void {
    this.applyFailures++;
    this.options.logger.warn(`kv state: could not read the log after seq ${this.appliedSeq}; trying again in ${APPLY_RETRY_MS} ms`, { event: 'kv-apply-failed', error });
    if (this.stopped || this.retryTimer) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.kick();
    }, APPLY_RETRY_MS);
    this.retryTimer.unref();
  }

  private async catchUp(): Promise<void> {
    const log = this.options.log;
    while (this.appliedSeq < log.watermarks().committed) {
      // Into a buffer of its own, reused read after read: most entries are only looked at (apply), and a
      // fresh copy of each (SQLite pages, MQTT messages: tens of KB) was most of this read's cost.
      this.payloads ??= new Uint8Array(APPLY_BATCH_BYTES);
      const batch = await log.read(this.appliedSeq + 1, { entriesMax: APPLY_BATCH_ENTRIES, bytesMax: APPLY_BATCH_BYTES, payloadBuffer: this.payloads });
      if (batch.length === 0) break;
      for (const entry of batch) {
        if (entry.seq !== this.appliedSeq + 1) {
          throw new LastgaspError('LOG_SEQ', `kv state: expected seq ${this.appliedSeq + 1} from the log, got ${entry.seq}`);
        }
        this.apply(entry.payload);
        this.appliedSeq = entry.seq;
        this.appliedBytesSinceSnapshot += entry.payload.length;
      }
      this.appliedSinceSnapshot += batch.length;
      if (this.options.holdKey !== undefined || this.options.neededFrom !== undefined) this.setFloor();
      this.release();
    }
    if (this.snapshotDue() && !this.snapshotting) await this.writeSnapshot();
  }

  private snapshotDue(): boolean {
    const every = this.options.snapshotEveryEntries ?? 100_000;
    if (every > 0 && this.appliedSinceSnapshot >= every) return true;
    const everyBytes = this.options.snapshotEveryBytes ?? 0;
    return everyBytes > 0 && this.appliedBytesSinceSnapshot >= Math.max(everyBytes, this.lastSnapshotBytes);
  }

  private apply(payload: Uint8Array): void {
    // Most of what a gateway writes is not a key-value op (entries, MQTT messages, SQLite pages): its first
    // bytes say so, and decoding it only to drop it was most of the apply's cost per entry. Those ops are
    // decoded (and judged) by their own readers: the forwarder, the sqlite replica, the API's reads.
    const code = peekOpCode(payload);
    if (code === OP_ENTRY || code === OP_MQTT || code === OP_SQLITE) return;
    const decoded = decodeOp(payload);
    if (!decoded.ok) {
      // Entries are validated before they are appended, so this is another writer's format; count it.
      // SQLite pages are the sqlite replica's (agent/sqlite), not the key-value state's.
      if (decoded.reason !== 'sqlite-pages') this.undecodable++;
      return;
    }
    const op = decoded.op;
    // The value is a view into the read's buffer (decodeOp does not copy): the map keeps a copy.
    if (op.op === OP_PUT) this.map.set(op.key, op.value.slice());
    else if (op.op === OP_DELETE) this.map.delete(op.key);
  }

  private release(): void {
    for (let index = this.waiters.length - 1; index >= 0; index--) {
      const waiter = this.waiters[index]!;
      if (waiter.seq <= this.appliedSeq) {
        this.waiters.splice(index, 1);
        waiter.resolve();
      }
    }
  }

  /** Retention keeps what the snapshot does not cover, and what the hold key says is still needed. */
  private setFloor(): void {
    const holdKey = this.options.holdKey;
    const held = holdKey === undefined ? Infinity : seqFromValue(this.map.get(holdKey)) + 1;
    this.options.log.setRetentionFloor(Math.min(this.snapshotSeq + 1, held, this.options.neededFrom?.() ?? Infinity));
  }

  private async loadSnapshot(): Promise<void> {
    let bytes: Uint8Array;
    try {
      bytes = await readFile(join(this.options.dataDir, SNAPSHOT_FILE));
    } catch {
      return;
    }
    let snapshot: { v: number; seq: number; entries: Array<[string, Uint8Array]> };
    try {
      snapshot = decodeCbor(bytes) as typeof snapshot;
    } catch (error) {
      // Written by tmp + fsync + rename, so a torn snapshot means media corruption: rebuild from the log.
      this.options.logger.warn('kv snapshot unreadable; rebuilding the state from the log', { error });
      return;
    }
    if (snapshot.v !== SNAPSHOT_VERSION || !Array.isArray(snapshot.entries)) return;
    for (const [key, value] of snapshot.entries) this.map.set(key, value);
    this.appliedSeq = this.snapshotSeq = snapshot.seq;
    this.options.logger.info('kv snapshot loaded', { seq: snapshot.seq, keys: this.map.size });
  }

  private async writeSnapshot(): Promise<void> {
    if (this.appliedSeq === this.snapshotSeq) return;
    this.snapshotting = true;
    try {
      const seq = this.appliedSeq;
      const bytes = encodeCbor({ v: SNAPSHOT_VERSION, seq, entries: [...this.map.entries()] });
      await writeFileAtomic(join(this.options.dataDir, SNAPSHOT_FILE), bytes);
      this.snapshotSeq = seq;
      this.appliedSinceSnapshot = 0;
      this.appliedBytesSinceSnapshot = 0;
      this.lastSnapshotBytes = bytes.length;
      this.setFloor();
      this.options.logger.debug(() => `kv snapshot written at seq ${seq} (${bytes.length} bytes)`);
    } finally {
      this.snapshotting = false;
    }
  }
}
