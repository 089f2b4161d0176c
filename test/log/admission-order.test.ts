// Writes the log holds back (the soft limit's throttle, or a full log with fullPolicy "wait") go in the order
// they came: a later write does not overtake an earlier one that waits, even when it would fit at once. The
// MQTT listener journals a client's messages in the order it sent them and forwards them in log order, so a
// write that overtook another reordered what the client published.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createFlashLog, SimStorage } from '../../agent/log/index.ts';

const bytes = (length: number, fill: number) => new Uint8Array(length).fill(fill);

test('a write throttled at the soft limit is not overtaken by one that came after replication caught up', async () => {
  const log = createFlashLog({ dir: 'sim/admission-order-throttle', segmentBytes: 256 * 1024, storage: new SimStorage(), unreplicatedSoftBytes: 2000, throttleDelayMsMax: 40 });
  await log.open();
  try {
    // Records of 300-byte payloads take 328 bytes: seven of them pass the soft limit.
    for (let i = 0; i < 7; i++) await log.append(bytes(300, i));
    const before = log.status().counters.throttledAppends!;
    const first = log.append(bytes(300, 100));
    assert.equal(log.status().counters.throttledAppends, before + 1, 'the first write is throttled');
    // Replication catches up: nothing is unreplicated, and a new write alone would go at once.
    log.markReplicated(log.watermarks().committed);
    // Twenty writes come after it; together they pass the soft limit again.
    const later = Array.from({ length: 20 }, (_, i) => log.append(bytes(300, 101 + i)));
    const [a, ...rest] = await Promise.all([first, ...later]);
    assert.deepEqual(rest.map((result) => result.seq), rest.map((_, i) => a.seq + 1 + i), 'the throttled write keeps its place, and the later ones theirs');
    // They waited behind it, which is their delay: throttled again at their turn, each would wait out a
    // delay of its own after the one before it, one at a time.
    assert.equal(log.status().counters.throttledAppends, before + 1, 'only the first write was throttled');
  } finally {
    await log.close();
  }
});

test('a write waiting for room in a full log is not overtaken by a smaller one that fits', async () => {
  const log = createFlashLog({ dir: 'sim/admission-order-full', segmentBytes: 256 * 1024, storage: new SimStorage(), unreplicatedHardBytes: 2000, fullPolicy: 'wait', fullWaitMs: 10_000 });
  await log.open();
  try {
    for (let i = 0; i < 4; i++) await log.append(bytes(300, i));
    const room = log.appendRoom();
    assert.ok(room > 100 && room < 600, `room for the small write and not for the large one (${room})`);
    const large = log.append(bytes(600, 100));
    const small = log.append(bytes(50, 101));
    await new Promise((resolve) => setTimeout(resolve, 20));
    log.markReplicated(log.watermarks().committed);
    const [a, b] = await Promise.all([large, small]);
    assert.deepEqual([a.seq, b.seq], [5, 6], 'in the order they came');
  } finally {
    await log.close();
  }
});

test('with fullPolicy "reject" a write that finds the log full is refused at once, queue or not', async () => {
  const log = createFlashLog({ dir: 'sim/admission-order-reject', segmentBytes: 256 * 1024, storage: new SimStorage(), unreplicatedSoftBytes: 1000, unreplicatedHardBytes: 2000, throttleDelayMsMax: 40, fullPolicy: 'reject' });
  await log.open();
  try {
    for (let i = 0; i < 4; i++) await log.append(bytes(300, i));
    // Over the soft limit: throttled, held; then one that cannot fit is refused without waiting behind it.
    const throttled = log.append(bytes(300, 100));
    await assert.rejects(log.append(bytes(1000, 101)), (error: Error & { code?: string }) => error.code === 'LOG_FULL');
    assert.equal((await throttled).seq, 5);
  } finally {
    await log.close();
  }
});
