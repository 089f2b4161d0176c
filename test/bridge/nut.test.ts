// Real NUT peers. NUT's own Megatec driver (nutdrv_qx from Debian's nut-server) reads the simulator in Q1
// mode over a socat pty, and upsc reports the status going from mains to battery to low battery and back.
// Then lastgasp's NUT client reads a real upsd serving Debian's dummy-ups driver and follows its changes,
// including NUT's forced shutdown (FSD) sent by lastgasp as a upsmon primary would.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createPowerSource } from '../../firmware-bridge/index.ts';
import { killAll } from '../support/processes.ts';
import { tempDir, waitFor } from '../support/ports.ts';
import { RecordingListener, startSim } from './helpers.ts';
import { startNut } from './nut-helpers.ts';

after(killAll);

test('nutdrv_qx (megatec) reads bms-sim in Q1 mode; upsc follows mains lost, low battery, mains back', async () => {
  const dir = await tempDir('nut-qx');
  const link = join(dir.path, 'ups');
  const sim = await startSim(['--protocol', 'q1', '--pty', link]);
  let nut: Awaited<ReturnType<typeof startNut>> | undefined;
  try {
    nut = await startNut(dir.path, [{ name: 'sim', driver: 'nutdrv_qx', settings: { port: link, protocol: 'megatec', pollinterval: '1' } }]);
    const status = (expected: string) => waitFor(`upsc ups.status = ${expected}`, async () => ((await nut!.upsc('sim', 'ups.status')) === expected ? true : undefined), 20_000, 200);
    await status('OL');
    assert.equal(await nut.upsc('sim', 'device.mfr'), 'lastgasp', 'nutdrv_qx read the I answer');
    assert.equal(await nut.upsc('sim', 'input.voltage'), '230.0');
    await sim.control('ac off');
    await status('OB');
    await sim.control('soc 10');
    await status('OB LB');
    await sim.control('ac on');
    await status('OL');
  } finally {
    await nut?.stop();
    await sim.stop();
    await dir.remove();
  }
});

/** dummy-ups re-reads its .dev file when the file's mtime changes; each write gets a later, distinct mtime. */
async function writeDummy(path: string, lines: Record<string, string>, step: number): Promise<void> {
  await writeFile(path, Object.entries(lines).map(([name, value]) => `${name}: ${value}`).join('\n') + '\n');
  const at = Date.now() / 1000 + step * 2;
  await utimes(path, at, at);
}

test('the NUT client follows a real upsd with dummy-ups: OL, OB, OB LB, and sets FSD as upsmon primary', async () => {
  const dir = await tempDir('nut-client');
  const devFile = join(dir.path, 'dummy.dev');
  await writeDummy(devFile, { 'ups.status': 'OL', 'battery.charge': '100', 'battery.runtime': '3600', 'battery.voltage': '13.5' }, 0);
  await writeFile(join(dir.path, 'password'), 'secret\n');
  const nut = await startNut(dir.path, [{ name: 'dummy', driver: 'dummy-ups', settings: { port: 'dummy.dev', desc: '"lastgasp test"' } }], '[admin]\n  password = secret\n  upsmon primary\n');
  const source = createPowerSource({ kind: 'nut', host: '127.0.0.1', port: nut.port, ups: 'dummy', username: 'admin', passwordFile: join(dir.path, 'password'), pollMs: 200 });
  const listener = new RecordingListener();
  try {
    await source.start(listener);
    await listener.waitForLink('up');
    const online = await listener.waitForStatus('online', (status) => status.acPresent === true);
    assert.equal(online.socPercent, 100);
    assert.equal(online.runtimeS, 3600);
    assert.equal(online.packMv, 13_500);
    assert.match(online.source, /^nut:dummy@127\.0\.0\.1:\d+$/);

    await writeDummy(devFile, { 'ups.status': 'OB', 'battery.charge': '60', 'battery.runtime': '1200', 'battery.voltage': '12.4' }, 1);
    await listener.waitForEvent('ac-lost', 15_000);
    await writeDummy(devFile, { 'ups.status': 'OB LB', 'battery.charge': '9', 'battery.runtime': '120', 'battery.voltage': '11.1' }, 2);
    await listener.waitForEvent('low-battery', 15_000);
    const low = await listener.waitForStatus('low battery', (status) => status.lowBattery === true);
    assert.equal(low.socPercent, 9);

    assert.deepEqual(await source.cutPower(0), { ok: true });
    await listener.waitForEvent('power-off-pending');
    assert.match(await nut.upsc('dummy', 'ups.status'), /\bFSD\b/);
    assert.deepEqual(await source.cancelCut(), { ok: false, reason: 'unsupported' }, 'NUT cannot clear FSD');
  } finally {
    await source.stop();
    await nut.stop();
    await dir.remove();
  }
});

test('the NUT client reports a wrong password and an unknown UPS name clearly', async () => {
  const dir = await tempDir('nut-errors');
  await writeDummy(join(dir.path, 'dummy.dev'), { 'ups.status': 'OL' }, 0);
  await writeFile(join(dir.path, 'password'), 'wrong\n');
  const nut = await startNut(dir.path, [{ name: 'dummy', driver: 'dummy-ups', settings: { port: 'dummy.dev' } }], '[admin]\n  password = secret\n  upsmon primary\n');
  const good = createPowerSource({ kind: 'nut', host: '127.0.0.1', port: nut.port, ups: 'dummy', username: 'admin', passwordFile: join(dir.path, 'password'), pollMs: 200 });
  const unknown = createPowerSource({ kind: 'nut', host: '127.0.0.1', port: nut.port, ups: 'nosuchups', pollMs: 100 });
  const goodListener = new RecordingListener();
  const unknownListener = new RecordingListener();
  try {
    await good.start(goodListener);
    await goodListener.waitForLink('up');
    const refused = await good.cutPower(0);
    assert.equal(refused.ok, false);
    assert.match(refused.reason ?? '', /upsd refused PASSWORD|ACCESS-DENIED/);

    await unknown.start(unknownListener);
    const downAt = await unknownListener.waitForLink('down', 10_000);
    assert.match(unknownListener.links[downAt]!.reason ?? '', /no valid answer/);
    assert.ok((unknown.counters()['nut.err.UNKNOWN-UPS'] ?? 0) >= 3, JSON.stringify(unknown.counters()));
  } finally {
    await good.stop();
    await unknown.stop();
    await nut.stop();
    await dir.remove();
  }
});
