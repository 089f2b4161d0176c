// The config schema: defaults fill in, and every kind of mistake is refused with the field and the fix.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { validateConfig, loadConfig, describeConfig } from '../../agent/config/index.ts';
import { isLastgaspError } from '../../agent/util/index.ts';
import { tempDir } from '../support/ports.ts';

/** Per-node keys as `lastgasp keys show` prints them (validation only checks their form, loading checks them). */
const signing = {
  keyFile: '/etc/lastgasp/gw-a.key',
  publicKeys: { 'gw-a': '11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=', 'gw-b': '/etc/lastgasp/gw-b.pub', 'gw-c': '/etc/lastgasp/gw-c.pub' },
};

const minimal = {
  node: 'gw-a',
  group: 'line-1',
  dataDir: '/var/lib/lastgasp',
  siblings: ['gw-b'],
  replication: { brokers: [{ url: 'mqtt://127.0.0.1:1883' }], signing },
};

function messages(raw: unknown): string[] {
  const result = validateConfig(raw);
  assert.equal(result.ok, false, 'expected the config to be refused');
  return result.ok ? [] : result.issues.map((issue) => `${issue.path}: ${issue.message}`);
}

test('a minimal config is valid and every default is filled in', () => {
  const result = validateConfig(minimal);
  assert.ok(result.ok);
  const config = result.config;
  assert.equal(config.role, 'standby');
  assert.equal(config.api.listen, 'unix:/run/lastgasp/api.sock');
  assert.equal(config.api.socketMode, '0660');
  assert.equal(config.log.segmentBytes, 64 * 1024 * 1024);
  assert.equal(config.replication.durability, 'replica');
  assert.equal(config.replication.protocol, 'auto');
  assert.deepEqual(config.power.source, { kind: 'none' });
  assert.equal(config.power.socPercentMin, 20);
  assert.equal(config.takeover.onHandoff, true);
});

test('a missing required field is named with what it is for', () => {
  const { node: _node, ...rest } = minimal;
  assert.deepEqual(messages(rest), ["node: is required (This gateway's name, unique in the group.)"]);
});

test('a bad broker URL names the list index and the expected form', () => {
  const raw = { ...minimal, replication: { brokers: [{ url: 'mqtt://a:1883' }, { url: 'mqtt:/x' }] } };
  assert.deepEqual(messages(raw), ['replication.brokers[1].url: "mqtt:/x" is not a URL (expected mqtt://host:port or mqtts://host:port)']);
});

test('an unknown key suggests the closest known one', () => {
  const [message] = messages({ ...minimal, lgo: { lingerMs: 1 } });
  assert.match(message!, /^lgo: unknown key \(did you mean "log"\?\)$/);
});

test('sizes accept units and refuse nonsense', () => {
  const ok = validateConfig({ ...minimal, log: { segmentBytes: '8MiB', quotaBytes: '1 GiB' } });
  assert.ok(ok.ok);
  assert.equal(ok.config.log.segmentBytes, 8 * 1024 * 1024);
  assert.equal(ok.config.log.quotaBytes, 1024 ** 3);
  assert.match(messages({ ...minimal, log: { segmentBytes: 'lots' } })[0]!, /^log\.segmentBytes: "lots" is not a size/);
});

test('rules across keys: replica durability needs a sibling; the quorum cannot exceed the brokers', () => {
  assert.deepEqual(messages({ ...minimal, siblings: [] }), ['siblings: is empty, but replication.durability is "replica": name the sibling gateway(s), or set durability to "broker"']);
  const independent = { ...minimal, replication: { brokers: [{ url: 'mqtt://a:1' }, { url: 'mqtt://b:1' }], mode: 'independent', quorum: 3, signing } };
  assert.deepEqual(messages(independent), ['replication.quorum: 3 is more than the 2 broker(s) listed']);
});

test('replicaAcks: every sibling by default, at most the siblings listed', () => {
  const result = validateConfig({ ...minimal, siblings: ['gw-b', 'gw-c'] });
  assert.ok(result.ok);
  assert.equal(result.config.replication.replicaAcks, undefined);
  const one = validateConfig({ ...minimal, siblings: ['gw-b', 'gw-c'], replication: { ...minimal.replication, replicaAcks: 1 } });
  assert.ok(one.ok);
  assert.equal(one.config.replication.replicaAcks, 1);
  assert.deepEqual(messages({ ...minimal, replication: { ...minimal.replication, replicaAcks: 2 } }), ['replication.replicaAcks: 2 is more than the 1 sibling(s) listed']);
  assert.match(messages({ ...minimal, replication: { ...minimal.replication, replicaAcks: 0 } })[0]!, /^replication\.replicaAcks: /);
});

test('names that NATS would refuse in a topic are refused here first', () => {
  assert.deepEqual(messages({ ...minimal, group: 'line.1' }), ['group: "line.1" is not valid (expected a name of 1-64 letters, digits, "_" or "-" (used in MQTT topics))']);
  assert.match(messages({ ...minimal, replication: { ...minimal.replication, topicPrefix: 'plant 7' } })[0]!, /^replication\.topicPrefix: "plant 7" is not valid/);
  assert.ok(validateConfig({ ...minimal, replication: { ...minimal.replication, topicPrefix: 'acme/plant-7' } }).ok);
});

test('driver options: a Q1 UPS with its voltage bounds, a Daly pack with a mains threshold', () => {
  const q1 = validateConfig({ ...minimal, power: { source: { kind: 'q1', transport: { type: 'serial', path: '/dev/ttyUSB1' }, batteryVoltsLow: 21.6, batteryVoltsHigh: 27.3 } } });
  assert.ok(q1.ok);
  assert.deepEqual(q1.config.power.source, { kind: 'q1', transport: { type: 'serial', path: '/dev/ttyUSB1' }, batteryVoltsLow: 21.6, batteryVoltsHigh: 27.3 });
  assert.match(messages({ ...minimal, power: { source: { kind: 'daly', transport: { type: 'tcp', host: 'h', port: 4001 }, acDischargeThresholdMa: 'lots' } } })[0]!, /^power\.source\.acDischargeThresholdMa: "lots" is not an integer/);
});

test('a power source of an unknown kind lists the kinds there are', () => {
  const [message] = messages({ ...minimal, power: { source: { kind: 'ups' } } });
  assert.equal(message, 'power.source.kind: "ups" is not allowed (expected one of: none, bridge, jbd, daly, q1, nut, sysfs)');
});

test('a serial bridge source is validated down to its transport', () => {
  const good = validateConfig({ ...minimal, power: { source: { kind: 'bridge', transport: { type: 'serial', path: '/dev/ttyUSB0', baudRate: 115200 } } } });
  assert.ok(good.ok);
  const [message] = messages({ ...minimal, power: { source: { kind: 'bridge', transport: { type: 'tcp', host: 'h', port: 70000 } } } });
  assert.equal(message, 'power.source.transport.port: 70000 is out of range (expected integer 1..65535)');
});

test('loadConfig reads YAML and JSON and refuses a broken file with its name', async () => {
  const dir = await tempDir('config');
  try {
    const yamlFile = join(dir.path, 'agent.yaml');
    await writeFile(yamlFile, 'node: gw-a\ngroup: line-1\ndataDir: /data\nsiblings: [gw-b]\nreplication:\n  hmacKeyFile: /etc/lastgasp/group.key\n  brokers:\n    - url: mqtt://10.0.0.1:1883\n');
    assert.equal((await loadConfig(yamlFile)).replication.brokers[0]!.url, 'mqtt://10.0.0.1:1883');
    const jsonFile = join(dir.path, 'agent.json');
    await writeFile(jsonFile, JSON.stringify(minimal));
    assert.equal((await loadConfig(jsonFile)).node, 'gw-a');
    const broken = join(dir.path, 'broken.json');
    await writeFile(broken, '{"node": ');
    await assert.rejects(loadConfig(broken), (error) => isLastgaspError(error, 'CONFIG_INVALID') && error.message.startsWith(`config ${broken}: is not valid JSON`));
    const invalid = join(dir.path, 'invalid.yaml');
    await writeFile(invalid, 'node: "gw a"\n');
    await assert.rejects(loadConfig(invalid), (error) => isLastgaspError(error, 'CONFIG_INVALID') && error.message.includes(`config ${invalid}: node: "gw a" is not valid`));
  } finally {
    await dir.remove();
  }
});

test('config defaults documents every top-level key', () => {
  const text = describeConfig();
  for (const key of ['node:', 'group:', 'dataDir:', 'api:', 'log:', 'replication:', 'power:', 'takeover:', 'logging:']) assert.ok(text.includes(`\n${key}`), `missing ${key}`);
  assert.match(text, /segmentBytes: 67108864/);
});

test('signed by default: a group without keys is refused with the fix, unless insecureUnsigned says so', () => {
  const { signing: _signing, ...unsignedReplication } = minimal.replication;
  const refused = messages({ ...minimal, replication: unsignedReplication });
  assert.equal(refused.length, 1);
  assert.match(refused[0]!, /^replication\.signing: is not set: .*lastgasp keys generate --out DIR --node NAME.*replication\.insecureUnsigned: true/);
  const unsigned = validateConfig({ ...minimal, replication: { ...unsignedReplication, insecureUnsigned: true } });
  assert.ok(unsigned.ok);
  assert.equal(unsigned.config.replication.insecureUnsigned, true);
  assert.ok(validateConfig({ ...minimal, replication: { ...unsignedReplication, hmacKeyFile: '/etc/lastgasp/group.key' } }).ok);
  const signed = validateConfig(minimal);
  assert.ok(signed.ok);
  assert.equal(signed.config.replication.insecureUnsigned, false, 'off unless set');
  assert.deepEqual(messages({ ...minimal, replication: { ...minimal.replication, hmacKeyFile: '/k' } }), ['replication.hmacKeyFile: set either replication.signing or replication.hmacKeyFile, not both']);
});

test('signing must list every member\'s public key, this node\'s own included', () => {
  const { 'gw-b': _b, ...withoutSibling } = signing.publicKeys;
  assert.match(messages({ ...minimal, replication: { ...minimal.replication, signing: { ...signing, publicKeys: withoutSibling } } })[0]!, /^replication\.signing\.publicKeys\.gw-b: is missing: .*sibling/);
  const { 'gw-a': _a, ...withoutSelf } = signing.publicKeys;
  assert.match(messages({ ...minimal, replication: { ...minimal.replication, signing: { ...signing, publicKeys: withoutSelf } } })[0]!, /^replication\.signing\.publicKeys\.gw-a: is missing: .*this node's own/);
  assert.match(messages({ ...minimal, replication: { ...minimal.replication, signing: { ...signing, publicKeys: { ...signing.publicKeys, 'gw b': 'x' } } } })[0]!, /^replication\.signing\.publicKeys\.gw b: is not a name/);
  assert.match(messages({ ...minimal, replication: { ...minimal.replication, signing: { publicKeys: signing.publicKeys } } })[0]!, /^replication\.signing\.keyFile: is required/);
});

test('replication.direct: off when absent; a valid block is taken with always off by default; its mistakes name the field and the fix', () => {
  const off = validateConfig(minimal);
  assert.ok(off.ok && off.config.replication.direct === undefined);
  const direct = { listen: '0.0.0.0:7884', peers: [{ node: 'gw-b', address: '192.168.1.12:7884' }] };
  const on = validateConfig({ ...minimal, replication: { ...minimal.replication, direct } });
  assert.ok(on.ok);
  assert.equal(on.config.replication.direct?.always, false);
  const bad = { listen: 'nowhere', peers: [{ node: 'gw-z', address: '10.0.0.1' }, { node: 'gw-b', address: '10.0.0.2:7884' }, { node: 'gw-b', address: '10.0.0.3:7884' }] };
  assert.deepEqual(messages({ ...minimal, siblings: ['gw-b'], replication: { ...minimal.replication, direct: bad } }), [
    'replication.direct.listen: "nowhere" is not host:port (e.g. 0.0.0.0:7884, or [::]:7884)',
    'replication.direct.peers[0].node: "gw-z" is not in siblings (gw-b); only siblings may use the direct path',
    'replication.direct.peers[0].address: "10.0.0.1" is not host:port (e.g. 192.168.1.12:7884)',
    'replication.direct.peers[2].node: "gw-b" is listed twice',
  ]);
  const { signing: _signing, ...unsigned } = minimal.replication;
  const hmac = messages({ ...minimal, replication: { ...unsigned, hmacKeyFile: '/etc/lastgasp/group.key', direct } });
  assert.match(hmac.join('\n'), /^replication\.direct: needs replication\.signing/m);
});
