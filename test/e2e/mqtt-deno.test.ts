// The local MQTT listener under Deno 2: the same server code (node:net, mqtt-packet) on a primary run by
// Deno, an MQTT 5 client publishing QoS 1 and QoS 2 with properties, the entries read back and found on the
// Node sibling.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { startMosquitto } from '../support/mosquitto.ts';
import { startPair } from '../support/agents.ts';
import { killAll } from '../support/processes.ts';
import { freePort, tempDir, waitFor } from '../support/ports.ts';

after(killAll);

test('the MQTT listener serves MQTT 5 clients under Deno: QoS 1 and 2 journaled with their properties', async () => {
  const dir = await tempDir('mqtt-deno');
  const broker = await startMosquitto(dir.path);
  const port = await freePort();
  const { a, b } = await startPair(dir.path, 'mqttdeno', broker.url, { runtimeA: 'deno', extraA: { mqttIngest: { listen: `127.0.0.1:${port}`, journal: ['plant/#'] } } });
  const dataDir = (JSON.parse(await readFile(a.configFile, 'utf8')) as { dataDir: string }).dataDir;
  const password = (await readFile(join(dataDir, 'api.token'), 'utf8')).trim();
  const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { protocolVersion: 5, username: 'app', password, reconnectPeriod: 0 });
  try {
    await a.waitForEvent('mqtt-ingest');
    await client.publishAsync('plant/deno/one', 'qos 1', { qos: 1, properties: { userProperties: { runtime: 'deno' } } });
    await client.publishAsync('plant/deno/two', 'qos 2', { qos: 2, properties: { contentType: 'text/plain' } });
    const committed = (await a.client.status()).watermarks.committed as number;
    await waitFor('the Node sibling to hold them', async () => ((await b.client.status()).watermarks.committed >= committed ? true : undefined), 30_000);
    const entries = (await b.client.entries(1, 1000)).entries.filter((entry) => entry.op === 'mqtt');
    assert.deepEqual(
      entries.map((entry) => [entry.topic, Buffer.from(String(entry.data), 'base64').toString('utf8'), entry.props]),
      [
        ['plant/deno/one', 'qos 1', { userProperties: { runtime: 'deno' } }],
        ['plant/deno/two', 'qos 2', { contentType: 'text/plain' }],
      ],
    );
  } finally {
    client.end(true);
    await a.stop();
    await b.stop();
    await broker.stop();
    await dir.remove();
  }
});
