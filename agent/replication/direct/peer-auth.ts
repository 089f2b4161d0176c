/**
 * Who is on the other end of a direct-path TLS connection: the public key of its certificate, compared with
 * the key the group lists for the node it should be (replication.signing.publicKeys). Certificates are
 * self-signed (self-cert.ts), so TLS's own chain check is off (rejectUnauthorized: false) and this check is
 * the authentication; TLS still proves that the peer holds the private key of the certificate it showed.
 */
import type { KeyObject } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import { publicKeyText, type Keyring } from '../keys.ts';
import { selfSignedCertificatePem } from './self-cert.ts';

/** TLS 1.3 only: its handshake signs with Ed25519 certificates (RFC 8446 §4.2.3) and hides them from onlookers. */
export const DIRECT_TLS_VERSION_MIN = 'TLSv1.3';

export interface DirectTlsIdentity {
  readonly key: string;
  readonly cert: string;
}

export function tlsIdentity(keyring: Keyring): DirectTlsIdentity {
  return {
    key: keyring.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    cert: selfSignedCertificatePem(keyring.privateKey, keyring.node),
  };
}

/** The peer certificate's key as base64 text (keys.ts publicKeyText), or undefined when it showed none. */
export function peerKeyText(socket: TLSSocket): string | undefined {
  const certificate = socket.getPeerX509Certificate?.();
  const key: KeyObject | undefined = certificate?.publicKey;
  if (!key || key.asymmetricKeyType !== 'ed25519') return undefined;
  return publicKeyText(key);
}

/** The configured peer whose listed key the socket's certificate carries, or why none does. */
export function identifyPeer(socket: TLSSocket, keyring: Keyring, peers: readonly string[]): { ok: true; node: string } | { ok: false; reason: 'no-certificate' | 'unknown-key' } {
  const shown = peerKeyText(socket);
  if (shown === undefined) return { ok: false, reason: 'no-certificate' };
  for (const node of peers) {
    const listed = keyring.publicKeys.get(node);
    if (listed && publicKeyText(listed) === shown) return { ok: true, node };
  }
  return { ok: false, reason: 'unknown-key' };
}
