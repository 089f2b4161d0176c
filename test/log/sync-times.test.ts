// The log remembers how long its recent fdatasyncs took (what the brownout allows for its own syncs before
// the handoff record), as the largest of the last 64: a stall long ago is forgotten, a recent one is not.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createFlashLog } from '../../agent/log/index.ts';
import { RecentMax } from '../../agent/util/index.ts';
import { tempDir } from '../support/ports.ts';

test('RecentMax: the largest of the last values noted, undefined before the first', () => {
  const recent = new RecentMax(3);
  assert.equal(recent.max(), undefined);
  recent.note(5);
  recent.note(9);
  recent.note(2);
  assert.equal(recent.max(), 9);
  recent.note(1);
  recent.note(1);
  assert.equal(recent.max(), 2, 'the 9 left with the fourth value after it');
  recent.note(1);
  assert.equal(recent.max(), 1);
});

test('a log reports the longest of its recent group commits\' fdatasyncs, in status too', async () => {
  const dir = await tempDir('sync-times');
  const log = createFlashLog({ dir: dir.path, segmentBytes: 1024 * 1024 });
  try {
    await log.open();
    for (let index = 0; index < 5; index++) await log.append(new Uint8Array(100));
    const syncMs = log.recentSyncMsMax();
    assert.ok(syncMs !== undefined && syncMs > 0, `recentSyncMsMax ${syncMs}`);
    assert.equal(log.status().recentSyncMsMax, syncMs);
  } finally {
    await log.close();
    await dir.remove();
  }
});
