// Batch compression (agent/replication/compression.ts): compressed where it pays and only there, round trips
// in every signing mode, and refused when the flag and the data disagree or the body is a zip bomb.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { brotliCompressSync } from 'node:zlib';
import { Decoder } from 'cbor-x';
import { BatchCompressor, BATCH_INFLATED_BYTES_MAX, WireCodec } from '../../agent/replication/index.ts';
import { groupKeys } from '../support/keys.ts';
import { tempDir } from '../support/ports.ts';
import { bombBody, GROUP, randomEntries, sealRaw, sealUnsigned, SLOW_LINK, telemetryEntries } from './support/compression-fixtures.ts';

const decoder = new Decoder({ useRecords: false, mapsAsObjects: true });
const envelopeOf = (bytes: Uint8Array) => decoder.decode(bytes) as { b: Uint8Array; z?: string };
const plain = (entries: ReturnType<typeof telemetryEntries>) => entries.map((entry) => ({ ...entry, payload: [...entry.payload] }));

test('a telemetry batch on a slow link is sent compressed and decodes to the same entries, in every signing mode', async () => {
  const keysDir = await tempDir('compression-keys');
  try {
    const codecs = [new WireCodec(), new WireCodec(randomBytes(32)), new WireCodec(groupKeys(keysDir.path).auth('gw-a', ['gw-a', 'gw-b']))];
    const entries = telemetryEntries(300);
    for (const codec of codecs) {
      const uncompressed = codec.encodeBatch({ group: GROUP, node: 'gw-a', epoch: 2, entries });
      const bytes = codec.encodeBatch({ group: GROUP, node: 'gw-a', epoch: 2, entries }, undefined, SLOW_LINK);
      assert.equal(envelopeOf(bytes).z, 'br', `${codec.mode}: compressed`);
      assert.equal(envelopeOf(uncompressed).z, undefined, `${codec.mode}: without a link, never compressed`);
      assert.ok(bytes.length < uncompressed.length / 3, `${codec.mode}: ${bytes.length} of ${uncompressed.length} bytes`);
      const decoded = codec.decode(bytes);
      assert.ok(decoded.ok && decoded.kind === 'batch', `${codec.mode}: ${decoded.ok ? '' : decoded.reason}`);
      assert.deepEqual(plain(decoded.message.entries as ReturnType<typeof telemetryEntries>), plain(entries));
      assert.equal(codec.compression.batchesCompressed, 1);
    }
  } finally {
    await keysDir.remove();
  }
});

test('not compressed where it does not pay: a link faster than the compressor, an unmeasured link; never larger', () => {
  const codec = new WireCodec();
  const message = { group: GROUP, node: 'gw-a', epoch: 2, entries: telemetryEntries(300) };
  assert.equal(envelopeOf(codec.encodeBatch(message, undefined, { bytesPerS: 10e9, flushing: true })).z, undefined);
  assert.equal(envelopeOf(codec.encodeBatch(message, undefined, { bytesPerS: undefined, flushing: true })).z, undefined);
  const random = { ...message, entries: randomEntries(300) };
  const bytes = codec.encodeBatch(random, undefined, SLOW_LINK);
  assert.ok(bytes.length <= codec.encodeBatch(random).length, 'random payloads: never larger than sent as they are');
  assert.ok(codec.decode(bytes).ok);
});

test('the compressor stops trying on incompressible data, probes it again now and then, and spends more CPU on a brownout', () => {
  const compressor = new BatchCompressor();
  const body = randomBytes(64 * 1024);
  assert.equal(compressor.choose(body.length, SLOW_LINK), 1, 'a slow link: quality 1 on mains');
  assert.equal(compressor.compress(body, 1), undefined, 'random bytes are not smaller');
  const choices = Array.from({ length: 32 }, () => compressor.choose(body.length, SLOW_LINK));
  assert.equal(choices.filter((quality) => quality !== undefined).length, 2, `one probe in 16 batches: ${choices}`);
  const fresh = new BatchCompressor();
  const flushQuality = fresh.choose(64 * 1024, { bytesPerS: 32_000, flushing: true })!;
  assert.ok(flushQuality > 1, `a brownout on a slow link takes a better ratio: quality ${flushQuality}`);
  assert.equal(fresh.choose(64 * 1024, { bytesPerS: 1e12, flushing: true }), undefined);
});

test('a batch reads for a compressed size only once this process measured its data: never at the prior ratio', () => {
  const compressor = new BatchCompressor();
  const flushLink = { bytesPerS: 32_000, flushing: true };
  assert.equal(compressor.expectedRatio(64 * 1024, flushLink), 1, 'nothing compressed yet: read what the link carries as it is');
  assert.notEqual(compressor.choose(64 * 1024, flushLink), undefined, 'though the first batch is still tried compressed');
  assert.equal(compressor.compress(randomBytes(64 * 1024), 1), undefined);
  assert.equal(compressor.expectedRatio(64 * 1024, flushLink), 1, 'incompressible: still 1');
  const telemetry = new BatchCompressor();
  const body = Buffer.concat(telemetryEntries(300).map((entry) => entry.payload));
  assert.ok(telemetry.compress(body, 5) !== undefined);
  const ratio = telemetry.expectedRatio(64 * 1024, flushLink);
  assert.ok(ratio < 0.5, `telemetry measured: a batch reads for ${ratio} of its bytes on the wire`);
});

test('refused when the flag and the data disagree, even with a valid MAC over what was sent', () => {
  const key = randomBytes(32);
  const codec = new WireCodec(key);
  const compressed = codec.encodeBatch({ group: GROUP, node: 'gw-a', epoch: 2, entries: telemetryEntries(100) }, undefined, SLOW_LINK);
  const uncompressed = codec.encodeBatch({ group: GROUP, node: 'gw-a', epoch: 2, entries: telemetryEntries(100) });
  const packedBody = envelopeOf(compressed).b;
  const plainBody = envelopeOf(uncompressed).b;
  // The flag on a body that is plain CBOR, signed as a compressed batch would be.
  const flagOnPlain = codec.decode(sealRaw(plainBody, key, 'br', 'batch/br'));
  assert.deepEqual(flagOnPlain, { ok: false, reason: 'compression-bad-data' });
  // Brotli bytes without the flag, signed as an uncompressed batch.
  const packedWithoutFlag = codec.decode(sealRaw(packedBody, key, undefined, 'batch'));
  assert.ok(!packedWithoutFlag.ok && packedWithoutFlag.reason.startsWith('body-cbor-'), JSON.stringify(packedWithoutFlag));
  // The flag removed or added on the way: the MAC no longer matches.
  assert.deepEqual(codec.decode(sealRaw(packedBody, key, undefined, 'batch/br')), { ok: false, reason: 'bad-signature' });
  assert.deepEqual(codec.decode(sealRaw(packedBody, key, 'br', 'batch')), { ok: false, reason: 'bad-signature' });
  // An algorithm nobody sends.
  assert.deepEqual(codec.decode(sealRaw(packedBody, key, 'gzip', 'batch/gzip')), { ok: false, reason: 'compression-unknown' });
  // Truncated Brotli data.
  const cut = codec.decode(sealRaw(packedBody.subarray(0, packedBody.length >> 1), key, 'br', 'batch/br'));
  assert.deepEqual(cut, { ok: false, reason: 'compression-bad-data' });
  assert.ok(codec.decode(sealRaw(packedBody, key, 'br', 'batch/br')).ok, 'the same bytes, flag and MAC as sent are accepted');
});

test('a zip bomb is refused after inflating at most the cap, and a flag on a control message is refused', () => {
  const codec = new WireCodec();
  const bomb = bombBody(2 * BATCH_INFLATED_BYTES_MAX);
  assert.ok(bomb.length < 64 * 1024, `the bomb is ${bomb.length} bytes on the wire`);
  assert.deepEqual(codec.decode(sealUnsigned(bomb, 'br')), { ok: false, reason: 'compression-too-large' });
  const small = new WireCodec(undefined, { inflatedBytesMax: 1024 * 1024 });
  assert.deepEqual(small.decode(sealUnsigned(bombBody(2 * 1024 * 1024), 'br')), { ok: false, reason: 'compression-too-large' });
  const ack = new Uint8Array(brotliCompressSync(new Uint8Array([0xa0])));
  assert.deepEqual(codec.decode(sealUnsigned(ack, 'br', 'ack')), { ok: false, reason: 'compression-unknown' });
});
