/**
 * The unmodified application the SQLite tests drive (Debian's Python sqlite3) and the canonical dump they
 * compare databases by: the integrity check, a digest of the sorted dump, the transactions present.
 */
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

export const PYTHON = '/usr/bin/python3';
export const run = promisify(execFile);
/** test/fixtures/sqlite-app.py: random transactions, each journaled with its id (APP_* variables). */
export const APP = fileURLToPath(new URL('../../fixtures/sqlite-app.py', import.meta.url));
export const DUMP = fileURLToPath(new URL('../../fixtures/sqlite-dump.py', import.meta.url));

export type Dump = { integrity: string; dumpSha: string; txids: number[]; writers: string[] };

export async function dump(path: string): Promise<Dump> {
  return JSON.parse((await run(PYTHON, [DUMP, path])).stdout) as Dump;
}

/**
 * The application's journal (one JSON object per line, APP_JOURNAL), as far as it is written: the
 * application may be writing a line while the test reads, so only whole lines count.
 */
export function journalLines<T>(file: string): T[] {
  if (!existsSync(file)) return [];
  const text = readFileSync(file, 'utf8');
  return text.slice(0, text.lastIndexOf('\n') + 1).split('\n').filter((line) => line.trim() !== '').map((line) => JSON.parse(line) as T);
}
