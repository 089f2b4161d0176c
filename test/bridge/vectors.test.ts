// The golden vectors in firmware-bridge/PROTOCOL.md are the contract a firmware author implements from;
// this test parses them out of the page and checks the encoder and decoder against every one, so that the
// page and the code cannot disagree.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  cobsDecodeInto,
  cobsEncode,
  crc16,
  CRC16_CHECK,
  decodeFrame,
  decodeMessage,
  encodeMessage,
  MESSAGE_TYPE_BY_NAME,
  type BridgeMessage,
} from '../../firmware-bridge/index.ts';
import { fromHex, toHex } from './hex.ts';

const PROTOCOL_MD = join(fileURLToPath(import.meta.url), '..', '..', '..', 'firmware-bridge', 'PROTOCOL.md');

interface Vector {
  name: string;
  seq: number;
  message: BridgeMessage;
  raw: Uint8Array;
  wire: Uint8Array;
}

function readVectors(): Vector[] {
  const text = readFileSync(PROTOCOL_MD, 'utf8');
  const blocks = [...text.matchAll(/```vector\n([\s\S]*?)```/g)].map((match) => match[1]!);
  return blocks.map((block) => {
    const fields = Object.fromEntries(
      block
        .trim()
        .split('\n')
        .map((line) => {
          const colon = line.indexOf(':');
          return [line.slice(0, colon).trim(), line.slice(colon + 1).trim()];
        }),
    );
    return {
      name: fields.name!,
      seq: Number(fields.seq),
      message: JSON.parse(fields.message!) as BridgeMessage,
      raw: fromHex(fields.raw!),
      wire: fromHex(fields.wire!),
    };
  });
}

const vectors = readVectors();

test('PROTOCOL.md holds a golden vector for every message type', () => {
  const covered = new Set(vectors.map((vector) => vector.message.type));
  assert.deepEqual([...covered].sort(), Object.keys(MESSAGE_TYPE_BY_NAME).sort());
});

test('CRC-16/IBM-3740 gives the catalogue check value 0x29B1 over "123456789"', () => {
  assert.equal(crc16(new TextEncoder().encode('123456789')), CRC16_CHECK);
  assert.equal(CRC16_CHECK, 0x29b1);
});

test('the table-driven CRC (two bytes per step) equals the bit-by-bit definition in PROTOCOL.md §4 for every length and offset', () => {
  const bitwise = (bytes: Uint8Array, start: number, end: number) => {
    let crc = 0xffff;
    for (let index = start; index < end; index++) {
      crc ^= bytes[index]! << 8;
      for (let bit = 0; bit < 8; bit++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
    }
    return crc;
  };
  const bytes = Uint8Array.from({ length: 300 }, (_, index) => (index * 131 + 7) & 0xff);
  for (let start = 0; start < 8; start++) for (let end = start; end <= bytes.length; end += 13) assert.equal(crc16(bytes, start, end), bitwise(bytes, start, end), `[${start}, ${end})`);
});

test('COBS round-trips runs of every length around the 254-byte block boundary, with and without zeros', () => {
  for (const length of [0, 1, 253, 254, 255, 508, 600]) {
    for (const fill of [0x00, 0x11]) {
      const input = Uint8Array.from({ length }, (_, index) => (index % 7 === 3 ? fill : 0x42));
      const encoded = cobsEncode(input);
      assert.equal(encoded.includes(0), false, 'no zero in the encoded form');
      const output = new Uint8Array(encoded.length);
      const decoded = cobsDecodeInto(encoded, output);
      assert.ok(decoded.ok);
      assert.deepEqual(output.subarray(0, decoded.length), input, `length ${length}, fill ${fill}`);
    }
  }
});

test('COBS encodes the example in PROTOCOL.md §2', () => {
  assert.equal(toHex(cobsEncode(fromHex('11 00 00 22 33 00'))), '02 11 01 03 22 33 01');
});

for (const vector of vectors) {
  test(`golden vector ${vector.name}: encoder output is the wire bytes`, () => {
    assert.equal(toHex(encodeMessage(vector.message, vector.seq)), toHex(vector.wire));
  });

  test(`golden vector ${vector.name}: the wire bytes decode to the raw frame and the message`, () => {
    assert.equal(vector.wire.at(-1), 0x00, 'a wire frame ends with its delimiter');
    const framed = decodeFrame(vector.wire.subarray(0, -1));
    assert.ok(framed.ok, `frame decodes (${framed.ok ? '' : framed.reason})`);
    const raw = vector.raw;
    assert.equal(framed.frame.version, raw[0]);
    assert.equal(framed.frame.type, raw[1]);
    assert.equal(framed.frame.seq, (raw[2]! << 8) | raw[3]!);
    assert.equal(toHex(framed.frame.body), toHex(raw.subarray(4, -2)));
    assert.equal(crc16(raw, 0, raw.length - 2), (raw.at(-2)! << 8) | raw.at(-1)!, 'the raw frame carries its CRC');
    assert.equal(crc16(raw), 0, 'the CRC over the frame with its own CRC is zero (PROTOCOL.md §4)');
    const decoded = decodeMessage(framed.frame);
    assert.ok(decoded.ok, `message decodes (${decoded.ok ? '' : decoded.reason})`);
    assert.deepEqual(decoded.frame.message, vector.message);
    assert.equal(decoded.frame.seq, vector.seq);
  });
}
