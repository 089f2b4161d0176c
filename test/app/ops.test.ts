// The op framing's fast paths agree with the CBOR codec: the entry op written by hand, and the op code read
// from a payload's first bytes without decoding it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeOp, encodeOp, peekOpCode, OP_DELETE, OP_ENTRY, OP_MQTT, OP_PUT, OP_SQLITE, type Op } from '../../agent/app/index.ts';
import { encodeSqliteEntry } from '../../agent/sqlite/entry.ts';
import { encodeCbor } from '../../agent/util/index.ts';

const bytes = (text: string) => new TextEncoder().encode(text);

test('an entry op is written byte for byte as the CBOR encoder writes [1, data], at every length head', () => {
  for (const length of [0, 1, 23, 24, 255, 256, 65_535, 65_536, 300_000]) {
    const data = new Uint8Array(length).map((_, index) => index * 7);
    const payload = encodeOp({ op: OP_ENTRY, data });
    assert.deepEqual(payload, encodeCbor([OP_ENTRY, data]), `length ${length}`);
    const decoded = decodeOp(payload);
    assert.ok(decoded.ok && decoded.op.op === OP_ENTRY);
    assert.deepEqual(decoded.op.data, data);
  }
});

test('peekOpCode reads the op code every op is written with, and nothing from other payloads', () => {
  const ops: Op[] = [
    { op: OP_ENTRY, data: new Uint8Array(0) },
    { op: OP_ENTRY, data: new Uint8Array(70_000) },
    { op: OP_PUT, key: 'k', value: bytes('v') },
    { op: OP_DELETE, key: 'k' },
    { op: OP_MQTT, topic: 't/1', data: bytes('m') },
    { op: OP_MQTT, topic: 't/1', data: bytes('m'), props: { retain: true, userProperties: { a: 'b' } } },
  ];
  for (const op of ops) {
    const payload = encodeOp(op);
    const decoded = decodeOp(payload);
    assert.ok(decoded.ok);
    assert.equal(peekOpCode(payload), decoded.op.op);
  }
  const sqlite = encodeSqliteEntry({ db: 'app', generation: 'g1', flags: 1, pageBytes: 4, commitPages: 1, pages: [{ pgno: 1, page: bytes('page') }] });
  assert.equal(peekOpCode(sqlite), OP_SQLITE);
  // Not an op's start: empty, a map, a text string, an array whose first element is not a small integer.
  for (const other of [new Uint8Array(0), new Uint8Array([0x82]), new Uint8Array([0xa1, 0x01, 0x02]), bytes('x1'), new Uint8Array([0x82, 0x61, 0x31, 0x01])]) {
    assert.equal(peekOpCode(other), -1);
  }
});
