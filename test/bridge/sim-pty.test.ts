// The bridge protocol over real pseudo-terminals made by socat, through the kernel's tty layer as a
// USB-serial adapter would deliver the bytes: the agent's side opens its end with `serialport`. One test
// uses a pty pair the test makes (the simulator opens the other end with --serial); the other lets the
// simulator make the pair itself (--pty) and then makes the device vanish, as an unplugged adapter does.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { createPowerSource } from '../../firmware-bridge/index.ts';
import { killAll } from '../support/processes.ts';
import { createPtyPair } from '../support/pty.ts';
import { tempDir, waitFor } from '../support/ports.ts';
import { existsSync } from 'node:fs';
import { RecordingListener, startSim } from './helpers.ts';

after(killAll);

test('over a socat pty pair: handshake, a pushed mains-lost event, and a cut the simulator carries out', async () => {
  const dir = await tempDir('bridge-pty');
  const pair = await createPtyPair(dir.path);
  const sim = await startSim(['--serial', pair.devicePath, '--telemetry-ms', '50']);
  const source = createPowerSource({ kind: 'bridge', transport: { type: 'serial', path: pair.hostPath } });
  const listener = new RecordingListener();
  try {
    assert.equal(sim.listening.path, pair.devicePath);
    await source.start(listener);
    await listener.waitForLink('up');
    await listener.waitForStatus('with mains', (status) => status.acPresent === true);
    await sim.control('ac off');
    await listener.waitForEvent('ac-lost');
    assert.deepEqual(await source.cutPower(100), { ok: true });
    await sim.waitForLine('power cut', (line) => line.event === 'power-cut' && line.reason === 'host');
  } finally {
    await source.stop();
    await sim.stop();
    await pair.close();
    await dir.remove();
  }
});

test('--pty: the simulator makes the pty; when it vanishes the link goes down and comes back by itself', async () => {
  const dir = await tempDir('bridge-pty-own');
  const link = join(dir.path, 'bms');
  const sim = await startSim(['--pty', link, '--telemetry-ms', '50']);
  const source = createPowerSource({ kind: 'bridge', transport: { type: 'serial', path: link } });
  const listener = new RecordingListener();
  try {
    assert.equal(sim.listening.path, link);
    await source.start(listener);
    await listener.waitForLink('up');
    const from = listener.links.length;
    await sim.control('drop-link 500');
    const downAt = await listener.waitForLink('down', 10_000, from);
    await listener.waitForLink('up', 15_000, downAt);
    assert.ok(source.counters()['link.connects']! >= 2, 'the serial port was reopened');
    await sim.control('ac off');
    await listener.waitForEvent('ac-lost');
  } finally {
    await source.stop();
    await sim.stop();
    await dir.remove();
  }
});

test('--pty: a simulator killed with SIGKILL takes its socat with it (the pty disappears)', async () => {
  const dir = await tempDir('bridge-pty-kill');
  const link = join(dir.path, 'bms');
  const sim = await startSim(['--pty', link]);
  try {
    assert.ok(existsSync(link));
    await sim.process.kill('SIGKILL');
    await waitFor('the pty link to vanish with socat', () => (existsSync(link) ? undefined : true), 10_000);
  } finally {
    await dir.remove();
  }
});
