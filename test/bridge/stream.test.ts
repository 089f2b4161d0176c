// Stream edge cases of the bridge's receive path, one test each (the list in STYLE.md and issue 4): one
// frame, two in one chunk, a frame split across chunks, leading garbage, a bad CRC, a flood without a
// delimiter, a peer that stops mid-frame, end of stream, a length past the buffer, an unknown type and a
// malformed body. Every byte fed in must come out in a good frame or under a named drop counter.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  BRIDGE_ENCODED_LEN_MAX,
  BRIDGE_STALL_MS,
  BridgeParser,
  droppedBytes,
  encodeFrame,
  encodeMessage,
  MessageType,
  type BridgeFrame,
} from '../../firmware-bridge/index.ts';
import { fromHex } from './hex.ts';

/** Golden vector "heartbeat" of PROTOCOL.md §10. */
const HEARTBEAT_WIRE = fromHex('03 01 20 03 03 a1 06 19 13 88 5d be 00');
/** Golden vector "cut" of PROTOCOL.md §10. */
const CUT_WIRE = fromHex('03 01 31 03 06 a1 06 19 01 f4 be d2 00');

function parser() {
  const frames: BridgeFrame[] = [];
  const rejected: number[] = [];
  const instance = new BridgeParser({ frame: (frame) => frames.push(frame), rejected: (result) => rejected.push(result.type) });
  return { instance, frames, rejected, counters: () => instance.counters.snapshot() };
}

/** Every byte is accounted for: in a good frame, an idle delimiter, a dropped frame, or still buffered. */
function assertAccounted(p: ReturnType<typeof parser>): void {
  const counters = p.counters();
  const accounted = (counters['rx.frame-bytes'] ?? 0) + (counters['rx.idle-delimiters'] ?? 0) + droppedBytes(counters) + p.instance.pending;
  assert.equal(accounted, counters['rx.bytes'], `bytes in = bytes accounted for: ${JSON.stringify(counters)}`);
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

test('one frame in one chunk gives one message', () => {
  const p = parser();
  p.instance.push(HEARTBEAT_WIRE);
  assert.equal(p.frames.length, 1);
  assert.deepEqual(p.frames[0]!.message, { type: 'heartbeat', uptimeMs: 5000 });
  assert.equal(p.frames[0]!.seq, 3);
  assertAccounted(p);
});

test('two frames in one chunk give two messages in order', () => {
  const p = parser();
  p.instance.push(concat(HEARTBEAT_WIRE, CUT_WIRE));
  assert.deepEqual(p.frames.map((frame) => frame.message.type), ['heartbeat', 'cut']);
  assertAccounted(p);
});

test('a frame split into single bytes is reassembled', () => {
  const p = parser();
  for (const byte of CUT_WIRE) p.instance.push(Uint8Array.of(byte));
  assert.deepEqual(p.frames.map((frame) => frame.message), [{ type: 'cut', delayMs: 500 }]);
  assertAccounted(p);
});

test('the delimiter arriving alone in the next chunk completes the frame', () => {
  const p = parser();
  p.instance.push(CUT_WIRE.subarray(0, -1));
  assert.equal(p.frames.length, 0);
  p.instance.push(CUT_WIRE.subarray(-1));
  assert.equal(p.frames.length, 1);
  assertAccounted(p);
});

test('leading garbage is dropped and counted, and the next frame is read', () => {
  const p = parser();
  p.instance.push(concat(fromHex('de ad be ef 00'), HEARTBEAT_WIRE));
  assert.equal(p.frames.length, 1);
  assert.ok(droppedBytes(p.counters()) === 5, `5 garbage bytes dropped: ${JSON.stringify(p.counters())}`);
  assertAccounted(p);
});

test('a frame with one flipped bit fails the CRC, is counted, and does not stop the next frame', () => {
  const p = parser();
  const corrupt = CUT_WIRE.slice();
  corrupt[9] = corrupt[9]! ^ 0x01; // 0xf4 (delayMs low byte) becomes 0xf5.
  p.instance.push(concat(corrupt, HEARTBEAT_WIRE));
  assert.deepEqual(p.frames.map((frame) => frame.message.type), ['heartbeat']);
  assert.equal(p.counters()['drop.crc.frames'], 1);
  assert.equal(p.counters()['drop.crc.bytes'], CUT_WIRE.length);
  assertAccounted(p);
});

test('a flood without a delimiter stays bounded and is counted as oversize', () => {
  const p = parser();
  const flood = new Uint8Array(100_000).fill(0x55);
  for (let offset = 0; offset < flood.length; offset += 4096) {
    p.instance.push(flood.subarray(offset, offset + 4096));
    assert.ok(p.instance.buffered <= BRIDGE_ENCODED_LEN_MAX, 'the buffer never exceeds the largest frame');
  }
  p.instance.push(Uint8Array.of(0x00));
  p.instance.push(HEARTBEAT_WIRE);
  assert.equal(p.counters()['drop.oversize.bytes'], flood.length + 1);
  assert.equal(p.frames.length, 1, 'the frame after the flood is read');
  assertAccounted(p);
});

test('a peer that stops mid-frame: the stale fragment is dropped as stalled, the next frame survives', () => {
  const p = parser();
  p.instance.push(CUT_WIRE.subarray(0, 6), 1000);
  p.instance.push(HEARTBEAT_WIRE, 1000 + BRIDGE_STALL_MS + 1);
  assert.deepEqual(p.frames.map((frame) => frame.message.type), ['heartbeat']);
  assert.equal(p.counters()['drop.stalled.bytes'], 6);
  assertAccounted(p);
});

test('end of stream drops a partial frame as truncated', () => {
  const p = parser();
  p.instance.push(CUT_WIRE.subarray(0, 7));
  p.instance.flush();
  assert.equal(p.counters()['drop.truncated.bytes'], 7);
  assert.equal(p.instance.buffered, 0);
  assertAccounted(p);
});

test('a COBS code byte pointing past the end of the frame is counted as cobs', () => {
  const p = parser();
  p.instance.push(fromHex('09 01 02 00'));
  assert.equal(p.counters()['drop.cobs.frames'], 1);
  assertAccounted(p);
});

test('a frame shorter than header, body and CRC is counted as short', () => {
  const p = parser();
  p.instance.push(fromHex('04 01 20 03 00'));
  assert.equal(p.counters()['drop.short.frames'], 1);
  assertAccounted(p);
});

test('an unknown message type with a valid CRC is counted and reported for a NAK', () => {
  const p = parser();
  p.instance.push(encodeFrame({ version: 1, type: 0x55, seq: 9, body: Uint8Array.of(0xa0) }));
  assert.equal(p.counters()['drop.type.frames'], 1);
  assert.deepEqual(p.rejected, [0x55]);
  assertAccounted(p);
});

test('an unknown protocol version is counted and not decoded', () => {
  const p = parser();
  p.instance.push(encodeFrame({ version: 9, type: MessageType.HEARTBEAT, seq: 1, body: Uint8Array.of(0xa0) }));
  assert.equal(p.counters()['drop.version.frames'], 1);
  assert.equal(p.frames.length, 0);
});

test('a body that is not a CBOR map, or misses a required key, is counted as body', () => {
  const p = parser();
  p.instance.push(encodeFrame({ version: 1, type: MessageType.CUT, seq: 1, body: fromHex('82 01 02') }));
  p.instance.push(encodeFrame({ version: 1, type: MessageType.CUT, seq: 2, body: fromHex('a0') }));
  p.instance.push(encodeFrame({ version: 1, type: MessageType.CUT, seq: 3, body: fromHex('a1 00 63 61 62 63') }));
  p.instance.push(encodeFrame({ version: 1, type: MessageType.CUT, seq: 4, body: fromHex('a1 00 1b') }));
  assert.equal(p.counters()['drop.body.frames'], 4);
  assert.equal(p.frames.length, 0);
  assertAccounted(p);
});

test('unknown keys in a body are ignored (forward compatibility)', () => {
  const p = parser();
  p.instance.push(encodeFrame({ version: 1, type: MessageType.CUT, seq: 1, body: fromHex('a2 00 19 01 f4 18 63 f5') }));
  assert.deepEqual(p.frames.map((frame) => frame.message), [{ type: 'cut', delayMs: 500 }]);
});

test('a stream of many messages of every kind round-trips through the parser', () => {
  const p = parser();
  const messages = [
    { type: 'telemetry', acPresent: true, socPermille: 1000, packMv: 13600, currentMa: 420, alarms: ['cell-ov'] },
    { type: 'power-event', kind: 'brownout', holdUpMs: 4000, detail: 'vin 10.8 V' },
    { type: 'hold', durationMs: 0 },
    { type: 'nak', nakSeq: 4, nakType: 0x30, reason: 'out-of-range', detail: 'max 60000' },
  ] as const;
  const wire = concat(...messages.map((message, seq) => encodeMessage(message, seq)));
  for (let offset = 0; offset < wire.length; offset += 7) p.instance.push(wire.subarray(offset, offset + 7));
  assert.deepEqual(p.frames.map((frame) => frame.message), messages);
  assertAccounted(p);
});
