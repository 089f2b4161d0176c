// Forwarding upstream (config mqttIngest.forward), with real parts: a mosquitto for replication, a second
// mosquitto as the upstream broker (MQTT 5) with a subscriber on it, two agent processes, and an unmodified
// MQTT.js application publishing QoS 1 to gw-a's listener. gw-a is SIGKILLed mid-stream and gw-b takes over
// after the silence: every message in the surviving log reaches upstream at least once, first in seq order,
// each repeat marked `lastgasp-dup`, and gw-b began where the replicated position said, not at the start.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { OP_MQTT } from '../../agent/app/index.ts';
import { startMosquitto } from '../support/mosquitto.ts';
import { startPair, type AgentProcess } from '../support/agents.ts';
import { killAll } from '../support/processes.ts';
import { freePort, tempDir, waitFor } from '../support/ports.ts';

after(killAll);

const POSITION_KEY = '$lastgasp/mqtt-forwarded';

type Upstream = { topic: string; text: string; seq: number; epoch: number; dup: boolean; props: Record<string, unknown>; retain: boolean };

async function token(agent: AgentProcess): Promise<string> {
  const dataDir = (JSON.parse(await readFile(agent.configFile, 'utf8')) as { dataDir: string }).dataDir;
  return (await readFile(join(dataDir, 'api.token'), 'utf8')).trim();
}

/** The journaled MQTT messages in the agent's log, in seq order. */
async function journaled(agent: AgentProcess): Promise<Array<{ seq: number; epoch: number; topic: string; text: string }>> {
  const out: Array<{ seq: number; epoch: number; topic: string; text: string }> = [];
  const committed = (await agent.client.status()).watermarks.committed as number;
  for (let from = 1; from <= committed; ) {
    const page = await agent.client.entries(from, 5000);
    for (const entry of page.entries) if (entry.op === 'mqtt') out.push({ seq: entry.seq, epoch: entry.epoch, topic: String(entry.topic), text: Buffer.from(String(entry.data), 'base64').toString('utf8') });
    if (page.entries.length === 0) break;
    from = page.next;
  }
  return out;
}

/** An MQTT 5 subscriber on the upstream broker that records every message with its marks. */
async function historian(url: string, filter: string, session: mqtt.IClientOptions = { clientId: `historian-${Date.now()}`, reconnectPeriod: 0 }): Promise<{ received: Upstream[]; client: mqtt.MqttClient }> {
  const client = await mqtt.connectAsync(url, { protocolVersion: 5, ...session });
  const received: Upstream[] = [];
  client.on('message', (topic, payload, packet) => {
    const props = (packet.properties ?? {}) as Record<string, unknown>;
    const user = (props.userProperties ?? {}) as Record<string, string>;
    received.push({ topic, text: payload.toString('utf8'), seq: Number(user['lastgasp-seq']), epoch: Number(user['lastgasp-epoch']), dup: user['lastgasp-dup'] === '1', props, retain: packet.retain });
  });
  await client.subscribeAsync(filter, { qos: 1 });
  return { received, client };
}

async function setUp(name: string, forward: Record<string, unknown>, extra: Record<string, unknown> = {}) {
  const dir = await tempDir(name);
  const broker = await startMosquitto(dir.path);
  await mkdir(join(dir.path, 'upstream'));
  const upstream = await startMosquitto(join(dir.path, 'upstream'));
  const ingest = async () => ({ mqttIngest: { listen: `127.0.0.1:${await freePort()}`, journal: ['plant/#'], forward: { url: upstream.url, topicPrefix: 'up', ...forward } } });
  const { a, b } = await startPair(dir.path, name.replace(/^e2e-/, ''), broker.url, { extra, extraA: await ingest(), extraB: await ingest() });
  await a.waitForEvent('mqtt-ingest');
  const listen = (agent: AgentProcess) => `mqtt://${String(agent.events().find((line) => line.event === 'mqtt-ingest')!.address)}`;
  return { dir, broker, upstream, a, b, listen };
}

test('SIGKILL of the forwarding primary mid-stream: the sibling forwards on from the replicated position, every message at least once and in order', async () => {
  const fast = { replication: { heartbeatMs: 250 }, takeover: { silenceMs: 3000 } };
  const { dir, broker, upstream, a, b, listen } = await setUp('e2e-forward-kill', { markEveryMessages: 200, markIntervalMs: 60_000 }, fast);
  const { received, client: sub } = await historian(upstream.url, 'up/#');
  const publisher = await mqtt.connectAsync(listen(a), { username: 'app', password: await token(a), reconnectPeriod: 0 });
  try {
    // The application keeps a window of 20 publishes in flight until the agent goes away under it.
    let sent = 0;
    const stream = (async () => {
      for (;;) {
        const window = Array.from({ length: 20 }, () => sent++).map((index) => publisher.publishAsync(`plant/line${index % 3}`, `m${index}`, { qos: 1 }));
        if (!(await Promise.all(window).then(() => true, () => false))) return;
      }
    })();
    // Killed once the forwarding is well under way and a position has reached the sibling.
    await waitFor('forwarding under way and a position on gw-b', async () => (received.length >= 600 && (await b.client.get(POSITION_KEY)) !== undefined ? true : undefined), 60_000);
    await a.process.kill('SIGKILL');
    const receivedAtKill = received.length;
    publisher.end(true);
    await stream;
    const mark = Number(new TextDecoder().decode((await b.client.get(POSITION_KEY))!));

    const started = await b.waitForEvent('forward-start', () => true, 30_000);
    assert.ok(Number(started.from) > 1, 'gw-b did not start from the beginning: the position was replicated');
    assert.ok(Number(started.from) >= mark + 1, 'gw-b starts after the position it holds');
    const log = await journaled(b);
    assert.ok(log.length < sent, 'the kill came while the application was publishing');
    assert.ok(receivedAtKill <= log.length, 'gw-a forwarded only what gw-b holds');
    const wanted = new Map(log.map((entry) => [`${entry.epoch}:${entry.seq}`, entry]));
    await waitFor('every journaled message upstream', () => (log.every((entry) => received.some((message) => message.seq === entry.seq && message.epoch === entry.epoch)) ? true : undefined), 60_000);

    const seen = new Set<string>();
    const firsts: number[] = [];
    let repeats = 0;
    let firstsAfterKill = 0;
    for (const [index, message] of received.entries()) {
      const id = `${message.epoch}:${message.seq}`;
      const entry = wanted.get(id);
      if (!entry) continue; // forwarded by gw-a but set aside by the takeover (never reached gw-b)
      assert.equal(message.topic, `up/${entry.topic}`);
      assert.equal(message.text, entry.text);
      if (seen.has(id)) {
        repeats++;
        assert.ok(message.dup, `the repeat of seq ${message.seq} carries lastgasp-dup`);
        continue;
      }
      seen.add(id);
      firsts.push(message.seq);
      if (index >= receivedAtKill) firstsAfterKill++;
    }
    assert.deepEqual(firsts, log.map((entry) => entry.seq), 'each message first arrives in seq order, none missing');
    assert.ok(firstsAfterKill > 0, 'gw-b forwarded messages gw-a had not');
    const status = (await b.client.status()).forward as { forwardDuplicates: number; running: boolean };
    assert.ok(status.running);
    assert.ok(status.forwardDuplicates > 0, 'gw-b marked what the old primary may have sent');
    assert.ok(repeats <= status.forwardDuplicates, 'every repeat was one gw-b marked');
  } finally {
    publisher.end(true);
    sub.end(true);
    await a.stop();
    await b.stop();
    await upstream.stop();
    await broker.stop();
    await dir.remove();
  }
});

test('kept properties go upstream: MQTT 5 properties from a batch, the retain flag from the listener, the expiry less the time waited', async () => {
  const { dir, broker, upstream, a, b, listen } = await setUp('e2e-forward-props', { after: 'flash', reconnectMs: 200 });
  // A persistent session (MQTT 5 session expiry) keeps what is forwarded while the upstream restarts.
  const { received, client: sub } = await historian(upstream.url, 'up/#', { clientId: 'historian-props', clean: false, properties: { sessionExpiryInterval: 600 }, reconnectPeriod: 200 });
  const text = new TextEncoder();
  let upstreamNow = upstream;
  try {
    const sent = await a.client.batch([
      {
        op: OP_MQTT,
        topic: 'plant/line2',
        data: text.encode('{"t":22}'),
        props: { payloadFormatIndicator: true, messageExpiryInterval: 3600, contentType: 'application/json', responseTopic: 'plant/replies', correlationData: new Uint8Array([1, 2, 3]), userProperties: { site: 'north', tags: ['a', 'b'] } },
      },
      { op: OP_MQTT, topic: 'plant/line3', data: text.encode('bare') },
    ]);
    await waitFor('both upstream', () => (received.length >= 2 ? true : undefined), 20_000);
    const [rich, bare] = received;
    assert.equal(rich!.topic, 'up/plant/line2');
    assert.equal(rich!.seq, sent.firstSeq);
    assert.equal(rich!.props.contentType, 'application/json');
    assert.equal(rich!.props.payloadFormatIndicator, true);
    assert.equal(rich!.props.responseTopic, 'plant/replies');
    assert.deepEqual([...(rich!.props.correlationData as Buffer)], [1, 2, 3]);
    const user = rich!.props.userProperties as Record<string, unknown>;
    assert.equal(user.site, 'north');
    assert.deepEqual(user.tags, ['a', 'b']);
    assert.ok((rich!.props.messageExpiryInterval as number) <= 3600 && (rich!.props.messageExpiryInterval as number) > 3500);
    assert.equal(bare!.text, 'bare');
    assert.equal(bare!.props.contentType, undefined);
    assert.ok(!rich!.dup && !bare!.dup);

    const app = await mqtt.connectAsync(listen(a), { username: 'app', password: await token(a), reconnectPeriod: 0 });
    await app.publishAsync('plant/status', 'running', { qos: 1, retain: true });
    app.end(true);
    await waitFor('the retained message upstream', () => (received.some((message) => message.topic === 'up/plant/status') ? true : undefined), 20_000);
    const late = await historian(upstreamNow.url, 'up/plant/status');
    const retained = await waitFor('the retained message for a late subscriber', () => late.received[0], 20_000);
    late.client.end(true);
    assert.equal(retained.text, 'running');
    assert.equal(retained.retain, true, 'the retain flag went upstream with it');

    // The upstream goes away; a message that may live 1 s waits longer than that and is not forwarded.
    await upstreamNow.stop();
    await a.client.batch([
      { op: OP_MQTT, topic: 'plant/line4', data: text.encode('short-lived'), props: { messageExpiryInterval: 1 } },
      { op: OP_MQTT, topic: 'plant/line4', data: text.encode('long-lived'), props: { messageExpiryInterval: 3600 } },
    ]);
    await new Promise((resolve) => setTimeout(resolve, 2500));
    upstreamNow = await upstreamNow.restart();
    const longLived = await waitFor('the long-lived message after the upstream came back', () => received.find((message) => message.text === 'long-lived'), 30_000);
    assert.ok((longLived.props.messageExpiryInterval as number) <= 3598, 'its expiry went down by the time it waited');
    assert.ok(!received.some((message) => message.text === 'short-lived'), 'the expired message was not forwarded');
    const status = (await a.client.status()).forward as { forwardExpired: number; forwardReconnects: number };
    assert.equal(status.forwardExpired, 1);
    assert.ok(status.forwardReconnects >= 1);
  } finally {
    sub.end(true);
    await a.stop();
    await b.stop();
    await upstreamNow.stop();
    await broker.stop();
    await dir.remove();
  }
});
