/**
 * Secrets: read from files or the environment, never from the config file itself, and refused when their
 * file is open to other users, as ssh refuses a private key that others can read. Nothing here logs a
 * secret or puts one in an error message: messages name the file and the field, never the contents.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { link, open, readFile, stat, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { LastgaspError, nodeFs, systemErrorCode } from '../util/index.ts';
import type { Issue } from './schema-dsl.ts';
import type { AgentConfig } from './schema.ts';

/** Permission bits a private key or password file must not have: any access for the group or others. */
const PRIVATE_FORBIDDEN_BITS = 0o077;
/**
 * The API token may be shared with a group (that is how an application user is given access, README
 * "Security"), so only bits for others are refused.
 */
const TOKEN_FORBIDDEN_BITS = 0o007;
/** 32 random bytes: far beyond guessing, short enough for a header. */
const API_TOKEN_BYTES = 32;
/** A token someone wrote by hand must still not be guessable. */
const API_TOKEN_CHARS_MIN = 16;
/** HMAC-SHA256 keys shorter than this give less than 128 bits of security. */
const HMAC_KEY_BYTES_MIN = 16;

export interface ReplicationSecrets {
  username?: string;
  password?: string;
  hmacKey?: Uint8Array;
  tls?: { ca?: string; cert?: string; key?: string };
}

export interface ApiSecrets {
  /** Required on every TCP request but the liveness probe; absent on a Unix socket (its mode decides). */
  token?: string;
  /** PEM contents for HTTPS. */
  tls?: { cert: string; key: string };
}

export interface Secrets {
  replication: ReplicationSecrets;
  api: ApiSecrets;
}

/** Read (and check) every secret the config names; the API token is created at first start if absent. */
export async function readSecrets(config: AgentConfig, env: NodeJS.ProcessEnv = process.env): Promise<Secrets> {
  return { replication: await replicationSecrets(config, env), api: await apiSecrets(config) };
}

async function replicationSecrets(config: AgentConfig, env: NodeJS.ProcessEnv): Promise<ReplicationSecrets> {
  const replication = config.replication;
  const out: ReplicationSecrets = {};
  if (replication.username) out.username = replication.username;
  if (replication.passwordFile) out.password = (await readPrivateFile(replication.passwordFile, 'replication.passwordFile')).toString('utf8').trim();
  if (replication.passwordEnv) out.password = passwordFromEnv(replication.passwordEnv, env);
  if (replication.hmacKeyFile) out.hmacKey = await readHmacKey(replication.hmacKeyFile);
  const tls = replication.tls;
  // The replication layer reads these files itself; the key is checked here so that a loose one is refused
  // before any connection is tried.
  if (tls.keyFile) await checkPrivate(tls.keyFile, 'replication.tls.keyFile', PRIVATE_FORBIDDEN_BITS);
  if (tls.caFile || tls.certFile || tls.keyFile) out.tls = { ca: tls.caFile, cert: tls.certFile, key: tls.keyFile };
  return out;
}

function passwordFromEnv(name: string, env: NodeJS.ProcessEnv): string {
  const value = env[name];
  if (value === undefined) throw new LastgaspError('CONFIG_INVALID', `config: replication.passwordEnv: environment variable ${name} is not set`);
  return value;
}

async function readHmacKey(file: string): Promise<Uint8Array> {
  const key = await readPrivateFile(file, 'replication.hmacKeyFile');
  if (key.length < HMAC_KEY_BYTES_MIN) {
    throw new LastgaspError('CONFIG_INVALID', `config: replication.hmacKeyFile: ${file} holds ${key.length} bytes; use at least ${HMAC_KEY_BYTES_MIN} (e.g. head -c 32 /dev/urandom > key)`);
  }
  return new Uint8Array(key);
}

async function apiSecrets(config: AgentConfig): Promise<ApiSecrets> {
  const api = config.api;
  if (api.listen.startsWith('unix:')) return {};
  const out: ApiSecrets = { token: await loadOrCreateToken(apiTokenFile(config)) };
  if (api.tls.certFile && api.tls.keyFile) {
    const key = (await readPrivateFile(api.tls.keyFile, 'api.tls.keyFile')).toString('utf8');
    out.tls = { cert: await readText(api.tls.certFile, 'api.tls.certFile'), key };
  }
  return out;
}

/**
 * Every secret the config names, checked as the agent would read it, without creating anything: each
 * problem one issue, so that `config check` reports them all at once. The signing keys are the
 * replication's to read (loadKeyring); `config check` asks it too.
 */
export async function secretIssues(config: AgentConfig, env: NodeJS.ProcessEnv = process.env): Promise<Issue[]> {
  const issues: Issue[] = [];
  const collect = async (check: () => Promise<unknown>) => {
    try {
      await check();
    } catch (error) {
      // The messages are "config: <field>: <what and fix>", never a secret's contents.
      const text = (error as Error).message.replace(/^config: /, '');
      const colon = text.indexOf(': ');
      issues.push(colon > 0 ? { path: text.slice(0, colon), message: text.slice(colon + 2) } : { path: 'secrets', message: text });
    }
  };
  const { replication, api } = config;
  // One check per secret (replicationSecrets stops at the first problem).
  if (replication.passwordFile) await collect(() => readPrivateFile(replication.passwordFile!, 'replication.passwordFile'));
  if (replication.passwordEnv) await collect(async () => passwordFromEnv(replication.passwordEnv!, env));
  if (replication.hmacKeyFile) await collect(() => readHmacKey(replication.hmacKeyFile!));
  if (replication.tls.keyFile) await collect(() => checkPrivate(replication.tls.keyFile!, 'replication.tls.keyFile', PRIVATE_FORBIDDEN_BITS));
  if (replication.tls.caFile) await collect(() => readText(replication.tls.caFile!, 'replication.tls.caFile'));
  if (replication.tls.certFile) await collect(() => readText(replication.tls.certFile!, 'replication.tls.certFile'));
  const tokenFile = apiTokenFile(config);
  // A missing token is made at the first start; one that exists must already be private.
  if (!api.listen.startsWith('unix:') && existsSync(tokenFile)) await collect(() => checkPrivate(tokenFile, 'api.tokenFile', TOKEN_FORBIDDEN_BITS));
  if (api.tls.keyFile) await collect(() => readPrivateFile(api.tls.keyFile!, 'api.tls.keyFile'));
  if (api.tls.certFile) await collect(() => readText(api.tls.certFile!, 'api.tls.certFile'));
  return issues;
}

/** Where the API token lives: `api.tokenFile`, or next to the log. */
export function apiTokenFile(config: Pick<AgentConfig, 'api' | 'dataDir'>): string {
  return config.api.tokenFile ?? join(config.dataDir, 'api.token');
}

/**
 * Read the token, or make one. A new token is written whole and synced under a temporary name, then linked
 * into place: whoever reads the file meanwhile (a client, the application this agent starts, an operator's
 * `lastgasp status`) finds no file or the whole token, never an empty one, and link(2) fails if another
 * process made one first, whose token then wins. `wx` with mode 0600 gives the temporary file no more than
 * those rights from the first instant (the umask only removes bits); the fchmod then gives back what a
 * strict umask (0277) took from the owner.
 */
export async function loadOrCreateToken(file: string): Promise<string> {
  if (!existsSync(file)) await createToken(file);
  await checkPrivate(file, 'api.tokenFile', TOKEN_FORBIDDEN_BITS);
  const token = (await readText(file, 'api.tokenFile')).trim();
  if (token.length < API_TOKEN_CHARS_MIN) {
    throw new LastgaspError('CONFIG_INVALID', `config: api.tokenFile: ${file} holds a token of ${token.length} characters; use at least ${API_TOKEN_CHARS_MIN} (delete the file and the agent makes one)`);
  }
  return token;
}

async function createToken(file: string): Promise<void> {
  const temporary = `${file}.${process.pid}.tmp`;
  const cannot = (error: unknown) => new LastgaspError('CONFIG_INVALID', `config: api.tokenFile: cannot create ${file} (${(error as Error).message})`);
  // Left by an earlier life of a process with this pid that stopped between the two steps.
  await unlink(temporary).catch(() => undefined);
  try {
    const handle = await open(temporary, 'wx', 0o600);
    try {
      await handle.chmod(0o600);
      await handle.writeFile(randomBytes(API_TOKEN_BYTES).toString('base64url') + '\n');
      await handle.sync();
    } finally {
      await handle.close();
    }
    await link(temporary, file).catch((error: unknown) => {
      if (systemErrorCode(error) !== 'EEXIST') throw error;
    });
    await nodeFs.syncDir(dirname(file));
  } catch (error) {
    throw cannot(error);
  } finally {
    await unlink(temporary).catch(() => undefined);
  }
}

/** Read a key or password file after checking that only its owner can read it. */
export async function readPrivateFile(path: string, field: string): Promise<Buffer> {
  await checkPrivate(path, field, PRIVATE_FORBIDDEN_BITS);
  try {
    return await readFile(path);
  } catch (error) {
    throw new LastgaspError('CONFIG_INVALID', `config: ${field}: cannot read ${path} (${(error as Error).message})`);
  }
}

async function checkPrivate(path: string, field: string, forbidden: number): Promise<void> {
  let mode: number;
  try {
    mode = (await stat(path)).mode & 0o777;
  } catch (error) {
    throw new LastgaspError('CONFIG_INVALID', `config: ${field}: cannot read ${path} (${(error as Error).message})`);
  }
  if ((mode & forbidden) !== 0) {
    const who = forbidden === PRIVATE_FORBIDDEN_BITS ? 'the group or other users' : 'other users';
    const fix = forbidden === PRIVATE_FORBIDDEN_BITS ? 'chmod 600' : 'chmod 640 (or 600)';
    throw new LastgaspError('CONFIG_INVALID', `config: ${field}: ${path} is open to ${who} (mode ${mode.toString(8).padStart(4, '0')}); a secret must be private: ${fix} ${path}`);
  }
}

async function readText(path: string, field: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (error) {
    throw new LastgaspError('CONFIG_INVALID', `config: ${field}: cannot read ${path} (${(error as Error).message})`);
  }
}
