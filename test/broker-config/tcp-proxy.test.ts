// test/support/tcp-proxy.ts between MQTT.js and a real mosquitto: it forwards, cuts (reset and refuse),
// pauses (a silent path: nothing forwarded, nothing closed) and restores, which is what the fault tests of
// issue 5 build on.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { startMosquitto, type Mosquitto } from '../support/mosquitto.ts';
import { killAll } from '../support/processes.ts';
import { tempDir, waitFor } from '../support/ports.ts';
import { startTcpProxy, type TcpProxy } from '../support/tcp-proxy.ts';
import { closedWith, connectClient } from './clients.ts';

const TOPIC = 'lastgasp/v1/line1/log/gw-a';
const SESSION = { protocolVersion: 5, clean: false, properties: { sessionExpiryInterval: 3600 } } as const;

let dir: { path: string; remove: () => Promise<void> };
let broker: Mosquitto;

before(async () => {
  dir = await tempDir('proxy');
  broker = await startMosquitto(dir.path);
});

after(async () => {
  await broker?.stop();
  await dir?.remove();
  await killAll();
});

async function withProxy(body: (proxy: TcpProxy) => Promise<void>): Promise<void> {
  const proxy = await startTcpProxy({ port: broker.port });
  try {
    await body(proxy);
  } finally {
    await proxy.close();
  }
}

/** Resolve with the error code of a plain TCP connect to `port` (undefined if it connected). */
function tcpConnectError(port: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(undefined);
    });
    socket.once('error', (error: NodeJS.ErrnoException) => resolve(error.code));
  });
}

test('pass: MQTT through the proxy works, and its counters see the traffic', async () => {
  await withProxy(async (proxy) => {
    const client = await connectClient(proxy.url('mqtt'), { clientId: 'through-proxy', protocolVersion: 5 });
    await client.client.subscribeAsync(TOPIC, { qos: 1 });
    await client.client.publishAsync(TOPIC, 'hello', { qos: 1 });
    await client.waitForCount(1);
    assert.deepEqual(client.texts(), ['hello']);
    assert.equal(proxy.mode, 'pass');
    assert.equal(proxy.connections, 1);
    assert.ok(proxy.bytesUp > 0 && proxy.bytesDown > 0);
    await client.end();
    await waitFor('the proxy to see the close', () => (proxy.connections === 0 ? true : undefined));
  });
});

test('cut: open connections are reset, new ones refused; restore: the same address works again', async () => {
  await withProxy(async (proxy) => {
    const sibling = await connectClient(proxy.url('mqtt'), { clientId: 'sibling-cut', ...SESSION });
    await sibling.client.subscribeAsync(TOPIC, { qos: 1 });
    const closed = closedWith(sibling.client);
    await proxy.cut();
    await closed;
    assert.equal(proxy.mode, 'cut');
    assert.equal(await tcpConnectError(proxy.port), 'ECONNREFUSED');
    // The broker is still there: what is published meanwhile waits in the sibling's session.
    const gateway = await connectClient(broker.url, { clientId: 'gw-a-cut', protocolVersion: 5 });
    await gateway.client.publishAsync(TOPIC, 'during-cut', { qos: 1 });
    await proxy.restore();
    assert.equal(await tcpConnectError(proxy.port), undefined);
    const resumed = await connectClient(proxy.url('mqtt'), { clientId: 'sibling-cut', ...SESSION });
    await resumed.waitForCount(1);
    assert.deepEqual(resumed.texts(), ['during-cut']);
    await Promise.all([resumed.end(), gateway.end(), sibling.end()]);
  });
});

test('pause: nothing is forwarded and nothing closes; restore delivers what was held back', async () => {
  await withProxy(async (proxy) => {
    const gateway = await connectClient(proxy.url('mqtt'), { clientId: 'gw-a-pause', protocolVersion: 5 });
    const watcher = await connectClient(broker.url, { clientId: 'watcher-pause', protocolVersion: 5 });
    await watcher.client.subscribeAsync(TOPIC, { qos: 1 });
    proxy.pause();
    let acked = false;
    const published = gateway.client.publishAsync(TOPIC, 'held', { qos: 1 }).then(() => (acked = true));
    // The publish has left MQTT.js; a round trip on the direct path proves the broker got nothing meanwhile.
    await waitFor('the publish to be written to the proxy', () => (gateway.client.outgoing && Object.keys(gateway.client.outgoing).length > 0 ? true : undefined));
    await watcher.client.publishAsync('lastgasp/v1/ping', 'ping', { qos: 1 });
    assert.deepEqual(watcher.texts(), []);
    assert.equal(acked, false);
    assert.equal(proxy.connections, 1, 'the paused connection stays open');
    // A new connection during the pause is accepted but answered by nobody.
    const late = connectClient(proxy.url('mqtt'), { clientId: 'late-pause', protocolVersion: 5 });
    await waitFor('the late connection at the proxy', () => (proxy.connections === 2 ? true : undefined));
    await proxy.restore();
    await published;
    await watcher.waitForCount(1);
    assert.deepEqual(watcher.texts(), ['held']);
    const lateClient = await late;
    assert.equal(lateClient.client.connected, true);
    await Promise.all([gateway.end(), watcher.end(), lateClient.end()]);
  });
});

test('cut while paused resets the held connections too, and restore listens again', async () => {
  await withProxy(async (proxy) => {
    const client = await connectClient(proxy.url('mqtt'), { clientId: 'paused-then-cut', protocolVersion: 5 });
    proxy.pause();
    const closed = closedWith(client.client);
    await proxy.cut();
    await closed;
    assert.equal(proxy.connections, 0);
    await proxy.restore();
    const again = await connectClient(proxy.url('mqtt'), { clientId: 'paused-then-cut', protocolVersion: 5 });
    await again.client.publishAsync(TOPIC, 'after', { qos: 1 });
    await Promise.all([again.end(), client.end()]);
  });
});
