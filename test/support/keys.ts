// Per-node Ed25519 keys for a test's group, as `lastgasp keys generate` writes them: one private key file
// (mode 0600) per node under `<dir>/keys/`, made on first use and reused, so that the configs of every node
// of a test, written one after another, list the same public keys.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createPrivateKey, createPublicKey } from 'node:crypto';
import { join } from 'node:path';
import { generateNodeKeyPair, privateKeyPem, publicKeyText, type Keyring, type WireAuth } from '../../agent/replication/index.ts';

export interface GroupKeys {
  /** The private key file of `node` (made if missing). */
  keyFile(node: string): string;
  /** `replication.signing` for `node` in a group of `members` (node included or not). */
  signing(node: string, members: readonly string[]): { keyFile: string; publicKeys: Record<string, string> };
  /** The keyring `node` would load, for a Replication started in the test process. */
  auth(node: string, members: readonly string[]): WireAuth;
}

export function groupKeys(dir: string): GroupKeys {
  const keysDir = join(dir, 'keys');
  const keyFile = (node: string) => {
    const file = join(keysDir, `${node}.key`);
    if (!existsSync(file)) {
      mkdirSync(keysDir, { recursive: true, mode: 0o700 });
      writeFileSync(file, privateKeyPem(generateNodeKeyPair().privateKey), { mode: 0o600 });
    }
    return file;
  };
  const privateKey = (node: string) => createPrivateKey(readFileSync(keyFile(node), 'utf8'));
  const everyone = (node: string, members: readonly string[]) => [...new Set([node, ...members])];
  return {
    keyFile,
    signing: (node, members) => ({
      keyFile: keyFile(node),
      publicKeys: Object.fromEntries(everyone(node, members).map((member) => [member, publicKeyText(createPublicKey(privateKey(member)))])),
    }),
    auth(node, members) {
      const keyring: Keyring = {
        node,
        privateKey: privateKey(node),
        publicKeys: new Map(everyone(node, members).map((member) => [member, createPublicKey(privateKey(member))])),
      };
      return { mode: 'ed25519', keyring };
    },
  };
}
