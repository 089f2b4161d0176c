/** Batches and hand-made envelopes for the compression tests, on Node and under Deno (deno-compression.ts). */
import { brotliCompressSync } from 'node:zlib';
import { createHmac } from 'node:crypto';
import { Encoder } from 'cbor-x';
import { crc32c } from '../../../agent/util/index.ts';
import { entryValue } from '../../bench/holdup-data.ts';
import { mulberry32 } from '../../log/support/random.ts';

const encoder = new Encoder({ useRecords: false, mapsAsObjects: true, tagUint8Array: false });

export const GROUP = 'plant';
/** A link of 256 kbit/s: compressing telemetry pays there at any CPU speed this project runs on. */
export const SLOW_LINK = { bytesPerS: 32_000, flushing: false };

export function telemetryEntries(count: number, firstSeq = 1) {
  const random = mulberry32(firstSeq);
  return Array.from({ length: count }, (_, index) => ({ seq: firstSeq + index, epoch: 2, timestampMs: 1_795_000_000_000 + index, payload: entryValue('telemetry', random, index) }));
}

export function randomEntries(count: number, firstSeq = 1) {
  const random = mulberry32(firstSeq);
  return Array.from({ length: count }, (_, index) => ({ seq: firstSeq + index, epoch: 2, timestampMs: 1_795_000_000_000 + index, payload: entryValue('random', random, index) }));
}

/** An envelope around `b` as a sender with `key` would seal it, with `z` as given and the MAC over `signedKind`. */
export function sealRaw(b: Uint8Array, key: Uint8Array, z: string | undefined, signedKind: string): Uint8Array {
  const mac = new Uint8Array(createHmac('sha256', key).update(new TextEncoder().encode(signedKind)).update(b).digest());
  return new Uint8Array(encoder.encode({ v: 1, k: 'batch', b, crc: crc32c(b), ...(z === undefined ? {} : { z }), mac }));
}

/** A well-formed batch body of zero-filled payloads, Brotli-compressed: a few KiB on the wire, `inflatedBytes` once inflated. */
export function bombBody(inflatedBytes: number): Uint8Array {
  const payloadBytes = 1024 * 1024;
  const count = Math.ceil(inflatedBytes / payloadBytes);
  const body = encoder.encode({ group: GROUP, node: 'gw-a', epoch: 1, first: 1, last: count, entries: Array.from({ length: count }, () => [1, 1, new Uint8Array(payloadBytes)]) });
  return new Uint8Array(brotliCompressSync(body));
}

/** An unsigned envelope of `kind` around `b` with the flag `z`. */
export function sealUnsigned(b: Uint8Array, z: string, kind = 'batch'): Uint8Array {
  return new Uint8Array(encoder.encode({ v: 1, k: kind, b, crc: crc32c(b), z }));
}
