// The bridge protocol end to end over TCP (as through ser2net): the simulator runs as its own process,
// driven on stdin, and the agent's PowerSource connects to it. Each test checks one behaviour a supervisor
// relies on: handshake and telemetry, pushed events, commands with their acknowledgements, garbage on the
// line, a link that drops, and both heartbeat watchdogs.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import {
  BridgeParser,
  createPowerSource,
  encodeMessage,
  type BridgeFrame,
  type PowerSource,
} from '../../firmware-bridge/index.ts';
import { killAll } from '../support/processes.ts';
import { waitFor } from '../support/ports.ts';
import { RecordingListener, startSim, type SimProcess } from './helpers.ts';

after(killAll);

async function connected(extraArgs: string[] = []): Promise<{ sim: SimProcess; source: PowerSource; listener: RecordingListener; stop(): Promise<void> }> {
  const sim = await startSim(['--tcp', '127.0.0.1:0', '--telemetry-ms', '50', ...extraArgs]);
  const [host, port] = String(sim.listening.tcp).split(':');
  const source = createPowerSource({ kind: 'bridge', transport: { type: 'tcp', host: host!, port: Number(port) } });
  const listener = new RecordingListener();
  await source.start(listener);
  await listener.waitForLink('up');
  return {
    sim,
    source,
    listener,
    async stop() {
      await source.stop();
      await sim.stop();
    },
  };
}

test('handshake over TCP: the link comes up with the device capabilities and telemetry flows', async () => {
  const { source, listener, stop } = await connected();
  try {
    assert.deepEqual(listener.links.map((entry) => entry.state).slice(0, 2), ['connecting', 'up']);
    assert.deepEqual(source.capabilities, { cutPower: true, holdPower: true, pushEvents: true });
    const status = await listener.waitForStatus('with mains', (s) => s.acPresent === true);
    assert.equal(status.socPercent, 100);
    assert.ok(status.packMv! > 16_000 && status.packMv! < 17_000, `4 Li-ion cells near full: ${status.packMv} mV`);
    assert.equal(status.cellMv?.length, 4);
    assert.match(status.source, /^bridge:127\.0\.0\.1:\d+$/);
  } finally {
    await stop();
  }
});

test('mains lost, brownout and mains back are pushed as events, acknowledged, and shown in status', async () => {
  const { sim, listener, stop } = await connected();
  try {
    await sim.control('ac off');
    const lost = await listener.waitForEvent('ac-lost');
    assert.equal(lost.detail, undefined, 'the event was pushed, not derived from status');
    await sim.waitForLine('ac-lost acknowledged', (line) => line.event === 'power-event-acked' && line.kind === 'ac-lost');
    const onBattery = await listener.waitForStatus('on battery', (s) => s.acPresent === false);
    assert.ok(onBattery.currentMa! < 0, 'discharging current is negative');
    await sim.control('brownout');
    await listener.waitForEvent('brownout');
    await sim.control('ac on');
    await listener.waitForEvent('ac-restored');
    assert.deepEqual(listener.events.map((event) => event.kind), ['ac-lost', 'brownout', 'ac-restored'], 'each condition reported exactly once');
  } finally {
    await stop();
  }
});

test('cut is acknowledged and the simulator cuts power after the delay; cancel stops a pending cut', async () => {
  const { sim, source, stop } = await connected();
  try {
    assert.deepEqual(await source.cutPower(200), { ok: true });
    await sim.waitForLine('cut command', (line) => line.event === 'command' && line.kind === 'cut' && line.delayMs === 200);
    await sim.waitForLine('power cut', (line) => line.event === 'power-cut' && line.reason === 'host');

    assert.deepEqual(await source.cutPower(60_000), { ok: true });
    assert.deepEqual(await source.cancelCut(), { ok: true });
    await sim.waitForLine('cut cancelled', (line) => line.event === 'cut-cancelled');
    const from = sim.lines().length;
    await sim.control('status');
    const status = await sim.waitForLine('status', (line) => line.event === 'status' && 'cutPendingMs' in line, 5000, from);
    assert.equal(status.cutPendingMs, null, 'no cut pending after cancel');
  } finally {
    await stop();
  }
});

test('hold within the device limit is acknowledged; beyond it the NAK reason comes back', async () => {
  const { sim, source, stop } = await connected(['--hold-max-ms', '60000']);
  try {
    assert.deepEqual(await source.holdPower(30_000), { ok: true });
    await sim.waitForLine('hold command', (line) => line.event === 'command' && line.kind === 'hold' && line.durationMs === 30_000);
    assert.deepEqual(await source.holdPower(61_000), { ok: false, reason: 'out-of-range' });
  } finally {
    await stop();
  }
});

test('garbage on the line is counted and dropped; the link stays up and events still arrive', async () => {
  const { sim, source, listener, stop } = await connected();
  try {
    const linksBefore = listener.links.length;
    await sim.control('garbage 20000');
    await sim.control('ac off');
    await listener.waitForEvent('ac-lost');
    const counters = source.counters();
    const dropped = Object.entries(counters).filter(([name]) => name.startsWith('drop.') && name.endsWith('.bytes')).reduce((sum, [, value]) => sum + value, 0);
    assert.ok(dropped > 0, `garbage was counted: ${JSON.stringify(counters)}`);
    assert.equal(listener.links.length, linksBefore, 'no link state change from garbage');
  } finally {
    await stop();
  }
});

test('a flat pack cuts power by itself; a hold from the host defers that cut to the end of the hold', async () => {
  const { sim, source, stop } = await connected(['--telemetry-ms', '20']);
  try {
    await sim.control('ac off');
    await sim.control('soc 0');
    await sim.waitForLine('cut when flat', (line) => line.event === 'power-cut' && line.reason === 'flat');
    assert.equal(sim.lines().some((line) => line.event === 'hold-expired'), false, 'no hold was asked for');
    await sim.control('ac on');
    await sim.waitForLine('power back', (line) => line.event === 'power-restored');

    const from = sim.lines().length;
    assert.deepEqual(await source.holdPower(400), { ok: true });
    await sim.control('ac off');
    await sim.control('soc 0');
    // The simulator prints what the thresholds did before the status line of the change.
    const statusAt = sim.lines().indexOf(await sim.waitForLine('flat status', (line) => line.event === 'status' && line.socPercent === 0, 5000, from));
    const cutAt = sim.lines().findIndex((line, index) => index >= from && line.event === 'power-cut');
    assert.ok(cutAt === -1 || cutAt > statusAt, 'held: no cut when the pack went flat');
    await sim.waitForLine('cut after the hold', (line) => line.event === 'power-cut' && line.reason === 'flat', 10_000, from);
    const order = sim.lines().slice(from).map((line) => line.event).filter((event) => event === 'hold-expired' || event === 'power-cut');
    assert.deepEqual(order, ['hold-expired', 'power-cut']);
  } finally {
    await stop();
  }
});

test('a source stopped and started again reconnects and reports afresh', async () => {
  const { source, listener, stop } = await connected();
  try {
    await source.stop();
    const from = listener.links.length;
    await source.start(listener);
    await listener.waitForLink('up', 10_000, from);
  } finally {
    await stop();
  }
});

test('a dropped link is reported down and comes back up by itself', async () => {
  const { sim, source, listener, stop } = await connected();
  try {
    const from = listener.links.length;
    await sim.control('drop-link 400');
    await listener.waitForLink('down', 10_000, from);
    await listener.waitForLink('up', 10_000, from);
    assert.ok(source.counters()['link.connects']! >= 2, 'the transport reconnected');
    await sim.control('ac off');
    await listener.waitForEvent('ac-lost');
  } finally {
    await stop();
  }
});

test('a device that falls silent is declared down after three heartbeats, and recovers when it speaks again', async () => {
  const { sim, listener, stop } = await connected(['--heartbeat-ms', '200']);
  try {
    const from = listener.links.length;
    await sim.control('slow 3000');
    const downAt = await listener.waitForLink('down', 10_000, from);
    assert.match(listener.links[downAt]!.reason ?? '', /no frame from the device/);
    await sim.control('slow 0');
    await listener.waitForLink('up', 15_000, downAt);
  } finally {
    await stop();
  }
});

test('the device watchdog expires when the host says HELLO and then falls silent', async () => {
  const sim = await startSim(['--tcp', '127.0.0.1:0', '--heartbeat-ms', '100']);
  const [host, port] = String(sim.listening.tcp).split(':');
  const socket = connect(Number(port), host!);
  const frames: BridgeFrame[] = [];
  const parser = new BridgeParser({ frame: (frame) => frames.push(frame) });
  socket.on('data', (chunk: Uint8Array) => parser.push(chunk));
  try {
    await new Promise((resolve) => socket.once('connect', resolve));
    socket.write(encodeMessage({ type: 'hello', versionMin: 1, versionMax: 1, heartbeatMs: 100 }, 0));
    const capabilities = await waitFor('CAPABILITIES', () => frames.find((frame) => frame.message.type === 'capabilities'), 5000, 5);
    assert.equal(capabilities.message.type === 'capabilities' && capabilities.message.watchdogMs, 300);
    await sim.waitForLine('watchdog expiry', (line) => line.event === 'watchdog' && line.state === 'expired');
  } finally {
    socket.destroy();
    await sim.stop();
  }
});

test('a HELLO with no common version is refused with NAK version and the device range', async () => {
  const sim = await startSim(['--tcp', '127.0.0.1:0']);
  const [host, port] = String(sim.listening.tcp).split(':');
  const socket = connect(Number(port), host!);
  const frames: BridgeFrame[] = [];
  const parser = new BridgeParser({ frame: (frame) => frames.push(frame) });
  socket.on('data', (chunk: Uint8Array) => parser.push(chunk));
  try {
    await new Promise((resolve) => socket.once('connect', resolve));
    socket.write(encodeMessage({ type: 'hello', versionMin: 2, versionMax: 5, heartbeatMs: 1000 }, 41));
    const nak = await waitFor('NAK', () => frames.find((frame) => frame.message.type === 'nak'), 5000, 5);
    assert.deepEqual(nak.message, { type: 'nak', nakSeq: 41, nakType: 0x01, reason: 'version', versionMin: 1, versionMax: 1 });
  } finally {
    socket.destroy();
    await sim.stop();
  }
});
