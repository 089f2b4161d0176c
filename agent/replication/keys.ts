/**
 * Per-node Ed25519 keys (RFC 8032): each gateway signs what it publishes with its own private key, and
 * every member verifies against the group's list of public keys, so that one member cannot speak as
 * another (a shared HMAC key lets any holder sign as anyone). Node's and Deno's `node:crypto` both do
 * Ed25519 with `sign(null, ...)` / `verify(null, ...)`.
 *
 * Formats, chosen so that a key can be made with `lastgasp keys generate` or with stock OpenSSL
 * (`openssl genpkey -algorithm ed25519`):
 * - private key: a PEM "PRIVATE KEY" (PKCS#8) file, readable by its owner only;
 * - public key: the 32 raw bytes in base64 (44 characters), as `lastgasp keys show` prints it and as the
 *   config's `replication.signing.publicKeys` lists it; a PEM "PUBLIC KEY" (SPKI) file is read too.
 */
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { LastgaspError } from '../util/index.ts';

/** RFC 8410 §4: the DER SubjectPublicKeyInfo of an Ed25519 key is this 12-byte prefix + the 32 raw bytes. */
const ED25519_SPKI_PREFIX = Uint8Array.from([0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00]);
const ED25519_PUBLIC_BYTES = 32;
/** Base64 of 32 bytes: 43 characters and one "=". */
const RAW_PUBLIC_KEY = /^[A-Za-z0-9+/]{43}=$/;

export interface NodeKeyPair {
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
}

export function generateNodeKeyPair(): NodeKeyPair {
  return generateKeyPairSync('ed25519');
}

export function privateKeyPem(key: KeyObject): string {
  return key.export({ type: 'pkcs8', format: 'pem' }).toString();
}

/** The 32 raw bytes of an Ed25519 public key, in base64 (what the config lists). */
export function publicKeyText(key: KeyObject): string {
  const der = new Uint8Array(key.export({ type: 'spki', format: 'der' }));
  return Buffer.from(der.subarray(ED25519_SPKI_PREFIX.length)).toString('base64');
}

/** A short name for a key that people can compare over the phone: SHA-256 of the raw key, 16 hex pairs. */
export function fingerprint(key: KeyObject): string {
  const raw = Buffer.from(publicKeyText(key), 'base64');
  const hex = createHash('sha256').update(raw).digest('hex').slice(0, 32);
  return `SHA256:${hex.match(/../g)!.join(':')}`;
}

/** Parse a public key given as base64 of its 32 raw bytes; undefined when `text` is not that. */
export function parsePublicKeyText(text: string): KeyObject | undefined {
  if (!RAW_PUBLIC_KEY.test(text)) return undefined;
  const raw = Buffer.from(text, 'base64');
  if (raw.length !== ED25519_PUBLIC_BYTES) return undefined;
  return createPublicKey({ key: Buffer.concat([ED25519_SPKI_PREFIX, raw]), format: 'der', type: 'spki' });
}

/** A private key file's text (PEM PKCS#8) as a key; throws a typed error naming `field` and the fix. */
export function parsePrivateKeyPem(text: string, field: string, file: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPrivateKey(text);
  } catch (error) {
    throw new LastgaspError('CONFIG_INVALID', `config: ${field}: ${file} is not a PEM private key (${(error as Error).message}); make one with: lastgasp keys generate --out DIR --node NAME`);
  }
  if (key.asymmetricKeyType !== 'ed25519') {
    throw new LastgaspError('CONFIG_INVALID', `config: ${field}: ${file} holds a ${key.asymmetricKeyType} key; lastgasp signs with Ed25519 (lastgasp keys generate --out DIR --node NAME)`);
  }
  return key;
}

/** Read this node's private key, refusing a file that others may read (as ssh does). */
export async function readPrivateKeyFile(file: string, field: string): Promise<KeyObject> {
  let text: string;
  let mode: number;
  try {
    mode = (await stat(file)).mode;
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new LastgaspError('CONFIG_INVALID', `config: ${field}: cannot read ${file} (${(error as Error).message})`);
  }
  if ((mode & 0o077) !== 0) {
    throw new LastgaspError('CONFIG_INVALID', `config: ${field}: ${file} may be read by others (mode ${(mode & 0o777).toString(8)}); a private key must be private: chmod 600 ${file}`);
  }
  return parsePrivateKeyPem(text, field, file);
}

/**
 * A public key as the config gives it: base64 of the raw key, or the path of a file holding that base64
 * or a PEM "PUBLIC KEY".
 */
export async function readPublicKey(value: string, field: string): Promise<KeyObject> {
  const inline = parsePublicKeyText(value);
  if (inline) return inline;
  let text: string;
  try {
    text = (await readFile(value, 'utf8')).trim();
  } catch (error) {
    throw new LastgaspError('CONFIG_INVALID', `config: ${field}: "${value}" is neither a base64 Ed25519 public key (44 characters) nor a readable file (${(error as Error).message}); "lastgasp keys show KEYFILE" prints the key`);
  }
  const fromText = parsePublicKeyText(text);
  if (fromText) return fromText;
  try {
    const key = createPublicKey(text);
    if (key.asymmetricKeyType === 'ed25519') return key;
  } catch {
    // Falls through to the error below, which says what the file should hold.
  }
  throw new LastgaspError('CONFIG_INVALID', `config: ${field}: ${value} holds no Ed25519 public key (expected 44 characters of base64, or a PEM "PUBLIC KEY")`);
}

export interface Keyring {
  readonly node: string;
  readonly privateKey: KeyObject;
  /** Every member of the group, this node included. */
  readonly publicKeys: ReadonlyMap<string, KeyObject>;
}

/** Load `replication.signing`: this node's private key and the group's public keys, checked against each other. */
export async function loadKeyring(node: string, signing: { keyFile: string; publicKeys: Readonly<Record<string, string>> }): Promise<Keyring> {
  const privateKey = await readPrivateKeyFile(signing.keyFile, 'replication.signing.keyFile');
  const publicKeys = new Map<string, KeyObject>();
  for (const [member, value] of Object.entries(signing.publicKeys)) publicKeys.set(member, await readPublicKey(value, `replication.signing.publicKeys.${member}`));
  const own = publicKeys.get(node);
  const derived = createPublicKey(privateKey);
  if (!own || publicKeyText(own) !== publicKeyText(derived)) {
    throw new LastgaspError(
      'CONFIG_INVALID',
      `config: replication.signing.publicKeys.${node}: ${own ? 'does not match' : 'is missing; it must list'} this node's own key (${publicKeyText(derived)}, from replication.signing.keyFile ${signing.keyFile}); the siblings verify this node's messages with it`,
    );
  }
  return { node, privateKey, publicKeys };
}
