// The bundle (`npm run build`) runs what the sources run. It is built into a directory laid out like an
// installed release and holding no TypeScript (dist/, package.json, node_modules): anything that still
// reached for the sources or for tsx would fail there. Through it, the demo must end with nothing lost,
// and the end-to-end brownout test file must pass with its agents started from the bundle (the harness
// checks that each agent says it runs bundled).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tempDir } from '../support/ports.ts';
// @ts-expect-error: a plain JavaScript build script, run by node without a loader
import { buildBundle } from '../../agent/packaging/build.mjs';

const ROOT = join(fileURLToPath(import.meta.url), '..', '..', '..');

let dir: { path: string; remove: () => Promise<void> };
let bundle: string;

before(async () => {
  dir = await tempDir('bundle');
  const release = join(dir.path, 'lastgasp');
  bundle = (await buildBundle(join(release, 'dist'))) as string;
  copyFileSync(join(ROOT, 'package.json'), join(release, 'package.json'));
  symlinkSync(join(ROOT, 'node_modules'), join(release, 'node_modules'));
});

after(() => dir.remove());

test('the bundle runs the demo: nothing acknowledged lost, states equal', () => {
  const result = spawnSync(process.execPath, [bundle, 'demo', '--json', '--steady', '1500', '--burst', '3000'], { encoding: 'utf8', timeout: 240_000 });
  assert.equal(result.status, 0, result.stdout + result.stderr);
  const summary = JSON.parse(result.stdout.trim().split('\n').at(-1)!) as Record<string, number | boolean>;
  assert.equal(summary.lost, 0);
  assert.equal(summary.stateEqual, true);
  // The workload's 4,500 writes and the demo application's, every one of them on the sibling.
  assert.ok((summary.entriesAcked as number) > 4500, `entries acknowledged ${summary.entriesAcked}`);
  assert.equal(summary.entriesOnSibling, summary.entriesAcked);
  const app = summary.app as unknown as { startedOn: string[] };
  assert.deepEqual(app.startedOn, ['gw-a', 'gw-b'], 'the application script shipped beside the bundle ran on both nodes');
  assert.ok((summary.tailAtBrownout as number) >= 3000, `tail at brownout ${summary.tailAtBrownout}`);
});

test('the bundle passes the end-to-end brownout tests (flush, handoff, takeover; mains back during the flush)', () => {
  const result = spawnSync(process.execPath, ['--import', 'tsx', '--test', '--test-reporter=tap', join(ROOT, 'test', 'e2e', 'brownout.test.ts')], {
    cwd: ROOT,
    encoding: 'utf8',
    timeout: 280_000,
    // NODE_TEST_CONTEXT would make the inner runner report to this one instead of printing its results.
    env: { ...process.env, NODE_TEST_CONTEXT: undefined, LASTGASP_TEST_AGENT_BIN: bundle },
  });
  assert.equal(result.status, 0, result.stdout.slice(-6000) + result.stderr.slice(-3000));
  assert.match(result.stdout, /^# fail 0$/m);
  const passed = Number(/^# pass (\d+)$/m.exec(result.stdout)?.[1]);
  assert.ok(passed >= 2, `only ${passed} brownout tests passed`);
});
