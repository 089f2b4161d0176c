// The batch body: a CBOR sequence of ops is split into views the log stores as they are (and every view
// decodes to the op that was encoded); JSON lines give the same payloads; a malformed item is reported with
// its index; random bytes give a result, never a throw.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { OP_DELETE, OP_ENTRY, OP_MQTT, OP_PUT, decodeOp, encodeOp, parseJsonLines, splitCborSeq, type Op } from '../../agent/app/index.ts';
import { decodeCbor, encodeCbor } from '../../agent/util/index.ts';

const text = new TextEncoder();

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

const OPS: Op[] = [
  { op: OP_ENTRY, data: text.encode('reading 1') },
  { op: OP_PUT, key: 'sensors/temp', value: text.encode('21.5') },
  { op: OP_DELETE, key: 'sensors/old' },
  { op: OP_ENTRY, data: new Uint8Array(300).fill(7) },
  { op: OP_ENTRY, data: new Uint8Array(0) },
  { op: OP_PUT, key: 'ключ', value: new Uint8Array(70_000).fill(1) },
];

test('a CBOR sequence of ops splits into the encoded ops, as views of the body', () => {
  const encoded = OPS.map(encodeOp);
  const body = concat(encoded);
  const result = splitCborSeq(body);
  assert.ok(result.ok);
  assert.equal(result.kv, true);
  assert.deepEqual(result.payloads, encoded);
  for (const payload of result.payloads) assert.equal(payload.buffer, body.buffer, 'a view, not a copy');
  assert.deepEqual(result.payloads.map((payload) => decodeOp(payload)), OPS.map((op) => ({ ok: true, op })));
  const entriesOnly = splitCborSeq(concat([encodeOp(OPS[0]!), encodeOp(OPS[3]!)]));
  assert.ok(entriesOnly.ok && !entriesOnly.kv, 'a batch of plain entries needs no wait for the state');
});

test('longer heads than needed are accepted where the decoder agrees', () => {
  // [1, h'6869'] with the byte string's length in a two-byte argument (0x59 0x0002).
  const item = Uint8Array.of(0x82, 0x01, 0x59, 0x00, 0x02, 0x68, 0x69);
  const result = splitCborSeq(item);
  assert.ok(result.ok);
  assert.deepEqual(decodeOp(result.payloads[0]!), { ok: true, op: { op: OP_ENTRY, data: text.encode('hi') } });
});

test('malformed items are refused with their index', () => {
  const good = encodeOp(OPS[0]!);
  const cases: Array<[string, Uint8Array, RegExp]> = [
    ['truncated byte string', concat([good, good.subarray(0, good.length - 1)]), /truncated/],
    ['indefinite-length array', concat([good, Uint8Array.of(0x9f, 0x01, 0x40, 0xff)]), /truncated or not definite/],
    ['unknown op code', concat([good, Uint8Array.of(0x82, 0x09, 0x40)]), /not an op/],
    ['entry with a text string', concat([good, Uint8Array.of(0x82, 0x01, 0x61, 0x41)]), /not an op/],
    ['put without a value', concat([good, Uint8Array.of(0x82, 0x02, 0x61, 0x41)]), /not an op/],
    ['empty key', concat([good, Uint8Array.of(0x82, 0x03, 0x60)]), /key is not/],
    ['key that is not UTF-8', concat([good, Uint8Array.of(0x82, 0x03, 0x62, 0xc3, 0x28)]), /key is not/],
    ['a map', concat([good, Uint8Array.of(0xa0)]), /not an op/],
  ];
  for (const [name, body, reason] of cases) {
    const result = splitCborSeq(body);
    assert.equal(result.ok, false, name);
    if (!result.ok) {
      assert.equal(result.index, 1, name);
      assert.match(result.reason, reason, name);
    }
  }
  const tooLongKey = splitCborSeq(encodeOp({ op: OP_DELETE, key: 'k'.repeat(513) }));
  assert.ok(!tooLongKey.ok && /key is not/.test(tooLongKey.reason));
  assert.equal(splitCborSeq(new Uint8Array(0)).ok, false, 'an empty batch is refused');
});

test('JSON lines give the same payloads as the CBOR ops', () => {
  const lines = [
    JSON.stringify({ op: 'entry', data: Buffer.from('reading 1').toString('base64') }),
    JSON.stringify({ op: 'put', key: 'sensors/temp', text: '21.5' }),
    '',
    JSON.stringify({ op: 'delete', key: 'sensors/old' }),
  ].join('\n');
  const result = parseJsonLines(text.encode(lines + '\n'));
  assert.ok(result.ok);
  assert.equal(result.kv, true);
  assert.deepEqual(result.payloads, OPS.slice(0, 3).map(encodeOp));
  const bad = parseJsonLines(text.encode(`${JSON.stringify({ op: 'entry', text: 'x' })}\n{"op":"entry","data":"not base64!"}`));
  assert.ok(!bad.ok && bad.index === 1 && /base64/.test(bad.reason));
  const notOp = parseJsonLines(text.encode('{"op":"append","data":""}'));
  assert.ok(!notOp.ok && /"op" must be/.test(notOp.reason));
});

test('random bytes give a result or a reason, never a throw, and accepted views decode as ops', () => {
  let state = 0x2545f491;
  const random = () => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return (state >>> 0) / 0x1_0000_0000;
  };
  const good = encodeOp(OPS[1]!);
  for (let round = 0; round < 5000; round++) {
    const body = concat([good, good]);
    // Flip a few bytes, or cut the body short, or both.
    for (let flips = Math.floor(random() * 4); flips > 0; flips--) body[Math.floor(random() * body.length)] = Math.floor(random() * 256);
    const cut = body.subarray(0, Math.floor(random() * (body.length + 1)));
    const result = splitCborSeq(cut);
    if (result.ok) for (const payload of result.payloads) assert.equal(decodeOp(payload).ok, true, `accepted ${Buffer.from(payload).toString('hex')}`);
    else assert.equal(typeof result.reason, 'string');
  }
});

// MQTT messages (op 4): with and without their properties, as the forwarder reads them back.
const MQTT_OPS: Op[] = [
  { op: OP_MQTT, topic: 'plant/line1', data: text.encode('21.5') },
  {
    op: OP_MQTT,
    topic: 'plant/line2',
    data: text.encode('{"t":22}'),
    props: {
      retain: true,
      payloadFormatIndicator: true,
      messageExpiryInterval: 3600,
      contentType: 'application/json',
      responseTopic: 'plant/replies',
      correlationData: new Uint8Array([1, 2, 3]),
      userProperties: { site: 'north', tags: ['a', 'b'] },
    },
  },
];

test('MQTT messages with and without properties split as views, decode as encoded, and need no state wait', () => {
  const encoded = MQTT_OPS.map(encodeOp);
  assert.equal(decodeCbor(encoded[0]!) instanceof Array && (decodeCbor(encoded[0]!) as unknown[]).length, 3, 'no props: the three-element entry of before');
  const result = splitCborSeq(concat(encoded));
  assert.ok(result.ok);
  assert.equal(result.kv, false);
  assert.deepEqual(result.payloads.map((payload) => decodeOp(payload)), MQTT_OPS.map((op) => ({ ok: true, op })));
  const lines = parseJsonLines(
    text.encode(
      [
        JSON.stringify({ op: 'mqtt', topic: 'plant/line1', text: '21.5' }),
        JSON.stringify({ op: 'mqtt', topic: 'plant/line2', text: '{"t":22}', props: { ...(MQTT_OPS[1] as { props: object }).props, correlationData: 'AQID' } }),
      ].join('\n'),
    ),
  );
  assert.ok(lines.ok);
  assert.deepEqual(lines.payloads.map((payload) => decodeOp(payload)), MQTT_OPS.map((op) => ({ ok: true, op })));
});

test('an MQTT message with a wildcard topic or unknown or mistyped properties is refused with its index', () => {
  const good = encodeOp(MQTT_OPS[0]!);
  const cases: Array<[unknown[], RegExp]> = [
    [[OP_MQTT, 'plant/+', text.encode('x')], /topic/],
    [[OP_MQTT, '', text.encode('x')], /topic/],
    [[OP_MQTT, 'plant/a', text.encode('x'), { contentType: 7 }], /props/],
    [[OP_MQTT, 'plant/a', text.encode('x'), { colour: 'red' }], /props/],
    [[OP_MQTT, 'plant/a', text.encode('x'), { userProperties: { a: 1 } }], /props/],
    [[OP_MQTT, 'plant/a', text.encode('x'), [1, 2]], /props/],
  ];
  for (const [item, reason] of cases) {
    const result = splitCborSeq(concat([good, encodeCbor(item)]));
    assert.ok(!result.ok);
    assert.equal(result.index, 1);
    assert.match(result.reason, reason);
  }
  const line = parseJsonLines(text.encode(JSON.stringify({ op: 'mqtt', topic: 'a/#', text: 'x' })));
  assert.ok(!line.ok && /topic/.test(line.reason));
});
