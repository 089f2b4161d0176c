// The listener's packet size scanner (MQTT 3.1.1 §2.2.3: a fixed header byte, then the remaining length as
// a variable byte integer of at most 4 bytes). It follows packets across socket reads and refuses one over
// the cap from its header alone.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import mqttPacket from 'mqtt-packet';
import { FrameScanner } from '../../agent/app/mqtt-listener/frames.ts';
import { validFilter } from '../../agent/app/mqtt-listener/topics.ts';

const pingreq = Uint8Array.of(0xc0, 0x00);
const publish = (bytes: number) => mqttPacket.generate({ cmd: 'publish', topic: 't', payload: Buffer.alloc(bytes), qos: 0, retain: false, dup: false });

test('two packets in one read, and a packet split across reads at every byte, are followed', () => {
  const both = Buffer.concat([publish(300), pingreq]);
  assert.deepEqual(new FrameScanner(1000).scan(both), { ok: true });
  for (let cut = 1; cut < both.length; cut++) {
    const scanner = new FrameScanner(1000);
    assert.deepEqual(scanner.scan(both.subarray(0, cut)), { ok: true });
    assert.deepEqual(scanner.scan(both.subarray(cut)), { ok: true });
    // Still in step: an oversize header right after is caught.
    assert.deepEqual(scanner.scan(publish(2000).subarray(0, 4)), { ok: false, reason: 'oversize' });
  }
});

test('a packet over the cap is refused from its header, before its body arrives', () => {
  const big = publish(200_000); // remaining length in 3 bytes
  assert.deepEqual(new FrameScanner(100_000).scan(big.subarray(0, 4)), { ok: false, reason: 'oversize' });
  assert.deepEqual(new FrameScanner(big.length).scan(big), { ok: true }, 'exactly the cap is taken');
  assert.deepEqual(new FrameScanner(big.length - 1).scan(big), { ok: false, reason: 'oversize' });
});

test('a remaining length of more than 4 bytes is malformed', () => {
  assert.deepEqual(new FrameScanner(1 << 30).scan(Uint8Array.of(0x30, 0xff, 0xff, 0xff, 0xff, 0x01)), { ok: false, reason: 'malformed' });
});

test('random bytes give a verdict, never a throw', () => {
  let seed = 7;
  const random = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) % 256);
  for (let round = 0; round < 2000; round++) {
    const scanner = new FrameScanner(1 + (random() << 8));
    const chunk = Uint8Array.from({ length: 1 + random() }, random);
    const verdict = scanner.scan(chunk);
    assert.ok(verdict.ok || verdict.reason === 'oversize' || verdict.reason === 'malformed');
  }
});

test('subscription filters: wildcards only as whole levels, "#" only last', () => {
  for (const filter of ['#', 'a/#', '+', 'a/+/b', '+/+', '$SYS/#', 'a//b']) assert.ok(validFilter(filter), filter);
  for (const filter of ['', 'a/#/b', 'a#', 'a/b+', '#/a', 'a\u0000b']) assert.ok(!validFilter(filter), filter);
});
