// The harness itself: a real mosquitto answers MQTT, a socat pty pair carries bytes both ways.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { openSync, writeSync, readSync, closeSync } from 'node:fs';
import mqtt from 'mqtt';
import { startMosquitto } from './mosquitto.ts';
import { createPtyPair } from './pty.ts';
import { tempDir } from './ports.ts';

test('mosquitto from broker-config/ accepts a QoS 1 publish and delivers it', async () => {
  const dir = await tempDir('harness');
  const broker = await startMosquitto(dir.path);
  try {
    const client = await mqtt.connectAsync(broker.url, { protocolVersion: 5, clientId: 'harness' });
    await client.subscribeAsync('h/t', { qos: 1 });
    const received = new Promise<string>((resolve) => client.on('message', (_t, payload) => resolve(payload.toString())));
    await client.publishAsync('h/t', 'hello', { qos: 1 });
    assert.equal(await received, 'hello');
    await client.endAsync();
  } finally {
    await broker.stop();
    await dir.remove();
  }
});

test('a socat pty pair carries binary bytes from one end to the other', async () => {
  const dir = await tempDir('pty');
  const pair = await createPtyPair(dir.path);
  try {
    const device = openSync(pair.devicePath, 'r+');
    const host = openSync(pair.hostPath, 'r+');
    const bytes = Uint8Array.from([0x00, 0xdd, 0x0a, 0x0d, 0xff, 0x77]);
    writeSync(device, bytes);
    const into = new Uint8Array(16);
    let got = 0;
    const deadline = Date.now() + 3000;
    while (got < bytes.length && Date.now() < deadline) got += readSync(host, into, got, into.length - got, null);
    assert.deepEqual(into.subarray(0, got), bytes);
    closeSync(device);
    closeSync(host);
  } finally {
    await pair.close();
    await dir.remove();
  }
});
