// The shape firmware-bridge/ promises (issue 13), checked on the real import graph as esbuild resolves it:
// `lastgasp run` does not load the simulator or the command lines (they sit behind their own barrels and
// are imported dynamically by agent/cli), and no file of the bridge, its command lines included, imports
// anything from the agent.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build, type Metafile } from 'esbuild';

const ROOT = join(fileURLToPath(import.meta.url), '..', '..', '..');

async function metafile(...entries: string[]): Promise<Metafile> {
  const result = await build({
    absWorkingDir: ROOT,
    entryPoints: entries,
    bundle: true,
    write: false,
    outdir: 'out',
    metafile: true,
    platform: 'node',
    format: 'esm',
    packages: 'external',
    logLevel: 'silent',
  });
  return result.metafile;
}

/** Every module `entry` loads at once: static imports followed, dynamic `import()` not. */
function staticClosure(meta: Metafile, entry: string): Set<string> {
  const seen = new Set<string>();
  const stack = [entry];
  while (stack.length > 0) {
    const file = stack.pop()!;
    if (seen.has(file)) continue;
    seen.add(file);
    for (const imported of meta.inputs[file]?.imports ?? []) if (imported.kind === 'import-statement' && !imported.external) stack.push(imported.path);
  }
  return seen;
}

test('lastgasp run loads the power sources but none of the simulator or the bms commands', async () => {
  const entry = 'agent/cli/run.ts';
  const loaded = [...staticClosure(await metafile(entry), entry)].filter((file) => file.startsWith('firmware-bridge/'));
  assert.ok(loaded.includes('firmware-bridge/power-source.ts'), 'the daemon builds its power source from firmware-bridge');
  assert.ok(loaded.includes('firmware-bridge/jbd/source.ts'));
  const simulatorOrCli = loaded.filter((file) => /^firmware-bridge\/(sim|cli)\/|\/(sim-device|decoder)\.ts$/.test(file));
  assert.deepEqual(simulatorOrCli, []);
});

test('no file of firmware-bridge imports anything from the agent', async () => {
  const files = readdirSync(join(ROOT, 'firmware-bridge'), { recursive: true, encoding: 'utf8' })
    .filter((file) => file.endsWith('.ts'))
    .map((file) => `firmware-bridge/${file}`);
  assert.ok(files.includes('firmware-bridge/cli/bms.ts') && files.includes('firmware-bridge/cli/bms-sim.ts'), 'the command lines are among the entries');
  const meta = await metafile(...files);
  const arrows = Object.entries(meta.inputs)
    .filter(([file]) => file.startsWith('firmware-bridge/'))
    .flatMap(([file, input]) => input.imports.filter((imported) => imported.path.startsWith('agent/')).map((imported) => `${file} -> ${imported.path}`));
  assert.ok(Object.keys(meta.inputs).includes('firmware-bridge/core/errors.ts'));
  assert.deepEqual(arrows, []);
});
