// The capture and the replica in one process around a real flash log, with Debian's Python sqlite3 as the
// unmodified application in a child process: whatever the application commits reaches the log, and the
// replica built from the log equals the application's database (sorted iterdump compared) and passes
// integrity_check, through schema changes, VACUUM, a torn frame at the WAL's end, checkpoints the
// application runs on its own, and a WAL reset while no capture ran; and the same with a Node application
// that uses libsql.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createFlashLog, type FlashLog } from '../../agent/log/index.ts';
import { SqliteCapture, SqliteReplica } from '../../agent/sqlite/index.ts';
import { silentLogger, systemClock } from '../../agent/util/index.ts';
import { tempDir } from '../support/ports.ts';
import { PYTHON, run, APP, dump } from './support/python.ts';

/** Debian's Python and the SQLite it links (3.40.1): the unmodified application. */
const NODE_APP = fileURLToPath(new URL('../fixtures/sqlite-node-app.mjs', import.meta.url));

async function app(dir: string, db: string, env: Record<string, string>): Promise<void> {
  await run(PYTHON, [APP], { env: { ...process.env, DB: db, APP_JOURNAL: join(dir, 'journal.ndjson'), ...env } });
}

interface Rig {
  log: FlashLog;
  db: string;
  replicaDb: string;
  capture: SqliteCapture;
  replica: SqliteReplica;
  /** Everything captured so far, applied to the replica. */
  settle(): Promise<void>;
  newCapture(): SqliteCapture;
}

async function rig(dir: string, extra: { checkpointFrames?: number } = {}): Promise<Rig> {
  const log = createFlashLog({ dir: join(dir, 'log') });
  await log.open();
  const db = join(dir, 'app.db');
  const replicaDb = join(dir, 'replica.db');
  const newCapture = () =>
    new SqliteCapture({ path: db, name: 'app', field: 'app.sqlite[0]', node: 'gw-test', pollMs: 5, checkpointFrames: extra.checkpointFrames ?? 1000, entryBytesMax: 64 * 1024, append: async (payloads) => (await log.appendMany(payloads)).seq, logger: silentLogger, clock: systemClock });
  const replica = new SqliteReplica({ path: replicaDb, name: 'app', dataDir: dir, log, logger: silentLogger, clock: systemClock });
  await replica.load();
  const out: Rig = {
    log,
    db,
    replicaDb,
    capture: newCapture(),
    replica,
    newCapture,
    async settle() {
      await out.capture.captureNow();
      await replica.resume();
      await replica.pause();
    },
  };
  return out;
}

test('transactions, schema changes and VACUUM: the replica equals the application database, and a torn frame at the WAL end is ignored', async () => {
  const dir = await tempDir('sqlite-capture');
  const r = await rig(dir.path);
  try {
    await app(dir.path, r.db, { APP_TX: '5' });
    r.capture.start();
    // The first step opens the database and takes the generation's snapshot; every later commit is a frame.
    await r.capture.captureNow();
    await app(dir.path, r.db, { APP_TX: '160', APP_SEED: '2' });
    await r.settle();
    const source = await dump(r.db);
    const copy = await dump(r.replicaDb);
    assert.equal(source.txids.length, 165);
    assert.equal(copy.integrity, 'ok');
    assert.deepEqual(copy, source, 'the replica is the application database');
    const status = r.capture.status();
    assert.equal(status.generations, 1);
    assert.ok((status.commitsCaptured as number) >= 160, `commits captured: ${status.commitsCaptured}`);

    // Half a frame of garbage after the last commit (a crash in the middle of a write): nothing of it is taken.
    const before = r.capture.status();
    await appendFile(r.db + '-wal', new Uint8Array(3000).fill(0x5a));
    await r.capture.captureNow();
    assert.deepEqual([r.capture.status().commitsCaptured, r.capture.status().generations], [before.commitsCaptured, before.generations]);
    // The application's next writer overwrites the garbage; its transactions arrive as usual.
    await app(dir.path, r.db, { APP_TX: '20', APP_SEED: '3' });
    await r.settle();
    assert.deepEqual(await dump(r.replicaDb), await dump(r.db));
    assert.equal(r.capture.status().generations, 1, 'no new generation was needed');
  } finally {
    await r.capture.stop();
    await r.replica.pause();
    await r.log.close();
    await dir.remove();
  }
});

test('a transaction larger than one read of the WAL (4 MiB) is captured whole, and the transactions after it too', async () => {
  const dir = await tempDir('sqlite-large-tx');
  const r = await rig(dir.path);
  try {
    await app(dir.path, r.db, { APP_TX: '3' });
    r.capture.start();
    await r.capture.captureNow();
    // About 1600 frames of 4 KiB in one commit: more than a read takes (a whole number of frames under
    // 4 MiB), so the capture must read on to find its commit frame.
    const bulk = "import sqlite3, sys\ndb = sqlite3.connect(sys.argv[1], isolation_level=None)\ndb.execute('pragma wal_autocheckpoint=0')\ndb.execute('begin immediate')\nfor i in range(1500): db.execute('insert into items(k, v) values (?, ?)', ('bulk%d' % i, bytes([i % 251]) * 4000))\ndb.execute('commit')\n";
    await run(PYTHON, ['-c', bulk, r.db]);
    await app(dir.path, r.db, { APP_TX: '10', APP_SEED: '6' });
    await r.settle();
    const source = await dump(r.db);
    assert.equal(source.txids.length, 13);
    assert.deepEqual(await dump(r.replicaDb), source, 'the replica is the application database');
    assert.ok((r.capture.status().framesCaptured as number) > 1500, `frames captured: ${r.capture.status().framesCaptured}`);
    assert.equal(r.capture.status().generations, 1);
  } finally {
    await r.capture.stop();
    await r.replica.pause();
    await r.log.close();
    await dir.remove();
  }
});

test('the agent checkpoints and the WAL stays bounded; checkpoints the application runs itself never corrupt the replica', async () => {
  const dir = await tempDir('sqlite-checkpoint');
  const r = await rig(dir.path, { checkpointFrames: 50 });
  try {
    await app(dir.path, r.db, { APP_TX: '1' });
    r.capture.start();
    await r.capture.captureNow();
    await app(dir.path, r.db, { APP_TX: '200', APP_SEED: '4', APP_TX_DELAY_MS: '2' });
    await r.settle();
    const status = r.capture.status();
    assert.ok((status.checkpoints as number) >= 1, 'the agent checkpointed');
    assert.ok((status.walResetsSeen as number) >= 1, 'and the application reset the WAL after it, as expected');
    assert.equal(status.generations, 1, JSON.stringify(status));
    assert.deepEqual(await dump(r.replicaDb), await dump(r.db));
    // The application checkpoints on its own as well (auto and TRUNCATE): whatever the capture makes of it
    // (copies, or a new generation), the replica is the application's database.
    await app(dir.path, r.db, { APP_TX: '150', APP_SEED: '5', APP_AUTOCHECKPOINT: '20', APP_CHECKPOINT_EVERY: '9', APP_CHECKPOINT_MODE: 'TRUNCATE' });
    await r.settle();
    const copy = await dump(r.replicaDb);
    assert.equal(copy.integrity, 'ok');
    assert.deepEqual(copy, await dump(r.db));
  } finally {
    await r.capture.stop();
    await r.replica.pause();
    await r.log.close();
    await dir.remove();
  }
});

test('a WAL reset while no capture ran: the next capture starts a new generation and the replica follows its snapshot', async () => {
  const dir = await tempDir('sqlite-generation');
  const r = await rig(dir.path);
  try {
    await app(dir.path, r.db, { APP_TX: '1' });
    r.capture.start();
    await r.capture.captureNow();
    await app(dir.path, r.db, { APP_TX: '60', APP_SEED: '6' });
    await r.settle();
    await r.capture.stop();
    // Without the agent the application checkpoints to the end and resets the WAL, and writes on.
    await app(dir.path, r.db, { APP_TX: '30', APP_SEED: '7', APP_CHECKPOINT_EVERY: '10', APP_CHECKPOINT_MODE: 'TRUNCATE' });
    r.capture = r.newCapture();
    r.capture.start();
    await r.capture.captureNow();
    await app(dir.path, r.db, { APP_TX: '30', APP_SEED: '8' });
    await r.settle();
    assert.equal(r.replica.status().snapshotsApplied, 2, `the first capture's snapshot and the new generation's (${JSON.stringify(r.capture.status())})`);
    const copy = await dump(r.replicaDb);
    assert.equal(copy.integrity, 'ok');
    assert.equal(copy.txids.length, 121);
    assert.deepEqual(copy, await dump(r.db));
  } finally {
    await r.capture.stop();
    await r.replica.pause();
    await r.log.close();
    await dir.remove();
  }
});

test('a Node application using libsql: the replica equals its database', async () => {
  const dir = await tempDir('sqlite-node-app');
  const r = await rig(dir.path, { checkpointFrames: 40 });
  try {
    await run(process.execPath, [NODE_APP], { env: { ...process.env, DB: r.db, APP_TX: '1' } });
    r.capture.start();
    await r.capture.captureNow();
    await run(process.execPath, [NODE_APP], { env: { ...process.env, DB: r.db, APP_TX: '150' } });
    await r.settle();
    const copy = await dump(r.replicaDb);
    assert.equal(copy.integrity, 'ok');
    assert.equal(copy.txids.length, 151);
    assert.deepEqual(copy, await dump(r.db));
    assert.equal(r.capture.status().generations, 1);
  } finally {
    await r.capture.stop();
    await r.replica.pause();
    await r.log.close();
    await dir.remove();
  }
});
