/**
 * The public contract of the flash log. Everything outside `agent/log/` uses only what is declared here
 * (through `agent/log/index.ts`).
 *
 * Sequence numbers start at 1 and are gap-free for the life of a log; 0 means "nothing". An entry is
 * identified across the group by `(epoch, seq)`: the epoch is bumped on every takeover, and a new primary
 * continues the sequence where the replica it holds ends.
 */
import type { Clock, ErrorCode, Logger } from '../util/index.ts';

export interface LogEntry {
  readonly seq: number;
  readonly epoch: number;
  /** Wall-clock time at which the primary accepted the entry (ms since the epoch). */
  readonly timestampMs: number;
  readonly payload: Uint8Array;
}

export interface AppendResult {
  readonly seq: number;
  readonly epoch: number;
}

/**
 * `committed >= replicated >= replicaAcked` is not required between the last two (a sibling may ack
 * before the broker quorum is counted); what holds is `committed >= replicated` and
 * `committed >= replicaAcked`. None of them goes backwards, across restarts included.
 */
export interface Watermarks {
  /** Highest seq written and fdatasynced on local flash. */
  readonly committed: number;
  /** Highest seq replicated at the configured durability level (what retention may rely on). */
  readonly replicated: number;
  /** Highest seq a sibling reported durable on its own flash. */
  readonly replicaAcked: number;
}

export type SyncMode =
  /** Normal operation: batches linger up to `lingerMs`/`lingerBytes` to spare the flash. */
  | 'batched'
  /** On battery: every batch is written and synced at once, no linger. */
  | 'immediate';

export type FullPolicy = 'reject' | 'wait';

export interface LogOptions {
  /** Directory that holds the segments; created if missing. */
  dir: string;
  /** Segment size in bytes (preallocated). */
  segmentBytes?: number;
  /** Largest payload accepted by `append`. */
  entryBytesMax?: number;
  /** How long a batch may wait for more appends before its write+sync (ms). 0 = never wait. */
  lingerMs?: number;
  /** A batch is written as soon as it holds this many bytes, linger or not. */
  lingerBytes?: number;
  /** Upper bound on the bytes of all segments on disk. */
  quotaBytes?: number;
  /** Unreplicated bytes above which appends are delayed (throttled). 0 = no soft limit. */
  unreplicatedSoftBytes?: number;
  /** Unreplicated bytes at which appends fail with LOG_FULL (or wait, by `fullPolicy`). */
  unreplicatedHardBytes?: number;
  fullPolicy?: FullPolicy;
  logger?: Logger;
  clock?: Clock;
}

export interface RecoveryReport {
  readonly firstSeq: number;
  readonly committed: number;
  readonly epoch: number;
  /** Bytes of a torn tail that recovery truncated. */
  readonly tornBytes: number;
  /** Records set aside because a corrupt record stopped the log before them. */
  readonly quarantinedRecords: number;
  readonly quarantineFile: string | undefined;
  readonly durationMs: number;
}

export interface SegmentInfo {
  readonly id: number;
  readonly file: string;
  readonly firstSeq: number;
  /** 0 when the segment holds no entry yet. */
  readonly lastSeq: number;
  readonly bytesUsed: number;
  readonly bytesAllocated: number;
}

export interface LogStatus {
  readonly dir: string;
  readonly firstSeq: number;
  readonly watermarks: Watermarks;
  readonly epoch: number;
  readonly syncMode: SyncMode;
  readonly segments: readonly SegmentInfo[];
  readonly bytesOnDisk: number;
  readonly unreplicatedBytes: number;
  readonly quarantine: readonly string[];
  /** Named counters: appends, batches, syncs, bytesWritten, fullRejections, throttledAppends, ... */
  readonly counters: Readonly<Record<string, number>>;
  /** Set when the log stopped accepting appends after an I/O fault; cleared by a successful recovery. */
  readonly fault: string | undefined;
  /** The code appends are refused with while a fence stands (see `fence`). */
  readonly fenced: ErrorCode | undefined;
  /** The longest of the last 64 group commits' fdatasyncs, ms (0 before the first). */
  readonly recentSyncMsMax: number;
}

export interface ReadLimits {
  entriesMax: number;
  bytesMax: number;
  /**
   * Copy the payloads into this buffer, one after the other, while it has room (then into a fresh buffer
   * each): the entries are views of it, valid until the caller writes into it again. For a reader that
   * consumes each read at once and reads again and again (the publisher encodes a batch right away), this
   * spares an allocation per entry, which was most of the brownout drain's read cost.
   */
  payloadBuffer?: Uint8Array;
}

export interface FlashLog {
  /** Recover what is on disk (fsync dir and files first, truncate a torn tail, quarantine corruption). */
  open(): Promise<RecoveryReport>;
  close(): Promise<void>;

  /**
   * Append one entry in the current epoch. Resolves only after the batch holding it was written and
   * fdatasynced. Rejects with a LastgaspError: ENTRY_TOO_LARGE, LOG_FULL, LOG_CLOSED, LOG_FAULT, ...
   */
  append(payload: Uint8Array): Promise<AppendResult>;

  /**
   * Append many entries in the current epoch as one: consecutive seqs, one group commit, one promise that
   * resolves with the LAST entry's seq (entry i of n has `seq - n + 1 + i`) once all of them are fdatasynced,
   * or rejects for all of them. Refused whole (nothing staged) when one entry is too large, when the batch
   * does not fit in one write of the log (ENTRY_TOO_LARGE), when it is empty (BAD_REQUEST), and under the
   * same fence, quota and throttle rules as `append` (the batch's bytes are admitted together). Its records
   * go out in one write, so a killed process leaves all of them on disk or none; a power cut may keep a
   * prefix of a batch that was never acknowledged.
   */
  appendMany(payloads: readonly Uint8Array[]): Promise<AppendResult>;

  /**
   * The replica path: store entries received from the primary, keeping their seq, epoch and timestamp.
   * `entries[0].seq` must be `committed + 1` and seqs must be consecutive (LOG_SEQ otherwise); resolves
   * after the fdatasync, like `append`.
   */
  appendReplicated(entries: readonly LogEntry[]): Promise<void>;

  /** Read up to the limits from `fromSeq` (at least one entry if any exists). Never past `committed`. */
  read(fromSeq: number, limits: ReadLimits): Promise<LogEntry[]>;
  /**
   * A reader that follows the log from `seq` on (a standby's SQLite replica, which reads what the replicated
   * batches brought a moment later): the records of the commits from there are kept in memory for it, within
   * the tail cache's bound, so that its reads need neither the disk nor a CRC check. `undefined`: it stopped.
   * One hold per `reader`; the cache keeps from the lowest.
   */
  holdTail(reader: string, seq: number | undefined): void;
  /** Iterate from `fromSeq` to the committed end as it stands when each batch is read; bounded memory. */
  entries(fromSeq: number): AsyncIterable<LogEntry>;

  readonly firstSeq: number;
  readonly epoch: number;
  watermarks(): Watermarks;
  /** The longest of the last 64 group commits' fdatasyncs (ms), undefined before the first: how slow this flash is now. */
  recentSyncMsMax(): number | undefined;
  /** Bytes of the committed records from `seq` on (within one index step; 0 past the committed seq). */
  committedBytesFrom(seq: number): number;

  /** Advance the replicated watermark; persisted without rewriting a file in place on every call. */
  markReplicated(seq: number): void;
  /** Advance the sibling-acked watermark; same persistence rule. */
  markReplicaAcked(seq: number): void;
  /** Make the watermarks durable now (the brownout path calls this before the handoff). */
  syncWatermarks(): Promise<void>;

  /** Start a new epoch durably; later appends carry it. Must be greater than the current epoch. */
  beginEpoch(epoch: number): Promise<void>;

  setSyncMode(mode: SyncMode): void;

  /**
   * Replace the unreplicated soft and hard limits (bytes, 0 = off) given at creation: the agent sizes them
   * from the measured drain rate when the config gives them in seconds. `field` names the setting in errors.
   */
  setUnreplicatedLimits(softBytes: number, hardBytes: number, field: string): void;

  /**
   * Bytes of records (payload and record header) an append could add now without a LOG_FULL refusal: the
   * hard limit and the quota, as they stand (a throttle only delays). For a writer that must know before it
   * commits to something it cannot take back (the SQLite capture's complete checkpoint).
   */
  appendRoom(): number;

  /**
   * Entries at or above `seq` may be needed by the application's state (it has no snapshot past them):
   * retention keeps every segment holding a seq >= min(replicated, floor).
   */
  setRetentionFloor(seq: number): void;

  /**
   * Demotion: set aside every entry after `seq` (they never reached the new primary) into a quarantine
   * file, report it, and continue the log at `seq + 1`. Crash-consistent: after a crash at any point each
   * entry is in the log or in a quarantine file, never both. Appends are refused (LOG_SEQ) while it runs.
   */
  quarantineAfter(seq: number): Promise<{ records: number; file: string | undefined }>;

  /**
   * Stop the log taking entries and learn the last one it ever acknowledged. From this call on every new
   * `append` and `appendReplicated` is refused with a LastgaspError of `code` (and `message`); every call
   * admitted before it (staged, lingering, inside the group commit's write and fdatasync) is carried through
   * and settled, acknowledged or failed, and the promise then resolves with `committed`: every seq up to it
   * is on flash, and none above it is or will be acknowledged while the fence stands (an append still
   * waiting at the throttle or for space is refused when it wakes). The brownout flush fences before it
   * flushes (so that its target is every acknowledged write, not the `committed` of one instant), and a
   * demotion fences before it cuts the log (so that no seq it sets aside is acknowledged afterwards).
   * Reads, watermarks, `beginEpoch`, `syncWatermarks` and `quarantineAfter` still work while fenced. Fencing
   * again replaces the code and waits in the same way.
   */
  fence(code: ErrorCode, message: string): Promise<number>;
  /** Lift the fence: appends are admitted again (mains came back before the handoff, a demotion ended). */
  unfence(): void;

  /** Called when `replicated` or `replicaAcked` advances, with the new watermarks; returns an unsubscribe function. */
  onReplicated(listener: (marks: Watermarks) => void): () => void;

  /** Called after each commit with the new committed seq; returns an unsubscribe function. */
  onCommit(listener: (committed: number) => void): () => void;

  status(): LogStatus;

  /**
   * Records this log has set aside since it opened (a demotion's cut, a fault's recovery): when it moves, entries
   * read before may no longer be what the log holds at their seqs (a cut, then appends in the same epoch).
   */
  setAsideRecords(): number;
}
