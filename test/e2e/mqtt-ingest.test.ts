// The local MQTT listener, with real parts: a mosquitto for replication, two agent processes, unmodified MQTT
// clients (MQTT.js, and Debian's mosquitto_pub) publishing QoS 1 to gw-a's listener. The agent is SIGKILLed
// mid-stream: every message it PUBACKed is in its log after the restart, and on the sibling. Local
// subscribers still get the messages; topics outside the journal filters are relayed but not journaled.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { startMosquitto } from '../support/mosquitto.ts';
import { startAgent, startPair, type AgentProcess } from '../support/agents.ts';
import { killAll } from '../support/processes.ts';
import { freePort, tempDir, waitFor } from '../support/ports.ts';

after(killAll);

function token(agent: AgentProcess): string {
  const dataDir = (JSON.parse(readFileSync(agent.configFile, 'utf8')) as { dataDir: string }).dataDir;
  return readFileSync(join(dataDir, 'api.token'), 'utf8').trim();
}

/** The journaled MQTT messages in the agent's log: topic → payloads in seq order. */
async function journaled(agent: AgentProcess): Promise<Array<{ seq: number; topic: string; text: string }>> {
  const out: Array<{ seq: number; topic: string; text: string }> = [];
  const committed = (await agent.client.status()).watermarks.committed as number;
  for (let from = 1; from <= committed; ) {
    const page = await agent.client.entries(from, 5000);
    for (const entry of page.entries) if (entry.op === 'mqtt') out.push({ seq: entry.seq, topic: String(entry.topic), text: Buffer.from(String(entry.data), 'base64').toString('utf8') });
    if (page.entries.length === 0) break;
    from = page.next;
  }
  return out;
}

async function setUp(name: string, extra: Record<string, unknown> = {}) {
  const dir = await tempDir(name);
  const broker = await startMosquitto(dir.path);
  const port = await freePort();
  const { a, b } = await startPair(dir.path, 'ingest', broker.url, { extraA: { mqttIngest: { listen: `127.0.0.1:${port}`, journal: ['plant/#', 'alarms/#'], ...extra } } });
  await a.waitForEvent('mqtt-ingest');
  return { dir, broker, port, a, b };
}

test('MQTT.js publishing QoS 1, the agent SIGKILLed mid-stream: every PUBACKed message is kept, here and on the sibling', async () => {
  const { dir, broker, port, b, ...rest } = await setUp('e2e-mqtt-kill');
  let a = rest.a;
  const url = `mqtt://127.0.0.1:${port}`;
  const password = token(a);
  const subscriber = await mqtt.connectAsync(url, { username: 'sub', password, reconnectPeriod: 0 });
  const publisher = await mqtt.connectAsync(url, { username: 'app', password, reconnectPeriod: 0 });
  try {
    const refused = await mqtt.connectAsync(url, { username: 'app', password: 'wrong', reconnectPeriod: 0 }).then(
      (client) => client.endAsync().then(() => 'connected'),
      (error: Error) => error.message,
    );
    assert.match(refused, /Bad username or password|Not authorized/i, 'a wrong password is refused');
    const received: string[] = [];
    subscriber.on('message', (topic) => received.push(topic));
    await subscriber.subscribeAsync(['plant/#', 'relay/#'], { qos: 0 });
    await publisher.publishAsync('relay/x', 'not journaled', { qos: 1 });

    // 32 publishes in flight, each followed by the next, until the agent goes away under them: the kill
    // comes mid-stream however fast the listener answers.
    const acked: string[] = [];
    let sent = 0;
    let failed = 0;
    const stream = async (): Promise<void> => {
      while (failed === 0) {
        const index = sent++;
        await publisher.publishAsync(`plant/line${index % 4}`, `m${index}`, { qos: 1 }).then(
          () => void acked.push(`m${index}`),
          () => void failed++,
        );
      }
    };
    const sends = Array.from({ length: 32 }, stream);
    await waitFor('a few hundred PUBACKs', () => (acked.length >= 500 ? true : undefined), 30_000);
    await a.process.kill('SIGKILL');
    publisher.end(true);
    await Promise.all(sends);
    assert.ok(failed > 0 && acked.length < sent, 'the kill came mid-stream');
    assert.ok(received.includes('relay/x') && received.some((topic) => topic.startsWith('plant/')), 'local subscribers got both kinds');

    a = await startAgent('gw-a', a.configFile, a.api);
    const onA = await journaled(a);
    const textsA = new Set(onA.map((entry) => entry.text));
    for (const text of acked) assert.ok(textsA.has(text), `PUBACKed ${text} is in the log after the restart`);
    assert.equal(onA.filter((entry) => entry.topic === 'relay/x').length, 0, 'a topic outside the filters is not journaled');
    assert.ok(onA.every((entry) => /^plant\/line[0-3]$/.test(entry.topic)));
    const highest = Math.max(...onA.map((entry) => entry.seq));
    await waitFor('the sibling to hold them', async () => ((await b.client.status()).watermarks.committed >= highest ? true : undefined), 30_000);
    const textsB = new Set((await journaled(b)).map((entry) => entry.text));
    for (const text of acked) assert.ok(textsB.has(text), `PUBACKed ${text} is on the sibling`);
  } finally {
    subscriber.end(true);
    publisher.end(true);
    await a.stop();
    await b.stop();
    await broker.stop();
    await dir.remove();
  }
});

test('mosquitto_pub publishing QoS 1 lines, the agent SIGKILLed mid-stream: every PUBACKed line is kept', async () => {
  const { dir, broker, port, b, ...rest } = await setUp('e2e-mqtt-pub');
  let a = rest.a;
  try {
    // -l: one message per stdin line; -d prints each PUBACK with its message id, given in order from 1.
    const pub = spawn('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(port), '-q', '1', '-t', 'plant/cli', '-l', '-d', '-u', 'app', '-P', token(a), '-i', 'cli-pub'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let output = '';
    pub.stdout.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
    const acked = () => [...output.matchAll(/received PUBACK \(Mid: (\d+)/g)].map((match) => Number(match[1]));
    const lines = Array.from({ length: 20_000 }, (_, index) => `line${index + 1}`);
    pub.stdin.write(lines.join('\n') + '\n');
    await waitFor('PUBACKs from the agent', () => (acked().length >= 300 ? true : undefined), 30_000);
    await a.process.kill('SIGKILL');
    pub.kill('SIGKILL');
    const mids = acked();
    assert.ok(mids.length < lines.length, 'the kill came mid-stream');

    a = await startAgent('gw-a', a.configFile, a.api);
    const texts = new Set((await journaled(a)).filter((entry) => entry.topic === 'plant/cli').map((entry) => entry.text));
    for (const mid of mids) assert.ok(texts.has(`line${mid}`), `PUBACKed line${mid} is in the log after the restart`);
  } finally {
    await a.stop();
    await b.stop();
    await broker.stop();
    await dir.remove();
  }
});

test('a topic whose messages must reach the sibling first gets no PUBACK while replication is held back', async () => {
  const { dir, broker, port, a, b } = await setUp('e2e-mqtt-copy', { ackAfter: { 'alarms/#': 'replica' } });
  const url = `mqtt://127.0.0.1:${port}`;
  const options = { username: 'app', password: token(a), reconnectPeriod: 0 };
  let client = await mqtt.connectAsync(url, options);
  try {
    await client.publishAsync('alarms/boiler', 'overheat 1', { qos: 1 });
    await a.client.setReplicationPaused(true);
    await client.publishAsync('plant/line1', 'reading while held back', { qos: 1 });
    // No PUBACK for it: after api.ackAfterTimeoutMs the agent closes the connection instead.
    const closed = new Promise<string>((resolve) => client.once('close', () => resolve('closed')));
    const held = await Promise.race([
      client.publishAsync('alarms/boiler', 'overheat 2', { qos: 1 }).then(
        () => 'acknowledged',
        (error: Error) => error.message,
      ),
      closed,
    ]);
    assert.notEqual(held, 'acknowledged');
    assert.equal(((await a.client.status()).writes as { copyTimeouts: number }).copyTimeouts, 1);
    client.end(true);
    await a.client.setReplicationPaused(false);
    client = await mqtt.connectAsync(url, options);
    await client.publishAsync('alarms/boiler', 'overheat 3', { qos: 1 });
    const onB = await waitFor('the sibling to hold the acknowledged alarm', async () => {
      const texts = (await journaled(b)).map((entry) => entry.text);
      return texts.includes('overheat 3') ? texts : undefined;
    }, 20_000);
    assert.ok(onB.includes('overheat 1'));
  } finally {
    client.end(true);
    await a.stop();
    await b.stop();
    await broker.stop();
    await dir.remove();
  }
});
