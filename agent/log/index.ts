/**
 * The flash log's public surface: the engine (flash-log.ts, the facade over its parts), its storage seam
 * (storage/), and the operator tools (tools/). Nothing outside agent/log/ imports anything but this file.
 */
export type {
  AppendResult,
  FlashLog,
  FullPolicy,
  LogEntry,
  LogOptions,
  LogStatus,
  ReadLimits,
  RecoveryReport,
  SegmentInfo,
  SyncMode,
  Watermarks,
} from './types.ts';
export { createFlashLog, LOG_WRITE_INLINE_BYTES_MAX, type FlashLogEngine } from './flash-log.ts';
export {
  LOG_ENTRY_BYTES_MAX_DEFAULT,
  LOG_SEGMENT_BYTES_DEFAULT,
  LOG_SEGMENT_BYTES_MIN,
  type CreateFlashLogOptions,
  type FlashLogExtras,
  type ResolvedOptions,
} from './options.ts';
export { LOG_FORMAT_VERSION } from './format.ts';
export {
  createNodeStorage,
  SimStorage,
  type AppliedOp,
  type OpenMode,
  type PendingOp,
  type SimFaults,
  type Storage,
  type StorageFile,
  type SyncHook,
} from './storage/index.ts';
export { inspectLog, verifyLog, readQuarantineFile, logCommand, type CommandIo, type InspectReport, type SegmentReport, type VerifyReport } from './tools/index.ts';
