// The key-value state over a log whose reads fail for a while (a dying card): the catch-up that could not read
// is counted and tried again, never an unhandled rejection (which would end the agent), and once the log reads
// again the state catches up with nothing skipped.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { KvState, encodeOp, OP_PUT } from '../../agent/app/index.ts';
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
