/**
 * Plain CBOR (RFC 8949) for everything the agent writes or sends: no cbor-x record or structure
 * extensions and no typed-array tags, so that subscribers in other languages decode it with a stock
 * library.
 *
 * cbor-x returns a view into a buffer it reuses for later encodes, so a result that outlives the next
 * encode (an entry waiting for its group commit, a body sealed into an envelope) would be overwritten.
 * `encodeCbor` therefore returns an owned copy.
 */
import { Decoder, Encoder } from 'cbor-x';

const encoder = new Encoder({ useRecords: false, mapsAsObjects: true, tagUint8Array: false });
const decoder = new Decoder({ useRecords: false, mapsAsObjects: true });

export function encodeCbor(value: unknown): Uint8Array {
  return new Uint8Array(encoder.encode(value));
}

/** Throws on malformed input; callers turn that into a typed result. */
export function decodeCbor(bytes: Uint8Array): unknown {
  return decoder.decode(bytes);
}
