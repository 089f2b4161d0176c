// Who may call the local API, rule by rule (api-access.ts), and the config rules and secret files that keep
// the API and the broker credentials private. The same rules are attacked on real agents in
// test/e2e/api-security.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { chmod, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { AccessGate, apiConnectionsCap, checkAccess, descriptorLimit, API_FD_RESERVE, type AccessPolicy } from '../../agent/app/index.ts';
import { loadOrCreateToken, readPrivateFile, validateConfig } from '../../agent/config/index.ts';
import { isLastgaspError } from '../../agent/util/index.ts';
import { tempDir } from '../support/ports.ts';

const TOKEN = 'k3Jq8s0vX2bWm9aLr5tYcD1eF7gH4iNz';
const tcp: AccessPolicy = { token: TOKEN, allowedHosts: ['gw-a.plant.example'], allowedOrigins: ['https://hmi.plant.example'] };
const socket: AccessPolicy = { token: undefined, allowedHosts: [], allowedOrigins: [] };
const auth = { authorization: `Bearer ${TOKEN}` };

function decide(policy: AccessPolicy, method: string, path: string, headers: Record<string, string>): string {
  const decision = checkAccess(policy, method, path, headers);
  return decision.ok ? 'ok' : `${decision.status} ${decision.code}`;
}

test('Host must be loopback or listed: a rebinding name is refused even with the token', () => {
  for (const host of ['127.0.0.1:8181', 'localhost:8181', 'LOCALHOST', '[::1]:8181', '127.0.0.2', 'gw-a.plant.example:8181']) {
    assert.equal(decide(tcp, 'GET', '/v1/status', { host, ...auth }), 'ok', host);
  }
  for (const host of ['rebind.evil.example', 'rebind.evil.example:8181', '10.0.0.5:8181', '127.0.0.1.evil.example', '']) {
    assert.equal(decide(tcp, 'GET', '/v1/status', { host, ...auth }), '403 FORBIDDEN', host);
  }
  assert.equal(decide(tcp, 'GET', '/v1/status', { ...auth }), '403 FORBIDDEN', 'no Host header at all');
});

test('a request carrying an Origin is refused unless the origin is listed', () => {
  const headers = { host: '127.0.0.1', ...auth, 'content-type': 'application/octet-stream' };
  assert.equal(decide(tcp, 'POST', '/v1/entries', { ...headers, origin: 'http://evil.example' }), '403 FORBIDDEN');
  assert.equal(decide(tcp, 'POST', '/v1/entries', { ...headers, origin: 'null' }), '403 FORBIDDEN');
  assert.equal(decide(socket, 'POST', '/v1/admin/replication/pause', { host: 'localhost', origin: 'http://evil.example', 'content-type': 'application/json' }), '403 FORBIDDEN');
  assert.equal(decide(tcp, 'POST', '/v1/entries', { ...headers, origin: 'https://hmi.plant.example' }), 'ok');
});

test('on TCP every request but the liveness probe needs the exact bearer token', () => {
  const host = { host: '127.0.0.1:8181' };
  assert.equal(decide(tcp, 'GET', '/v1/health', host), 'ok');
  assert.equal(decide(tcp, 'GET', '/v1/ready', host), '401 UNAUTHORIZED');
  assert.equal(decide(tcp, 'GET', '/v1/status', host), '401 UNAUTHORIZED');
  assert.equal(decide(tcp, 'GET', '/v1/kv/a', { ...host, authorization: `Bearer ${TOKEN.slice(0, -1)}` }), '401 UNAUTHORIZED');
  assert.equal(decide(tcp, 'GET', '/v1/kv/a', { ...host, authorization: `Bearer ${TOKEN}x` }), '401 UNAUTHORIZED');
  assert.equal(decide(tcp, 'GET', '/v1/kv/a', { ...host, authorization: `Basic ${TOKEN}` }), '401 UNAUTHORIZED');
  assert.equal(decide(tcp, 'GET', '/v1/kv/a', { ...host, authorization: `bearer ${TOKEN}` }), 'ok');
  // On the Unix socket its permissions are the credential.
  assert.equal(decide(socket, 'GET', '/v1/status', { host: 'localhost' }), 'ok');
});

test('the server\'s gate decides every request as checkAccess does, on fresh and on reused connections', () => {
  const requests: Array<[string, string, Record<string, string>]> = [
    ['GET', '/v1/health', { host: '127.0.0.1' }],
    ['GET', '/v1/status', { host: '127.0.0.1' }],
    ['GET', '/v1/status', { host: '127.0.0.1', ...auth }],
    ['GET', '/v1/status', { host: 'rebind.evil.example', ...auth }],
    ['POST', '/v1/entries', { host: '127.0.0.1', ...auth, 'content-type': 'text/plain' }],
    ['POST', '/v1/entries', { host: '127.0.0.1', ...auth, 'content-type': 'application/octet-stream' }],
    ['POST', '/v1/entries', { host: '127.0.0.1', ...auth, 'content-type': 'application/octet-stream', origin: 'http://evil.example' }],
    ['POST', '/v1/entries', { host: '127.0.0.1', authorization: `Bearer ${TOKEN}x`, 'content-type': 'application/octet-stream' }],
    ['POST', '/v1/entries', { host: '127.0.0.1', authorization: `bearer ${TOKEN}`, 'content-type': 'application/octet-stream' }],
  ];
  for (const policy of [tcp, socket]) {
    const gate = new AccessGate(policy);
    const connection = {};
    // Every request twice on one connection (the second after the connection may have shown the token), and
    // once on a connection of its own.
    for (const [method, path, headers] of [...requests, ...requests]) {
      const gated = gate.check(method, path, headers, connection);
      const alone = gate.check(method, path, headers, {});
      const expected = checkAccess(policy, method, path, headers);
      assert.deepEqual(gated, expected, `${method} ${path} ${JSON.stringify(headers)}`);
      assert.deepEqual(alone, expected, `${method} ${path} ${JSON.stringify(headers)} on a new connection`);
    }
  }
});

test('a connection that showed the token passes with it again, and still fails with any other', () => {
  const gate = new AccessGate(tcp);
  const client = {};
  const other = {};
  const write = (authorization: string | undefined, connection: object) =>
    gate.check('POST', '/v1/entries', { host: '127.0.0.1', 'content-type': 'application/octet-stream', ...(authorization === undefined ? {} : { authorization }) }, connection);
  assert.equal(write(`Bearer ${TOKEN}`, client).ok, true);
  assert.equal(write(`Bearer ${TOKEN}`, client).ok, true);
  for (const wrong of [undefined, '', 'Bearer', `Bearer ${TOKEN.slice(0, -1)}`, `Bearer ${TOKEN} x`, `Basic ${TOKEN}`]) {
    assert.equal(write(wrong, client).ok, false, `${wrong} after the token, same connection`);
    assert.equal(write(wrong, other).ok, false, `${wrong} on another connection`);
  }
  // A failure does not undo what the connection showed, and showing it on one connection admits no other.
  assert.equal(write(`Bearer ${TOKEN}`, client).ok, true);
  assert.equal(write(`Bearer ${TOKEN.toUpperCase()}`, other).ok, false);
});

test('writes need a content type that a browser cannot send without a preflight', () => {
  const headers = { host: '127.0.0.1', ...auth };
  for (const type of ['text/plain', 'text/plain;charset=UTF-8', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', '']) {
    assert.equal(decide(tcp, 'POST', '/v1/entries', { ...headers, 'content-type': type }), '415 UNSUPPORTED_MEDIA_TYPE', type);
    assert.equal(decide(tcp, 'PUT', '/v1/kv/a', { ...headers, 'content-type': type }), '415 UNSUPPORTED_MEDIA_TYPE', type);
  }
  assert.equal(decide(tcp, 'POST', '/v1/entries', { ...headers, 'content-type': 'application/octet-stream' }), 'ok');
  assert.equal(decide(tcp, 'POST', '/v1/admin/replication/pause', { ...headers, 'content-type': 'application/json; charset=utf-8' }), 'ok');
  assert.equal(decide(tcp, 'GET', '/v1/entries', headers), 'ok');
});

// Unsigned here so that each case shows only its own refusal (signing has its own tests).
const minimal = { node: 'gw-a', group: 'g', dataDir: '/var/lib/lastgasp', siblings: ['gw-b'], replication: { brokers: [{ url: 'mqtt://127.0.0.1:1883' }], insecureUnsigned: true } };

function issues(raw: Record<string, unknown>): string[] {
  const result = validateConfig({ ...minimal, ...raw });
  return result.ok ? [] : result.issues.map((issue) => `${issue.path}: ${issue.message}`);
}

test('config check refuses credentials in a broker URL, a network listen without TLS, and a socket open to everyone', () => {
  const inUrl = issues({ replication: { brokers: [{ url: 'mqtt://gw-a:s3cret@broker:1883' }], insecureUnsigned: true } });
  assert.equal(inUrl.length, 1);
  assert.match(inUrl[0]!, /^replication\.brokers\[0\]\.url: holds credentials; .*passwordFile/);
  assert.ok(!inUrl[0]!.includes('s3cret'), 'the refusal must not repeat the password');
  assert.match(issues({ api: { listen: '0.0.0.0:8181' } }).join('\n'), /^api\.listen: "0\.0\.0\.0:8181" is reachable from the network; set api\.tls\.certFile and api\.tls\.keyFile/);
  assert.match(issues({ api: { listen: '192.168.1.20:8181', tls: { certFile: '/etc/lastgasp/api.pem' } } }).join('\n'), /api\.tls\.keyFile: is required/);
  assert.deepEqual(issues({ api: { listen: '0.0.0.0:8181', tls: { certFile: '/etc/lastgasp/api.pem', keyFile: '/etc/lastgasp/api.key' } } }), []);
  assert.deepEqual(issues({ api: { listen: '[::1]:8181' } }), []);
  assert.match(issues({ api: { listen: 'unix:/run/lastgasp/api.sock', socketMode: '0666' } }).join('\n'), /^api\.socketMode: 0666 lets every user/);
  assert.deepEqual(issues({ api: { listen: 'unix:/run/lastgasp/api.sock', socketMode: '0660', socketGroup: 'lastgasp' } }), []);
  assert.match(issues({ api: { headersTimeoutMs: 60_000, requestTimeoutMs: 30_000 } }).join('\n'), /^api\.headersTimeoutMs: 60000 is more than api\.requestTimeoutMs \(30000\)/);
});

test('a key or password file that the group or others can read is refused with the fix', async () => {
  const dir = await tempDir('secret-modes');
  try {
    const file = join(dir.path, 'mqtt-password');
    await writeFile(file, 'planted-password\n');
    for (const mode of [0o644, 0o640, 0o604, 0o660, 0o666]) {
      await chmod(file, mode);
      await assert.rejects(readPrivateFile(file, 'replication.passwordFile'), (error) => {
        assert.ok(isLastgaspError(error, 'CONFIG_INVALID'));
        assert.match(error.message, new RegExp(`^config: replication\\.passwordFile: ${file} is open to the group or other users \\(mode 0${mode.toString(8)}\\); a secret must be private: chmod 600 ${file}$`));
        assert.ok(!error.message.includes('planted-password'));
        return true;
      });
    }
    await chmod(file, 0o600);
    assert.equal((await readPrivateFile(file, 'replication.passwordFile')).toString().trim(), 'planted-password');
    await chmod(file, 0o400);
    assert.equal((await readPrivateFile(file, 'replication.passwordFile')).toString().trim(), 'planted-password');
  } finally {
    await dir.remove();
  }
});

test('the API token is created 0600 whatever the umask, kept across starts, and may be shared with a group only', async () => {
  const dir = await tempDir('token');
  const umask = process.umask(0);
  try {
    const file = join(dir.path, 'api.token');
    const token = await loadOrCreateToken(file);
    assert.equal((await stat(file)).mode & 0o777, 0o600);
    assert.match(token, /^[A-Za-z0-9_-]{43}$/);
    assert.equal(await loadOrCreateToken(file), token);
    assert.equal((await readFile(file, 'utf8')).trim(), token);
    await chmod(file, 0o640);
    assert.equal(await loadOrCreateToken(file), token);
    await chmod(file, 0o644);
    await assert.rejects(loadOrCreateToken(file), /api\.tokenFile: .* is open to other users \(mode 0644\); a secret must be private: chmod 640 \(or 600\)/);
  } finally {
    process.umask(umask);
    await dir.remove();
  }
});

test('a token being created is never seen empty or partial: readers find no file or the whole token', async () => {
  const dir = await tempDir('token-create');
  try {
    const file = join(dir.path, 'api.token');
    // A reader that looks at the file between every step of the creation (each await lets it run).
    const seen = new Set<string>();
    let creating = true;
    const look = (): void => {
      if (!creating) return;
      if (existsSync(file)) seen.add(readFileSync(file, 'utf8'));
      setImmediate(look);
    };
    look();
    const token = await loadOrCreateToken(file);
    creating = false;
    assert.deepEqual([...seen].filter((content) => content.trim() !== token), [], 'only the whole token was ever read');
    assert.deepEqual(await readdir(dir.path), ['api.token'], 'no temporary file left behind');
  } finally {
    await dir.remove();
  }
});

test('the API keeps its connection cap under the descriptor limit it reads from the kernel', () => {
  const shell = spawnSync('sh', ['-c', 'ulimit -n'], { encoding: 'utf8' });
  assert.equal(descriptorLimit(), Number(shell.stdout.trim()));
  const module = JSON.stringify(new URL('../../agent/app/index.ts', import.meta.url).href);
  const script = `import { descriptorLimit } from ${module}; process.stdout.write(String(descriptorLimit()))`;
  const limited = spawnSync('sh', ['-c', 'ulimit -n 1000; exec "$0" --import tsx --input-type=module -e "$1"', process.execPath, script], { encoding: 'utf8' });
  assert.equal(limited.stdout, '1000', limited.stderr);
  assert.equal(apiConnectionsCap(256, 1024), 256);
  assert.equal(apiConnectionsCap(4096, 1024), 1024 - API_FD_RESERVE);
  assert.equal(apiConnectionsCap(4096, 65_536), 4096);
  assert.equal(apiConnectionsCap(256, 200), 8, 'a tiny limit still leaves the API a few connections');
});
