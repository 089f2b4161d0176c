// Per-node signatures and the strict decoder: a message verifies only with the key of the node it names,
// the body is decoded only after the signature verified, the decoder refuses what the contract does not
// use (tags, records, bigints, indefinite lengths, duplicate keys), and an epoch beyond 32 bits is refused
// in every kind of message.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Encoder } from 'cbor-x';
import { decodeStrictCbor, WireCodec, type WireAuth } from '../../agent/replication/index.ts';
import { crc32c } from '../../agent/util/index.ts';
import { groupKeys } from '../support/keys.ts';
import { tempDir } from '../support/ports.ts';
import { crcValueBytes } from './support/envelope.ts';

const raw = new Encoder({ useRecords: false, mapsAsObjects: true, tagUint8Array: false });
const entries = [{ seq: 5, epoch: 2, timestampMs: 1_795_000_000_000, payload: Uint8Array.of(7) }];
const MEMBERS = ['gw-a', 'gw-b', 'gw-c'];

async function keyrings(): Promise<{ auth: (node: string) => WireAuth; remove: () => Promise<void> }> {
  const dir = await tempDir('wire-auth');
  const keys = groupKeys(dir.path);
  return { auth: (node) => keys.auth(node, MEMBERS), remove: () => dir.remove() };
}

function hex(text: string): Uint8Array {
  return Uint8Array.from(text.replace(/\s+/g, '').match(/../g)!.map((pair) => parseInt(pair, 16)));
}

test('Ed25519: every kind signed by its node verifies with the group\'s public keys and names the signer', async () => {
  const keys = await keyrings();
  try {
    const a = new WireCodec(keys.auth('gw-a'));
    const b = new WireCodec(keys.auth('gw-b'));
    assert.equal(a.mode, 'ed25519');
    const batch = b.decode(a.encodeBatch({ group: 'g', node: 'gw-a', epoch: 2, entries }));
    assert.ok(batch.ok && batch.kind === 'batch');
    assert.deepEqual([...batch.message.entries[0]!.payload], [7]);
    const ack = a.decode(b.encodeAck({ group: 'g', node: 'gw-b', epoch: 2, counter: 9, seq: 5, want: 3, atMs: 1 }));
    assert.ok(ack.ok && ack.kind === 'ack');
    assert.equal(ack.message.counter, 9);
    const leader = b.decode(a.encodeLeader({ group: 'g', kind: 'leader', epoch: 2, counter: 10, node: 'gw-a', since: 1, atMs: 2 }));
    assert.ok(leader.ok && leader.kind === 'leader');
  } finally {
    await keys.remove();
  }
});

test('Ed25519: one member cannot speak as another, and unsigned, HMAC-signed or unknown signers are refused', async () => {
  const keys = await keyrings();
  try {
    const a = new WireCodec(keys.auth('gw-a'));
    const b = new WireCodec(keys.auth('gw-b'));
    // gw-b signs (as itself) a batch that names gw-a: the signature is good, the claim is not.
    assert.deepEqual(a.decode(b.encodeBatch({ group: 'g', node: 'gw-a', epoch: 2, entries })), { ok: false, reason: 'signer-mismatch' });
    assert.deepEqual(a.decode(b.encodeLeader({ group: 'g', kind: 'handoff', epoch: 9, counter: 1, node: 'gw-a', to: 'gw-b', atMs: 1 })), { ok: false, reason: 'signer-mismatch' });
    // gw-b's signature relabelled as gw-a's: verified against gw-a's key, it fails.
    const signedByB = b.encodeAck({ group: 'g', node: 'gw-b', epoch: 2, counter: 1, seq: 5, atMs: 1 });
    const envelope = decodeStrictCbor(signedByB);
    assert.ok(envelope.ok);
    const relabelled = raw.encode({ ...(envelope.value as object), s: 'gw-a' });
    assert.deepEqual(a.decode(relabelled), { ok: false, reason: 'bad-signature' });
    assert.deepEqual(a.decode(raw.encode({ ...(envelope.value as object), s: 'mallory' })), { ok: false, reason: 'unknown-signer' });
    assert.deepEqual(a.decode(new WireCodec().encodeBatch({ group: 'g', node: 'gw-a', epoch: 2, entries })), { ok: false, reason: 'unsigned' });
    assert.deepEqual(a.decode(new WireCodec(new Uint8Array(32).fill(1)).encodeBatch({ group: 'g', node: 'gw-a', epoch: 2, entries })), { ok: false, reason: 'unsigned' });
    // A key the group does not list (a fourth gateway, an attacker's) is unknown however it names itself.
    const outsiderDir = await tempDir('wire-auth-outsider');
    const outsider = groupKeys(outsiderDir.path).auth('gw-a', ['gw-a']);
    assert.deepEqual(a.decode(new WireCodec(outsider).encodeBatch({ group: 'g', node: 'gw-a', epoch: 2, entries })), { ok: false, reason: 'bad-signature' });
    await outsiderDir.remove();
  } finally {
    await keys.remove();
  }
});

test('the body is decoded only after the signature verified: a forged body full of tags fails on its signature', async () => {
  const keys = await keyrings();
  try {
    const a = new WireCodec(keys.auth('gw-a'));
    // A body that is one CBOR tag 259 (cbor-x: a Map) around a map; signed with nothing.
    const body = hex('d9 0103 a1 61 78 01');
    const forged = raw.encode({ v: 1, k: 'leader', b: body, crc: crc32c(body), s: 'gw-b', sig: new Uint8Array(64) });
    assert.deepEqual(a.decode(forged), { ok: false, reason: 'bad-signature' });
    // Unsigned, the same body reaches the strict decoder, which refuses the tag.
    const unsigned = raw.encode({ v: 1, k: 'leader', b: body, crc: crc32c(body) });
    assert.deepEqual(new WireCodec().decode(unsigned), { ok: false, reason: 'body-cbor-tag' });
  } finally {
    await keys.remove();
  }
});

test('an epoch beyond 32 bits is refused on decode in every kind; 2^32 - 1 is accepted', () => {
  const codec = new WireCodec();
  const bodies = (epoch: number): Record<string, Record<string, unknown>> => ({
    ack: { group: 'g', node: 'gw-b', epoch, counter: 1, seq: 1, atMs: 1 },
    state: { group: 'g', node: 'gw-a', role: 'primary', state: 'online', epoch, counter: 1, committed: 1, atMs: 1 },
    leader: { group: 'g', kind: 'leader', epoch, counter: 1, node: 'mallory', since: 1, atMs: 1 },
    batch: { group: 'g', node: 'gw-a', epoch, first: 1, last: 1, entries: [[1, 1, Uint8Array.of(1)]] },
    'batch entry': { group: 'g', node: 'gw-a', epoch: 1, first: 1, last: 1, entries: [[epoch, 1, Uint8Array.of(1)]] },
  });
  const seal = (kind: string, body: unknown) => {
    const b = new Uint8Array(raw.encode(body));
    return new Uint8Array(raw.encode({ v: 1, k: kind.split(' ')[0], b, crc: crc32c(b) }));
  };
  for (const [kind, body] of Object.entries(bodies(4_294_967_296))) {
    const result = codec.decode(seal(kind, body));
    assert.equal(result.ok, false, `${kind} with epoch 2^32`);
    assert.match((result as { reason: string }).reason, /epoch/, `${kind}: the reason names the epoch`);
  }
  for (const [kind, body] of Object.entries(bodies(4_294_967_295))) assert.ok(codec.decode(seal(kind, body)).ok, `${kind} with epoch 2^32 - 1`);
});

test('control messages without a counter, or with counter 0, are refused', () => {
  const codec = new WireCodec();
  const seal = (body: unknown) => {
    const b = new Uint8Array(raw.encode(body));
    return new Uint8Array(raw.encode({ v: 1, k: 'ack', b, crc: crc32c(b) }));
  };
  assert.deepEqual(codec.decode(seal({ group: 'g', node: 'gw-b', epoch: 1, seq: 1, atMs: 1 })), { ok: false, reason: 'bad-ack:counter' });
  assert.deepEqual(codec.decode(seal({ group: 'g', node: 'gw-b', epoch: 1, counter: 0, seq: 1, atMs: 1 })), { ok: false, reason: 'bad-ack:counter' });
  assert.deepEqual(codec.decode(seal({ group: 'g', node: 'gw-b', epoch: 1, counter: 2 ** 53, seq: 1, atMs: 1 })), { ok: false, reason: 'bad-ack:counter' });
});

test('the strict decoder refuses tags, records, bigints, negatives, undefined, indefinite lengths, duplicate keys and trailing bytes', () => {
  const refused: Array<[string, string, string]> = [
    ['c1 00', 'cbor-tag', 'tag 1 (a date)'],
    ['d8 40 41 00', 'cbor-tag', 'tag 64 (a typed array)'],
    // cbor-x records: tag 105 (0xd869) around a structure definition.
    ['d8 69 83 61 61 61 62 01', 'cbor-tag', 'a cbor-x record'],
    ['1b 00 20 00 00 00 00 00 00', 'cbor-integer-too-large', '2^53: a bigint with cbor-x'],
    ['1b ff ff ff ff ff ff ff ff', 'cbor-integer-too-large', '2^64 - 1'],
    ['20', 'cbor-negative', '-1'],
    ['f7', 'cbor-simple', 'undefined'],
    ['9f 01 ff', 'cbor-indefinite', 'an indefinite array'],
    ['5f 41 00 ff', 'cbor-indefinite', 'an indefinite byte string'],
    ['a2 61 61 01 61 61 02', 'cbor-duplicate-key', 'a key twice'],
    ['a1 01 02', 'cbor-key-not-text', 'an integer key'],
    ['01 02', 'cbor-trailing-bytes', 'two items'],
    ['9a ff ff ff ff', 'cbor-truncated', 'an array claiming 2^32 - 1 items'],
    ['62 c3 28', 'cbor-bad-utf8', 'invalid UTF-8'],
    ['81 81 81 81 81 01', 'cbor-too-deep', 'five levels of nesting'],
    ['1c', 'cbor-reserved', 'reserved additional information'],
  ];
  for (const [bytes, reason, what] of refused) assert.deepEqual(decodeStrictCbor(hex(bytes)), { ok: false, reason }, what);
  const proto = decodeStrictCbor(hex('a1 69 5f 5f 70 72 6f 74 6f 5f 5f 01'));
  assert.ok(proto.ok);
  assert.equal((proto.value as Record<string, unknown>)['__proto__'], 1, '"__proto__" is an ordinary key');
  assert.equal(Object.getPrototypeOf(proto.value), null);
  const accepted = decodeStrictCbor(hex('a3 61 61 1b 00 1f ff ff ff ff ff ff 61 62 fb 42 7a 1e e5 65 e0 00 00 61 63 83 f4 f5 f6'));
  assert.deepEqual(accepted, { ok: true, value: Object.assign(Object.create(null), { a: 2 ** 53 - 1, b: 1_795_000_000_000, c: [false, true, null] }) });
});

test('ten thousand random mutations of signed messages never throw and never verify as anything but the original', async () => {
  const keys = await keyrings();
  try {
    const a = new WireCodec(keys.auth('gw-a'));
    const b = new WireCodec(keys.auth('gw-b'));
    const message = a.encodeAck({ group: 'g', node: 'gw-a', epoch: 1, counter: 1, seq: 5, atMs: 1 });
    const original = b.decode(message);
    assert.ok(original.ok);
    // The bytes of the envelope's CRC value: the signature covers the body, not the CRC, and a signed
    // message's CRC is looked at only when its signature fails (wire.ts). Changed there alone, and kept the
    // same CBOR length, the message is still the original, and is taken as such.
    const crcValue = new Set(crcValueBytes(message));
    let seed = 777;
    const random = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
    for (let round = 0; round < 10_000; round++) {
      const copy = message.slice();
      const flips = 1 + Math.floor(random() * 4);
      const touched: number[] = [];
      for (let flip = 0; flip < flips; flip++) {
        const at = Math.floor(random() * copy.length);
        copy[at] = copy[at]! ^ (1 + Math.floor(random() * 255));
        touched.push(at);
      }
      const result = b.decode(copy);
      if (!result.ok) continue;
      assert.ok(touched.every((at) => crcValue.has(at)), `a mutation at ${touched.join(', ')} verified`);
      assert.deepEqual(result, original);
    }
  } finally {
    await keys.remove();
  }
});
