/**
 * What the agent checks before it takes charge of a database (config `app.sqlite`), and the fix it names
 * when it refuses. A database that does not exist yet passes: the application creates it on its first
 * start, and the capture checks it when it appears.
 */
import { statfs } from 'node:fs/promises';
import { databaseFile } from './db-file.ts';
import { dirname } from 'node:path';
import { LastgaspError } from '../util/index.ts';
import { decodeDbHeader, SQLITE_DB_HEADER_BYTES, walFrameBytes } from './wal-format.ts';

/**
 * statfs(2) f_type of file systems where SQLite's locks or its shared-memory index do not work across
 * machines or are unreliable (sqlite.org/wal.html §2 "WAL does not work over a network filesystem";
 * magic numbers from Linux include/uapi/linux/magic.h and fs/smb/client/cifsglob.h).
 */
const NETWORK_FS_MAGIC: ReadonlyMap<number, string> = new Map([
  [0x6969, 'nfs'],
  [0x517b, 'smb'],
  [0xff534d42, 'cifs'],
  [0xfe534d42, 'smb2'],
  [0x00c36400, 'ceph'],
  [0x01021997, '9p'],
  [0x5346414f, 'afs'],
  [0x73757245, 'coda'],
  [0x564c, 'ncp'],
  [0x7461636f, 'ocfs2'],
  [0x01161970, 'gfs2'],
]);

/**
 * The WAL-reset bug: SQLite 3.7.0 to 3.51.2 can corrupt a database when two connections checkpoint back to
 * back while a third writes (sqlite.org/wal.html#walresetbug, fixed in 3.51.3). The agent's checkpoints are
 * safe from it only when the application does not checkpoint too (wal_autocheckpoint=0).
 */
export const SQLITE_WAL_RESET_FIXED = [3, 51, 3] as const;

export interface DatabaseCheck {
  readonly exists: boolean;
  readonly pageBytes?: number;
  readonly fsType: string;
  /** Facts an operator should know that do not stop the agent. */
  readonly warnings: string[];
}

/** The WAL settings the database is captured with (config `app.sqlite[i]`); walBytesMax undefined: no bound. */
export interface WalSettings {
  readonly checkpointFrames: number;
  readonly walBytesMax?: number | undefined;
}

/** Refuses (SQLITE_UNSUITABLE) with the field and the fix; `field` is e.g. "app.sqlite[0].path". */
export async function checkDatabase(path: string, field: string, sqliteVersion: string, wal?: WalSettings): Promise<DatabaseCheck> {
  const fsType = await fileSystemOf(path, field);
  const warnings: string[] = [];
  if (versionBefore(sqliteVersion, SQLITE_WAL_RESET_FIXED)) {
    warnings.push(`the agent's SQLite is ${sqliteVersion}, older than 3.51.3 (the WAL-reset fix): the application must set PRAGMA wal_autocheckpoint=0 so that only the agent checkpoints ${path}`);
  }
  const header = await readHeader(path);
  if (header === undefined) return { exists: false, fsType, warnings };
  const decoded = decodeDbHeader(header);
  if (!decoded.ok) {
    // A file shorter than a header is a database being created (SQLite writes page 1 at the first commit).
    if (decoded.reason === 'short') return { exists: false, fsType, warnings };
    throw new LastgaspError('SQLITE_UNSUITABLE', `${field}: ${path} is not a SQLite 3 database (${decoded.reason === 'magic' ? 'no "SQLite format 3" header' : 'bad page size in its header'}); point ${field} at the application's database file`, { path, reason: decoded.reason });
  }
  if (decoded.header.writeVersion !== 2 || decoded.header.readVersion !== 2) {
    throw new LastgaspError('SQLITE_UNSUITABLE', `${field}: ${path} is not in WAL mode (journal version ${decoded.header.writeVersion}); the application must run "PRAGMA journal_mode=WAL" once (it stays set in the file), and should set "PRAGMA wal_autocheckpoint=0" and "PRAGMA busy_timeout=5000" on every connection`, { path });
  }
  if (wal) checkWalBound(path, field, decoded.header.pageBytes, wal);
  return { exists: true, pageBytes: decoded.header.pageBytes, fsType, warnings };
}

/**
 * walBytesMax gives up the transactions the log could not take once the WAL outgrows it while the log
 * refuses appends. In normal running the WAL grows to checkpointFrames frames before each of the agent's
 * checkpoints, so a bound under that gives the application's transactions up at nearly any refusal, however
 * short. It depends on the page size, known once the file is.
 */
function checkWalBound(path: string, field: string, pageBytes: number, wal: WalSettings): void {
  if (wal.walBytesMax === undefined) return;
  const normalMax = wal.checkpointFrames * walFrameBytes(pageBytes);
  if (wal.walBytesMax >= normalMax) return;
  const base = field.replace(/\.path$/, '');
  throw new LastgaspError(
    'SQLITE_UNSUITABLE',
    `${base}.walBytesMax: ${wal.walBytesMax} bytes is less than the WAL of ${path} grows to between the agent's checkpoints (checkpointFrames ${wal.checkpointFrames} frames of ${pageBytes}-byte pages: ${normalMax} bytes), so nearly any refusal of an append by the log would give the application's transactions up; raise ${base}.walBytesMax to at least ${normalMax} or lower ${base}.checkpointFrames`,
    { path, walBytesMax: wal.walBytesMax, normalMax, pageBytes },
  );
}

async function fileSystemOf(path: string, field: string): Promise<string> {
  let type: number;
  try {
    type = (await statfs(dirname(path))).type;
  } catch (error) {
    throw new LastgaspError('SQLITE_UNSUITABLE', `${field}: cannot reach the directory of ${path} (${(error as Error).message}); create it or fix the path`, { path });
  }
  const network = NETWORK_FS_MAGIC.get(type >>> 0);
  if (network) {
    throw new LastgaspError('SQLITE_UNSUITABLE', `${field}: ${path} is on a network file system (${network}), where SQLite's WAL locks and shared memory do not hold across machines; keep the database on the gateway's local flash`, { path, fsType: network });
  }
  return `0x${(type >>> 0).toString(16)}`;
}

async function readHeader(path: string): Promise<Uint8Array | undefined> {
  // Never a descriptor of its own: closing it would drop the locks SQLite holds on the file (db-file.ts).
  const handle = await databaseFile(path);
  if (!handle) return undefined;
  const bytes = new Uint8Array(SQLITE_DB_HEADER_BYTES);
  return bytes.subarray(0, handle.read(bytes, 0));
}

/** "3.45.1" before [3, 51, 3]. */
export function versionBefore(version: string, fixed: readonly number[]): boolean {
  const parts = version.split('.').map((part) => Number.parseInt(part, 10) || 0);
  for (let i = 0; i < fixed.length; i++) {
    if ((parts[i] ?? 0) !== fixed[i]) return (parts[i] ?? 0) < fixed[i]!;
  }
  return false;
}
