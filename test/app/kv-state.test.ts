// The key-value state over a log whose reads fail for a while (a dying card): the catch-up that could not read
// is counted and tried again, never an unhandled rejection (which would end the agent), and once the log reads
// again the state catches up with nothing skipped. And the state over a log that mixes key-value ops with
// the ops it passes over by their first bytes (entries, MQTT messages, SQLite pages).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { KvState, encodeOp, OP_DELETE, OP_ENTRY, OP_MQTT, OP_PUT } from '../../agent/app/index.ts';
import { encodeSqliteEntry } from '../../agent/sqlite/entry.ts';
import { createFlashLog, type FlashLog } from '../../agent/log/index.ts';
import { silentLogger } from '../../agent/util/index.ts';
import { tempDir, waitFor } from '../support/ports.ts';

/** The real log, except that `read` throws EIO while `failing` is set. */
function flakyReads(log: FlashLog): { log: FlashLog; failing: { on: boolean } } {
  const failing = { on: false };
  const wrapped = new Proxy(log, {
    get(target, property, receiver) {
      const value = Reflect.get(target, property, receiver) as unknown;
      if (property === 'read') {
        return (...args: unknown[]) => {
          if (failing.on) return Promise.reject(Object.assign(new Error('EIO: injected read error'), { code: 'EIO' }));
          return (value as (...a: unknown[]) => unknown).apply(target, args);
        };
      }
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
  return { log: wrapped, failing };
}

test('a catch-up that cannot read the log is counted and retried; the state then catches up whole', async () => {
  const dir = await tempDir('kv-flaky');
  const engine = createFlashLog({ dir: dir.path, segmentBytes: 1024 * 1024 });
  await engine.open();
  const { log, failing } = flakyReads(engine);
  const state = new KvState({ dataDir: dir.path, log, logger: silentLogger, snapshotEveryEntries: 0 });
  try {
    await state.start();
    failing.on = true;
    for (let index = 0; index < 5; index++) await log.append(encodeOp({ op: OP_PUT, key: `k${index}`, value: new TextEncoder().encode(`v${index}`) }));
    await waitFor('a failed catch-up', () => ((state.counters.kvApplyFailures!) > 0 ? true : undefined), 10_000);
    assert.equal(state.applied, 0, 'nothing applied while the log cannot be read');
    failing.on = false;
    await waitFor('the state to catch up', () => (state.applied === 5 ? true : undefined), 10_000);
    for (let index = 0; index < 5; index++) assert.equal(new TextDecoder().decode(state.get(`k${index}`)), `v${index}`);
  } finally {
    failing.on = false;
    await state.stop();
    await engine.close();
    await dir.remove();
  }
});

const bytes = (text: string) => new TextEncoder().encode(text);

test('the state applies the key-value ops among entries it passes over, and its applied seq covers them all', async () => {
  const dir = await tempDir('kv-mixed');
  const log = createFlashLog({ dir: dir.path, segmentBytes: 1024 * 1024 });
  await log.open();
  const state = new KvState({ dataDir: dir.path, log, logger: silentLogger, snapshotEveryEntries: 0 });
  try {
    await state.start();
    const payloads = [
      encodeOp({ op: OP_PUT, key: 'a', value: bytes('1') }),
      encodeOp({ op: OP_ENTRY, data: bytes('not a put') }),
      encodeOp({ op: OP_MQTT, topic: 'a', data: bytes('not a put either') }),
      encodeSqliteEntry({ db: 'app', generation: 'g1', flags: 1, pageBytes: 4, commitPages: 1, pages: [{ pgno: 1, page: bytes('page') }] }),
      encodeOp({ op: OP_PUT, key: 'b', value: bytes('2') }),
      bytes('another writer'),
      encodeOp({ op: OP_DELETE, key: 'a' }),
      encodeOp({ op: OP_PUT, key: 'c', value: bytes('3') }),
    ];
    let last = 0;
    for (const payload of payloads) last = (await log.append(payload)).seq;
    await state.waitApplied(last);
    assert.equal(state.applied, last);
    assert.deepEqual(state.keys(), ['b', 'c']);
    assert.equal(new TextDecoder().decode(state.get('b')), '2');
    assert.equal(new TextDecoder().decode(state.get('c')), '3');
    // Only the payload that is no op at all is counted; the ops passed over are their own readers' business.
    assert.equal(state.counters.kvUndecodableEntries, 1);
  } finally {
    await state.stop();
    await log.close();
    await dir.remove();
  }
});

test('large entries snapshot the state by bytes, never more often than the last snapshot weighs', async () => {
  const dir = await tempDir('kv-bytes');
  const log = createFlashLog({ dir: dir.path, segmentBytes: 4 * 1024 * 1024 });
  await log.open();
  // By count alone no snapshot would come for 100,000 entries: a log of large entries would keep everything.
  const state = new KvState({ dataDir: dir.path, log, logger: silentLogger, snapshotEveryEntries: 100_000, snapshotEveryBytes: 64 * 1024 });
  const snapshotSeq = () => state.counters.kvSnapshotSeq!;
  try {
    await state.start();
    // A 600 KiB value: the first snapshot weighs at least that much.
    const first = await log.append(encodeOp({ op: OP_PUT, key: 'big', value: new Uint8Array(600 * 1024).fill(7) }));
    await state.waitApplied(first.seq);
    // A due snapshot starts as the catch-up that applied its last entry ends, and is written (fsynced) after.
    await waitFor('the first snapshot, once 64 KiB of entries went by', () => (snapshotSeq() === first.seq ? true : undefined), 10_000);
    // Entries of 100 KiB: the next snapshot only once as many bytes as the last one took have gone by.
    let last = first.seq;
    for (let index = 1; index <= 6; index++) {
      last = (await log.append(encodeOp({ op: OP_ENTRY, data: new Uint8Array(100 * 1024).fill(index) }))).seq;
      await state.waitApplied(last);
      if (index < 6) {
        await new Promise((resolve) => setTimeout(resolve, 50));
        assert.equal(snapshotSeq(), first.seq, `no snapshot after ${index} × 100 KiB (the last one weighs 600 KiB)`);
      }
    }
    await waitFor('a snapshot once 600 KiB of entries went by', () => (snapshotSeq() === last ? true : undefined), 10_000);
  } finally {
    await state.stop();
    await log.close();
    await dir.remove();
  }
});
