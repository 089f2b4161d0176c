/**
 * The log entry that carries a SQLite database's pages (op 5, agent/app/ops.ts):
 *
 *   [5, db, generation, flags, pageBytes, commitPages, pgnos, pages]
 *
 * - db: the database's name (config `app.sqlite[].name`).
 * - generation: a text id, new for every consistent snapshot the capture starts from (at each start of the
 *   capture, and after a WAL reset it did not see). The entries of one generation apply on top of its
 *   snapshot only.
 * - flags: bit 0 set on the first entry of a snapshot: the replica starts a new file from it.
 * - commitPages: 0 on an entry that does not end a transaction; on the last entry of a transaction (or of a
 *   snapshot) the database's size in pages after it. A replica applies nothing before it sees this.
 * - pgnos: byte string, one big-endian u32 page number per page; pages: byte string, the page images in the
 *   same order, `pageBytes` each.
 *
 * A transaction larger than one entry (log.entryBytesMax) is split over several consecutive entries; the
 * capture appends each transaction's entries in one batch, so they are committed (and replicated) together.
 */
import assert from 'node:assert/strict';
import { OP_SQLITE } from '../app/index.ts';
import { CborWriter, decodeCbor, headBytes, LastgaspError, MAJOR_ARRAY, MAJOR_BYTES, textBytes, uintBytes } from '../util/index.ts';
import type { WalFrame } from './wal-format.ts';

export { OP_SQLITE };
export const SQLITE_FLAG_SNAPSHOT = 1;
/** CBOR framing around the two byte strings and the small fields; the names are bounded by the config. */
const ENTRY_FRAMING_BYTES_MAX = 256;
const textEncoder = new TextEncoder();

export interface SqliteEntry {
  readonly db: string;
  readonly generation: string;
  readonly flags: number;
  readonly pageBytes: number;
  readonly commitPages: number;
  readonly pages: ReadonlyArray<{ readonly pgno: number; readonly page: Uint8Array }>;
}

/**
 * Written by hand in one buffer of the exact size (util/cbor-writer.ts), each page copied once: the pages
 * are most of what the capture appends, and through cbor-x each was copied three times (the joined pages,
 * cbor-x's own buffer, and the owned copy encodeCbor returns). The bytes equal cbor-x's (entry.test.ts).
 */
export function encodeSqliteEntry(entry: SqliteEntry): Uint8Array {
  const db = textEncoder.encode(entry.db);
  const generation = textEncoder.encode(entry.generation);
  const count = entry.pages.length;
  const pagesBytes = count * entry.pageBytes;
  const size = 1 + uintBytes(OP_SQLITE) + textBytes(db) + textBytes(generation) + uintBytes(entry.flags) + uintBytes(entry.pageBytes) + uintBytes(entry.commitPages) + headBytes(count * 4) + count * 4 + headBytes(pagesBytes) + pagesBytes;
  const out = new CborWriter(new Uint8Array(size));
  out.head(MAJOR_ARRAY, 8);
  out.uint(OP_SQLITE);
  out.text(db);
  out.text(generation);
  out.uint(entry.flags);
  out.uint(entry.pageBytes);
  out.uint(entry.commitPages);
  out.head(MAJOR_BYTES, count * 4);
  const view = new DataView(out.bytes.buffer);
  for (const { pgno } of entry.pages) {
    view.setUint32(out.offset, pgno);
    out.offset += 4;
  }
  out.head(MAJOR_BYTES, pagesBytes);
  for (const { page } of entry.pages) {
    assert.equal(page.length, entry.pageBytes, 'a SQLite entry: a page of another size than pageBytes');
    out.raw(page);
  }
  return out.bytes;
}

export type SqliteEntryResult = { ok: true; entry: SqliteEntry } | { ok: false; reason: string };

/** Undefined for another op; a typed failure for a malformed op 5. */
export function decodeSqliteEntry(payload: Uint8Array): SqliteEntryResult | undefined {
  let value: unknown;
  try {
    value = decodeCbor(payload);
  } catch {
    return undefined;
  }
  if (!Array.isArray(value) || value[0] !== OP_SQLITE) return undefined;
  const [, db, generation, flags, pageBytes, commitPages, pgnos, pages] = value as unknown[];
  if (typeof db !== 'string' || typeof generation !== 'string' || typeof flags !== 'number' || typeof pageBytes !== 'number' || typeof commitPages !== 'number') return { ok: false, reason: 'fields' };
  if (!(pgnos instanceof Uint8Array) || !(pages instanceof Uint8Array) || pgnos.length % 4 !== 0 || pageBytes <= 0 || pages.length !== (pgnos.length / 4) * pageBytes) return { ok: false, reason: 'pages' };
  const view = new DataView(pgnos.buffer, pgnos.byteOffset, pgnos.byteLength);
  const list = Array.from({ length: pgnos.length / 4 }, (_, index) => ({ pgno: view.getUint32(index * 4), page: pages.subarray(index * pageBytes, (index + 1) * pageBytes) }));
  if (list.some(({ pgno }) => pgno === 0)) return { ok: false, reason: 'pgno-0' };
  return { ok: true, entry: { db, generation, flags, pageBytes, commitPages, pages: list } };
}

/** How many pages fit in one entry of at most `entryBytesMax` bytes. */
export function pagesPerEntry(entryBytesMax: number, pageBytes: number): number {
  return Math.max(1, Math.floor((entryBytesMax - ENTRY_FRAMING_BYTES_MAX) / (pageBytes + 4)));
}

/** One transaction's (or snapshot's) pages as entries, the last carrying `commitPages`. */
export function splitTransaction(base: Omit<SqliteEntry, 'pages' | 'commitPages' | 'flags'>, pages: SqliteEntry['pages'], commitPages: number, snapshot: boolean, perEntry: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let start = 0; start < pages.length || out.length === 0; start += perEntry) {
    const last = start + perEntry >= pages.length;
    out.push(encodeSqliteEntry({ ...base, flags: snapshot && start === 0 ? SQLITE_FLAG_SNAPSHOT : 0, commitPages: last ? commitPages : 0, pages: pages.slice(start, start + perEntry) }));
  }
  return out;
}

/**
 * The WAL frames of whole transactions (a scan's, ending on a commit frame) as entries, in order; `ends[i]`:
 * the number of payloads up to and including transaction i's last.
 */
export function transactionEntries(base: Omit<SqliteEntry, 'pages' | 'commitPages' | 'flags'>, frames: readonly WalFrame[], perEntry: number): { payloads: Uint8Array[]; ends: number[] } {
  const payloads: Uint8Array[] = [];
  const ends: number[] = [];
  let pages = new Map<number, Uint8Array>();
  for (const frame of frames) {
    // A page written twice in one transaction (a spilled cache) counts once, with its last image.
    pages.set(frame.pgno, frame.page);
    if (frame.commitPages === 0) continue;
    payloads.push(...splitTransaction(base, [...pages].map(([pgno, page]) => ({ pgno, page })), frame.commitPages, false, perEntry));
    ends.push(payloads.length);
    pages = new Map();
  }
  return { payloads, ends };
}

/**
 * The most bytes of records one `appendMany` carries here. The log would take up to one write of its group
 * commit (4 MiB of records, less the checkpoint record that opens a write), and each append waits for its
 * fsync, so a copy of several MB (a VACUUM, a bulk load, a snapshot) costs one fsync per batch. Batches of
 * 4 MiB were measured (`npm run bench:sqlite`, same run, alternating): the primary agent's RSS went from
 * about 245 MB to about 395 MB, with no change in the application's rate or the capture's lag beyond the
 * machine's noise; 1 MiB stays. A log with small segments takes less: it refuses the batch whole, naming
 * its limit in `detail.max`, and the copy goes on in batches of that size.
 */
const APPEND_GROUP_BYTES_MAX = 1024 * 1024;
/** A record's header and alignment in the log, at most (the group bound counts them with the payload). */
const RECORD_OVERHEAD_BYTES_MAX = 32;

/**
 * Append `payloads` in order, in batches of at most APPEND_GROUP_BYTES_MAX (one entry at least each),
 * one after the other: a call begins once the previous one is committed, so the log holds a prefix of
 * them whatever fails. `appended` gets each call's last seq, its entries and their payload bytes.
 */
export async function appendGrouped(payloads: readonly Uint8Array[], append: (group: readonly Uint8Array[]) => Promise<number>, appended: (lastSeq: number, entries: number, bytes: number) => void): Promise<void> {
  let groupBytesMax = APPEND_GROUP_BYTES_MAX;
  for (let start = 0; start < payloads.length; ) {
    let end = start;
    let bytes = 0;
    let records = 0;
    while (end < payloads.length && (end === start || records + payloads[end]!.length + RECORD_OVERHEAD_BYTES_MAX <= groupBytesMax)) {
      records += payloads[end]!.length + RECORD_OVERHEAD_BYTES_MAX;
      bytes += payloads[end++]!.length;
    }
    let lastSeq: number;
    try {
      lastSeq = await append(payloads.slice(start, end));
    } catch (error) {
      // A log whose one write is smaller (small segments), or whose hard limit on unreplicated bytes is,
      // refuses the batch whole and names its limit. A group as large as the hard limit would go only into a
      // log with nothing unreplicated: groups of half of it go while the one before is replicated.
      const detail = error instanceof LastgaspError && error.code === 'ENTRY_TOO_LARGE' && error.detail?.index === undefined ? error.detail : undefined;
      const max = typeof detail?.max !== 'number' ? undefined : detail.field === undefined ? detail.max : Math.floor(detail.max / 2);
      if (end - start > 1 && typeof max === 'number' && max < groupBytesMax) {
        groupBytesMax = max;
        continue;
      }
      throw error;
    }
    appended(lastSeq, end - start, bytes);
    start = end;
  }
}
