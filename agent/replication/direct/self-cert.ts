/**
 * A self-signed X.509 certificate whose key is a node's Ed25519 signing key, so that the direct path's TLS
 * authenticates a peer by the very key the group already lists for it (replication.signing.publicKeys):
 * no CA, no second set of keys. Nothing in the certificate but its public key is trusted; the names and
 * dates are there because the format requires them (RFC 5280 §4.1), and the peer check compares keys.
 *
 * The DER writer is the few constructs a certificate needs (RFC 5280 §4.1, X.690 DER); node:crypto signs
 * the TBSCertificate (RFC 8410 §6: Ed25519 signs the DER bytes as they are, no digest first).
 */
import { createPublicKey, sign, type KeyObject } from 'node:crypto';

/** id-Ed25519, 1.3.101.112 (RFC 8410 §3), as DER OBJECT IDENTIFIER contents. */
const OID_ED25519 = [0x2b, 0x65, 0x70];
/** id-at-commonName, 2.5.4.3 (RFC 5280 appendix A). */
const OID_COMMON_NAME = [0x55, 0x04, 0x03];
/** X.690 universal tags. */
const TAG_INTEGER = 0x02;
const TAG_BIT_STRING = 0x03;
const TAG_OID = 0x06;
const TAG_UTF8_STRING = 0x0c;
const TAG_UTC_TIME = 0x17;
const TAG_GENERALIZED_TIME = 0x18;
const TAG_SEQUENCE = 0x30;
const TAG_SET = 0x31;
/** [0] EXPLICIT, constructed: the TBSCertificate's version field. */
const TAG_VERSION = 0xa0;
/** INTEGER 2 means X.509 v3. */
const X509_V3 = 2;
/** Valid from 2000 (UTCTime) to 9999-12-31 23:59:59, the RFC 5280 §4.1.2.5 value for "no expiry". */
const NOT_BEFORE = '000101000000Z';
const NOT_AFTER = '99991231235959Z';
/** A certificate's serial is at most 20 octets (RFC 5280 §4.1.2.2); 8 random-looking bytes are plenty here. */
const SERIAL_BYTES = 8;

const textEncoder = new TextEncoder();

function length(bytes: number): number[] {
  if (bytes < 0x80) return [bytes];
  const out: number[] = [];
  for (let rest = bytes; rest > 0; rest = Math.floor(rest / 256)) out.unshift(rest & 0xff);
  return [0x80 | out.length, ...out];
}

function tlv(tag: number, ...contents: Uint8Array[]): Uint8Array {
  let total = 0;
  for (const part of contents) total += part.length;
  const head = [tag, ...length(total)];
  const out = new Uint8Array(head.length + total);
  out.set(head);
  let offset = head.length;
  for (const part of contents) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

const bytesOf = (values: readonly number[]) => Uint8Array.from(values);

function integer(value: Uint8Array): Uint8Array {
  // DER INTEGERs are signed: a leading byte with the high bit set needs a zero in front to stay positive.
  return (value[0]! & 0x80) !== 0 ? tlv(TAG_INTEGER, bytesOf([0]), value) : tlv(TAG_INTEGER, value);
}

function name(commonName: string): Uint8Array {
  return tlv(TAG_SEQUENCE, tlv(TAG_SET, tlv(TAG_SEQUENCE, tlv(TAG_OID, bytesOf(OID_COMMON_NAME)), tlv(TAG_UTF8_STRING, textEncoder.encode(commonName)))));
}

/** The serial: the first bytes of the public key, so that two nodes' certificates never share one. */
function serial(spki: Uint8Array): Uint8Array {
  const raw = spki.subarray(spki.length - SERIAL_BYTES);
  // Never zero or negative (RFC 5280 §4.1.2.2 asks for a positive integer): force the top bit off and one bit on.
  const out = Uint8Array.from(raw);
  out[0] = (out[0]! & 0x7f) | 0x40;
  return out;
}

/** The DER certificate for `privateKey` (Ed25519), subject and issuer `CN=<commonName>`. */
export function selfSignedCertificateDer(privateKey: KeyObject, commonName: string): Uint8Array {
  if (privateKey.asymmetricKeyType !== 'ed25519') throw new TypeError(`self-cert: an Ed25519 key is needed, not ${privateKey.asymmetricKeyType}`);
  const spki = new Uint8Array(createPublicKey(privateKey).export({ type: 'spki', format: 'der' }));
  const algorithm = tlv(TAG_SEQUENCE, tlv(TAG_OID, bytesOf(OID_ED25519)));
  const subject = name(commonName);
  const tbs = tlv(
    TAG_SEQUENCE,
    tlv(TAG_VERSION, integer(bytesOf([X509_V3]))),
    integer(serial(spki)),
    algorithm,
    subject,
    tlv(TAG_SEQUENCE, tlv(TAG_UTC_TIME, textEncoder.encode(NOT_BEFORE)), tlv(TAG_GENERALIZED_TIME, textEncoder.encode(NOT_AFTER))),
    subject,
    spki,
  );
  const signature = new Uint8Array(sign(null, tbs, privateKey));
  // A BIT STRING's first content byte counts the unused bits of its last byte: none here.
  return tlv(TAG_SEQUENCE, tbs, algorithm, tlv(TAG_BIT_STRING, bytesOf([0]), signature));
}

/** The same certificate as PEM, the form node:tls takes in `cert`. */
export function selfSignedCertificatePem(privateKey: KeyObject, commonName: string): string {
  const base64 = Buffer.from(selfSignedCertificateDer(privateKey, commonName)).toString('base64');
  const lines = base64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN CERTIFICATE-----\n${lines.join('\n')}\n-----END CERTIFICATE-----\n`;
}
