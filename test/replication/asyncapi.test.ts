// broker-config/asyncapi.yaml is the wire contract; these tests keep it and agent/replication/ in step:
// the channel addresses are the topics the code builds, every message the real codec encodes matches the
// document's schemas (envelope and body), the codec refuses every body the schemas refuse for a missing or
// mistyped field, and on a real broker every operation arrives with the QoS and retain flag it documents.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Encoder } from 'cbor-x';
import mqtt from 'mqtt';
import { parse } from 'yaml';
import { BROKER_CONFIG_DIR } from '../../broker-config/index.ts';
import { topics, WireCodec, type AckMessage, type BatchMessage, type Freshness, type LeaderMessage, type StateMessage } from '../../agent/replication/index.ts';
import { crc32c, decodeCbor } from '../../agent/util/index.ts';
import { groupKeys } from '../support/keys.ts';
import { startMosquitto } from '../support/mosquitto.ts';
import { killAll } from '../support/processes.ts';
import { tempDir, waitFor } from '../support/ports.ts';
import { SchemaChecker, type Schema } from './support/json-schema.ts';
import { GROUP, startNode } from './support/nodes.ts';

after(killAll);

interface Operation {
  action: 'send' | 'receive';
  channel: { $ref: string };
  messages: Array<{ $ref: string }>;
  bindings?: { mqtt?: { qos?: number; retain?: boolean } };
}
interface Channel {
  address: string;
  messages: Record<string, { $ref: string }>;
}
interface AsyncApi {
  asyncapi: string;
  channels: Record<string, Channel>;
  operations: Record<string, Operation>;
  components: { schemas: Record<string, Schema>; messages: Record<string, { payload: { $ref: string }; contentType: string; 'x-lastgasp-body'?: { $ref: string } }> };
}

const document = parse(await readFile(join(BROKER_CONFIG_DIR, 'asyncapi.yaml'), 'utf8')) as AsyncApi;
const checker = new SchemaChecker(document as unknown as Record<string, unknown>);
const schema = (name: string) => document.components.schemas[name]!;
/** A raw CBOR encoder as a foreign subscriber or an attacker would use, for bodies the codec would not build. */
const rawCbor = new Encoder({ useRecords: false, mapsAsObjects: true, tagUint8Array: false });

const entries = [
  { seq: 7, epoch: 2, timestampMs: 1_795_000_000_000, payload: Uint8Array.of(1, 2, 3) },
  { seq: 8, epoch: 3, timestampMs: 1_795_000_000_004, payload: new Uint8Array(0) },
];
const samples: { batch: BatchMessage[]; ack: Array<AckMessage & Freshness>; state: Array<StateMessage & Freshness>; leader: Array<LeaderMessage & Freshness> } = {
  batch: [{ group: GROUP, node: 'gw-a', epoch: 3, entries }],
  ack: [
    { group: GROUP, node: 'gw-b', epoch: 3, counter: 1, seq: 8, atMs: 1_795_000_000_010 },
    { group: GROUP, node: 'gw-b', epoch: 3, counter: 2, seq: 8, want: 5, atMs: 1_795_000_000_011 },
  ],
  state: [
    { group: GROUP, node: 'gw-a', role: 'primary', state: 'online', epoch: 3, counter: 3, committed: 8, atMs: 1 },
    { group: GROUP, node: 'gw-b', role: 'unknown', state: 'offline', epoch: 0, counter: 4, committed: 0, atMs: 2 },
  ],
  leader: [
    { group: GROUP, kind: 'leader', epoch: 3, counter: 5, node: 'gw-a', since: 7, atMs: 3 },
    { group: GROUP, kind: 'handoff', epoch: 3, counter: 6, node: 'gw-a', to: 'gw-b', lastSeq: 8, committed: 8, complete: true, reason: 'brownout', atMs: 4 },
  ],
};

function encode(codec: WireCodec, kind: keyof typeof samples, message: object): Uint8Array {
  switch (kind) {
    case 'batch':
      return codec.encodeBatch(message as BatchMessage);
    case 'ack':
      return codec.encodeAck(message as AckMessage & Freshness);
    case 'state':
      return codec.encodeState(message as StateMessage & Freshness);
    case 'leader':
      return codec.encodeLeader(message as LeaderMessage & Freshness);
  }
}

function messageOf(kind: string) {
  const message = document.components.messages[kind];
  assert.ok(message, `the document has no message "${kind}"`);
  return { envelope: checker.resolve(message.payload.$ref), body: message['x-lastgasp-body'] ? checker.resolve(message['x-lastgasp-body'].$ref) : undefined, contentType: message.contentType };
}

/** Seal a body as the codec would (v, k, b, crc), without the codec's checks. */
function seal(kind: string, body: unknown): Uint8Array {
  const b = new Uint8Array(rawCbor.encode(body));
  return new Uint8Array(rawCbor.encode({ v: 1, k: kind, b, crc: crc32c(b) }));
}

test('the document is AsyncAPI 3.0 and every reference in it resolves', () => {
  assert.equal(document.asyncapi, '3.0.0');
  const refs: string[] = [];
  const walk = (node: unknown) => {
    if (Array.isArray(node)) node.forEach(walk);
    else if (typeof node === 'object' && node !== null) {
      for (const [key, value] of Object.entries(node)) {
        if (key === '$ref' && typeof value === 'string') refs.push(value);
        else walk(value);
      }
    }
  };
  walk(document);
  assert.ok(refs.length > 50);
  for (const ref of refs) assert.doesNotThrow(() => checker.resolve(ref), ref);
  for (const [name, operation] of Object.entries(document.operations)) {
    const channelName = operation.channel.$ref.replace('#/channels/', '');
    for (const message of operation.messages) assert.ok(message.$ref.startsWith(`#/channels/${channelName}/messages/`), `${name}: a message of another channel`);
  }
});

test('channel addresses are the topics the code builds, and every channel is sent by some operation', () => {
  const built = topics('lastgasp', GROUP);
  const address = (channel: string, node = 'gw-a') =>
    document.channels[channel]!.address.replace('{prefix}', 'lastgasp').replace('{group}', GROUP).replace('{node}', node);
  assert.equal(address('log'), built.log('gw-a'));
  assert.equal(address('ack', 'gw-b'), built.ack('gw-b'));
  assert.equal(address('state'), built.state('gw-a'));
  assert.equal(address('leader'), built.leader);
  assert.equal(address('power'), built.power('gw-a'));
  assert.equal(address('availability'), built.availability('gw-a'));
  assert.deepEqual(built.nodeOf(address('log')), { kind: 'log', node: 'gw-a' });
  assert.deepEqual(built.nodeOf(address('ack', 'gw-b')), { kind: 'ack', node: 'gw-b' });
  const sent = new Set(Object.values(document.operations).filter((op) => op.action === 'send').map((op) => op.channel.$ref));
  for (const channel of Object.keys(document.channels)) assert.ok(sent.has(`#/channels/${channel}`), `nobody sends on ${channel}`);
});

test('every message kind the codec encodes matches its envelope and body schemas in every mode, and decodes back', async () => {
  const keysDir = await tempDir('asyncapi-keys');
  // Each sample is signed by the node it names: a codec per signer, all of the same group.
  const signed = (node: string) => new WireCodec(groupKeys(keysDir.path).auth(node, ['gw-a', 'gw-b']));
  const modes: Array<{ name: string; codecFor: (node: string) => WireCodec; field?: 'mac' | 'sig' }> = [
    { name: 'unsigned', codecFor: () => new WireCodec() },
    { name: 'hmac', codecFor: ((key) => () => new WireCodec(key))(randomBytes(32)), field: 'mac' },
    { name: 'ed25519', codecFor: signed, field: 'sig' },
  ];
  for (const { name, codecFor, field } of modes) {
    for (const kind of Object.keys(samples) as Array<keyof typeof samples>) {
      const { envelope, body } = messageOf(kind);
      for (const message of samples[kind]) {
        const codec = codecFor(message.node);
        const bytes = encode(codec, kind, message);
        const decodedEnvelope = decodeCbor(bytes) as { b: Uint8Array; mac?: Uint8Array; sig?: Uint8Array; s?: string };
        assert.deepEqual(checker.check(decodedEnvelope, envelope), [], `${name} ${kind} envelope`);
        assert.equal(decodedEnvelope.mac !== undefined, field === 'mac', `${name}: mac`);
        assert.equal(decodedEnvelope.sig !== undefined && decodedEnvelope.s === message.node, field === 'sig', `${name}: sig and s`);
        const decodedBody = decodeCbor(decodedEnvelope.b);
        assert.deepEqual(checker.check(decodedBody, body!), [], `${kind} body`);
        const decoded = codec.decode(bytes);
        assert.ok(decoded.ok, `${kind}: the codec refused its own message`);
        assert.equal(decoded.kind, kind);
        if (kind !== 'batch') assert.deepEqual(checker.check(decoded.message, body!), [], `${kind} decoded message`);
      }
    }
  }
  await keysDir.remove();
});

test('the codec refuses every body the schemas refuse: each required field missing, each field of the wrong type', () => {
  const codec = new WireCodec();
  const bodies: Record<string, Record<string, unknown>> = {
    batch: { group: GROUP, node: 'gw-a', epoch: 3, first: 7, last: 8, entries: [[2, 1_795_000_000_000, Uint8Array.of(1)], [3, 1_795_000_000_004, new Uint8Array(0)]] },
    ack: { ...samples.ack[1]! },
    state: { ...samples.state[0]! },
    leader: { ...samples.leader[1]! },
  };
  let cases = 0;
  for (const [kind, valid] of Object.entries(bodies)) {
    const bodySchema = messageOf(kind).body!;
    assert.deepEqual(checker.check(valid, bodySchema), []);
    assert.ok(codec.decode(seal(kind, valid)).ok, `${kind}: the valid body`);
    for (const field of bodySchema.required as string[]) {
      const { [field]: _dropped, ...missing } = valid;
      assert.notDeepEqual(checker.check(missing, bodySchema), [], `${kind} without ${field}: the schema should refuse`);
      assert.equal(codec.decode(seal(kind, missing)).ok, false, `${kind} without ${field}: the codec should refuse`);
      cases++;
    }
    for (const field of Object.keys(bodySchema.properties as object)) {
      if (valid[field] === undefined) continue;
      const wrong = { ...valid, [field]: typeof valid[field] === 'string' ? 12 : 'text' };
      assert.notDeepEqual(checker.check(wrong, bodySchema), [], `${kind}.${field} mistyped: the schema should refuse`);
      assert.equal(codec.decode(seal(kind, wrong)).ok, false, `${kind}.${field} mistyped: the codec should refuse`);
      cases++;
    }
  }
  const enums: Array<[string, Record<string, unknown>]> = [
    ['state', { ...bodies.state, role: 'boss' }],
    ['state', { ...bodies.state, state: 'asleep' }],
    ['leader', { ...bodies.leader, kind: 'coup' }],
    ['ack', { ...bodies.ack, node: 'gw/b' }],
    ['batch', { ...bodies.batch, entries: [[2, 1, Uint8Array.of(1), 'extra'], [3, 2, Uint8Array.of(2)]] }],
    ['batch', { ...bodies.batch, first: 0, last: 1 }],
  ];
  for (const [kind, body] of enums) {
    assert.notDeepEqual(checker.check(body, messageOf(kind).body!), [], `${kind} ${JSON.stringify(body, (_k, v: unknown) => (v instanceof Uint8Array ? [...v] : v))}: schema`);
    assert.equal(codec.decode(seal(kind, body)).ok, false, `${kind}: codec`);
    cases++;
  }
  assert.ok(cases > 40, `${cases} cases`);
});

test('on a real broker every operation carries the QoS and retain flag the document gives it, and every payload matches', async () => {
  const dir = await tempDir('asyncapi-wire');
  const broker = await startMosquitto(dir.path);
  const keys = groupKeys(dir.path);
  const members = ['gw-a', 'gw-b'];
  const seen: Array<{ topic: string; qos: number; retain: boolean; payload: Uint8Array }> = [];
  const watcher = mqtt.connect(broker.url, { protocolVersion: 5, clientId: 'asyncapi-watcher', reconnectPeriod: 0 });
  watcher.on('message', (topic, payload, packet) => seen.push({ topic, qos: packet.qos, retain: packet.retain, payload: new Uint8Array(payload) }));
  await new Promise((resolve) => watcher.once('connect', resolve));
  // QoS 2 and retain-as-published: the watcher receives each message with the QoS and retain flag it was sent with.
  await watcher.subscribeAsync('lastgasp/#', { qos: 2, rap: true });
  const a = await startNode({ dir: dir.path, name: 'gw-a', role: 'primary', brokers: [broker.url], siblings: ['gw-b'], auth: keys.auth('gw-a', members), heartbeatMs: 100 });
  const b = await startNode({ dir: dir.path, name: 'gw-b', role: 'standby', brokers: [broker.url], siblings: ['gw-a'], auth: keys.auth('gw-b', members) });
  try {
    await a.append(5, 'wire');
    await waitFor('the sibling to hold the entries', () => (b.log.watermarks().committed >= 5 ? true : undefined));
    await a.replication.publishLeader({ group: GROUP, kind: 'leader', epoch: 1, node: 'gw-a', since: 1, atMs: Date.now() });
    a.replication.publishPower({ node: 'gw-a', state: 'ONLINE', source: 'bridge:test', acPresent: true, socPercent: 87, packMv: 13_200, alarms: [], atMs: Date.now() });
    await b.replication.abort();
    const channels = ['log', 'ack', 'state', 'leader', 'power', 'availability'];
    const byChannel = (name: string) => seen.filter((message) => channelOf(message.topic) === name);
    await waitFor('one message on every channel, and the Will of gw-b', () =>
      channels.every((name) => byChannel(name).length > 0) && byChannel('state').some((m) => m.topic.endsWith('/gw-b')) ? true : undefined,
    );
    // A third member's view: it verifies both nodes' signatures with the group's public keys.
    const codec = new WireCodec(keys.auth('gw-c', members));
    for (const message of seen) {
      const channel = channelOf(message.topic);
      assert.ok(channel, `${message.topic} is on no documented channel`);
      const operation = Object.values(document.operations).find((op) => op.action === 'send' && op.channel.$ref === `#/channels/${channel}`)!;
      assert.equal(message.qos, operation.bindings?.mqtt?.qos, `${message.topic}: QoS`);
      assert.equal(message.retain, operation.bindings?.mqtt?.retain, `${message.topic}: retain`);
      const { envelope, body, contentType } = messageOf(channel === 'log' ? 'batch' : channel);
      if (contentType === 'text/plain') {
        assert.deepEqual(checker.check(new TextDecoder().decode(message.payload), envelope), [], `${message.topic}`);
        continue;
      }
      if (contentType === 'application/json') {
        assert.deepEqual(checker.check(JSON.parse(new TextDecoder().decode(message.payload)), envelope), [], `${message.topic}`);
        continue;
      }
      const decodedEnvelope = decodeCbor(message.payload) as { b: Uint8Array };
      assert.deepEqual(checker.check(decodedEnvelope, envelope), [], `${message.topic} envelope`);
      assert.deepEqual(checker.check(decodeCbor(decodedEnvelope.b), body!), [], `${message.topic} body`);
      assert.ok(codec.decode(message.payload).ok);
    }
    const will = byChannel('state').filter((m) => m.topic.endsWith('/gw-b')).map((m) => codec.decode(m.payload)).at(-1);
    assert.ok(will?.ok && will.kind === 'state');
    assert.equal(will.message.state, 'offline', 'the Will of a gateway that vanished says offline');
  } finally {
    watcher.end(true);
    await a.stop();
    await b.stop();
    await broker.stop();
    await dir.remove();
  }
});

function channelOf(topic: string): string | undefined {
  for (const [name, channel] of Object.entries(document.channels)) {
    const pattern = new RegExp(`^${channel.address.replace(/\{[a-z]+\}/g, '[^/]+')}$`);
    if (pattern.test(topic)) return name;
  }
  return undefined;
}
