/**
 * Replace a small file so that a crash leaves either the old or the new content, never a mix: write a
 * temporary file, fsync it, rename it over the target, fsync the directory. For rare writes only (state
 * snapshots, the last leader record): it costs two syncs and directory metadata.
 */
import { open, rename } from 'node:fs/promises';
import { dirname } from 'node:path';

export async function writeFileAtomic(path: string, bytes: Uint8Array): Promise<void> {
  const temporary = `${path}.tmp`;
  const file = await open(temporary, 'w');
  try {
    await file.writeFile(bytes);
    await file.sync();
  } finally {
    await file.close();
  }
  await rename(temporary, path);
  const directory = await open(dirname(path), 'r');
  try {
    await directory.sync();
  } finally {
    await directory.close();
  }
}
