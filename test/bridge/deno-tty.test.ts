// The tty transport under Deno. serialport's native binding fails under Deno 2 (writes give "Bad file
// descriptor"), so firmware-bridge opens serial lines there with stty and Deno's own file API. This test
// runs a real Deno (node_modules/.bin/deno) on the agent's end of a socat pty pair, with the simulator on
// the other end: handshake, telemetry, a pushed event, and a cut written back through the tty and obeyed.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { killAll, startProcess } from '../support/processes.ts';
import { createPtyPair } from '../support/pty.ts';
import { tempDir } from '../support/ports.ts';
import { startSim } from './helpers.ts';

after(killAll);

const ROOT = join(fileURLToPath(import.meta.url), '..', '..', '..');
const DENO = join(ROOT, 'node_modules', '.bin', 'deno');
const SCRIPT = join(ROOT, 'test', 'bridge', 'deno', 'bridge-over-tty.ts');

test('under Deno, the bridge opens a pty with stty + Deno.open, reads events and writes a cut the simulator obeys', async () => {
  const dir = await tempDir('deno-tty');
  const pair = await createPtyPair(dir.path);
  const sim = await startSim(['--serial', pair.devicePath, '--telemetry-ms', '50']);
  const deno = startProcess('deno', DENO, ['run', '-A', '--quiet', SCRIPT, pair.hostPath], { cwd: ROOT });
  try {
    await deno.waitForOutput(/"event":"runtime","deno":true/, 60_000);
    await deno.waitForOutput(/"event":"link","state":"up"/, 30_000);
    await deno.waitForOutput(/"event":"status","acPresent":true,"socPercent":100/, 10_000);
    await sim.control('ac off');
    await deno.waitForOutput(/"event":"power-event","kind":"ac-lost"/, 10_000);
    const result = JSON.parse(await deno.waitForOutput(/\{"event":"cut-result".*\}/, 10_000)) as { ok: boolean; counters: Record<string, number> };
    assert.equal(result.ok, true, 'the cut was acknowledged by the device');
    assert.ok(result.counters['tx.bytes']! > 0, 'bytes were written through the Deno tty transport');
    await sim.waitForLine('cut command', (line) => line.event === 'command' && line.kind === 'cut' && line.delayMs === 100);
    await sim.waitForLine('power cut', (line) => line.event === 'power-cut');
    assert.equal(await deno.exited, 0);
  } finally {
    await deno.kill('SIGKILL');
    await sim.stop();
    await pair.close();
    await dir.remove();
  }
});
