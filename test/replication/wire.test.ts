// The MQTT wire contract: every message kind round-trips; damaged, unsigned, forged or random payloads
// are refused with a reason and never throw.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Decoder, Encoder } from 'cbor-x';
import { WireCodec, topics } from '../../agent/replication/index.ts';
import { crc32c } from '../../agent/util/index.ts';
import { crcValueBytes } from './support/envelope.ts';

const encoder = new Encoder({ useRecords: false, mapsAsObjects: true, tagUint8Array: false });
const decoder = new Decoder({ useRecords: false, mapsAsObjects: true });

const entries = [
  { seq: 41, epoch: 2, timestampMs: 1_795_000_000_000, payload: Uint8Array.from([1, 2, 3]) },
  { seq: 42, epoch: 3, timestampMs: 1_795_000_000_001, payload: new Uint8Array(0) },
];

test('a batch round-trips with seqs, epochs, timestamps and payloads intact', () => {
  const codec = new WireCodec();
  const decoded = codec.decode(codec.encodeBatch({ group: 'g', node: 'gw-a', epoch: 3, entries }));
  assert.ok(decoded.ok && decoded.kind === 'batch');
  assert.equal(decoded.message.node, 'gw-a');
  assert.equal(decoded.message.epoch, 3);
  assert.deepEqual(
    decoded.message.entries.map((entry) => ({ ...entry, payload: [...entry.payload] })),
    entries.map((entry) => ({ ...entry, payload: [...entry.payload] })),
  );
});

test('ack, state and leader records round-trip', () => {
  const codec = new WireCodec();
  const ack = { group: 'g', node: 'gw-b', epoch: 1, counter: 1, seq: 99, want: 50, atMs: 5 };
  const state = { group: 'g', node: 'gw-a', role: 'primary' as const, state: 'flushing' as const, epoch: 1, counter: 2, committed: 7, atMs: 6 };
  const leader = { group: 'g', kind: 'handoff' as const, epoch: 1, counter: 3, node: 'gw-a', to: 'gw-b', lastSeq: 7, committed: 7, complete: true, reason: 'test', atMs: 8 };
  const a = codec.decode(codec.encodeAck(ack));
  const s = codec.decode(codec.encodeState(state));
  const l = codec.decode(codec.encodeLeader(leader));
  assert.ok(a.ok && a.kind === 'ack');
  assert.deepEqual(a.message, ack);
  assert.ok(s.ok && s.kind === 'state');
  assert.deepEqual(s.message, state);
  assert.ok(l.ok && l.kind === 'leader');
  assert.deepEqual(l.message, leader);
});

test('a handoff names its SQLite commits as a map of database name to seq; anything else there is refused', () => {
  const codec = new WireCodec();
  const base = { group: 'g', kind: 'handoff' as const, epoch: 1, counter: 4, node: 'gw-a', to: 'gw-b', lastSeq: 9, committed: 9, complete: true, atMs: 9 };
  const named = codec.decode(codec.encodeLeader({ ...base, sqlite: { app: 7, metrics: 9 } }));
  assert.ok(named.ok && named.kind === 'leader');
  assert.deepEqual({ ...named.message.sqlite }, { app: 7, metrics: 9 });
  const tooMany = Object.fromEntries(Array.from({ length: 65 }, (_, index) => [`db${index}`, index]));
  for (const sqlite of [{ app: 1.5 }, { app: 'seven' }, { 'not a name!': 1 }, [1, 2], tooMany, new Uint8Array(3)]) {
    const result = codec.decode(codec.encodeLeader({ ...base, sqlite: sqlite as unknown as Record<string, number> }));
    assert.ok(!result.ok && result.reason === 'bad-leader:sqlite', `${JSON.stringify(sqlite)}: ${JSON.stringify(result)}`);
  }
  // A negative seq does not even get past the strict CBOR decoder.
  assert.ok(!codec.decode(codec.encodeLeader({ ...base, sqlite: { app: -1 } })).ok);
});

test('a flipped byte anywhere in the body fails the CRC', () => {
  const codec = new WireCodec();
  const bytes = codec.encodeBatch({ group: 'g', node: 'n', epoch: 1, entries });
  let crcFailures = 0;
  for (let index = 0; index < bytes.length; index++) {
    const copy = bytes.slice();
    copy[index] = copy[index]! ^ 0x01;
    const result = codec.decode(copy);
    if (!result.ok && result.reason === 'crc') crcFailures++;
    assert.ok(!result.ok || result.kind === 'batch', 'a damaged batch must never decode as another kind');
  }
  assert.ok(crcFailures > bytes.length / 2, `only ${crcFailures} of ${bytes.length} flips were caught by the CRC`);
});

/** A copy of an encoded message with the lowest bit of its envelope's CRC value flipped (same CBOR length). */
function withCrcFlipped(bytes: Uint8Array): Uint8Array {
  const value = crcValueBytes(bytes);
  assert.ok(value.length > 0, 'the CRC has value bytes of its own');
  const last = value[value.length - 1]!;
  const copy = bytes.slice();
  copy[last] = copy[last]! ^ 0x01;
  return copy;
}

test('signed: a flipped byte in the body is still reported as damage (crc), and the signature, not the CRC, decides', () => {
  const codec = new WireCodec(randomBytes(32));
  const bytes = codec.encodeBatch({ group: 'g', node: 'gw-a', epoch: 1, entries });
  const payload = entries[0]!.payload;
  const at = Buffer.from(bytes).indexOf(Buffer.from(payload));
  assert.ok(at > 0, 'the payload sits in the body');
  const damaged = bytes.slice();
  damaged[at] = damaged[at]! ^ 0x01;
  assert.deepEqual(codec.decode(damaged), { ok: false, reason: 'crc' });
  // The envelope's CRC field itself is not what protects a signed body: with it changed, the body still
  // verifies and decodes (the receiver does not checksum a body its signature vouches for).
  const decoded = codec.decode(withCrcFlipped(bytes));
  assert.ok(decoded.ok && decoded.kind === 'batch', JSON.stringify(decoded));
  // Unsigned, the same change is refused: there the CRC is the only check.
  const plain = new WireCodec();
  assert.deepEqual(plain.decode(withCrcFlipped(plain.encodeBatch({ group: 'g', node: 'gw-a', epoch: 1, entries }))), { ok: false, reason: 'crc' });
});

test('with a group key, unsigned and forged messages are refused and signed ones accepted', () => {
  const key = randomBytes(32);
  const signer = new WireCodec(key);
  const batch = signer.encodeBatch({ group: 'g', node: 'gw-a', epoch: 1, entries });
  assert.ok(signer.decode(batch).ok);
  const unsigned = new WireCodec().encodeBatch({ group: 'g', node: 'gw-a', epoch: 1, entries });
  assert.deepEqual(signer.decode(unsigned), { ok: false, reason: 'unsigned' });
  const forger = new WireCodec(randomBytes(32));
  assert.deepEqual(signer.decode(forger.encodeBatch({ group: 'g', node: 'gw-a', epoch: 1, entries })), { ok: false, reason: 'bad-signature' });
});

test('a signature over one kind does not validate the same body as another kind', () => {
  const codec = new WireCodec(randomBytes(32));
  const ackBytes = codec.encodeAck({ group: 'g', node: 'gw-b', epoch: 1, counter: 1, seq: 5, atMs: 1 });
  assert.ok(codec.decode(ackBytes).ok);
  // Re-label the envelope's kind: the MAC covers the kind, so this must fail.
  const relabeled = encoder.encode({ ...(decoder.decode(ackBytes) as object), k: 'state' });
  assert.deepEqual(codec.decode(relabeled), { ok: false, reason: 'bad-signature' });
});

test('malformed envelopes and bodies are refused by reason', () => {
  const codec = new WireCodec();
  assert.deepEqual(codec.decode(Uint8Array.from([0xff, 0x00])), { ok: false, reason: 'envelope-cbor-simple' });
  assert.deepEqual(codec.decode(encoder.encode([1, 2])), { ok: false, reason: 'not-an-envelope' });
  assert.deepEqual(codec.decode(encoder.encode({ v: 2, k: 'batch' })), { ok: false, reason: 'version-2' });
  assert.deepEqual(codec.decode(encoder.encode({ v: 1, k: 'nope', b: new Uint8Array(1), crc: 0 })), { ok: false, reason: 'unknown-kind' });
  const sealedBody = (body: unknown) => {
    const bytes = encoder.encode(body);
    return encoder.encode({ v: 1, k: 'batch', b: bytes, crc: crc32c(bytes) });
  };
  assert.deepEqual(codec.decode(sealedBody({ group: 'g', node: 'n', epoch: 1, first: 5, last: 9, entries: [] })), { ok: false, reason: 'bad-batch-range' });
  assert.deepEqual(codec.decode(sealedBody({ group: 'g', node: 'n', epoch: 1, first: 5, last: 5, entries: [[1, 2, 'text']] })), { ok: false, reason: 'bad-batch-entry' });
});

test('ten thousand random payloads never throw and never decode', () => {
  const codec = new WireCodec();
  let seed = 12345;
  const random = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
  for (let round = 0; round < 10_000; round++) {
    const bytes = new Uint8Array(Math.floor(random() * 200));
    for (let index = 0; index < bytes.length; index++) bytes[index] = Math.floor(random() * 256);
    const result = codec.decode(bytes);
    assert.equal(result.ok, false);
  }
});

test('topics: the tree is versioned under the prefix and the group, and nodeOf refuses what is not ours', () => {
  const t = topics('lastgasp', 'line-1');
  assert.equal(t.log('gw-a'), 'lastgasp/v1/line-1/log/gw-a');
  assert.equal(t.leader, 'lastgasp/v1/line-1/leader');
  assert.equal(t.power('gw-a'), 'lastgasp/v1/gw-a/power');
  assert.deepEqual(t.nodeOf('lastgasp/v1/line-1/ack/gw-b'), { kind: 'ack', node: 'gw-b' });
  assert.equal(t.nodeOf('lastgasp/v1/line-2/ack/gw-b'), undefined);
  assert.equal(t.nodeOf('lastgasp/v1/line-1/log/gw-a/extra'), undefined);
  assert.equal(t.nodeOf('lastgasp/v1/line-1/leader'), undefined);
});

test('the one-pass batch encoder gives the values cbor-x gives, at every head-size boundary, signed or not', () => {
  const cases: Array<[count: number, payloadBytes: number, timestampMs: number, first: number]> = [
    [1, 0, 5, 1],
    [3, 23, 1_795_000_000_000, 24],
    [2, 24, 255, 255],
    [2, 256, 65_535, 65_536],
    [1, 65_536, 2 ** 33, 2 ** 32 + 5],
    [300, 7, 1_795_000_000_000, 9],
  ];
  for (const key of [undefined, randomBytes(32)]) {
    const codec = new WireCodec(key);
    for (const [count, payloadBytes, timestampMs, first] of cases) {
      const batch = Array.from({ length: count }, (_, index) => ({ seq: first + index, epoch: index + 1, timestampMs: timestampMs + index, payload: new Uint8Array(payloadBytes).fill(index) }));
      const bytes = codec.encodeBatch({ group: 'line1', node: 'gw-a', epoch: 7, entries: batch });
      const envelope = decoder.decode(bytes) as { v: number; k: string; b: Uint8Array; crc: number; mac?: Uint8Array };
      const body = { group: 'line1', node: 'gw-a', epoch: 7, first, last: first + count - 1, entries: batch.map((entry) => [entry.epoch, entry.timestampMs, entry.payload]) };
      assert.deepEqual(normalize(decoder.decode(envelope.b)), normalize(decoder.decode(encoder.encode(body))));
      assert.equal(envelope.crc, crc32c(envelope.b));
      assert.equal(envelope.mac !== undefined, key !== undefined);
      const decoded = codec.decode(bytes);
      assert.ok(decoded.ok && decoded.kind === 'batch');
      assert.deepEqual(decoded.message.entries.map((entry) => entry.seq), batch.map((entry) => entry.seq));
    }
  }
});

test('a batch whose timestamps another encoder wrote as uint64 decodes to numbers', () => {
  const codec = new WireCodec();
  const timestamp = 1_795_000_000_000;
  const row = new Uint8Array([0x83, 0x01, 0x1b, ...bigEndian64(timestamp), 0x41, 0x2a]);
  const head = encoder.encode({ group: 'line1', node: 'gw-a', epoch: 1, first: 1, last: 1 });
  // Splice one more key, "entries": [row], into the 5-key map cbor-x wrote (map16 head 0xb9 0x00 0x05).
  assert.deepEqual([...head.subarray(0, 3)], [0xb9, 0x00, 0x05]);
  const body = new Uint8Array([0xb9, 0x00, 0x06, ...head.subarray(3), 0x67, ...new TextEncoder().encode('entries'), 0x81, ...row]);
  const bytes = encoder.encode({ v: 1, k: 'batch', b: body, crc: crc32c(body) });
  const decoded = codec.decode(bytes);
  assert.ok(decoded.ok && decoded.kind === 'batch', JSON.stringify(decoded));
  assert.equal(decoded.message.entries[0]!.timestampMs, timestamp);
  assert.deepEqual([...decoded.message.entries[0]!.payload], [0x2a]);
});

function bigEndian64(value: number): number[] {
  const view = new DataView(new ArrayBuffer(8));
  view.setBigUint64(0, BigInt(value));
  return [...new Uint8Array(view.buffer)];
}

/** Byte strings as plain arrays, so that Buffer and Uint8Array compare equal. */
function normalize(value: unknown): unknown {
  if (value instanceof Uint8Array) return [...value];
  if (Array.isArray(value)) return value.map(normalize);
  if (typeof value === 'object' && value !== null) return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, normalize(item)]));
  return value;
}
