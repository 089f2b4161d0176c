// The JBD, Daly and Megatec drivers against the simulator playing each device on a real socat pty pair,
// through `serialport`: the link comes up on the first answer, status is normalized (current positive into
// the pack), mains lost shows as an event derived from status, garbage and a single corrupted frame leave
// the link up, a device that stops answering goes down and comes back, and Megatec shutdown commands work.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createPowerSource, type PowerSourceConfig } from '../../firmware-bridge/index.ts';
import { killAll } from '../support/processes.ts';
import { createPtyPair, type PtyPair } from '../support/pty.ts';
import { tempDir } from '../support/ports.ts';
import { RecordingListener, startSim, type SimProcess } from './helpers.ts';

after(killAll);

/** Poll fast so that the tests are short; the drivers' defaults are 1 s. */
const POLL_MS = 100;

async function withDevice(
  protocol: 'jbd' | 'daly' | 'q1',
  body: (parts: { sim: SimProcess; listener: RecordingListener; source: ReturnType<typeof createPowerSource> }) => Promise<void>,
  simArgs: string[] = [],
): Promise<void> {
  const dir = await tempDir(`driver-${protocol}`);
  let pair: PtyPair | undefined;
  let sim: SimProcess | undefined;
  const listener = new RecordingListener();
  let source: ReturnType<typeof createPowerSource> | undefined;
  try {
    pair = await createPtyPair(dir.path);
    sim = await startSim(['--protocol', protocol, '--serial', pair.devicePath, ...simArgs]);
    source = createPowerSource({ kind: protocol, transport: { type: 'serial', path: pair.hostPath }, pollMs: POLL_MS } as PowerSourceConfig);
    await source.start(listener);
    await listener.waitForLink('up');
    await body({ sim, listener, source });
  } finally {
    await source?.stop();
    await sim?.stop();
    await pair?.close();
    await dir.remove();
  }
}

for (const protocol of ['jbd', 'daly'] as const) {
  test(`${protocol}: status from the simulated pack, and mains lost inferred from the discharge current`, async () => {
    await withDevice(protocol, async ({ sim, listener }) => {
      const full = await listener.waitForStatus('on mains', (status) => status.acPresent === true);
      assert.equal(full.socPercent, 100);
      assert.equal(full.cellMv?.length, 4);
      assert.ok(full.packMv! > 16_000, `pack ${full.packMv} mV`);
      await sim.control('ac off');
      const lost = await listener.waitForEvent('ac-lost');
      assert.equal(lost.detail, 'derived from status');
      const onBattery = await listener.waitForStatus('discharging', (status) => status.acPresent === false);
      assert.equal(onBattery.currentMa, -800, 'the simulated gateway draws 800 mA, reported negative');
      await sim.control('ac on');
      await listener.waitForEvent('ac-restored');
    });
  });

  test(`${protocol}: garbage and one corrupted answer are counted; the link stays up`, async () => {
    await withDevice(protocol, async ({ sim, listener, source }) => {
      const linksBefore = listener.links.length;
      await sim.control('garbage 3000');
      await sim.control('corrupt 1');
      const before = listener.statuses.length;
      await listener.waitForStatus('a few more polls', () => listener.statuses.length >= before + 5);
      const counters = source.counters();
      const dropped = Object.entries(counters).filter(([name]) => name.startsWith('drop.') && name.endsWith('.bytes')).reduce((sum, [, value]) => sum + value, 0);
      assert.ok(dropped > 0, `drops counted: ${JSON.stringify(counters)}`);
      assert.equal(listener.links.length, linksBefore, 'no link change');
    });
  });

  test(`${protocol}: a device that stops answering goes down after three polls and comes back`, async () => {
    await withDevice(protocol, async ({ sim, listener }) => {
      const from = listener.links.length;
      // Long enough for three failed polls even with Daly's one-miss tolerance and per-command timeouts.
      await sim.control('drop-link 4000');
      const downAt = await listener.waitForLink('down', 10_000, from);
      assert.match(listener.links[downAt]!.reason ?? '', /no valid answer to 3 polls/);
      await listener.waitForLink('up', 10_000, downAt);
    });
  });
}

test('daly: a single corrupted answer is tolerated from the last good one, as real units need', async () => {
  await withDevice('daly', async ({ sim, listener, source }) => {
    const before = listener.statuses.length;
    await sim.control('corrupt 1');
    await listener.waitForStatus('more polls', () => listener.statuses.length >= before + 4);
    assert.ok((source.counters()['daly.tolerated-misses'] ?? 0) >= 1, JSON.stringify(source.counters()));
    assert.equal(source.counters()['poll.failures'] ?? 0, 0, 'no poll failed');
  });
});

test('q1: status from the simulated UPS; mains lost and low battery as NUT would see them', async () => {
  await withDevice('q1', async ({ sim, listener }) => {
    const online = await listener.waitForStatus('online', (status) => status.acPresent === true);
    assert.equal(online.lowBattery, false);
    await sim.control('ac off');
    await listener.waitForEvent('ac-lost');
    await sim.control('soc 10');
    await listener.waitForEvent('low-battery');
  });
});

test('q1: cut sends S<n> rounded up to the UPS granularity and is confirmed by the shutdown bit; cancel sends C', async () => {
  await withDevice('q1', async ({ sim, source, listener }) => {
    assert.deepEqual(source.capabilities, { cutPower: true, holdPower: false, pushEvents: false });
    assert.deepEqual(await source.cutPower(20_000), { ok: true });
    await sim.waitForLine('S.4', (line) => line.event === 'command' && line.kind === 'cut' && line.raw === 'S.4' && line.delayMs === 24_000);
    await listener.waitForEvent('power-off-pending');
    assert.deepEqual(await source.cancelCut(), { ok: true });
    await sim.waitForLine('C', (line) => line.event === 'command' && line.kind === 'cancel');
    assert.deepEqual(await source.holdPower(1000), { ok: false, reason: 'unsupported' });
  });
});
