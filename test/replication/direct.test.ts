// The direct path's parts with real TLS sockets on loopback: the self-signed Ed25519 certificate that
// node:tls accepts and that carries the node key; the frame accumulator on every stream edge and on random
// bytes; the listener refusing a client whose key is not a configured peer's, counting handshakes that are
// not TLS and frames that are not frames, and serving a real peer afterwards.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate, createPublicKey, generateKeyPairSync } from 'node:crypto';
import { connect as tcpConnect } from 'node:net';
import { connect, createServer, type TLSSocket } from 'node:tls';
import { publicKeyText, type Keyring } from '../../agent/replication/index.ts';
import { DirectListener, FrameAccumulator, PeerLink, DIRECT_KIND_ACK, encodeFrame, identifyPeer, selfSignedCertificatePem, tlsIdentity, type DirectKind } from '../../agent/replication/direct/index.ts';
import { silentLogger } from '../../agent/util/index.ts';
import { groupKeys } from '../support/keys.ts';
import { tempDir } from '../support/ports.ts';

const MEMBERS = ['gw-a', 'gw-b'];

function keyringOf(auth: ReturnType<ReturnType<typeof groupKeys>['auth']>): Keyring {
  assert.ok(auth.mode === 'ed25519');
  return auth.keyring;
}

function until(check: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const poll = () => {
      if (check()) return resolve();
      if (Date.now() - started > timeoutMs) return reject(new Error(`timed out waiting for ${what}`));
      setTimeout(poll, 10);
    };
    poll();
  });
}

test('self-cert: the certificate parses, verifies with its own key, and carries exactly the node key', () => {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const certificate = new X509Certificate(selfSignedCertificatePem(privateKey, 'gw-a'));
  assert.equal(certificate.subject, 'CN=gw-a');
  assert.equal(certificate.issuer, 'CN=gw-a');
  assert.ok(certificate.verify(publicKey));
  assert.equal(publicKeyText(certificate.publicKey), publicKeyText(publicKey));
  assert.throws(() => selfSignedCertificatePem(generateKeyPairSync('x25519').privateKey, 'x'), /Ed25519/);
});

test('self-cert: node:tls completes a mutual TLS 1.3 handshake with it, and each side sees the other\'s node key', async () => {
  const dir = await tempDir('direct-cert');
  try {
    const keys = groupKeys(dir.path);
    const a = keyringOf(keys.auth('gw-a', MEMBERS));
    const b = keyringOf(keys.auth('gw-b', MEMBERS));
    const seen: string[] = [];
    const server = createServer({ ...tlsIdentity(b), requestCert: true, rejectUnauthorized: false, minVersion: 'TLSv1.3' }, (socket) => {
      const peer = identifyPeer(socket, b, ['gw-a']);
      seen.push(peer.ok ? `server saw ${peer.node}` : `server: ${peer.reason}`);
      socket.end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as { port: number }).port;
    const client: TLSSocket = connect({ host: '127.0.0.1', port, ...tlsIdentity(a), rejectUnauthorized: false, minVersion: 'TLSv1.3' });
    await new Promise<void>((resolve, reject) => {
      client.once('secureConnect', () => {
        const peer = identifyPeer(client, a, ['gw-b']);
        seen.push(peer.ok ? `client saw ${peer.node}` : `client: ${peer.reason}`);
        assert.equal(client.getProtocol(), 'TLSv1.3');
        resolve();
      });
      client.once('error', reject);
    });
    await new Promise((resolve) => client.once('close', resolve));
    server.close();
    assert.deepEqual(seen.sort(), ['client saw gw-b', 'server saw gw-a']);
  } finally {
    await dir.remove();
  }
});

test('frames: two in one chunk, one split byte by byte, an empty and an unknown kind counted, a length over the cap fatal', () => {
  const one = encodeFrame(DIRECT_KIND_ACK, Uint8Array.of(1, 2, 3));
  const two = encodeFrame(3, Uint8Array.of(9));
  const frames = new FrameAccumulator(64);
  const both = frames.push(Uint8Array.from([...one, ...two]));
  assert.deepEqual(both.frames.map((frame) => frame.ok && [frame.kind, [...frame.envelope]]), [[2, [1, 2, 3]], [3, [9]]]);
  const split: unknown[] = [];
  for (const byte of one) split.push(...frames.push(Uint8Array.of(byte)).frames);
  assert.equal(split.length, 1);
  assert.equal(frames.pendingBytes, 0);
  const odd = frames.push(Uint8Array.of(0, 0, 0, 0, 0, 0, 0, 2, 77, 1));
  assert.deepEqual(odd.frames, [{ ok: false, reason: 'empty' }, { ok: false, reason: 'unknown-kind' }]);
  assert.equal(frames.push(Uint8Array.of(0, 0, 1, 0)).fatal, 'too-large');
});

test('frames: random bytes give frames, counted errors or a fatal length, never a throw or unbounded holding', () => {
  let seed = 15;
  const random = () => (seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31;
  for (let round = 0; round < 300; round++) {
    const frames = new FrameAccumulator(256);
    for (let chunk = 0; chunk < 20; chunk++) {
      const bytes = Uint8Array.from({ length: Math.floor(random() * 300) }, () => (random() < 0.7 ? 0 : Math.floor(random() * 256)));
      const result = frames.push(bytes);
      for (const frame of result.frames) assert.ok(frame.ok ? frame.envelope.length <= 255 : ['empty', 'unknown-kind'].includes(frame.reason));
      assert.ok(frames.pendingBytes <= 256 + 4);
      if (result.fatal) break;
    }
  }
});

test('listener: a forged client and a plain-TCP one are refused and counted, garbage frames are counted, and a real peer is served after', async () => {
  const dir = await tempDir('direct-listener');
  const other = await tempDir('direct-forger');
  const delivered: Array<[string, DirectKind, number[]]> = [];
  let listener: DirectListener | undefined;
  let link: PeerLink | undefined;
  try {
    const keys = groupKeys(dir.path);
    const b = keyringOf(keys.auth('gw-b', MEMBERS));
    const a = keyringOf(keys.auth('gw-a', MEMBERS));
    listener = new DirectListener({ listen: '127.0.0.1:0', peers: ['gw-a'], keyring: b, identity: tlsIdentity(b), frameBytesMax: 1024, onFrame: async (node, kind, envelope) => void delivered.push([node, kind, [...envelope]]), logger: silentLogger });
    await listener.start();
    const port = listener.port;
    // A key that is not gw-a's, though it calls itself gw-a.
    const forged = keyringOf(groupKeys(other.path).auth('gw-a', MEMBERS));
    const forger = connect({ host: '127.0.0.1', port, ...tlsIdentity(forged), rejectUnauthorized: false, minVersion: 'TLSv1.3' });
    forger.on('error', () => undefined);
    forger.on('secureConnect', () => forger.write(encodeFrame(DIRECT_KIND_ACK, Uint8Array.of(6, 6, 6))));
    await new Promise((resolve) => forger.once('close', resolve));
    const plain = tcpConnect(port, '127.0.0.1', () => plain.write('GET / HTTP/1.1\r\n\r\n'));
    plain.resume();
    plain.on('error', () => undefined);
    await new Promise((resolve) => plain.once('close', resolve));
    await until(() => (listener!.stats().refused as Record<string, number>)['handshake-failed'] === 1, 'the plain-TCP refusal');
    assert.deepEqual(listener.stats().refused, { 'unknown-key': 1, 'handshake-failed': 1 });
    // gw-a itself, through the agent's own outgoing link: frames and garbage.
    link = new PeerLink({ node: 'gw-b', address: `127.0.0.1:${port}`, keyring: a, identity: tlsIdentity(a), logger: silentLogger });
    link.start();
    await until(() => link!.state === 'up', 'gw-a\'s link to gw-b');
    assert.ok(link.send(Uint8Array.of(0, 0, 0, 2, 99, 1)));
    assert.ok(link.send(encodeFrame(DIRECT_KIND_ACK, Uint8Array.of(1, 2))));
    await until(() => delivered.length === 1, 'the frame');
    assert.deepEqual(delivered, [['gw-a', DIRECT_KIND_ACK, [1, 2]]]);
    assert.ok(link.send(Uint8Array.of(0, 1, 0, 0)));
    await until(() => (listener!.stats().garbage as Record<string, number>)['too-large'] === 1, 'the oversized frame');
    assert.deepEqual(listener.stats().garbage, { 'unknown-kind': 1, 'too-large': 1 });
    // The listener closed that stream; the link reconnects and is served again.
    await until(() => link!.state === 'up' && (link!.stats().reconnects as number) >= 1, 'the reconnect');
    assert.ok(link.send(encodeFrame(DIRECT_KIND_ACK, Uint8Array.of(3))));
    await until(() => delivered.length === 2, 'the frame after the reconnect');
    assert.equal(publicKeyText(createPublicKey(a.privateKey)), publicKeyText(b.publicKeys.get('gw-a')!));
  } finally {
    link?.stop();
    await listener?.stop();
    await dir.remove();
    await other.remove();
  }
});

test('peer link: a listener whose key is not the peer\'s is never written to, and the refusal is counted', async () => {
  const dir = await tempDir('direct-impostor');
  const other = await tempDir('direct-impostor-keys');
  let listener: DirectListener | undefined;
  let link: PeerLink | undefined;
  try {
    const a = keyringOf(groupKeys(dir.path).auth('gw-a', MEMBERS));
    const impostor = keyringOf(groupKeys(other.path).auth('gw-b', MEMBERS));
    const delivered: unknown[] = [];
    listener = new DirectListener({ listen: '127.0.0.1:0', peers: ['gw-a'], keyring: impostor, identity: tlsIdentity(impostor), frameBytesMax: 1024, onFrame: async () => void delivered.push(1), logger: silentLogger });
    await listener.start();
    link = new PeerLink({ node: 'gw-b', address: `127.0.0.1:${listener.port}`, keyring: a, identity: tlsIdentity(a), logger: silentLogger });
    link.start();
    await until(() => (link!.stats().wrongKey as number) >= 1, 'the wrong-key refusal');
    assert.notEqual(link.state, 'up');
    assert.equal(link.send(encodeFrame(DIRECT_KIND_ACK, Uint8Array.of(1))), false);
    assert.equal(delivered.length, 0);
  } finally {
    link?.stop();
    await listener?.stop();
    await dir.remove();
    await other.remove();
  }
});
