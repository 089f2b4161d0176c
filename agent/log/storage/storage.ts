/**
 * Every file operation the log performs goes through `Storage`, so that the same engine runs on the real
 * file system and on the simulated one that loses unsynced writes, tears writes and flips bits
 * (sim-storage.ts). Errors are thrown as they come, carrying the system `code` (ENOENT, ENOSPC, EIO,
 * EROFS...); the log maps them to typed LastgaspErrors.
 *
 * The real implementation is the agent's one audited durable-file path (agent/util/durable-fs.ts), shared
 * with the data directory, the KV snapshot and the leader record: files are created 0600, directories 0700,
 * and `mkdirp` fsyncs the parents of what it creates. It runs unchanged on Deno 2's node:fs.
 */
import { mkdirDurable, nodeFs, type DurableFile, type DurableFs, type OpenMode } from '../../util/index.ts';

export type { OpenMode };
export type StorageFile = DurableFile;

export interface Storage extends DurableFs {
  /**
   * Create the directory and its parents if missing, durably: once it resolves, the directory's name (and
   * every new parent's) survives a power cut. Implementations call `mkdirDurable`.
   */
  mkdirp(dir: string): Promise<void>;
}

/**
 * The real file system through node:fs. One shared instance: it holds no state, and the directory lock
 * recognises the locks this process holds per Storage object.
 */
export function createNodeStorage(): Storage {
  return NODE_STORAGE;
}

const NODE_STORAGE: Storage = {
  ...nodeFs,
  mkdirp: (dir) => mkdirDurable(nodeFs, dir),
};
