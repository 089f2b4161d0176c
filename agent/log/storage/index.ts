/**
 * The log's storage seam: every file operation the log performs, with the real file system behind it and a
 * simulated one that loses unsynced writes, tears writes and flips bits (for the crash tests).
 */
export { createNodeStorage, type OpenMode, type Storage, type StorageFile } from './storage.ts';
export { SimStorage, type AppliedOp, type PendingOp, type SimFaults, type SyncHook } from './sim-storage.ts';
