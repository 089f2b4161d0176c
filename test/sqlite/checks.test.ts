// The start-up checks name the field and the fix: a database not in WAL mode, a file that is not SQLite,
// the SQLite versions with the WAL-reset bug, and a WAL bound under what the WAL holds between checkpoints; a
// database not created yet passes (the application makes it).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { checkDatabase, versionBefore, SQLITE_WAL_RESET_FIXED } from '../../agent/sqlite/index.ts';
import { isLastgaspError } from '../../agent/util/index.ts';
import { tempDir } from '../support/ports.ts';

/** Debian's Python and the SQLite it links. */
const PYTHON = '/usr/bin/python3';

function makeDb(path: string, journalMode: string): void {
  execFileSync(PYTHON, ['-c', `import sqlite3, sys\nc = sqlite3.connect(sys.argv[1])\nc.execute('pragma journal_mode=${journalMode}')\nc.execute('create table t(x)')\nc.commit()`, path]);
}

test('a WAL database passes with its page size; one in rollback-journal mode is refused with the pragma that fixes it', async () => {
  const dir = await tempDir('sqlite-checks');
  try {
    makeDb(join(dir.path, 'wal.db'), 'wal');
    const ok = await checkDatabase(join(dir.path, 'wal.db'), 'app.sqlite[0].path', '3.51.3');
    assert.deepEqual([ok.exists, ok.pageBytes, ok.warnings], [true, 4096, []]);
    makeDb(join(dir.path, 'delete.db'), 'delete');
    await assert.rejects(checkDatabase(join(dir.path, 'delete.db'), 'app.sqlite[1].path', '3.51.3'), (error: unknown) => {
      assert.ok(isLastgaspError(error, 'SQLITE_UNSUITABLE'));
      assert.match(error.message, /^app\.sqlite\[1\]\.path: .*delete\.db is not in WAL mode.*PRAGMA journal_mode=WAL/);
      return true;
    });
    await writeFile(join(dir.path, 'text.db'), 'not a database\n'.repeat(10));
    await assert.rejects(checkDatabase(join(dir.path, 'text.db'), 'app.sqlite[2].path', '3.51.3'), /is not a SQLite 3 database/);
    assert.equal((await checkDatabase(join(dir.path, 'later.db'), 'app.sqlite[3].path', '3.51.3')).exists, false, 'created by the application later');
    await assert.rejects(checkDatabase(join(dir.path, 'no-such-dir', 'x.db'), 'app.sqlite[4].path', '3.51.3'), /cannot reach the directory/);
  } finally {
    await dir.remove();
  }
});

test('SQLite older than 3.51.3 is warned about, with the setting that avoids the WAL-reset bug', async () => {
  assert.equal(versionBefore('3.45.1', SQLITE_WAL_RESET_FIXED), true);
  assert.equal(versionBefore('3.51.2', SQLITE_WAL_RESET_FIXED), true);
  assert.equal(versionBefore('3.51.3', SQLITE_WAL_RESET_FIXED), false);
  assert.equal(versionBefore('3.53.0', SQLITE_WAL_RESET_FIXED), false);
  const dir = await tempDir('sqlite-version');
  try {
    const check = await checkDatabase(join(dir.path, 'app.db'), 'app.sqlite[0].path', '3.45.1');
    assert.equal(check.warnings.length, 1);
    assert.match(check.warnings[0]!, /3\.45\.1.*wal_autocheckpoint=0/);
  } finally {
    await dir.remove();
  }
});

test('a walBytesMax below what the WAL holds between checkpoints is refused once the page size is known, with both fixes named', async () => {
  const dir = await tempDir('sqlite-wal-bound');
  try {
    const db = join(dir.path, 'wal.db');
    // Before the application made the file, the page size is not known: nothing to check yet.
    assert.equal((await checkDatabase(db, 'app.sqlite[0].path', '3.51.3', { checkpointFrames: 1000, walBytesMax: 1024 * 1024 })).exists, false);
    makeDb(db, 'wal');
    // 1000 frames of 4096-byte pages (24-byte frame headers) is 4,120,000 bytes.
    await assert.rejects(checkDatabase(db, 'app.sqlite[0].path', '3.51.3', { checkpointFrames: 1000, walBytesMax: 4_119_999 }), (error: unknown) => {
      assert.ok(isLastgaspError(error, 'SQLITE_UNSUITABLE'));
      assert.match(error.message, /^app\.sqlite\[0\]\.walBytesMax: 4119999 bytes .*checkpointFrames 1000 frames of 4096-byte pages: 4120000 bytes.*raise app\.sqlite\[0\]\.walBytesMax to at least 4120000 or lower app\.sqlite\[0\]\.checkpointFrames$/);
      return true;
    });
    assert.equal((await checkDatabase(db, 'app.sqlite[0].path', '3.51.3', { checkpointFrames: 1000, walBytesMax: 4_120_000 })).pageBytes, 4096);
    assert.equal((await checkDatabase(db, 'app.sqlite[0].path', '3.51.3', { checkpointFrames: 1000, walBytesMax: undefined })).exists, true, 'no bound, nothing to check');
  } finally {
    await dir.remove();
  }
});
