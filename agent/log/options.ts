/**
 * The flash log's options: defaults, validation (errors name the field), the resolved form the engine runs
 * with, its counters, and the mapping of system errors to typed ones. The engine is in flash-log.ts.
 */
import { LastgaspError, systemErrorCode } from '../util/index.ts';
import { BATCH_PREFIX_BYTES } from './batch.ts';
import { BATCH_BYTES_MAX, CHECKPOINT_RECORD_BYTES, RECORD_HEADER_BYTES, RECORD_PAYLOAD_BYTES_MAX, SEGMENT_HEADER_BYTES } from './format.ts';
import type { Storage } from './storage/index.ts';
import type { LogOptions } from './types.ts';

/** 16 MiB: small enough that retention frees space in useful steps on an 8 GB eMMC, large enough that a roll is rare. */
export const LOG_SEGMENT_BYTES_DEFAULT = 16 * 1024 * 1024;
/** Smallest segment accepted: a header, two checkpoints and a few KiB of records. */
export const LOG_SEGMENT_BYTES_MIN = 16 * 1024;
/** The header stores the segment size and record offsets in 32 bits. */
export const LOG_SEGMENT_BYTES_MAX = 0xffff_fff8;
export const LOG_ENTRY_BYTES_MAX_DEFAULT = 1024 * 1024;
/** A batch is written as soon as it holds this much, whatever the linger (NATS coalesces 16 KiB; flash pages are 4-16 KiB). */
export const LOG_LINGER_BYTES_DEFAULT = 256 * 1024;
/** Watermark-only checkpoints are coalesced to at most one per this interval (NATS coalesces consumer state to 100 ms). */
export const LOG_WATERMARK_LINGER_MS_DEFAULT = 100;
/** Longest delay a writer gets between the soft and the hard unreplicated limit. */
export const LOG_THROTTLE_DELAY_MS_MAX = 50;
/** With fullPolicy 'wait', an append waits this long for space before it fails with LOG_FULL. */
export const LOG_FULL_WAIT_MS_DEFAULT = 60_000;

export interface FlashLogExtras {
  /** File operations; the real file system by default. */
  storage?: Storage;
  /** Salt source for new segments; tests pass a seeded one for reproducible runs. */
  randomSalt?: () => number;
  /** Coalescing interval of watermark-only checkpoints (ms). */
  watermarkLingerMs?: number;
  /** Longest wait for space under fullPolicy 'wait' (ms). */
  fullWaitMs?: number;
  /** Longest throttle delay between the soft and hard unreplicated limits (ms). */
  throttleDelayMsMax?: number;
  /** Initial retention floor until the application sets one (default: none, replication alone decides). */
  retentionFloor?: number;
  /** Told the number of entries of each group commit once it is on flash (the agent's batch-size histogram). */
  onBatchSynced?: (entries: number) => void;
}

export type CreateFlashLogOptions = LogOptions & FlashLogExtras;

export interface Counters {
  appends: number;
  appendsReplicated: number;
  /** `appendMany` calls (their entries count in `appends`). */
  batchAppends: number;
  /** `fence` calls, and appends refused because a fence stood. */
  fences: number;
  fencedRefusals: number;
  batches: number;
  syncs: number;
  /** Batches that waited for more appends (lingerMs) before their write. */
  lingers: number;
  bytesWritten: number;
  checkpoints: number;
  rolls: number;
  fullRejections: number;
  throttledAppends: number;
  segmentsDeleted: number;
  segmentsRecycled: number;
  sparesCreated: number;
  faults: number;
  faultRecoveries: number;
  quarantinedRecords: number;
  readCorruptions: number;
  tornBytes: number;
  [name: string]: number;
}

export function newCounters(): Counters {
  return {
    appends: 0,
    appendsReplicated: 0,
    batchAppends: 0,
    fences: 0,
    fencedRefusals: 0,
    batches: 0,
    syncs: 0,
    lingers: 0,
    bytesWritten: 0,
    checkpoints: 0,
    rolls: 0,
    fullRejections: 0,
    throttledAppends: 0,
    segmentsDeleted: 0,
    segmentsRecycled: 0,
    sparesCreated: 0,
    faults: 0,
    faultRecoveries: 0,
    quarantinedRecords: 0,
    readCorruptions: 0,
    tornBytes: 0,
  };
}

/** Map a system error to the log's typed error, with a message that says what to do. */
export function ioError(error: unknown, what: string): LastgaspError {
  const code = systemErrorCode(error);
  const cause = error instanceof Error ? error.message : String(error);
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    return new LastgaspError('LOG_NO_SPACE', `${what}: the file system is full (${cause}); free space on the log's volume`, { errno: code }, { cause: error });
  }
  if (code === 'EROFS') {
    return new LastgaspError('LOG_READ_ONLY', `${what}: the file system is read-only (${cause}); the kernel may have remounted it after errors, check dmesg`, { errno: code }, { cause: error });
  }
  return new LastgaspError('LOG_IO', `${what}: I/O error (${cause}); check the storage device`, { errno: code }, { cause: error });
}

export interface ResolvedOptions {
  dir: string;
  segmentBytes: number;
  entryBytesMax: number;
  lingerMs: number;
  lingerBytes: number;
  quotaBytes: number;
  unreplicatedSoftBytes: number;
  unreplicatedHardBytes: number;
  fullPolicy: 'reject' | 'wait';
  watermarkLingerMs: number;
  fullWaitMs: number;
  throttleDelayMsMax: number;
}

function configError(field: string, message: string): LastgaspError {
  return new LastgaspError('CONFIG_INVALID', `log.${field}: ${message}`, { field });
}

export function resolveOptions(options: CreateFlashLogOptions): ResolvedOptions {
  const segmentBytes = options.segmentBytes ?? LOG_SEGMENT_BYTES_DEFAULT;
  if (!Number.isInteger(segmentBytes) || segmentBytes < LOG_SEGMENT_BYTES_MIN || segmentBytes > LOG_SEGMENT_BYTES_MAX || segmentBytes % 8 !== 0) {
    throw configError('segmentBytes', `${segmentBytes} is not a multiple of 8 between ${LOG_SEGMENT_BYTES_MIN} and ${LOG_SEGMENT_BYTES_MAX}`);
  }
  const capacity = segmentBytes - SEGMENT_HEADER_BYTES - 2 * CHECKPOINT_RECORD_BYTES;
  const entryLimit = Math.min(RECORD_PAYLOAD_BYTES_MAX, capacity - RECORD_HEADER_BYTES, BATCH_BYTES_MAX - BATCH_PREFIX_BYTES - RECORD_HEADER_BYTES - 8);
  const entryBytesMax = options.entryBytesMax ?? Math.min(LOG_ENTRY_BYTES_MAX_DEFAULT, entryLimit);
  if (!Number.isInteger(entryBytesMax) || entryBytesMax < 1 || entryBytesMax > entryLimit) {
    throw configError('entryBytesMax', `${entryBytesMax} must be between 1 and ${entryLimit} for segments of ${segmentBytes} bytes`);
  }
  const quotaBytes = options.quotaBytes ?? Number.POSITIVE_INFINITY;
  if (!(quotaBytes >= 2 * segmentBytes)) {
    throw configError('quotaBytes', `${quotaBytes} must hold at least two segments (${2 * segmentBytes} bytes: the active one and a spare)`);
  }
  const soft = options.unreplicatedSoftBytes ?? 0;
  const hard = options.unreplicatedHardBytes ?? 0;
  if (soft < 0 || hard < 0 || (hard > 0 && soft > hard)) {
    throw configError('unreplicatedSoftBytes', `soft (${soft}) must be >= 0 and not above hard (${hard})`);
  }
  const lingerMs = options.lingerMs ?? 0;
  if (!(lingerMs >= 0)) throw configError('lingerMs', `${lingerMs} must be >= 0`);
  return {
    dir: options.dir,
    segmentBytes,
    entryBytesMax,
    lingerMs,
    lingerBytes: Math.min(options.lingerBytes ?? LOG_LINGER_BYTES_DEFAULT, BATCH_BYTES_MAX),
    quotaBytes,
    unreplicatedSoftBytes: soft,
    unreplicatedHardBytes: hard,
    fullPolicy: options.fullPolicy ?? 'reject',
    watermarkLingerMs: options.watermarkLingerMs ?? LOG_WATERMARK_LINGER_MS_DEFAULT,
    fullWaitMs: options.fullWaitMs ?? LOG_FULL_WAIT_MS_DEFAULT,
    throttleDelayMsMax: options.throttleDelayMsMax ?? LOG_THROTTLE_DELAY_MS_MAX,
  };
}
