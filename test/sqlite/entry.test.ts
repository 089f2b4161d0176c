// The log entry that carries SQLite pages (op 5): a transaction larger than one entry is split with the
// commit on its last entry only, every entry decodes back to its pages, malformed ones are named and other
// ops are left alone; and the status lines `lastgasp status` prints for a capturing and a replica node.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { encodeOp, OP_PUT } from '../../agent/app/index.ts';
import { decodeSqliteEntry, encodeSqliteEntry, OP_SQLITE, pagesPerEntry, splitTransaction, sqliteStatusLines, SQLITE_FLAG_SNAPSHOT } from '../../agent/sqlite/index.ts';
import { encodeCbor } from '../../agent/util/index.ts';

const PAGE = 1024;

test('a transaction larger than one entry is split, the commit rides the last entry, and every page decodes back', () => {
  const pages = Array.from({ length: 10 }, (_, index) => ({ pgno: index + 1, page: new Uint8Array(PAGE).fill(index + 1) }));
  const perEntry = pagesPerEntry(4 * PAGE, PAGE);
  assert.equal(perEntry, 3, 'four pages of room, less the framing and the page numbers');
  const payloads = splitTransaction({ db: 'app', generation: 'gw-a-1', pageBytes: PAGE }, pages, 12, true, perEntry);
  assert.equal(payloads.length, 4);
  const entries = payloads.map((payload) => {
    const decoded = decodeSqliteEntry(payload);
    assert.ok(decoded?.ok);
    assert.ok(payload.length <= 4 * PAGE);
    return decoded.entry;
  });
  assert.deepEqual(entries.map((entry) => entry.commitPages), [0, 0, 0, 12]);
  assert.deepEqual(entries.map((entry) => entry.flags & SQLITE_FLAG_SNAPSHOT), [1, 0, 0, 0], 'only the first entry of a snapshot is flagged');
  assert.deepEqual(entries.flatMap((entry) => entry.pages.map(({ pgno, page }) => [pgno, page[0], page.length])), pages.map(({ pgno }) => [pgno, pgno, PAGE]));
  // An empty transaction (nothing but a commit) is still one entry.
  assert.equal(splitTransaction({ db: 'app', generation: 'g', pageBytes: PAGE }, [], 3, false, perEntry).length, 1);
});

test('the entry written by hand is byte for byte what cbor-x writes for the same fields', () => {
  // Every head length each field can take: names past 23 and 255 bytes (and not ASCII), page counts whose
  // page numbers pass 23 and 255 bytes, page bytes past 65,535, commitPages up to 2^32 - 1.
  const names = ['a', 'gw-a-1764650000000-3', 'é'.repeat(20), 'n'.repeat(300)];
  const cases = [
    { pageBytes: 512, count: 0, commitPages: 0 },
    { pageBytes: 512, count: 1, commitPages: 23 },
    { pageBytes: 4096, count: 6, commitPages: 24 },
    { pageBytes: 4096, count: 17, commitPages: 65_535 },
    { pageBytes: 65_536, count: 2, commitPages: 65_536 },
    { pageBytes: 1024, count: 70, commitPages: 2 ** 32 - 1 },
  ];
  let checked = 0;
  for (const [index, { pageBytes, count, commitPages }] of cases.entries()) {
    const pages = Array.from({ length: count }, (_, page) => ({ pgno: 1 + page * 40_000 + index, page: new Uint8Array(pageBytes).fill(page + index) }));
    const db = names[index % names.length]!;
    const generation = names[(index + 1) % names.length]!;
    const flags = index % 2;
    const pgnos = new Uint8Array(count * 4);
    pages.forEach(({ pgno }, at) => new DataView(pgnos.buffer).setUint32(at * 4, pgno));
    const joined = new Uint8Array(count * pageBytes);
    pages.forEach(({ page }, at) => joined.set(page, at * pageBytes));
    const byHand = encodeSqliteEntry({ db, generation, flags, pageBytes, commitPages, pages });
    assert.deepEqual(byHand, encodeCbor([OP_SQLITE, db, generation, flags, pageBytes, commitPages, pgnos, joined]), `case ${index}`);
    const decoded = decodeSqliteEntry(byHand);
    assert.ok(decoded?.ok);
    assert.deepEqual(decoded.entry.pages.map(({ pgno }) => pgno), pages.map(({ pgno }) => pgno));
    checked++;
  }
  assert.equal(checked, cases.length);
});

test('other ops are not SQLite entries; malformed SQLite entries are named', () => {
  assert.equal(decodeSqliteEntry(encodeOp({ op: OP_PUT, key: 'k', value: Uint8Array.of(1) })), undefined);
  assert.equal(decodeSqliteEntry(Uint8Array.of(0xff, 0x00)), undefined);
  assert.deepEqual(decodeSqliteEntry(encodeCbor([5, 'app', 'g', 0, PAGE, 0])), { ok: false, reason: 'pages' });
  assert.deepEqual(decodeSqliteEntry(encodeCbor([5, 7, 'g', 0, PAGE, 0, new Uint8Array(4), new Uint8Array(PAGE)])), { ok: false, reason: 'fields' });
  assert.deepEqual(decodeSqliteEntry(encodeCbor([5, 'app', 'g', 0, PAGE, 0, new Uint8Array(4), new Uint8Array(PAGE - 1)])), { ok: false, reason: 'pages' });
  assert.deepEqual(decodeSqliteEntry(encodeCbor([5, 'app', 'g', 0, PAGE, 0, new Uint8Array(4), new Uint8Array(PAGE)])), { ok: false, reason: 'pgno-0' });
});

test('lastgasp status: one line per database, capturing or replica', () => {
  const lines = sqliteStatusLines({
    sqlite: [
      { name: 'app', role: 'capture', commitsCaptured: 12, framesCaptured: 40, lastCommitSeq: 99, lagMsP50: 3.2, lagMsP99: 17.9, walBytes: 4096, checkpoints: 2, fullCheckpoints: 1, barrierBusy: 3, barrierMsMax: 12, generations: 1 },
      { name: 'hist', role: 'replica', commitsApplied: 5, snapshotsApplied: 1, appliedSeq: 98, lastSetAside: '/data/hist.db.set-aside-1' },
    ],
  });
  assert.deepEqual(lines, [
    '  sqlite app: capturing, 12 commits (40 frames) to seq 99, lag p50 3 ms, p99 18 ms, WAL 4096 bytes, 2 checkpoints (1 complete; write barrier busy 3 times, held 12 ms at most), generation 1',
    '  sqlite hist: replica, 5 commits and 1 snapshots applied, to seq 98, own file set aside as /data/hist.db.set-aside-1',
  ]);
  assert.deepEqual(sqliteStatusLines({}), []);
  // A full log's refusals and a snapshot cut short are said when there were any.
  const [capture, replica] = sqliteStatusLines({
    sqlite: [
      { name: 'app', role: 'capture', commitsCaptured: 1, framesCaptured: 2, lastCommitSeq: 3, walBytes: 0, checkpoints: 0, generations: 1, appendFailures: 4, walGiveUps: 1, walGivenUp: true, error: 'log full' },
      { name: 'app', role: 'replica', commitsApplied: 1, snapshotsApplied: 2, snapshotsAbandoned: 1, appliedSeq: 3 },
    ],
  });
  assert.match(capture!, /generation 1, 4 appends refused by the log \(the WAL kept them\), 1 times past walBytesMax with the log full \(frames given up, a new snapshot after\): waiting for room for that snapshot  ERROR: log full$/);
  assert.equal(replica, '  sqlite app: replica, 1 commits and 2 snapshots applied, 1 snapshots cut short dropped, to seq 3');
});
