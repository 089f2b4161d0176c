// Forwarding upstream across a brownout handoff, with real parts: a mosquitto for replication, a second one
// upstream with an MQTT 5 subscriber, the BMS simulator on a socat pty, two agent processes. The periodic
// position marks are made too rare to happen; the forwarder's final mark, written before the flush fences
// the log, is what tells the sibling where to go on: its first forwarded message is the next one, and no
// message reaches upstream twice.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { startMosquitto } from '../support/mosquitto.ts';
import { createPtyPair } from '../support/pty.ts';
import { startBmsSim } from '../support/bms-sim.ts';
import { startPair, type AgentProcess } from '../support/agents.ts';
import { killAll } from '../support/processes.ts';
import { freePort, tempDir, waitFor } from '../support/ports.ts';

after(killAll);

const POSITION_KEY = '$lastgasp/mqtt-forwarded';

async function token(agent: AgentProcess): Promise<string> {
  const dataDir = (JSON.parse(await readFile(agent.configFile, 'utf8')) as { dataDir: string }).dataDir;
  return (await readFile(join(dataDir, 'api.token'), 'utf8')).trim();
}

function listenUrl(agent: AgentProcess): string {
  return `mqtt://${String(agent.events().find((line) => line.event === 'mqtt-ingest')!.address)}`;
}

test('brownout handoff: the forwarder records its last position before the fence; the sibling forwards from the next message, none twice', async () => {
  const dir = await tempDir('e2e-forward-brownout');
  const broker = await startMosquitto(dir.path);
  await mkdir(join(dir.path, 'upstream'));
  const upstream = await startMosquitto(join(dir.path, 'upstream'));
  const pty = await createPtyPair(dir.path);
  const sim = await startBmsSim(['--protocol', 'bridge', '--serial', pty.devicePath]);
  // Marks every 100,000 messages or minute: none falls within the test but the final one. `after: flash`:
  // once gw-a is gone nothing more reaches the replica level, and gw-b is to forward its new messages.
  const forward = { url: upstream.url, topicPrefix: 'up', markEveryMessages: 100_000, markIntervalMs: 60_000, after: 'flash' };
  const ingest = async () => ({ mqttIngest: { listen: `127.0.0.1:${await freePort()}`, journal: ['plant/#'], forward } });
  const { a, b } = await startPair(dir.path, 'fwdbrown', broker.url, {
    extraA: {
      ...(await ingest()),
      power: { source: { kind: 'bridge', transport: { type: 'serial', path: pty.hostPath } }, onBatteryDebounceMs: 0, flushBudgetMs: 60_000, handoffAckTimeoutMs: 5000, cutDelayMs: 200 },
    },
    extraB: await ingest(),
  });
  const historian = await mqtt.connectAsync(upstream.url, { protocolVersion: 5, clientId: 'historian-brownout', reconnectPeriod: 0 });
  const received: Array<{ text: string; seq: number; epoch: number; dup: boolean }> = [];
  historian.on('message', (_topic, payload, packet) => {
    const user = (packet.properties?.userProperties ?? {}) as Record<string, string>;
    received.push({ text: payload.toString('utf8'), seq: Number(user['lastgasp-seq']), epoch: Number(user['lastgasp-epoch']), dup: user['lastgasp-dup'] === '1' });
  });
  await historian.subscribeAsync('up/#', { qos: 1 });
  try {
    await a.waitForEvent('power-link', (line) => line.state === 'up');
    await a.waitForEvent('forward-start');
    const app = await mqtt.connectAsync(listenUrl(a), { username: 'app', password: await token(a), reconnectPeriod: 0 });
    for (let index = 0; index < 300; index++) await app.publishAsync(`plant/line${index % 3}`, `before-${index}`, { qos: 1 });
    app.end(true);
    await waitFor('all 300 upstream from gw-a', () => (received.length >= 300 ? true : undefined), 30_000);
    assert.equal(await a.client.get(POSITION_KEY), undefined, 'no periodic mark was written');

    sim.send('ac off');
    sim.send('brownout');
    const stopped = await a.waitForEvent('forward-stop');
    const lastSent = Math.max(...received.map((message) => message.seq));
    assert.equal(stopped.marked, lastSent, 'the final mark is the last upstream-acknowledged seq');
    const handoff = await a.waitForEvent('handoff');
    assert.equal(handoff.complete, true);
    await b.waitForEvent('takeover');
    await sim.waitForLine((line) => line.event === 'power-cut', 'the power cut');
    await a.process.kill('SIGKILL');

    const started = await b.waitForEvent('forward-start', () => true, 30_000);
    assert.equal(Number(started.from), lastSent + 1, 'gw-b starts right after the last message gw-a had acknowledged upstream');
    const appB = await mqtt.connectAsync(listenUrl(b), { username: 'app', password: await token(b), reconnectPeriod: 0 });
    for (let index = 0; index < 20; index++) await appB.publishAsync('plant/line0', `after-${index}`, { qos: 1 });
    appB.end(true);
    await waitFor('the 20 new ones upstream from gw-b', () => (received.filter((message) => message.text.startsWith('after-')).length >= 20 ? true : undefined), 30_000);
    const firstFromB = received[300]!;
    assert.equal(firstFromB.text, 'after-0', 'the first message gw-b forwards is the next one');
    assert.equal(firstFromB.epoch, 2);
    const texts = received.map((message) => message.text);
    assert.equal(new Set(texts).size, texts.length, 'no message went upstream twice');
    assert.equal(received.length, 320);
    assert.ok(received.every((message) => !message.dup));
  } finally {
    historian.end(true);
    await a.stop('SIGKILL');
    await b.stop();
    await sim.stop();
    await pty.close();
    await upstream.stop();
    await broker.stop();
    await dir.remove();
  }
});
