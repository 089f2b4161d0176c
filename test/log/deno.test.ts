// The log runs unchanged on Deno 2 (the `deno` npm package): the same files, the real node:fs storage.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { startProcess, killAll } from '../support/processes.ts';
import { tempDir } from '../support/ports.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const DENO = `${ROOT}node_modules/.bin/deno`;
const SCRIPT = fileURLToPath(new URL('./support/deno-smoke.ts', import.meta.url));

test('the flash log appends, locks its directory, recovers a torn tail, reads and verifies under Deno 2', async () => {
  const dir = await tempDir('deno');
  try {
    const deno = startProcess('deno', DENO, ['run', '-A', '--no-prompt', SCRIPT, dir.path], { cwd: ROOT, env: { ...process.env, DENO_NO_UPDATE_CHECK: '1' } });
    const code = await deno.exited;
    assert.equal(code, 0, deno.output());
    const line = deno.output().trim().split('\n').at(-1)!;
    const seen = JSON.parse(line);
    assert.equal(seen.lastSeq, 500);
    assert.ok(seen.syncs < 500, 'group commit batched the appends');
    assert.equal(seen.committed, 500);
    assert.equal(seen.replicated, 250);
    assert.deepEqual(seen.read, ['deno-498', 'deno-499']);
    assert.equal(seen.verifyOk, true);
    assert.equal(seen.inspectCommitted, 500);
    assert.equal(seen.lockedCode, 'LOG_LOCKED');
  } finally {
    await killAll();
    await dir.remove();
  }
});
