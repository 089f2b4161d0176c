// The drivers and transports run on the clock they are given (issue 13): with a test clock that only moves
// when told, a polled driver polls exactly every pollMs, gives an answer exactly answerTimeoutMs, declares a
// silent device down on the third unanswered poll, and stamps statuses with the clock's wall time; the
// reconnecting transport retries after 100, 200, 400 ... ms up to 2 s, and starts again from 100 ms after a
// connection that stayed up 5 s. The devices are real: the simulator on TCP, a TCP server that never
// answers, a loopback port that refuses and then accepts.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server, type Socket } from 'node:net';
import { createPowerSource, createTransport, JbdPowerSource, ReconnectingTransport, tcpConnector, type Connector, type LinkState } from '../../firmware-bridge/index.ts';
import { FakeClock } from '../support/fake-clock.ts';
import { killAll } from '../support/processes.ts';
import { freePort, waitFor } from '../support/ports.ts';
import { RecordingListener, startSim } from './helpers.ts';

after(killAll);

/** Let every promise callback and pending I/O callback run (the code under test awaits between timer steps). */
const flush = () => new Promise<void>((resolve) => setImmediate(resolve));

async function listen(server: Server, port = 0): Promise<number> {
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return (server.address() as { port: number }).port;
}

test('a polled driver polls every pollMs of its clock and stamps statuses with the clock\'s wall time', async () => {
  const sim = await startSim(['--protocol', 'jbd', '--tcp', '127.0.0.1:0']);
  const clock = new FakeClock();
  const pollMs = 1000;
  const listener = new RecordingListener();
  const [host, port] = (sim.listening.tcp as string).split(':') as [string, string];
  const source = createPowerSource({ kind: 'jbd', transport: { type: 'tcp', host, port: Number(port) }, pollMs }, { clock });
  try {
    await source.start(listener);
    await waitFor('the TCP connection', () => (source.counters()['link.connects'] === 1 ? true : undefined));
    assert.equal(source.counters().polls, 0, 'the first poll waits for the clock');
    clock.advance(0);
    const first = await listener.waitForStatus('the first answer', () => true);
    assert.equal(first.atMs, clock.nowMs(), 'atMs is the injected clock\'s wall time');
    assert.equal(listener.linkState, 'up');
    clock.advance(pollMs - 1);
    await flush();
    assert.equal(source.counters().polls, 1, 'no second poll before pollMs has passed');
    clock.advance(1);
    await waitFor('the second status', () => listener.statuses[1]);
    assert.equal(source.counters().polls, 2);
    assert.equal(listener.statuses[1]!.atMs - first.atMs, pollMs);
  } finally {
    await source.stop();
    await sim.stop();
  }
});

test('a device that never answers: each poll times out after answerTimeoutMs, and the third in a row takes the link down', async () => {
  const received: Buffer[] = [];
  const sockets: Socket[] = [];
  const server = createServer((socket) => {
    sockets.push(socket);
    socket.on('data', (chunk) => received.push(chunk));
  });
  const port = await listen(server);
  const clock = new FakeClock();
  const pollMs = 1000;
  const answerTimeoutMs = 300;
  const listener = new RecordingListener();
  const transport = createTransport({ type: 'tcp', host: '127.0.0.1', port }, { defaultBaudRate: 0, clock });
  const source = new JbdPowerSource(transport, { pollMs, answerTimeoutMs, acDischargeThresholdMa: 100, clock });
  try {
    await source.start(listener);
    await waitFor('the TCP connection', () => (source.counters()['link.connects'] === 1 ? true : undefined));
    for (let poll = 1; poll <= 3; poll++) {
      clock.advance(poll === 1 ? 0 : pollMs);
      await flush();
      await waitFor(`request ${poll} at the device`, () => (received.length >= poll ? true : undefined));
      clock.advance(answerTimeoutMs - 1);
      await flush();
      assert.equal(source.counters()['poll.failures'] ?? 0, poll - 1, `poll ${poll} still waits 1 ms before its timeout`);
      clock.advance(1);
      await flush();
      assert.equal(source.counters()['poll.failures'], poll, `poll ${poll} timed out`);
      assert.equal(listener.linkState, poll < 3 ? 'connecting' : 'down');
    }
    assert.deepEqual(listener.links.at(-1), { state: 'down', reason: 'no valid answer to 3 polls in a row' });
  } finally {
    await source.stop();
    for (const socket of sockets) socket.destroy();
    server.close();
  }
});

test('the reconnecting transport backs off 100, 200, 400 ... 2000 ms on its clock, and from 100 ms again after a stable connection', async () => {
  const port = await freePort();
  const clock = new FakeClock();
  const attemptsAtMs: number[] = [];
  const inner = tcpConnector('127.0.0.1', port, clock);
  const connector: Connector = (events) => {
    attemptsAtMs.push(clock.monotonicMs());
    return inner(events);
  };
  const states: Array<{ state: LinkState; reason?: string }> = [];
  const transport = new ReconnectingTransport(`127.0.0.1:${port}`, connector, {}, clock);
  const failures = () => transport.counters()['link.open-failures'] ?? 0;
  const sockets: Socket[] = [];
  const server = createServer((socket) => sockets.push(socket));
  /** Move the clock to 1 ms before the next attempt (none may start), then to it (one starts at once). */
  const expectAttemptAfter = (delayMs: number): void => {
    const before = attemptsAtMs.length;
    clock.advance(delayMs - 1);
    assert.equal(attemptsAtMs.length, before, `no attempt before ${delayMs} ms`);
    clock.advance(1);
    assert.equal(attemptsAtMs.length, before + 1, `an attempt at ${delayMs} ms`);
  };
  try {
    transport.start({ data: () => undefined, state: (state, reason) => states.push({ state, reason }) });
    await waitFor('the first refusal', () => (failures() === 1 ? true : undefined));
    for (const [index, delayMs] of [100, 200, 400, 800, 1600, 2000, 2000].entries()) {
      expectAttemptAfter(delayMs);
      await waitFor(`refusal ${index + 2}`, () => (failures() === index + 2 ? true : undefined));
    }
    assert.deepEqual(attemptsAtMs.slice(1).map((atMs, index) => atMs - attemptsAtMs[index]!), [100, 200, 400, 800, 1600, 2000, 2000]);
    assert.deepEqual(states.map((entry) => entry.state), ['connecting', 'down'], 'retries while down stay silent');
    assert.match(states[1]!.reason ?? '', /ECONNREFUSED/);

    await listen(server, port);
    expectAttemptAfter(2000);
    await waitFor('link up', () => (transport.state === 'up' ? true : undefined));
    clock.advance(5000);
    sockets[0]!.destroy();
    await waitFor('link down after a stable connection', () => (transport.state === 'down' ? true : undefined));
    expectAttemptAfter(100);
    await waitFor('link up again', () => (transport.state === 'up' ? true : undefined));
    await waitFor('the second accepted connection', () => sockets[1]);
    sockets[1]!.destroy();
    await waitFor('link down after a short connection', () => (transport.state === 'down' ? true : undefined));
    expectAttemptAfter(200);
    await waitFor('link up a third time', () => (transport.state === 'up' ? true : undefined));
  } finally {
    await transport.stop();
    for (const socket of sockets) socket.destroy();
    server.close();
  }
});
