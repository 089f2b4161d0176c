// Secrets never leave their files: two real agents run with every kind of secret planted (a password file,
// a password in the environment, the group key, the API token, the API's TLS key), one broker address points
// at a closed port so that broker errors are logged all along, and every log line and every status field is
// searched for them (issue 9). A key that others can read is refused before anything starts.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { chmod, writeFile } from 'node:fs/promises';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ApiClient } from '../../agent/app/index.ts';
import { createTestPki } from '../support/certs.ts';
import { startMosquitto } from '../support/mosquitto.ts';
import { startAgent, writeAgentConfig } from '../support/agents.ts';
import { killAll } from '../support/processes.ts';
import { freePort, tempDir, waitFor } from '../support/ports.ts';

after(killAll);

const BIN = join(fileURLToPath(import.meta.url), '..', '..', '..', 'agent', 'cli', 'bin.mjs');
const PASSWORD_ENV = 'LASTGASP_TEST_MQTT_PASSWORD';

function planted(label: string): string {
  return `${label}-${randomBytes(12).toString('hex')}`;
}

test('planted secrets appear in no log line and no status field, broker errors included', async () => {
  const dir = await tempDir('secrets');
  const broker = await startMosquitto(dir.path);
  const closedPort = await freePort();
  const pki = await createTestPki(join(dir.path, 'pki'));
  await chmod(pki.server.keyFile, 0o600);
  const secrets = { passwordFile: planted('pwfile'), passwordEnv: planted('pwenv'), hmacKey: planted('hmac'), token: planted('token') };
  const files = { password: join(dir.path, 'mqtt-password'), hmac: join(dir.path, 'group.key'), token: join(dir.path, 'api.token') };
  await writeFile(files.password, `${secrets.passwordFile}\n`, { mode: 0o600 });
  await writeFile(files.hmac, secrets.hmacKey, { mode: 0o600 });
  await writeFile(files.token, `${secrets.token}\n`, { mode: 0o600 });
  // Every base64 line of the TLS key's PEM body: any of them in a log would be a leak.
  const keyLines = pki.server.key.split('\n').filter((line) => line.length >= 16 && !line.startsWith('-----'));
  assert.ok(keyLines.length > 0);

  const replication = { mode: 'independent', quorum: 1, brokers: [{ url: `mqtt://127.0.0.1:${closedPort}` }, { url: broker.url }], hmacKeyFile: files.hmac };
  const apiPort = await freePort();
  // A listen on every interface is allowed because it serves HTTPS, and it needs the token.
  const apiA = { listen: `0.0.0.0:${apiPort}`, tokenFile: files.token, tls: { certFile: pki.server.certFile, keyFile: pki.server.keyFile } };
  const configA = await writeAgentConfig(dir.path, 'gw-a', { group: 'secret', role: 'primary', siblings: ['gw-b'], api: apiA, replication: { ...replication, username: 'gw-a', passwordFile: files.password } });
  const configB = await writeAgentConfig(dir.path, 'gw-b', { group: 'secret', role: 'standby', siblings: ['gw-a'], replication: { ...replication, username: 'gw-b', passwordEnv: PASSWORD_ENV } });
  process.env[PASSWORD_ENV] = secrets.passwordEnv;
  const a = await startAgent('gw-a', configA.file, `127.0.0.1:${apiPort}`, { waitReady: false });
  const b = await startAgent('gw-b', configB.file, configB.api, { waitReady: false });
  delete process.env[PASSWORD_ENV];
  const clientA = new ApiClient({ address: `127.0.0.1:${apiPort}`, ca: pki.ca, token: secrets.token });
  try {
    await a.waitForEvent('role', (line) => line.role === 'primary', 30_000);
    await b.waitForEvent('role', (line) => line.role === 'standby', 30_000);
    for (let index = 0; index < 10; index++) await clientA.put(`k${index}`, `v${index}`);
    await waitFor('gw-b to hold the writes', async () => ((await b.client.status()).watermarks.committed >= 10 ? true : undefined), 30_000);
    // The closed port must have produced broker errors on both nodes: those are the lines that leaked before.
    await a.process.waitForOutput(new RegExp(`ECONNREFUSED.*${closedPort}|${closedPort}.*ECONNREFUSED`), 30_000);
    await b.process.waitForOutput(new RegExp(`ECONNREFUSED.*${closedPort}|${closedPort}.*ECONNREFUSED`), 30_000);
    // Refused requests carrying the real token: their answers and any log of them must not echo it.
    const refused = await refusals(apiPort, pki.ca, secrets.token);
    const statuses = JSON.stringify([await clientA.status(), await b.client.status()]);
    await a.stop();
    await b.stop();
    const haystacks = { 'gw-a output': a.process.output(), 'gw-b output': b.process.output(), 'status fields': statuses, refusals: refused };
    for (const [where, text] of Object.entries(haystacks)) {
      for (const [name, secret] of Object.entries(secrets)) assert.ok(!text.includes(secret), `${name} found in ${where}`);
      for (const line of keyLines) assert.ok(!text.includes(line), `a line of the TLS key found in ${where}`);
    }
  } finally {
    clientA.close();
    await a.stop();
    await b.stop();
    await broker.stop();
    await dir.remove();
  }
});

/** Requests refused though they carry the real token (a foreign Host, a wrong type): their answers' text. */
function refusals(port: number, ca: string, token: string): Promise<string> {
  const one = (headers: Record<string, string>) =>
    new Promise<string>((resolve, reject) => {
      const req = httpsRequest({ host: '127.0.0.1', servername: 'localhost', port, ca, method: 'POST', path: '/v1/entries', headers: { authorization: `Bearer ${token}`, ...headers } }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (body += chunk));
        res.on('end', () => resolve(`${res.statusCode} ${JSON.stringify(res.headers)} ${body}`));
      });
      req.on('error', reject);
      req.end('x');
    });
  return Promise.all([one({ host: 'rebind.evil.example', 'content-type': 'application/octet-stream' }), one({ 'content-type': 'text/plain' })]).then((texts) => {
    assert.match(texts[0]!, /^403 /);
    assert.match(texts[1]!, /^415 /);
    return texts.join('\n');
  });
}

test('a group key, password file or TLS key that others can read stops the agent with the fix named', async () => {
  const dir = await tempDir('secret-mode');
  try {
    const keyFile = join(dir.path, 'group.key');
    await writeFile(keyFile, randomBytes(32));
    await chmod(keyFile, 0o644);
    const { file } = await writeAgentConfig(dir.path, 'gw-a', { group: 'g', role: 'primary', replication: { brokers: [{ url: 'mqtt://127.0.0.1:1' }], durability: 'broker', hmacKeyFile: keyFile } });
    const result = spawnSync(process.execPath, [BIN, 'run', '--config', file], { encoding: 'utf8', timeout: 30_000 });
    assert.equal(result.status, 78, result.stderr);
    assert.match(result.stderr, new RegExp(`replication\\.hmacKeyFile: ${keyFile} is open to the group or other users \\(mode 0644\\); a secret must be private: chmod 600 ${keyFile}`));
  } finally {
    await dir.remove();
  }
});
