// The linger (lingerMs) waits for more appends only when more are likely. A clock whose timers fire only
// when the test says so makes this deterministic: a batch that lingers stays unwritten until the timer is
// fired, and one that does not linger is written without it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createFlashLog, type FlashLogEngine } from '../../agent/log/index.ts';
import type { Clock } from '../../agent/util/index.ts';
import { tempDir } from '../support/ports.ts';

/** Wall time from the system; timers only run when `fire()` is called. */
function manualClock(): Clock & { fire(): number; pending(): number } {
  const timers = new Set<() => void>();
  return {
    nowMs: () => Date.now(),
    monotonicMs: () => performance.now(),
    setTimeout(callback) {
      timers.add(callback);
      return { cancel: () => timers.delete(callback) };
    },
    fire() {
      const due = [...timers];
      timers.clear();
      for (const callback of due) callback();
      return due.length;
    },
    pending: () => timers.size,
  };
}

/** Let the event loop turn a few times (fs callbacks, setImmediate), so that anything not waiting on a timer completes. */
async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise((resolve) => setTimeout(resolve, 1));
}

async function withLog(options: { lingerMs: number; lingerBytes?: number }, run: (log: FlashLogEngine, clock: ReturnType<typeof manualClock>) => Promise<void>): Promise<void> {
  const dir = await tempDir('linger');
  const clock = manualClock();
  const log = createFlashLog({ dir: dir.path, segmentBytes: 256 * 1024, clock, ...options });
  await log.open();
  try {
    await run(log, clock);
  } finally {
    clock.fire();
    await log.close();
    await dir.remove();
  }
}

test('a lone sequential writer never waits out the linger', { timeout: 30_000 }, async () => {
  await withLog({ lingerMs: 60_000 }, async (log) => {
    // With a linger of a minute and timers that never fire on their own, each append must still complete.
    for (let i = 1; i <= 50; i++) assert.equal((await log.append(Uint8Array.of(i))).seq, i);
    assert.equal(log.status().counters.lingers, 0);
    assert.equal(log.status().counters.batches, 50 + 1, 'one batch per append, plus the head');
  });
});

test('after a batch of several appenders, the next batch lingers until it is as large or the linger ends', { timeout: 30_000 }, async () => {
  await withLog({ lingerMs: 60_000 }, async (log, clock) => {
    await Promise.all([1, 2, 3, 4].map((i) => log.append(Uint8Array.of(i))));
    const batches = log.status().counters.batches;
    // Fewer appenders than the last batch had: more are likely, so the batch waits.
    let done = false;
    const two = Promise.all([log.append(Uint8Array.of(5)), log.append(Uint8Array.of(6))]).then((r) => ((done = true), r));
    await settle();
    assert.equal(done, false, 'the batch lingers');
    assert.equal(log.status().counters.batches, batches, 'nothing was written meanwhile');
    assert.equal(log.status().counters.lingers, 1);
    assert.ok(clock.fire() >= 1);
    assert.deepEqual((await two).map((r) => r.seq), [5, 6]);
    // A closed loop of concurrent writers: each batch goes as soon as every writer is back, no timer needed.
    const writers = Array.from({ length: 8 }, async () => {
      for (let i = 0; i < 10; i++) await log.append(new Uint8Array(16));
    });
    const before = log.status().counters.batches!;
    await Promise.all(writers);
    assert.equal(log.watermarks().committed, 6 + 80);
    assert.ok(log.status().counters.batches! - before <= 12, `batches stayed full (${log.status().counters.batches! - before} for 80 appends by 8 writers)`);
  });
});

test('lingerBytes and immediate mode cut the linger short', { timeout: 30_000 }, async () => {
  await withLog({ lingerMs: 60_000, lingerBytes: 1000 }, async (log) => {
    await Promise.all([1, 2, 3].map(() => log.append(new Uint8Array(10))));
    // Two appenders while the last batch had three: lingering, until the staged bytes reach lingerBytes.
    const big = await Promise.all([log.append(new Uint8Array(600)), log.append(new Uint8Array(600))]);
    assert.deepEqual(big.map((r) => r.seq), [4, 5]);
    await Promise.all([6, 7, 8].map(() => log.append(new Uint8Array(10))));
    // On battery every batch is written at once.
    log.setSyncMode('immediate');
    const lingersBefore = log.status().counters.lingers;
    assert.equal((await log.append(new Uint8Array(10))).seq, 9);
    assert.equal(log.status().counters.lingers, lingersBefore);
  });
});

test('switching to immediate writes a lingering batch at once', { timeout: 30_000 }, async () => {
  await withLog({ lingerMs: 60_000 }, async (log) => {
    await Promise.all([1, 2, 3].map(() => log.append(new Uint8Array(10))));
    const batches = log.status().counters.batches;
    let done = false;
    const one = log.append(new Uint8Array(10)).then((r) => ((done = true), r));
    await settle();
    assert.equal(done, false, 'the batch lingers');
    assert.equal(log.status().counters.batches, batches, 'nothing was written meanwhile');
    log.setSyncMode('immediate');
    assert.equal((await one).seq, 4);
  });
});
