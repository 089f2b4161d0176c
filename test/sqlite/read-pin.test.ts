// The capture's read transaction is never let go between two: when it is taken again at the WAL's new end,
// an application that checkpoints everything in that very moment (TRUNCATE, its own, which the README
// advises against and promises to survive) still finds the old one holding its frames, and the WAL is not
// started over under frames not yet copied. The moment is made on demand: the new transaction's BEGIN runs
// the application's checkpoint first (real SQLite connections, in this process).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { openSqlite, type SqliteConnection } from '../../agent/sqlite/index.ts';
import { ReadPin } from '../../agent/sqlite/read-pin.ts';
import { tempDir } from '../support/ports.ts';

/** `connection`, with `onBegin` run just before each BEGIN it is given. */
function beginHook(connection: SqliteConnection, onBegin: () => void): SqliteConnection {
  return {
    exec: (sql) => {
      if (sql.startsWith('BEGIN')) onBegin();
      connection.exec(sql);
    },
    get: (sql, params) => connection.get(sql, params),
    all: (sql, params) => connection.all(sql, params),
    close: () => connection.close(),
  };
}

test('taking the read transaction again never leaves the WAL unpinned: a checkpoint in between does not start it over', async () => {
  const dir = await tempDir('sqlite-read-pin');
  const path = join(dir.path, 'app.db');
  const app = await openSqlite(path, false);
  let pin: ReadPin | undefined;
  try {
    app.exec('PRAGMA journal_mode=WAL');
    app.exec('PRAGMA wal_autocheckpoint=0');
    app.exec('CREATE TABLE t(x)');
    app.exec("INSERT INTO t VALUES (randomblob(3000))");
    let checkpoint: Record<string, unknown> | undefined;
    let armed = false;
    const hook = () => {
      if (!armed) return;
      armed = false;
      checkpoint = app.get('PRAGMA wal_checkpoint(TRUNCATE)');
    };
    pin = new ReadPin([beginHook(await openSqlite(path, true), hook), beginHook(await openSqlite(path, true), hook)], path, 'app.sqlite[0]');
    pin.retake();
    // Frames past the pin's mark: the capture has not copied them yet when it takes the pin again.
    app.exec("INSERT INTO t VALUES (randomblob(3000))");
    const walBytes = statSync(path + '-wal').size;
    armed = true;
    pin.retake();
    assert.ok(checkpoint, 'the application checkpointed while the pin was taken again');
    assert.equal(checkpoint.busy, 1, `the checkpoint could not finish: ${JSON.stringify(checkpoint)}`);
    assert.equal(statSync(path + '-wal').size, walBytes, 'the WAL was not truncated');
    assert.equal(Number(pin.connection.get('SELECT count(*) AS n FROM t')?.n), 2, 'the new read transaction sees both rows');
  } finally {
    pin?.close();
    app.close();
    await dir.remove();
  }
});
