// The WAL codec against real WAL files written by Debian's Python sqlite3 (an unmodified SQLite), and
// against its own encoder: the header and checksum chain validate, a scan stops at the last commit, and
// torn, foreign or flipped bytes end a scan with its reason instead of a throw.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { decodeDbHeader, decodeWalHeader, encodeWal, scanWalFrames, walChecksum, walFrameOffset, WAL_HEADER_BYTES, type WalHeader } from '../../agent/sqlite/index.ts';
import { tempDir } from '../support/ports.ts';

/** Debian's Python and the SQLite it links (3.40.1). */
const PYTHON = '/usr/bin/python3';

/** Python writes `commits` transactions into a WAL it never checkpoints, copies the -wal while open, and exits. */
function realWal(dir: string, commits: number): { wal: Uint8Array; db: Uint8Array } {
  const script = `
import sqlite3, shutil, sys
c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.execute('pragma journal_mode=wal'); c.execute('pragma wal_autocheckpoint=0')
c.execute('create table t(k integer primary key, v text)')
for i in range(${commits} - 1):
    c.execute('begin'); c.execute('insert into t(v) values (?)', ('x' * (i * 37 % 3000),)); c.execute('commit')
shutil.copyfile(sys.argv[1] + '-wal', sys.argv[2]); shutil.copyfile(sys.argv[1], sys.argv[3])
`;
  const walCopy = join(dir, 'copy.wal');
  const dbCopy = join(dir, 'copy.db');
  execFileSync(PYTHON, ['-c', script, join(dir, 'app.db'), walCopy, dbCopy]);
  return { wal: new Uint8Array(readFileSync(walCopy)), db: new Uint8Array(readFileSync(dbCopy)) };
}

function header(wal: Uint8Array): WalHeader {
  const decoded = decodeWalHeader(wal);
  assert.ok(decoded.ok, JSON.stringify(decoded));
  return decoded.header;
}

test('a real WAL: header and checksum chain validate, every commit is found, and the encoder reproduces its bytes', async () => {
  const dir = await tempDir('wal-real');
  try {
    const { wal, db } = realWal(dir.path, 40);
    const walHeader = header(wal);
    const dbHeader = decodeDbHeader(db);
    assert.ok(dbHeader.ok);
    assert.equal(dbHeader.header.writeVersion, 2, 'journal_mode=wal is recorded in the database header');
    assert.equal(walHeader.pageBytes, dbHeader.header.pageBytes);
    const scan = scanWalFrames(wal.subarray(WAL_HEADER_BYTES), walHeader, { frameIndex: 0, checksum: walHeader.checksum });
    assert.equal(scan.stop, 'end');
    // journal_mode=wal does not write a frame; the create table and 39 inserts commit once each.
    assert.equal(scan.commits, 40);
    assert.equal(scan.uncommittedFrames, 0);
    assert.equal(scan.end.frameIndex, (wal.length - WAL_HEADER_BYTES) / (walHeader.pageBytes + 24));
    const copy = encodeWal(walHeader.pageBytes, walHeader, scan.frames);
    if (walHeader.bigEndianChecksum) assert.deepEqual(copy, wal, 'same salts, same frames: the same bytes');
    const rescanned = scanWalFrames(copy.subarray(WAL_HEADER_BYTES), header(copy), { frameIndex: 0, checksum: header(copy).checksum });
    assert.equal(rescanned.commits, 40);
  } finally {
    await dir.remove();
  }
});

test('a scan resumed at its end cursor continues the chain; a torn last frame and trailing uncommitted frames are not handed out', async () => {
  const dir = await tempDir('wal-torn');
  try {
    const { wal } = realWal(dir.path, 12);
    const walHeader = header(wal);
    const frameBytes = walHeader.pageBytes + 24;
    const first = scanWalFrames(wal.subarray(WAL_HEADER_BYTES, walFrameOffset(walHeader.pageBytes, 5)), walHeader, { frameIndex: 0, checksum: walHeader.checksum });
    const rest = scanWalFrames(wal.subarray(walFrameOffset(walHeader.pageBytes, first.end.frameIndex)), walHeader, first.end);
    assert.equal(first.commits + rest.commits, 12, 'split anywhere, the two scans find every commit once');
    // The last frame cut in half (a crash during the write): the transaction it ends is not committed.
    const torn = scanWalFrames(wal.subarray(WAL_HEADER_BYTES, wal.length - frameBytes / 2), walHeader, { frameIndex: 0, checksum: walHeader.checksum });
    assert.equal(torn.stop, 'short-frame');
    assert.equal(torn.commits, 11);
    // A flipped byte in the last page: its checksum fails, and so the last commit is not trusted.
    const flipped = wal.slice();
    flipped[flipped.length - 100]! ^= 0x01;
    const bad = scanWalFrames(flipped.subarray(WAL_HEADER_BYTES), walHeader, { frameIndex: 0, checksum: walHeader.checksum });
    assert.equal(bad.stop, 'checksum');
    assert.equal(bad.commits, 11);
    // Frames from a previous WAL life (other salts) after the end: not part of this one.
    const foreign = encodeWal(walHeader.pageBytes, { salt1: walHeader.salt1 - 1, salt2: 7 }, [{ pgno: 2, commitPages: 2, page: new Uint8Array(walHeader.pageBytes) }]);
    const joined = new Uint8Array(wal.length + foreign.length - WAL_HEADER_BYTES);
    joined.set(wal);
    joined.set(foreign.subarray(WAL_HEADER_BYTES), wal.length);
    const stale = scanWalFrames(joined.subarray(WAL_HEADER_BYTES), walHeader, { frameIndex: 0, checksum: walHeader.checksum });
    assert.deepEqual([stale.stop, stale.commits], ['salt', 12]);
  } finally {
    await dir.remove();
  }
});

test('frames after the last commit count as uncommitted and are left out', () => {
  const page = (fill: number) => new Uint8Array(1024).fill(fill);
  const wal = encodeWal(1024, { salt1: 5, salt2: 9 }, [
    { pgno: 1, commitPages: 0, page: page(1) },
    { pgno: 2, commitPages: 2, page: page(2) },
    { pgno: 3, commitPages: 0, page: page(3) },
    { pgno: 1, commitPages: 0, page: page(4) },
  ]);
  const walHeader = header(wal);
  const scan = scanWalFrames(wal.subarray(WAL_HEADER_BYTES), walHeader, { frameIndex: 0, checksum: walHeader.checksum });
  assert.deepEqual(scan.frames.map((frame) => frame.pgno), [1, 2]);
  assert.deepEqual([scan.commits, scan.uncommittedFrames, scan.end.frameIndex, scan.stop], [1, 2, 2, 'end']);
});

test('headers: every way a WAL header can be wrong is named, and random bytes never throw', () => {
  const good = encodeWal(4096, { salt1: 1, salt2: 2 }, []);
  assert.equal(decodeWalHeader(good.subarray(0, 31)).ok, false);
  const cases: Array<[number, string]> = [[0, 'magic'], [7, 'version'], [10, 'page-size'], [20, 'checksum']];
  for (const [offset, reason] of cases) {
    const bad = good.slice();
    bad[offset]! ^= 0x40;
    assert.deepEqual(decodeWalHeader(bad), { ok: false, reason }, `byte ${offset}`);
  }
  let seed = 0x9e3779b9;
  const random = () => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 16) & 0xff;
  for (let round = 0; round < 2000; round++) {
    const bytes = Uint8Array.from({ length: 32 + random() * 40 }, random);
    if (round % 2 === 0) bytes.set(good.subarray(0, 32));
    const decoded = decodeWalHeader(bytes);
    if (decoded.ok) scanWalFrames(bytes.subarray(32), decoded.header, { frameIndex: 0, checksum: decoded.header.checksum });
    decodeDbHeader(bytes);
  }
});

test("the checksum is the same whether the words are read as a Uint32Array (aligned, host order) or one by one", () => {
  // fileformat2 §4.1, written out plainly: the reference the fast path must equal.
  const reference = (bytes: Uint8Array, bigEndian: boolean): [number, number] => {
    let s0 = 0;
    let s1 = 0;
    const word = (at: number) => (bigEndian ? (bytes[at]! << 24) | (bytes[at + 1]! << 16) | (bytes[at + 2]! << 8) | bytes[at + 3]! : bytes[at]! | (bytes[at + 1]! << 8) | (bytes[at + 2]! << 16) | (bytes[at + 3]! << 24)) >>> 0;
    for (let at = 0; at + 8 <= bytes.length; at += 8) {
      s0 = (s0 + word(at) + s1) >>> 0;
      s1 = (s1 + word(at + 4) + s0) >>> 0;
    }
    return [s0, s1];
  };
  const page = new Uint8Array(4096 + 8).map((_, index) => (index * 151 + 7) & 0xff);
  let compared = 0;
  for (const offset of [0, 1, 4]) {
    const copy = new Uint8Array(page.length + 8);
    copy.set(page, offset);
    const bytes = copy.subarray(offset, offset + 4096);
    for (const bigEndian of [false, true]) {
      assert.deepEqual(walChecksum(bytes, bigEndian, [0, 0]), reference(page.subarray(0, 4096), bigEndian), `offset ${offset}, big-endian ${bigEndian}`);
      compared++;
    }
  }
  assert.equal(compared, 6);
});
