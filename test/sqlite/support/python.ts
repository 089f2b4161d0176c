/**
 * The unmodified application the SQLite tests drive (Debian's Python sqlite3) and the canonical dump they
 * compare databases by: the integrity check, a digest of the sorted dump, the transactions present.
 */
import { execFile } from 'node:child_process';
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
