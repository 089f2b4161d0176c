// The agent under a service manager, seen from the manager's side: a real datagram socket given as
// NOTIFY_SOCKET (bound by python3, as Node has no Unix datagram sockets) receives what a unit with
// Type=notify, WatchdogSec= and NotifyAccess=all would: READY=1 once the API serves, STATUS= lines,
// WATCHDOG=1 at half the WATCHDOG_USEC period, RELOADING=1 then READY=1 around a SIGHUP, STOPPING=1 on
// SIGTERM. The SIGHUP changes the log level and a power threshold in the same process (same pid, and debug
// lines appear that did not before), and names a changed broker key as needing a restart.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { startMosquitto } from '../support/mosquitto.ts';
import { startBmsSim } from '../support/bms-sim.ts';
import { startAgent, writeAgentConfig } from '../support/agents.ts';
import { killAll, startProcess, type Managed } from '../support/processes.ts';
import { tempDir, waitFor } from '../support/ports.ts';

after(killAll);

/** One JSON line per datagram: the text systemd would parse, NAME=value lines. */
const RECEIVER = `
import json, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print(json.dumps({"bound": sys.argv[1]}), flush=True)
while True:
    data = s.recv(65536)
    print(json.dumps({"message": data.decode()}), flush=True)
`;

async function startReceiver(path: string): Promise<{ process: Managed; messages: () => Array<Record<string, string>> }> {
  const process = startProcess('notify-socket', 'python3', ['-c', RECEIVER, path]);
  await process.waitForOutput(/"bound"/);
  const messages = () =>
    process
      .jsonLines()
      .filter((line) => typeof line.message === 'string')
      .map((line) => Object.fromEntries((line.message as string).split('\n').filter(Boolean).map((field) => [field.slice(0, field.indexOf('=')), field.slice(field.indexOf('=') + 1)])))
      // systemd-notify's barrier (BARRIER=1 with a descriptor) is how it waits for the manager, not a report.
      .filter((fields) => fields.BARRIER === undefined);
  return { process, messages };
}

test('systemd notify protocol: READY after serving, STATUS, WATCHDOG, RELOADING around SIGHUP, STOPPING', async () => {
  const dir = await tempDir('sd-notify');
  const broker = await startMosquitto(dir.path);
  const sim = await startBmsSim(['--protocol', 'bridge', '--tcp', '127.0.0.1:0']);
  const simAt = (await sim.waitForLine((line) => line.event === 'listening', 'listening')).tcp as string;
  const receiver = await startReceiver(join(dir.path, 'notify.sock'));
  const base = {
    group: 'sd',
    role: 'primary',
    siblings: ['gw-b'],
    replication: { brokers: [{ url: broker.url }], keepaliveS: 30 },
    log: { snapshotEveryEntries: 5 },
    power: { source: { kind: 'bridge', transport: { type: 'tcp', host: '127.0.0.1', port: Number(simAt.split(':')[1]) } }, socPercentMin: 20 },
  };
  const { file, api } = await writeAgentConfig(dir.path, 'gw-a', base);
  const agent = await startAgent('gw-a', file, api, { env: { NOTIFY_SOCKET: join(dir.path, 'notify.sock'), WATCHDOG_USEC: '1000000' } });
  try {
    await agent.waitForEvent('role', (line) => line.role === 'primary', 30_000);
    const ready = await waitFor('READY=1', () => receiver.messages().find((fields) => fields.READY === '1'), 20_000);
    // READY came after the agent's own 'ready' line, that is once the API was listening.
    assert.match(ready.STATUS ?? '', /^(primary|starting|standby) in epoch \d+, power \w+, \d+ entries unreplicated/);
    assert.equal(await agent.client.health(), true);
    await waitFor('two WATCHDOG=1', () => (receiver.messages().filter((fields) => fields.WATCHDOG === '1').length >= 2 ? true : undefined), 20_000);
    await waitFor('a STATUS with the role and power state', () => receiver.messages().find((fields) => /^primary in epoch \d+, power ONLINE, \d+ entries unreplicated/.test(fields.STATUS ?? '')), 20_000);

    // At info, a KV snapshot (every 5 entries here) is not logged.
    for (let index = 0; index < 10; index++) await agent.client.put(`k${index}`, 'v');
    assert.equal(agent.process.output().includes('kv snapshot written'), false);

    const config = JSON.parse(await readFile(file, 'utf8')) as Record<string, any>;
    config.logging.level = 'debug';
    config.power.socPercentMin = 35;
    config.replication.keepaliveS = 45;
    await writeFile(file, JSON.stringify(config, null, 2));
    const before = receiver.messages().length;
    agent.process.child.kill('SIGHUP');
    const reload = await agent.waitForEvent('reload');
    assert.deepEqual(reload.applied, ['logging.level', 'power.socPercentMin']);
    assert.deepEqual(reload.restartNeeded, ['replication.keepaliveS']);
    const restartLine = await agent.waitForEvent('reload-restart-needed');
    assert.equal(restartLine.level, 'warn');
    const after = await waitFor('RELOADING=1 then READY=1', () => {
      const since = receiver.messages().slice(before);
      const reloading = since.findIndex((fields) => fields.RELOADING === '1');
      return reloading >= 0 && since.slice(reloading + 1).some((fields) => fields.READY === '1') ? since : undefined;
    }, 20_000);
    assert.match(after.find((fields) => fields.RELOADING === '1')!.MONOTONIC_USEC ?? '', /^\d+$/);

    for (let index = 0; index < 10; index++) await agent.client.put(`k${index}`, 'w');
    await agent.process.waitForOutput(/kv snapshot written/, 20_000);
    assert.equal(agent.process.child.exitCode, null, 'SIGHUP must not end the agent');
    const status = await agent.client.status();
    assert.equal(status.serving, true);

    await agent.stop('SIGTERM');
    assert.equal(await agent.process.exited, 0);
    await waitFor('STOPPING=1', () => receiver.messages().find((fields) => fields.STOPPING === '1'), 20_000);
    // A clean stop warns about nothing (the power-source link it closes itself included).
    const warnings = agent.process.jsonLines().filter((line) => line.level === 'warn' && line.event !== 'reload-restart-needed');
    assert.deepEqual(warnings.map((line) => line.msg), []);
  } finally {
    await agent.stop('SIGKILL');
    await receiver.process.kill();
    await sim.stop();
    await broker.stop();
    await dir.remove();
  }
});
