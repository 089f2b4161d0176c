// broker-config/mosquitto/tls.conf, started for real with a CA and certificates made at test time: a
// gateway's certificate is its identity (CN = username for the ACL), a client without a certificate or
// with one from another CA is refused, and the gateway in turn checks the broker's certificate.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { IClientOptions } from 'mqtt';
import { createTestPki, type TestPki } from '../support/certs.ts';
import { startMosquitto, tlsVars, type Mosquitto } from '../support/mosquitto.ts';
import { killAll } from '../support/processes.ts';
import { tempDir } from '../support/ports.ts';
import { connectClient } from './clients.ts';

const LINE1 = 'lastgasp/v1/line1';
const NOT_AUTHORIZED = 0x87;

let dir: { path: string; remove: () => Promise<void> };
let pki: TestPki;
let rogue: TestPki;
let broker: Mosquitto;

before(async () => {
  dir = await tempDir('mq-tls');
  pki = await createTestPki(join(dir.path, 'pki'), { clients: ['gw-a', 'gw-b'] });
  // Same names, another CA: what an attacker with a self-made certificate would present.
  rogue = await createTestPki(join(dir.path, 'rogue'), { clients: ['gw-a'], caName: 'not our CA' });
  broker = await startMosquitto(dir.path, { config: 'tls.conf', vars: tlsVars(pki) });
});

after(async () => {
  await broker?.stop();
  await dir?.remove();
  await killAll();
});

function withCert(name: string, from: TestPki = pki): IClientOptions {
  const files = from.client(name);
  return { ca: pki.ca, cert: files.cert, key: files.key, clientId: name, protocolVersion: 5 };
}

async function refusal(promise: Promise<unknown>): Promise<Error & { code?: string | number }> {
  return promise.then(
    () => assert.fail('expected the connection to be refused'),
    (error: Error & { code?: string | number }) => error,
  );
}

test('the broker listens for mqtts:// only', () => {
  assert.match(broker.url, /^mqtts:\/\/127\.0\.0\.1:\d+$/);
});

test('a gateway certificate from our CA connects, and its CN is the username the ACL applies to', async () => {
  const sibling = await connectClient(broker.url, withCert('gw-b'));
  await sibling.client.subscribeAsync(`${LINE1}/log/+`, { qos: 1 });
  const gateway = await connectClient(broker.url, withCert('gw-a'));
  const forged = await gateway.client.publishAsync(`${LINE1}/log/gw-b`, 'forged', { qos: 1 }).then(
    () => undefined,
    (error: { code?: number }) => error.code,
  );
  assert.equal(forged, NOT_AUTHORIZED, 'the CN gw-a may not write gw-b\'s log');
  await gateway.client.publishAsync(`${LINE1}/log/gw-a`, 'own', { qos: 1 });
  await sibling.waitForCount(1);
  assert.deepEqual(sibling.received.map((m) => `${m.topic}=${m.text}`), [`${LINE1}/log/gw-a=own`]);
  await Promise.all([sibling.end(), gateway.end()]);
});

test('a client without a certificate is refused in the TLS handshake, before any MQTT', async () => {
  const error = await refusal(connectClient(broker.url, { ca: pki.ca, clientId: 'no-cert', protocolVersion: 5 }));
  // TLS 1.3: the client finishes its side of the handshake, then the broker's alert 116 arrives.
  assert.equal(error.code, 'ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED', error.message);
});

test('a certificate with the right name from another CA is refused', async () => {
  const error = await refusal(connectClient(broker.url, withCert('gw-a', rogue)));
  assert.equal(error.code, 'ERR_SSL_TLSV1_ALERT_UNKNOWN_CA', error.message);
});

test('plain MQTT on the TLS port gets no CONNACK', async () => {
  const error = await refusal(connectClient(broker.url.replace('mqtts:', 'mqtt:'), { clientId: 'plain', protocolVersion: 5 }));
  // mosquitto reads the CONNECT as a broken TLS record and resets the connection (or just closes it).
  assert.match(`${error.code} ${error.message}`, /ECONNRESET|closed before CONNACK/);
});

test('the gateway checks the broker: trusting another CA, it refuses the server certificate', async () => {
  const files = pki.client('gw-a');
  const error = await refusal(connectClient(broker.url, { ca: rogue.ca, cert: files.cert, key: files.key, clientId: 'gw-a', protocolVersion: 5 }));
  assert.match(String(error.code), /SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT/);
});
