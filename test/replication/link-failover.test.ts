// The broker link when a broker holds the connection open and answers nothing (issue 15): real mosquitto
// processes, one SIGSTOPped as a hung node would be. A link connected but not acknowledging counts as down
// after its deadline and says so in its stats and log; during a flush a link over a list of node
// addresses races the others, switches to the first that answers, and fails what was in flight on the
// hung node so that the publisher sends it again there.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import mqtt from 'mqtt';
import { BrokerLink } from '../../agent/replication/index.ts';
import { isLastgaspError, systemClock } from '../../agent/util/index.ts';
import { startMosquitto, startMosquittoSet } from '../support/mosquitto.ts';
import { killAll } from '../support/processes.ts';
import { tempDir, waitFor } from '../support/ports.ts';
import { captureLogger, type LogLine } from './support/nodes.ts';

after(killAll);

const TOPIC = 'lastgasp/v1/failover/log/gw-a';

function linkTo(urls: string[], lines: LogLine[]): BrokerLink {
  return new BrokerLink({
    urls,
    clientId: 'lastgasp-failover-test',
    protocol: 'auto',
    keepaliveS: 30,
    onMessage: async () => undefined,
    logger: captureLogger(lines, 'link'),
    clock: systemClock,
  });
}

test('a broker that stops acknowledging: the link counts as down after its deadline, and up again at the next PUBACK', async () => {
  const dir = await tempDir('link-stall');
  const broker = await startMosquitto(dir.path);
  const lines: LogLine[] = [];
  const link = linkTo([broker.url], lines);
  try {
    link.start();
    await waitFor('the link to come up', () => link.info);
    await link.publish(TOPIC, new Uint8Array([1]), { qos: 1, retain: false });
    assert.equal(link.stats().state, 'up');
    broker.suspend();
    // A flush of 2 s from now: a publish unacknowledged for a slice of it (250 ms) marks the link stalled.
    link.setFailoverDeadline(performance.now() + 2000);
    const held = link.publish(TOPIC, new Uint8Array([2]), { qos: 1, retain: false });
    await waitFor('the link to count as stalled', () => (link.stats().state === 'stalled' ? true : undefined));
    assert.equal(link.connected, false, 'a stalled link counts as down');
    const stats = link.stats();
    assert.equal(stats.stalled, true);
    assert.ok((stats.oldestUnackedMs as number) > 0);
    assert.ok(lines.some((line) => line.msg === 'broker connected but not acknowledging; counted as down'));
    assert.match(String((stats.causes as Array<{ cause: string }>).at(-1)?.cause), /no acknowledgement/);
    const ups: Array<{ sessionPresent: boolean }> = [];
    link.on('up', (info) => void ups.push(info));
    broker.resume();
    await held;
    await waitFor('the link to count as up again', () => (link.stats().state === 'up' ? true : undefined));
    assert.equal(link.connected, true);
    assert.ok(lines.some((line) => line.msg === 'broker acknowledging again'));
    // Its first connection opened a fresh session, but recovering on the same connection loses nothing: the
    // link must not tell a standby to ask for everything again.
    assert.equal(link.info?.sessionPresent, false);
    assert.deepEqual(ups.map((info) => info.sessionPresent), [true]);
  } finally {
    broker.resume();
    await link.stop();
    await broker.stop();
    await dir.remove();
  }
});

test('during a flush, a link over two nodes leaves the one that holds its publishes for the one that answers', async () => {
  const dir = await tempDir('link-race');
  const set = await startMosquittoSet(dir.path, 2);
  const [first, second] = set.brokers as [typeof set.brokers[0], typeof set.brokers[0]];
  const lines: LogLine[] = [];
  const link = linkTo([first.url, second.url], lines);
  const watcher = mqtt.connect(second.url, { clientId: 'failover-watcher', reconnectPeriod: 0 });
  try {
    const received: string[] = [];
    await new Promise((resolve) => watcher.once('connect', resolve));
    await watcher.subscribeAsync(TOPIC, { qos: 1 });
    watcher.on('message', (_topic, payload) => received.push(payload.toString()));
    link.start();
    await link.subscribe(['lastgasp/v1/failover/ack/+'], 1);
    await waitFor('the link to come up on the first node', () => link.info);
    assert.equal(link.info!.server, `127.0.0.1:${new URL(first.url).port}`);
    first.suspend();
    link.setFailoverDeadline(performance.now() + 4000);
    const held = link.publish(TOPIC, new TextEncoder().encode('held'), { qos: 1, retain: false }).then(
      () => 'acknowledged',
      (error: unknown) => (isLastgaspError(error) ? error.code : 'other'),
    );
    const failover = await waitFor('the switch to the second node', () => lines.find((line) => line.event === 'broker-failover'));
    assert.equal(failover.to, `127.0.0.1:${new URL(second.url).port}`);
    assert.equal(await held, 'BROKER_UNAVAILABLE', 'what was in flight on the hung node is failed, for the publisher to send again');
    await waitFor('the link to be up on the second node', () => (link.connected ? true : undefined));
    await link.publish(TOPIC, new TextEncoder().encode('again'), { qos: 1, retain: false });
    await waitFor('the resent batch at the second node', () => (received.includes('again') ? true : undefined));
    const stats = link.stats();
    assert.equal(stats.failovers, 1);
    assert.equal(stats.state, 'up');
    assert.ok((stats.races as number) >= 1);
  } finally {
    first.resume();
    watcher.end(true);
    await link.stop();
    await set.stop();
    await dir.remove();
  }
});
