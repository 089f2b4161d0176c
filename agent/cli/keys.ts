/**
 * `lastgasp keys generate|show`: the per-node Ed25519 keys that sign what each gateway publishes
 * (agent/replication/keys.ts). A private key never leaves its gateway; the public keys of all members go
 * into every member's `replication.signing.publicKeys`.
 */
import { createPublicKey, type KeyObject } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fingerprint, generateNodeKeyPair, parsePrivateKeyPem, parsePublicKeyText, privateKeyPem, publicKeyText } from '../replication/index.ts';
import { closest } from '../util/index.ts';
import { HelpRequested, parseCommand, UsageError, type CommandSpec, type Io } from './io.ts';

/** Node names as the config allows them (agent/config/schema.ts NAME): they name the files too. */
const NAME = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;

const KEYS_HELP = `Usage:
  lastgasp keys generate --out DIR --node NAME [--json]
  lastgasp keys show FILE [--json]

Each gateway signs what it publishes with its own Ed25519 key; every member verifies with the group's list
of public keys (replication.signing in the config). "lastgasp keys generate --help" and "lastgasp keys show
--help" say more.`;

const GENERATE_HELP = `Usage: lastgasp keys generate --out DIR --node NAME [--json]

Make an Ed25519 key pair for the gateway NAME:
  DIR/NAME.key   the private key (PEM, PKCS#8), mode 0600: keep it on that gateway only, and point its
                 replication.signing.keyFile at it;
  DIR/NAME.pub   the public key: base64 of its 32 raw bytes.
Prints the line to add under replication.signing.publicKeys in the config of every member of the group
(this gateway's own included). An existing key is never overwritten: remove it first to replace it.
  --json   Print {node, publicKey, fingerprint, keyFile, publicKeyFile}.`;

const SHOW_HELP = `Usage: lastgasp keys show FILE [--json]

Print the public key and its fingerprint, from a private key file (NAME.key, PEM) or a public key file
(NAME.pub, or a PEM "PUBLIC KEY"). Compare fingerprints to check that two configs list the same key.
  --json   Print {publicKey, fingerprint}.`;

const GENERATE: CommandSpec = { help: GENERATE_HELP, options: { out: { type: 'string' }, node: { type: 'string' }, json: { type: 'boolean' } } };
const SHOW: CommandSpec = { help: SHOW_HELP, options: { json: { type: 'boolean' } }, positionals: { min: 1, max: 1, names: 'FILE (a NAME.key or NAME.pub file)' } };

export async function keysCommand(argv: readonly string[], io: Io): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === 'generate') return generate(rest, io);
  if (sub === 'show') return show(rest, io);
  if (sub === '--help' || sub === '-h' || sub === 'help') throw new HelpRequested(KEYS_HELP);
  if (sub === undefined) throw new UsageError('missing a command: generate or show');
  const close = closest(sub, ['generate', 'show']);
  throw new UsageError(`unknown command "${sub}"${close ? ` (did you mean ${close}?)` : ''} (expected generate or show)`);
}

async function generate(argv: readonly string[], io: Io): Promise<number> {
  const args = parseCommand(argv, GENERATE);
  const out = args.required('out', 'DIR', 'where to write NAME.key and NAME.pub');
  const node = args.required('node', 'NAME', 'the gateway the key is for, as in its config\'s "node"');
  if (!NAME.test(node)) throw new UsageError(`--node "${node}" is not a node name (1-64 letters, digits, "_" or "-")`);
  const pair = generateNodeKeyPair();
  const keyFile = join(out, `${node}.key`);
  const publicKeyFile = join(out, `${node}.pub`);
  const publicKey = publicKeyText(pair.publicKey);
  await mkdir(out, { recursive: true, mode: 0o700 });
  for (const file of [keyFile, publicKeyFile]) if (existsSync(file)) throw new UsageError(`${file} exists; a key in use is never overwritten (remove it first to replace it, then update every member's replication.signing.publicKeys)`);
  // "wx": never replace a key a gateway may already be using; the group would refuse its messages.
  await writeExclusive(keyFile, privateKeyPem(pair.privateKey), 0o600);
  await writeExclusive(publicKeyFile, publicKey + '\n', 0o644);
  if (args.has('json')) io.stdout(JSON.stringify({ node, publicKey, fingerprint: fingerprint(pair.publicKey), keyFile, publicKeyFile }));
  else {
    io.stdout(`private key: ${keyFile} (mode 0600; keep it on ${node} only; its replication.signing.keyFile)`);
    io.stdout(`public key:  ${publicKeyFile} (fingerprint ${fingerprint(pair.publicKey)})`);
    io.stdout(`add to replication.signing.publicKeys of every member of the group:`);
    io.stdout(`  ${node}: ${publicKey}`);
  }
  return 0;
}

async function show(argv: readonly string[], io: Io): Promise<number> {
  const args = parseCommand(argv, SHOW);
  const file = args.positionals[0]!;
  let text: string;
  try {
    text = (await readFile(file, 'utf8')).trim();
  } catch (error) {
    io.stderr(`lastgasp keys show: cannot read ${file} (${(error as Error).message})`);
    return 1;
  }
  const key = publicKeyOf(text, file);
  if (!key) {
    io.stderr(`lastgasp keys show: ${file} holds no Ed25519 key (expected a PEM private key, a PEM public key, or 44 characters of base64); "lastgasp keys generate" makes one`);
    return 1;
  }
  if (args.has('json')) io.stdout(JSON.stringify({ publicKey: publicKeyText(key), fingerprint: fingerprint(key) }));
  else {
    io.stdout(`public key:  ${publicKeyText(key)}`);
    io.stdout(`fingerprint: ${fingerprint(key)}`);
  }
  return 0;
}

function publicKeyOf(text: string, file: string): KeyObject | undefined {
  const raw = parsePublicKeyText(text);
  if (raw) return raw;
  try {
    if (text.includes('PRIVATE KEY')) return createPublicKey(parsePrivateKeyPem(text, 'FILE', file));
    const key = createPublicKey(text);
    return key.asymmetricKeyType === 'ed25519' ? key : undefined;
  } catch {
    return undefined;
  }
}

async function writeExclusive(file: string, text: string, mode: number): Promise<void> {
  try {
    await writeFile(file, text, { flag: 'wx', mode });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') throw new UsageError(`${file} exists; a key in use is never overwritten (remove it first to replace it, then update every member's replication.signing.publicKeys)`);
    throw error;
  }
}
