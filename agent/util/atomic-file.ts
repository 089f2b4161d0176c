/**
 * Replace a small file so that a power cut leaves either the old or the new content, never a mix and never
 * nothing (unique temporary, fsync, rename, directory fsync: durable-fs.ts says why each step). For rare
 * writes only (state snapshots, the last leader record): it costs two syncs and directory metadata. The
 * directory must have been made with `makeDataDir`/`mkdirDurable`; the file is created 0600.
 */
import { nodeFs, replaceFileDurable } from './durable-fs.ts';

export function writeFileAtomic(path: string, bytes: Uint8Array): Promise<void> {
  return replaceFileDurable(nodeFs, path, bytes);
}
