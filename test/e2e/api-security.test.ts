// The local API attacked as another local user and as a web page would attack it, on real agent processes
// (issue 9): the Unix socket's rights and group, the bearer token on TCP, cross-origin and DNS-rebinding
// requests, and a network listen without TLS.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmod, readFile, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startMosquitto } from '../support/mosquitto.ts';
import { startAgent, writeAgentConfig } from '../support/agents.ts';
import { killAll } from '../support/processes.ts';
import { probe, probeAsNobody, runAsNobody, type ProbeResult } from '../support/http-probe.ts';
import { freePort, tempDir } from '../support/ports.ts';
import { connect } from 'node:net';

after(killAll);

const BIN = join(fileURLToPath(import.meta.url), '..', '..', '..', 'agent', 'cli', 'bin.mjs');
/** A group that exists on every Debian system and that `nobody` is not in: the socket's group here. */
const SOCKET_GROUP = 'daemon';
const SOCKET_GID = 1;
const single = (brokerUrl: string) => ({ group: 'sec', role: 'primary', replication: { brokers: [{ url: brokerUrl }], durability: 'broker' } });

function statusOf(result: ProbeResult): number | string {
  return 'status' in result ? result.status : result.error;
}

test('the Unix socket is 0660 in its group even under umask 000: another user is refused, a member of the group is served', async () => {
  const dir = await tempDir('api-socket');
  // setpriv'd probes must be able to walk to the socket; the socket's own rights are what is tested.
  await chmod(dir.path, 0o755);
  const broker = await startMosquitto(dir.path);
  const socketPath = join(dir.path, 'run', 'api.sock');
  const { file } = await writeAgentConfig(dir.path, 'gw-a', { ...single(broker.url), api: { listen: `unix:${socketPath}`, socketGroup: SOCKET_GROUP } });
  // The child inherits the umask: 000 would make a socket bound the naive way srwxrwxrwx.
  const umask = process.umask(0);
  let agent;
  try {
    agent = await startAgent('gw-a', file, `unix:${socketPath}`, { waitReady: false });
  } finally {
    process.umask(umask);
  }
  try {
    await agent.waitForEvent('ready');
    const info = await stat(socketPath);
    assert.ok(info.isSocket());
    assert.equal(info.mode & 0o777, 0o660);
    assert.equal(info.gid, SOCKET_GID);
    assert.deepEqual((await readdir(join(dir.path, 'run'))).sort(), ['api.sock'], 'the private staging directory is gone');

    const write = { method: 'POST', path: '/v1/entries', headers: { 'content-type': 'application/octet-stream' }, body: 'from nobody' };
    assert.equal(statusOf(probeAsNobody({ socketPath }, write)), 'EACCES');
    assert.equal(statusOf(probeAsNobody({ socketPath }, { method: 'POST', path: '/v1/admin/replication/pause', headers: { 'content-type': 'application/json' } })), 'EACCES');
    assert.equal(statusOf(probeAsNobody({ socketPath }, { method: 'GET', path: '/v1/status' })), 'EACCES');
    // The same user, once in the socket's group (how an application is given access), may write.
    assert.equal(statusOf(probeAsNobody({ socketPath }, write, [SOCKET_GROUP])), 201);

    const status = await agent.client.status();
    assert.equal(status.watermarks.committed, 1, 'only the group member\'s entry was written');
    assert.ok(!agent.process.output().includes('replication paused'), 'nobody paused replication');

    // `lastgasp status` finds the agent from its config file, and takes the socket with or without "unix:".
    for (const args of [['--config', file], ['--api', socketPath], ['--api', `unix:${socketPath}`]]) {
      const cli = spawnSync(process.execPath, [BIN, 'status', ...args], { encoding: 'utf8' });
      assert.equal(cli.status, 0, cli.stderr);
      assert.match(cli.stdout, /^gw-a \(sec\): primary, epoch \d+, power ONLINE, ready\n/);
    }
  } finally {
    await agent.stop();
    await broker.stop();
    await dir.remove();
  }
});

test('on TCP nothing but the liveness probe is served without the token, and another user cannot read the token', async () => {
  const dir = await tempDir('api-token');
  const broker = await startMosquitto(dir.path);
  const { file, api } = await writeAgentConfig(dir.path, 'gw-a', single(broker.url));
  const agent = await startAgent('gw-a', file, api);
  const [host, port] = api.split(':');
  const target = { host: host!, port: Number(port) };
  const tokenFile = join(dir.path, 'gw-a', 'api.token');
  try {
    assert.equal((await stat(tokenFile)).mode & 0o777, 0o600);
    assert.notEqual(runAsNobody(['cat', tokenFile]).status, 0, 'nobody must not read the token');

    const write = { method: 'POST', path: '/v1/entries', headers: { 'content-type': 'application/octet-stream' }, body: 'x' };
    assert.equal(statusOf(probeAsNobody(target, write)), 401);
    assert.equal(statusOf(probeAsNobody(target, { ...write, headers: { ...write.headers, authorization: 'Bearer guessed-token-0123456789' } })), 401);
    assert.equal(statusOf(probeAsNobody(target, { method: 'POST', path: '/v1/admin/replication/pause', headers: { 'content-type': 'application/json' } })), 401);
    assert.equal(statusOf(probeAsNobody(target, { method: 'GET', path: '/v1/kv' })), 401);
    assert.equal(statusOf(probeAsNobody(target, { method: 'GET', path: '/v1/ready' })), 401);
    assert.equal(statusOf(probeAsNobody(target, { method: 'GET', path: '/v1/health' })), 200);

    const status = await agent.client.status();
    assert.equal(status.watermarks.committed, 0);
    assert.equal(status.api.apiRefused, 5);
    const cli = spawnSync(process.execPath, [BIN, 'status', '--config', file], { encoding: 'utf8' });
    assert.equal(cli.status, 0, cli.stderr);
    assert.match(cli.stdout, /^gw-a \(sec\): primary/);
  } finally {
    await agent.stop();
    await broker.stop();
    await dir.remove();
  }
});

test('browser-style cross-origin and DNS-rebinding requests are refused, even carrying the token', async () => {
  const dir = await tempDir('api-browser');
  const broker = await startMosquitto(dir.path);
  const { file, api } = await writeAgentConfig(dir.path, 'gw-a', single(broker.url));
  const agent = await startAgent('gw-a', file, api);
  const [host, port] = api.split(':');
  const target = { host: host!, port: Number(port) };
  try {
    await agent.client.status();
    const token = (await readFile(join(dir.path, 'gw-a', 'api.token'), 'utf8')).trim();
    const auth = { authorization: `Bearer ${token}` };
    // What fetch(..., { method: 'POST', mode: 'no-cors', body: 'x' }) from http://evil.example sends: no preflight.
    const simple = { 'content-type': 'text/plain;charset=UTF-8', origin: 'http://evil.example' };
    assert.equal(statusOf(await probe(target, { method: 'POST', path: '/v1/entries', headers: simple, body: 'x' })), 403);
    assert.equal(statusOf(await probe(target, { method: 'POST', path: '/v1/entries', headers: { ...simple, ...auth }, body: 'x' })), 403);
    assert.equal(statusOf(await probe(target, { method: 'POST', path: '/v1/admin/replication/pause', headers: { ...simple, ...auth } })), 403);
    // Without an Origin (a proxy that strips it), the text/plain type alone is refused on a write.
    assert.equal(statusOf(await probe(target, { method: 'POST', path: '/v1/entries', headers: { 'content-type': 'text/plain', ...auth }, body: 'x' })), 415);
    // A page on rebind.evil.example whose name now resolves to 127.0.0.1: same origin for the browser, so no
    // Origin check applies to its GETs; the Host header gives it away.
    const rebind = { host: `rebind.evil.example:${port}`, ...auth };
    assert.equal(statusOf(await probe(target, { method: 'GET', path: '/v1/kv', headers: rebind })), 403);
    assert.equal(statusOf(await probe(target, { method: 'GET', path: '/v1/status', headers: rebind })), 403);
    assert.equal(statusOf(await probe(target, { method: 'PUT', path: '/v1/kv/a', headers: { ...rebind, 'content-type': 'application/octet-stream' }, body: 'x' })), 403);

    assert.equal((await agent.client.status()).watermarks.committed, 0, 'no refused write reached the log');
    assert.ok(!agent.process.output().includes('replication paused'));
    const written = await agent.client.append(new TextEncoder().encode('the application itself'));
    assert.equal(written.seq, 1);
  } finally {
    await agent.stop();
    await broker.stop();
    await dir.remove();
  }
});

test('a listen address reachable from the network is refused without TLS, by config check and by run', async () => {
  const dir = await tempDir('api-network');
  try {
    const { file } = await writeAgentConfig(dir.path, 'gw-a', { ...single('mqtt://127.0.0.1:1'), api: { listen: '0.0.0.0:8181' } });
    for (const args of [['config', 'check', file], ['run', '--config', file]]) {
      const result = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 30_000 });
      assert.equal(result.status, 78, result.stderr);
      assert.match(result.stderr, /api\.listen: "0\.0\.0\.0:8181" is reachable from the network; set api\.tls\.certFile and api\.tls\.keyFile/);
    }
  } finally {
    await dir.remove();
  }
});

test('a request whose headers trickle in, and a connection that sends nothing, are closed by the agent at api.headersTimeoutMs', async () => {
  const dir = await tempDir('api-timeouts');
  const broker = await startMosquitto(dir.path);
  const port = await freePort();
  const { file } = await writeAgentConfig(dir.path, 'gw-a', { ...single(broker.url), api: { listen: `127.0.0.1:${port}`, headersTimeoutMs: 1000, idleTimeoutMs: 1000 } });
  const agent = await startAgent('gw-a', file, `127.0.0.1:${port}`);
  try {
    // Trickling one header line every 200 ms keeps the socket busy: only the headers deadline can end it.
    const trickled = await new Promise<{ answer: string; linesSent: number }>((resolve) => {
      const socket = connect(port, '127.0.0.1');
      let answer = '';
      let linesSent = 0;
      socket.on('connect', () => socket.write('POST /v1/entries HTTP/1.1\r\nHost: 127.0.0.1\r\n'));
      const timer = setInterval(() => {
        linesSent++;
        socket.write(`X-Slow-${linesSent}: 1\r\n`);
      }, 200);
      socket.on('data', (chunk) => (answer += chunk.toString('latin1')));
      socket.on('error', () => undefined);
      socket.on('close', () => {
        clearInterval(timer);
        resolve({ answer, linesSent });
      });
    });
    // Closed by the agent (this side never closes it), with a 408 or without a word, never served.
    assert.match(trickled.answer, /^(HTTP\/1\.1 408 [^]*)?$/);
    assert.ok(trickled.linesSent > 0);
    // A connection that never sends anything is closed too.
    const silent = await new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1');
      socket.on('error', () => undefined);
      socket.on('close', () => resolve(true));
    });
    assert.ok(silent);
    const status = await agent.client.status();
    assert.equal(status.api.apiConnectionsOpen, 1, 'only the status request\'s own connection is open');
  } finally {
    await agent.stop();
    await broker.stop();
    await dir.remove();
  }
});
