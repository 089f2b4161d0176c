/**
 * One writer per log directory. Node has no flock and Deno's node:fs has none either, so the lock is made of
 * files created atomically, and a holder that died is recognised by asking the kernel whether it still runs.
 *
 * Lock files are numbered: `lock.N`. The lock belongs to the newest one (highest N) if its holder is alive
 * and has not released it. To take the lock, a process reads the newest file, and if its holder is gone,
 * claims `lock.(N+1)` with link(2), which fails with EEXIST when another process claimed that number first;
 * then it lists the directory again and backs off if a higher number exists. Because a number is claimed
 * only after judging the file below it dead, and the newest file is never deleted (only older ones are, by
 * the next holder), two processes can never both hold the lock, whatever the interleaving, and a crashed
 * holder never blocks anyone: no timeouts, no stale-lock guessing by age. The claim's content is written to
 * a private temporary file first, synced, and linked into place complete, so nobody ever reads a half-written
 * lock, not even after a power cut.
 *
 * A holder is alive when: it ran in this boot (`/proc/sys/kernel/random/boot_id`; after a power cut every
 * lock is stale, even if a new process got the same pid), its pid exists and is not a zombie, and that pid's
 * start time matches the one recorded (a recycled pid is another process). On systems without /proc the
 * check falls back to `kill(pid, 0)`. A lock recorded by this very process is alive only while this process
 * holds it through the same Storage: a log reopened after close, or a crash image in the simulated storage,
 * is free. Release replaces the newest file with a released copy (rename over it), so the numbering never
 * goes back.
 *
 * Limits: pids are per PID namespace, so two containers sharing a log directory must not rely on this
 * lock; a file system that does not support hard links (FAT on an SD card) makes open fail with the
 * system's error (EPERM), naming the directory.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import { LastgaspError, systemErrorCode } from '../util/index.ts';
import type { Storage } from './storage/index.ts';

const LOCK_NAME = /^lock\.(\d+)$/;
const CLAIM_NAME = /^lock-claim-(\d+)-[0-9a-f]+\.tmp$/;
/** Rounds of list/read/claim before giving up: each lost round means another process made progress. */
const LOCK_ATTEMPTS_MAX = 16;
/** A lock file is one JSON line of a few hundred bytes; anything longer is not ours. */
const LOCK_FILE_BYTES_MAX = 4096;

/** Who holds (or held) a lock: enough to tell whether that process still runs. */
export interface LockHolder {
  readonly pid: number;
  /** Kernel boot id; '' where the system does not expose one. */
  readonly boot: string;
  /** Process start time in clock ticks since boot (field 22 of /proc/PID/stat); -1 where unknown. */
  readonly start: number;
  readonly token: string;
  readonly host: string;
  readonly sinceMs: number;
  readonly released?: boolean;
}

/** How the lock learns about processes; the real one reads /proc, tests may pass another. */
export interface ProcessProbe {
  /** This process. */
  self(): Omit<LockHolder, 'token' | 'sinceMs' | 'released'>;
  /** Whether a process recorded in a lock file still runs (same boot, same pid, same start time). */
  alive(holder: LockHolder): boolean;
}

export interface DirLock {
  readonly file: string;
  readonly holder: LockHolder;
  /** Mark the lock released; other processes may take it at once. */
  release(): Promise<void>;
}

function readText(path: string): string | undefined {
  try {
    return fs.readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

/** Start time (clock ticks after boot) and state of a process from /proc, or undefined if it does not exist. */
function procStat(pid: number): { start: number; state: string } | undefined | 'unknown' {
  const text = readText(`/proc/${pid}/stat`);
  if (text === undefined) return fs.existsSync('/proc/self/stat') ? undefined : 'unknown';
  // The command name (field 2) is in parentheses and may itself contain spaces and ')'.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return { state: fields[0] ?? '', start: Number(fields[19] ?? -1) };
}

export const systemProcessProbe: ProcessProbe = {
  self() {
    const stat = procStat(process.pid);
    return {
      pid: process.pid,
      boot: (readText('/proc/sys/kernel/random/boot_id') ?? '').trim(),
      start: typeof stat === 'object' ? stat.start : -1,
      host: os.hostname(),
    };
  },
  alive(holder) {
    const me = this.self();
    if (holder.boot !== '' && me.boot !== '' && holder.boot !== me.boot) return false;
    const stat = procStat(holder.pid);
    if (stat === 'unknown') {
      try {
        process.kill(holder.pid, 0);
        return true;
      } catch (error) {
        return systemErrorCode(error) === 'EPERM';
      }
    }
    if (stat === undefined || stat.state === 'Z' || stat.state === 'X') return false;
    return holder.start < 0 || stat.start === holder.start;
  },
};

/**
 * Tokens of the locks this process holds or is claiming, per storage: the answer for lock files that name
 * this process. Keyed by token rather than path, so that two spellings of one directory are still one lock.
 */
const held = new WeakMap<Storage, Set<string>>();

function heldBy(storage: Storage): Set<string> {
  let tokens = held.get(storage);
  if (!tokens) held.set(storage, (tokens = new Set()));
  return tokens;
}

function randomToken(): string {
  const bytes = new Uint8Array(8);
  globalThis.crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

async function readHolder(storage: Storage, path: string): Promise<LockHolder | 'gone' | 'unreadable'> {
  let file;
  try {
    file = await storage.open(path, 'read');
  } catch (error) {
    if (systemErrorCode(error) === 'ENOENT') return 'gone';
    throw error;
  }
  try {
    const bytes = new Uint8Array(LOCK_FILE_BYTES_MAX);
    const n = await file.read(bytes, 0, bytes.length, 0);
    const parsed = JSON.parse(new TextDecoder().decode(bytes.subarray(0, n))) as LockHolder;
    if (typeof parsed.pid !== 'number' || typeof parsed.token !== 'string') return 'unreadable';
    return parsed;
  } catch {
    return 'unreadable';
  } finally {
    await file.close().catch(() => undefined);
  }
}

/**
 * Write a claim (or a released copy) under its private name and sync it before it is linked or renamed to
 * `lock.N`: otherwise a power cut can leave `lock.N` durable but empty (the name reached the disk before the
 * content), a lock nobody can read.
 */
async function writeNew(storage: Storage, path: string, text: string): Promise<void> {
  const file = await storage.open(path, 'create');
  try {
    const bytes = new TextEncoder().encode(text);
    await file.write(bytes, 0, bytes.length, 0);
    await file.datasync();
  } finally {
    await file.close();
  }
}

function lockNumbers(names: readonly string[]): number[] {
  const numbers: number[] = [];
  for (const name of names) {
    const match = LOCK_NAME.exec(name);
    if (match) numbers.push(Number(match[1]));
  }
  return numbers.sort((a, b) => a - b);
}

function lockedError(dir: string, holder: LockHolder): LastgaspError {
  return new LastgaspError(
    'LOG_LOCKED',
    `log directory ${dir} is in use by process ${holder.pid} on ${holder.host} (since ${new Date(holder.sinceMs).toISOString()}); stop that agent first, or give this one another log directory`,
    { dir, pid: holder.pid, host: holder.host },
  );
}

function isAlive(storage: Storage, holder: LockHolder, probe: ProcessProbe): boolean {
  if (holder.released) return false;
  const me = probe.self();
  if (holder.pid === me.pid && holder.boot === me.boot && holder.start === me.start) return heldBy(storage).has(holder.token);
  return probe.alive(holder);
}

/** Delete claim files left by processes that died between writing and linking them. */
async function removeDeadClaims(storage: Storage, dir: string, names: readonly string[], probe: ProcessProbe): Promise<void> {
  const me = probe.self();
  for (const name of names) {
    const match = CLAIM_NAME.exec(name);
    if (!match) continue;
    const pid = Number(match[1]);
    if (pid === me.pid || probe.alive({ pid, boot: '', start: -1, token: '', host: '', sinceMs: 0 })) continue;
    await storage.unlink(`${dir}/${name}`).catch(() => undefined);
  }
}

/** What link(2) returns on file systems without hard links (vfat, exfat): EPERM on Linux, ENOTSUP elsewhere. */
const LINK_UNSUPPORTED = new Set(['EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'ENOSYS']);

function linkUnsupportedError(dir: string, code: string, cause: unknown): LastgaspError {
  return new LastgaspError(
    'LOG_IO',
    `log directory ${dir}: the file system refuses hard links (${code}), which the directory lock needs; put the log on ext4, f2fs or another Linux file system (not vfat or exfat)`,
    { dir, errno: code },
    { cause },
  );
}

function contendedError(dir: string): LastgaspError {
  return new LastgaspError(
    'LOG_LOCKED',
    `log directory ${dir}: other processes kept claiming its lock (${LOCK_ATTEMPTS_MAX} rounds lost); another agent is starting on the same directory, stop it first`,
    { dir },
  );
}

/** Who holds the directory's lock, for `lastgasp log inspect` (read-only: nothing is claimed or cleaned). */
export async function readDirLock(storage: Storage, dir: string, probe: ProcessProbe = systemProcessProbe): Promise<(LockHolder & { alive: boolean }) | undefined> {
  const numbers = lockNumbers(await storage.list(dir));
  if (numbers.length === 0) return undefined;
  const holder = await readHolder(storage, `${dir}/lock.${numbers[numbers.length - 1]}`);
  if (holder === 'gone' || holder === 'unreadable') return undefined;
  return { ...holder, alive: isAlive(storage, holder, probe) };
}

/** Take the directory's lock or fail with LOG_LOCKED naming the holder. */
export async function acquireDirLock(storage: Storage, dir: string, probe: ProcessProbe = systemProcessProbe): Promise<DirLock> {
  for (let attempt = 0; attempt < LOCK_ATTEMPTS_MAX; attempt++) {
    const names = await storage.list(dir);
    await removeDeadClaims(storage, dir, names, probe);
    const numbers = lockNumbers(names);
    const newest = numbers.length > 0 ? numbers[numbers.length - 1]! : 0;
    if (newest > 0) {
      const holder = await readHolder(storage, `${dir}/lock.${newest}`);
      // Gone: a newer holder cleaned it up meanwhile; look again.
      if (holder === 'gone') continue;
      if (holder !== 'unreadable' && isAlive(storage, holder, probe)) throw lockedError(dir, holder);
    }
    const me: LockHolder = { ...probe.self(), token: randomToken(), sinceMs: Date.now() };
    const claim = `${dir}/lock-claim-${me.pid}-${me.token}.tmp`;
    const file = `${dir}/lock.${newest + 1}`;
    // Registered before the claim is visible, so that a second open in this process sees it as alive.
    heldBy(storage).add(me.token);
    let won = false;
    try {
      await writeNew(storage, claim, JSON.stringify(me) + '\n');
      try {
        await storage.link(claim, file);
      } catch (error) {
        const code = systemErrorCode(error);
        // EEXIST: another process claimed this number first. ENOENT: our claim file was removed under us.
        if (code === 'EEXIST' || code === 'ENOENT') continue;
        if (code !== undefined && LINK_UNSUPPORTED.has(code)) throw linkUnsupportedError(dir, code, error);
        throw error;
      } finally {
        await storage.unlink(claim).catch(() => undefined);
      }
      // A process that listed before our claim existed may have claimed a higher number from an older view;
      // the highest claim wins, so back off if there is one and look again.
      const after = lockNumbers(await storage.list(dir));
      if (after[after.length - 1]! > newest + 1) {
        await storage.unlink(file).catch(() => undefined);
        continue;
      }
      for (const older of after) if (older < newest + 1) await storage.unlink(`${dir}/lock.${older}`).catch(() => undefined);
      won = true;
    } finally {
      if (!won) heldBy(storage).delete(me.token);
    }
    return {
      file,
      holder: me,
      async release() {
        if (!heldBy(storage).delete(me.token)) return;
        const released = `${dir}/lock-claim-${me.pid}-${me.token}.tmp`;
        await writeNew(storage, released, JSON.stringify({ ...me, released: true }) + '\n');
        await storage.rename(released, file);
      },
    };
  }
  throw contendedError(dir);
}
