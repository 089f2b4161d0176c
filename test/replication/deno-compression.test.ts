// Batch compression on Deno 2 (the `deno` npm package): a batch Node compressed decodes under Deno, one Deno
// compressed decodes under Node, and Deno's receiver refuses a bomb and a flag that disagrees with the data.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { WireCodec } from '../../agent/replication/index.ts';
import { startProcess, killAll } from '../support/processes.ts';
import { tempDir } from '../support/ports.ts';
import { GROUP, SLOW_LINK, telemetryEntries } from './support/compression-fixtures.ts';
import { entryValue } from '../bench/holdup-data.ts';
import { mulberry32 } from '../log/support/random.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const DENO = `${ROOT}node_modules/.bin/deno`;
const SCRIPT = fileURLToPath(new URL('./support/deno-compression.ts', import.meta.url));

test('compressed batches cross between Node and Deno 2 both ways; Deno refuses a bomb and a disagreeing flag', async () => {
  const dir = await tempDir('deno-compression');
  try {
    const key = randomBytes(32);
    const codec = new WireCodec(key);
    const entries = telemetryEntries(150, 501);
    const fromNode = codec.encodeBatch({ group: GROUP, node: 'gw-a', epoch: 2, entries }, undefined, SLOW_LINK);
    assert.equal(codec.compression.batchesCompressed, 1);
    await writeFile(join(dir.path, 'node.cbor'), fromNode);
    const deno = startProcess('deno', DENO, ['run', '-A', '--no-prompt', SCRIPT, join(dir.path, 'node.cbor'), key.toString('hex'), join(dir.path, 'deno.cbor')], { cwd: ROOT, env: { ...process.env, DENO_NO_UPDATE_CHECK: '1' } });
    assert.equal(await deno.exited, 0, deno.output());
    const seen = JSON.parse(deno.output().trim().split('\n').at(-1)!);
    assert.deepEqual(seen.fromNode, { count: 150, firstSeq: 501, lastPayload: new TextDecoder().decode(entries.at(-1)!.payload) });
    assert.equal(seen.ownCompressed, 1);
    assert.ok(seen.ownRatio < 0.35, `Deno's batch is ${seen.ownRatio} of its uncompressed size`);
    assert.equal(seen.own, 200);
    assert.deepEqual(seen.bomb, { ok: false, reason: 'compression-too-large' });
    assert.deepEqual(seen.flagOnPlain, { ok: false, reason: 'compression-bad-data' });
    const fromDeno = codec.decode(new Uint8Array(await readFile(join(dir.path, 'deno.cbor'))));
    assert.ok(fromDeno.ok && fromDeno.kind === 'batch', JSON.stringify(fromDeno));
    const random = mulberry32(1001);
    assert.deepEqual(
      fromDeno.message.entries.map((entry) => [entry.seq, new TextDecoder().decode(entry.payload)]),
      Array.from({ length: 200 }, (_, index) => [1001 + index, new TextDecoder().decode(entryValue('telemetry', random, index))]),
    );
  } finally {
    await killAll();
    await dir.remove();
  }
});
