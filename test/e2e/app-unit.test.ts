// The application as a systemd unit (config app.unit). This container has no user systemd ("systemctl
// --user" cannot reach a bus), so a fake systemctl first on PATH records every call (with the node that made
// it, read from its parent's command line) and keeps each node's unit state in a file; everything else is
// real: a mosquitto, two agent processes, a TCP proxy that cuts gw-a from the broker.
// - gw-a starts the unit as primary; cut off, it loses its lease and runs "systemctl stop" before standing
//   down; gw-b takes over and runs "systemctl start", with its environment in <dataDir>/app.env;
// - a unit found failed while its node leads is started again, and the exit is counted.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { startMosquitto } from '../support/mosquitto.ts';
import { startPair } from '../support/agents.ts';
import { killAll } from '../support/processes.ts';
import { startTcpProxy } from '../support/tcp-proxy.ts';
import { tempDir, waitFor } from '../support/ports.ts';

after(killAll);

const FAKE_SYSTEMCTL = `#!/bin/sh
# The calling agent's node: its config file (gw-a.json) is on its command line.
node=$(tr '\\0' '\\n' < /proc/$PPID/cmdline | grep '\\.json$' | head -n 1 | xargs basename | sed 's/\\.json$//')
dir=$(dirname "$0")
echo "$node $*" >> "$dir/calls.log"
[ "$1" = "--user" ] && shift
case "$1" in
  start) echo active > "$dir/state-$node" ;;
  stop|kill) echo inactive > "$dir/state-$node" ;;
  is-active)
    state=$(cat "$dir/state-$node" 2>/dev/null || echo inactive)
    echo "$state"
    [ "$state" = active ] ;;
esac
`;

async function calls(bin: string): Promise<string[]> {
  return (await readFile(join(bin, 'calls.log'), 'utf8').catch(() => '')).split('\n').filter((line) => line !== '');
}

test('app.unit: started on the primary, stopped before it stands down, started on the sibling; a failed unit is started again', async () => {
  const dir = await tempDir('e2e-app-unit');
  const bin = join(dir.path, 'bin');
  await mkdir(bin);
  await writeFile(join(bin, 'systemctl'), FAKE_SYSTEMCTL);
  await chmod(join(bin, 'systemctl'), 0o755);
  process.env.PATH = `${bin}:${process.env.PATH}`;
  const broker = await startMosquitto(dir.path);
  const proxyA = await startTcpProxy({ port: broker.port });
  const fast = { replication: { heartbeatMs: 250 }, takeover: { silenceMs: 3000 } };
  const { a, b } = await startPair(dir.path, 'appunit', broker.url, {
    extra: { ...fast, app: { unit: 'collector.service', user: true, pollMs: 200, restartDelayMs: 100, stopTimeoutMs: 3000 } },
    extraA: { replication: { brokers: [{ url: proxyA.url('mqtt') }], heartbeatMs: 250 } },
  });
  try {
    await waitFor('gw-a to start the unit', async () => ((await calls(bin)).includes('gw-a --user start collector.service') ? true : undefined), 20_000);
    await waitFor('gw-a to poll it', async () => ((await calls(bin)).includes('gw-a --user is-active collector.service') ? true : undefined), 20_000);
    // The standby never starts it (a "stop" from it is fine: a standby makes sure its own unit is not running,
    // as after a restart from a life in which it led).
    assert.ok(!(await calls(bin)).some((line) => line.startsWith('gw-b ') && line.includes(' start ')), `the standby does not start the unit: ${(await calls(bin)).join('; ')}`);

    proxyA.pause();
    await a.waitForEvent('lease-lost', () => true, 20_000);
    await a.waitForEvent('app-stop', () => true, 20_000);
    await b.waitForEvent('takeover', () => true, 20_000);
    await waitFor('gw-b to start the unit', async () => ((await calls(bin)).includes('gw-b --user start collector.service') ? true : undefined), 20_000);
    const log = await calls(bin);
    assert.ok(log.indexOf('gw-a --user stop collector.service') >= 0, 'gw-a stopped the unit');
    assert.ok(log.indexOf('gw-a --user stop collector.service') < log.indexOf('gw-b --user start collector.service'), 'gw-a stopped it before gw-b started it');
    const env = await readFile(join(dir.path, 'gw-b', 'app.env'), 'utf8');
    assert.match(env, /^LASTGASP_NODE=gw-b$/m);
    assert.match(env, /^LASTGASP_EPOCH=([2-9]|\d\d+)$/m, 'the new epoch');
    assert.match(env, /^LASTGASP_API=127\.0\.0\.1:\d+$/m);

    // The unit dies on gw-b (systemd did not restart it): gw-b finds it failed and starts it again.
    await writeFile(join(bin, 'state-gw-b'), 'failed\n');
    await b.waitForEvent('app-exit', (line) => line.state === 'failed', 20_000);
    await waitFor('gw-b to start the unit again', async () => ((await calls(bin)).filter((line) => line === 'gw-b --user start collector.service').length >= 2 ? true : undefined), 20_000);
    const app = (await b.client.status()).app as { exits: number; restarts: number; unit: string };
    assert.equal(app.unit, 'collector.service');
    assert.ok(app.exits >= 1 && app.restarts >= 1);

    await proxyA.restore();
    await a.waitForEvent('role', (line) => line.role === 'standby', 20_000);
    const eventsA = a.events();
    assert.ok(eventsA.findIndex((line) => line.event === 'app-stop') < eventsA.findIndex((line) => line.event === 'role' && line.role === 'standby'), 'gw-a stopped the unit before it stood by');
    assert.ok(!(await calls(bin)).slice(log.length).some((line) => line === 'gw-a --user start collector.service'), 'gw-a, a standby now, did not start it again');
  } finally {
    await a.stop();
    await b.stop();
    await proxyA.close();
    await broker.stop();
    await dir.remove();
  }
});
