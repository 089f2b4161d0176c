// The BMS link is trusted only when up, end to end: a real agent process whose bridge link runs over a
// socat pty, and on the other end this test playing the controller through the project's own serial
// transport and bridge endpoint, so that it can put frames where a misbehaving line would: a brownout
// power-event frame before the handshake is refused (NAK "state") and counted, and starts nothing; once the
// link is up, a brownout event the telemetry contradicts (mains present, full charge) is held and then
// dismissed by the next telemetry; an ac-lost event after the handshake counts as usual.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { BridgeEndpoint, createTransport, type BridgeFrame } from '../../firmware-bridge/index.ts';
import { startMosquitto } from '../support/mosquitto.ts';
import { createPtyPair } from '../support/pty.ts';
import { startAgent, writeAgentConfig } from '../support/agents.ts';
import { killAll } from '../support/processes.ts';
import { tempDir, waitFor } from '../support/ports.ts';

after(killAll);

/** Telemetry period of the played controller; the agent declares the link down after 3 heartbeats of silence. */
const TELEMETRY_MS = 250;

test('a power-event frame before the handshake is refused and counted, and starts no brownout', { timeout: 90_000 }, async () => {
  const dir = await tempDir('bms-link');
  const broker = await startMosquitto(dir.path);
  const pty = await createPtyPair(dir.path);
  const transport = createTransport({ type: 'serial', path: pty.devicePath }, { defaultBaudRate: 115200 });
  const hellos: BridgeFrame[] = [];
  const device = new BridgeEndpoint({ write: (bytes) => transport.write(bytes) }, {
    message: (frame) => {
      if (frame.message.type === 'hello') hellos.push(frame);
    },
  });
  transport.start({ data: (chunk) => device.receive(chunk), state: () => undefined });
  let telemetry: ReturnType<typeof setInterval> | undefined;
  const config = await writeAgentConfig(dir.path, 'gw-a', {
    group: 'bms-link',
    role: 'primary',
    siblings: ['gw-b'],
    replication: { brokers: [{ url: broker.url }] },
    power: { source: { kind: 'bridge', transport: { type: 'serial', path: pty.hostPath } }, onBatteryDebounceMs: 1000 },
  });
  const agent = await startAgent('gw-a', config.file, config.api);
  try {
    await waitFor('the agent\'s HELLO', () => (hellos.length > 0 ? true : undefined), 20_000);
    // The line is open and the agent waits for CAPABILITIES: a brownout event now must not be believed.
    const early = await device.sendReliable({ type: 'power-event', kind: 'brownout', holdUpMs: 60_000 });
    assert.equal(early.ok, false);
    assert.equal(early.reason, 'state', 'refused with NAK "state", so the controller stops repeating it');

    const hello = hellos[hellos.length - 1]!;
    const sendTelemetry = () =>
      device.send({ type: 'telemetry', acPresent: true, socPermille: 1000, runtimeS: 5000, packMv: 13_300, currentMa: 500, lowBattery: false, alarms: [] });
    device.reply(hello, {
      type: 'capabilities',
      helloSeq: hello.seq,
      version: 1,
      model: 'test-controller',
      firmware: 'test',
      features: 0,
      telemetryMs: TELEMETRY_MS,
      heartbeatMs: 1000,
      watchdogMs: 3000,
      holdMsMax: 0,
      frameLenMax: 256,
    });
    sendTelemetry();
    telemetry = setInterval(sendTelemetry, TELEMETRY_MS);
    await agent.waitForEvent('power-link', (line) => line.state === 'up');
    await waitFor('telemetry seen by the agent', async () => ((await agent.client.status()).power.lastStatus?.acPresent === true ? true : undefined));

    // Up, but the telemetry says mains present and a full pack: the brownout is held, then dismissed.
    const contradicted = await device.sendReliable({ type: 'power-event', kind: 'brownout', holdUpMs: 60_000 });
    assert.equal(contradicted.ok, true, 'acknowledged: the link is up');
    await agent.waitForEvent('brownout-held');
    await agent.waitForEvent('brownout-dismissed');

    // An event after the handshake that the telemetry does not contradict counts as it always did.
    assert.equal((await device.sendReliable({ type: 'power-event', kind: 'ac-lost' })).ok, true);
    await agent.waitForEvent('power-state', (line) => line.to === 'ON_BATTERY');

    const status = await agent.client.status();
    assert.equal(status.power.counters['rx.events-before-handshake'], 1);
    assert.deepEqual(status.power.distrust, { eventsBeforeLinkUp: 0, brownoutsHeld: 1, brownoutsDismissed: 1, brownoutsConfirmed: 0 });
    assert.equal(agent.events().filter((line) => line.event === 'power-state' && line.to === 'BROWNOUT').length, 0, 'no brownout was started');
    assert.equal(agent.events().filter((line) => line.event === 'flush-start').length, 0, 'no flush was started');
    assert.equal(await agent.client.health(), true, 'the primary still serves');
  } finally {
    clearInterval(telemetry);
    await agent.stop();
    await transport.stop();
    await pty.close();
    await broker.stop();
    await dir.remove();
  }
});
