// The broker link's timings and availability's stop, each pinned at an exact instant of a clock the test
// moves: the watch that ticks every 100 ms, the stall deadline outside a flush (5 s with no acknowledgement)
// and inside one (an eighth of the budget left), the CONNECT bound the link gives MQTT.js before, while and
// after it is down, the stop's grace for PUBACKs, and availability's wait for `offline` on a hung broker.
// The brokers are real mosquitto processes; a broker that answers nothing is one stopped with SIGSTOP, a
// node that went away is a proxy that cut its connections. Only the clock is the test's. (MQTT.js's own
// reconnect period runs on its global timers, which no clock reaches: the reconnects here take real time.)
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { Availability, BrokerLink } from '../../agent/replication/index.ts';
import { startMosquitto, type Mosquitto } from '../support/mosquitto.ts';
import { killAll } from '../support/processes.ts';
import { tempDir, waitFor } from '../support/ports.ts';
import { startTcpProxy } from '../support/tcp-proxy.ts';
import { FakeClock } from '../support/fake-clock.ts';
import { captureLogger, type LogLine } from './support/nodes.ts';

after(killAll);

const TOPIC = 'lastgasp/v1/line1/log/gw-a';
const PAYLOAD = new TextEncoder().encode('entry');

function linkTo(urls: string[], clock: FakeClock, lines: LogLine[]): BrokerLink {
  // A keepalive far beyond the test's length: MQTT.js's pings run on real timers and must not end a
  // connection that the test keeps silent on purpose.
  return new BrokerLink({ urls, clientId: 'lastgasp-link-timing', protocol: 'auto', keepaliveS: 600, onMessage: async () => undefined, logger: captureLogger(lines, 'link'), clock });
}

/** Let the promise chains that a timer of the fake clock started run to their end. */
async function turns(count = 3): Promise<void> {
  for (let index = 0; index < count; index++) await new Promise((resolve) => setImmediate(resolve));
}

/** A broker, a link to it started at the clock's current instant and up, and the link's `down` causes. */
async function linked(prefix: string, clock: FakeClock): Promise<{ broker: Mosquitto; link: BrokerLink; downs: string[]; ups: boolean[]; done: () => Promise<void> }> {
  const dir = await tempDir(prefix);
  const broker = await startMosquitto(dir.path);
  const link = linkTo([broker.url], clock, []);
  const downs: string[] = [];
  const ups: boolean[] = [];
  link.on('down', (why) => downs.push(why));
  link.on('up', (info) => ups.push(info.sessionPresent));
  link.start();
  await waitFor('the link to come up', () => link.info);
  const done = async () => {
    broker.resume();
    const stopped = link.stop();
    clock.advance(2000);
    await stopped;
    await broker.stop();
    await dir.remove();
  };
  return { broker, link, downs, ups, done };
}

/** Publish while the broker answers nothing, and wait (real time) until the PUBLISH is on the wire. */
async function publishUnanswered(link: BrokerLink): Promise<void> {
  void link.publish(TOPIC, PAYLOAD, { qos: 1, retain: false }).catch(() => undefined);
  await waitFor('the publish on the wire', () => ((link.stats().inflightPeak as number) >= 1 ? true : undefined));
}

test('outside a flush a link counts as down at the first watch tick 5 s after its oldest unacknowledged publish', async () => {
  const clock = new FakeClock();
  const startedMs = clock.monotonicMs();
  const { broker, link, downs, ups, done } = await linked('link-stall', clock);
  try {
    // Sent 50 ms after the start, so the deadline (5,050 ms) falls between two ticks of the watch (every
    // 100 ms from the start): the stall is seen at the tick of 5,100 ms, not at the deadline itself.
    clock.advance(50);
    broker.suspend();
    await publishUnanswered(link);
    clock.advance(startedMs + 5099 - clock.monotonicMs());
    assert.equal(link.stats().stalled, false, 'the tick of 5,000 ms came before the deadline');
    assert.deepEqual(downs, []);
    clock.advance(1);
    assert.equal(link.stats().stalled, true, 'the tick of 5,100 ms saw the publish 5,050 ms old');
    assert.equal(link.connected, false, 'a stalled link counts as down');
    assert.deepEqual(downs, ['stalled']);
    assert.equal(link.stats().stalls, 1);

    ups.length = 0;
    broker.resume();
    await waitFor('the PUBACK after the broker resumed', () => (ups.length > 0 ? true : undefined));
    assert.deepEqual(ups, [true], 'acknowledging again, on the same session');
    assert.equal(link.connected, true);
  } finally {
    await done();
  }
});

test('during a flush the stall deadline is an eighth of the budget that remains', async () => {
  const clock = new FakeClock();
  const startedMs = clock.monotonicMs();
  const { broker, link, downs, done } = await linked('link-flush-stall', clock);
  try {
    broker.suspend();
    await publishUnanswered(link);
    // A 10 s budget from the instant of the publish: at the tick of t ms the deadline is (10,000 - t) / 8,
    // which t first reaches at the tick of 1,200 ms (at 1,100 ms it is 1,112.5 ms).
    link.setFailoverDeadline(startedMs + 10_000);
    clock.advance(1199);
    assert.equal(link.stats().stalled, false);
    clock.advance(1);
    assert.equal(link.stats().stalled, true, 'stalled at 1,200 ms, long before the 5 s outside a flush');
    assert.deepEqual(downs, ['stalled']);
  } finally {
    link.setFailoverDeadline(undefined);
    await done();
  }
});

test('a clean stop waits 2 s of the clock for the PUBACKs of what is in flight, then closes anyway', async () => {
  const clock = new FakeClock();
  const dir = await tempDir('link-stop');
  const broker = await startMosquitto(dir.path);
  const link = linkTo([broker.url], clock, []);
  try {
    link.start();
    await waitFor('the link to come up', () => link.info);
    broker.suspend();
    await publishUnanswered(link);
    let stopped = false;
    void link.stop().then(() => (stopped = true));
    clock.advance(1999);
    await turns();
    assert.equal(stopped, false, 'still waiting for the PUBACK');
    clock.advance(1);
    // Real time, bounded: a stop still waiting at 2,000 ms of the clock fails here instead of hanging.
    await waitFor('the stop to end at 2,000 ms', () => (stopped ? true : undefined), 2000);
  } finally {
    broker.resume();
    await broker.stop();
    await dir.remove();
  }
});

test('in cluster mode a node gets 5 s to answer a CONNECT while the link is up, 2 s once it is down, a slice during a flush', async () => {
  const clock = new FakeClock();
  const dir = await tempDir('link-connect');
  const broker = await startMosquitto(dir.path);
  const first = await startTcpProxy({ port: broker.port });
  const second = await startTcpProxy({ port: broker.port });
  const link = linkTo([first.url('mqtt'), second.url('mqtt')], clock, []);
  const downs: string[] = [];
  link.on('down', (why) => downs.push(why));
  try {
    link.start();
    await waitFor('the link to come up', () => link.info);
    clock.advance(100);
    assert.equal(link.stats().connectTimeoutMs, 5000);

    await first.cut();
    await waitFor('the link to notice the cut', () => (downs.length > 0 ? true : undefined));
    assert.deepEqual(downs, ['closed']);
    clock.advance(100);
    assert.equal(link.stats().connectTimeoutMs, 2000, 'once down, a node holding its CONNECT costs at most 2 s');

    await waitFor('the link to come up on the other node', () => link.info);
    clock.advance(100);
    assert.equal(link.stats().connectTimeoutMs, 5000, 'up again: the usual bound');

    // A 10 s budget: the slice is 1,250 ms, and the watch applies it at once.
    link.setFailoverDeadline(clock.monotonicMs() + 10_000);
    assert.equal(link.stats().connectTimeoutMs, 1250);
    link.setFailoverDeadline(undefined);
    clock.advance(100);
    assert.equal(link.stats().connectTimeoutMs, 5000);
  } finally {
    const stopping = link.stop();
    clock.advance(2000);
    await stopping;
    await first.close();
    await second.close();
    await broker.stop();
    await dir.remove();
  }
});

test('availability waits 2 s of the clock for `offline` on a broker that answers nothing, then lets the stop go on', async () => {
  const clock = new FakeClock();
  const { broker, link, done } = await linked('availability-stop', clock);
  const lines: LogLine[] = [];
  const availability = new Availability({
    brokers: [[broker.url]],
    topic: 'lastgasp/v1/line1/gw-a/availability',
    clientId: 'unused-with-shared-links',
    protocol: 'auto',
    keepaliveS: 600,
    logger: captureLogger(lines, 'availability'),
    clock,
    shared: [link],
  });
  try {
    availability.start();
    broker.suspend();
    let stopped = false;
    void availability.stop().then(() => (stopped = true));
    await waitFor('`offline` on the wire', () => ((link.stats().inflight as number) >= 1 ? true : undefined));
    clock.advance(1999);
    await turns();
    assert.equal(stopped, false, 'still waiting for the broker to take `offline`');
    clock.advance(1);
    await waitFor('the stop to go on at 2,000 ms', () => (stopped ? true : undefined), 2000);
  } finally {
    await done();
  }
});
