import { execFile } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { userInfo } from 'node:os';
import { promisify } from 'node:util';
import { BROKER_CONFIG_DIR, renderTemplate } from '../../broker-config/index.ts';
import { canConnect, freePort, waitFor } from './ports.ts';
import { startProcess, type Managed } from './processes.ts';
import type { TestPki } from './certs.ts';

const CONFIG_DIR = join(BROKER_CONFIG_DIR, 'mosquitto');

/** How long a starting mosquitto may take to listen; it normally takes a few ms, a loaded CI box more. */
const MOSQUITTO_START_TIMEOUT_MS = 10_000;

/**
 * How many times a start on a port the harness picked is retried when another process took that port in
 * the moment between picking and binding (the kernel hands the same ephemeral range to outgoing sockets).
 */
const PORT_RACE_ATTEMPTS = 3;

export interface Mosquitto {
  readonly port: number;
  /** `mqtt://127.0.0.1:<port>`, or `mqtts://` for a config with TLS (tls.conf). */
  readonly url: string;
  readonly process: Managed;
  /** The directory of its persistence file (`mosquitto.db`) and of its rendered config. */
  readonly dataDir: string;
  /** The rendered configuration it runs with. */
  readonly configFile: string;
  /** Send `signal` (default SIGTERM, which saves the persistence file) and wait for the exit. */
  stop(signal?: NodeJS.Signals): Promise<void>;
  /** SIGSTOP: the broker keeps its sockets open and answers nothing, as a hung host would, until `resume()`. */
  suspend(): void;
  /** SIGCONT after `suspend()`. */
  resume(): void;
  /** Start again on the same port and data directory (after a kill). */
  restart(): Promise<Mosquitto>;
}

export interface MosquittoOptions {
  /** A file under broker-config/mosquitto/ (default `single.conf`). */
  config?: string;
  /** Listen here instead of on a free port (a restart uses this). */
  port?: number;
  /** Values for the config's `${NAME}` placeholders; PORT, DATA_DIR and CONFIG_DIR are filled in. */
  vars?: Record<string, string>;
}

/**
 * Start a real mosquitto from a config in broker-config/mosquitto/, on a free loopback port, with its
 * persistence in `dataDir`. Resolves once the broker listens.
 */
export async function startMosquitto(dataDir: string, options: MosquittoOptions = {}): Promise<Mosquitto> {
  const attempts = options.port === undefined ? PORT_RACE_ATTEMPTS : 1;
  for (let attempt = 1; ; attempt += 1) {
    const port = options.port ?? (await freePort());
    try {
      return await startOnPort(dataDir, port, options);
    } catch (error) {
      if (!(error instanceof PortTakenError) || attempt >= attempts) throw error;
    }
  }
}

class PortTakenError extends Error {}

async function startOnPort(dataDir: string, port: number, options: MosquittoOptions): Promise<Mosquitto> {
  const configName = options.config ?? 'single.conf';
  const template = await readFile(join(CONFIG_DIR, configName), 'utf8');
  const vars: Record<string, string> = { PORT: String(port), DATA_DIR: dataDir, CONFIG_DIR, ...options.vars };
  const rendered = renderTemplate(template, vars);
  if (!rendered.ok) throw new Error(`mosquitto config ${configName}: ${rendered.problems.join('; ')}`);
  const configFile = join(dataDir, `mosquitto-${port}.conf`);
  // Run as the test's own user: as root, mosquitto would otherwise switch to the `mosquitto` account,
  // which cannot write the test's temporary persistence directory.
  await writeFile(configFile, `${rendered.text}\nuser ${userInfo().username}\n`);
  const process = startProcess(`mosquitto:${port}`, 'mosquitto', ['-c', configFile]);
  await waitFor(
    `mosquitto listening on ${port}`,
    () => {
      if (process.child.exitCode === null && process.child.signalCode === null) return canConnect(port);
      const output = process.output();
      if (/Address already in use/.test(output)) return Promise.reject(new PortTakenError(`port ${port} taken`));
      return Promise.reject(new Error(`mosquitto (${configName}) exited:\n${output}`));
    },
    MOSQUITTO_START_TIMEOUT_MS,
  ).catch(async (error: unknown) => {
    await process.kill('SIGKILL');
    throw error;
  });
  // A config with a server certificate (tls.conf) listens for mqtts:// only.
  const scheme = /^certfile /m.test(rendered.text) ? 'mqtts' : 'mqtt';
  return {
    port,
    url: `${scheme}://127.0.0.1:${port}`,
    process,
    dataDir,
    configFile,
    stop: async (signal = 'SIGTERM') => {
      // A suspended broker would hold a SIGTERM until it is continued.
      if (process.child.exitCode === null && process.child.signalCode === null) process.child.kill('SIGCONT');
      await process.kill(signal);
    },
    suspend: () => void process.child.kill('SIGSTOP'),
    resume: () => void process.child.kill('SIGCONT'),
    restart: () => startMosquitto(dataDir, { ...options, port }),
  };
}

/** Several independent brokers, each with its own data directory under one parent. */
export interface MosquittoSet {
  readonly brokers: readonly Mosquitto[];
  readonly urls: readonly string[];
  /** Stop every broker still running (SIGTERM, so each saves its persistence file). */
  stop(): Promise<void>;
}

/**
 * Start `count` independent mosquitto brokers from the same template, the "independent brokers" shape of
 * issue 5 (the agent publishes to all and counts a quorum; the sibling subscribes to all). Broker i keeps
 * its data in `<parentDir>/broker-<i>`. Restarting one is `set.brokers[i].restart()`.
 */
export async function startMosquittoSet(parentDir: string, count = 3, options: Omit<MosquittoOptions, 'port'> = {}): Promise<MosquittoSet> {
  const brokers: Mosquitto[] = [];
  try {
    for (let i = 0; i < count; i += 1) {
      const dataDir = join(parentDir, `broker-${i}`);
      await mkdir(dataDir, { recursive: true });
      brokers.push(await startMosquitto(dataDir, options));
    }
  } catch (error) {
    await Promise.all(brokers.map((broker) => broker.stop()));
    throw error;
  }
  return {
    brokers,
    urls: brokers.map((broker) => broker.url),
    stop: async () => void (await Promise.all(brokers.map((broker) => broker.stop()))),
  };
}

const runFile = promisify(execFile);

/**
 * Write a mosquitto password file for `users` (name to password) at `path`, hashed by `mosquitto_passwd`
 * itself (PBKDF2-SHA512 in 2.0), so the broker reads exactly what an installation would give it.
 */
export async function writePasswordFile(path: string, users: Readonly<Record<string, string>>): Promise<string> {
  const lines = Object.entries(users).map(([name, password]) => {
    if (/[:\s]/.test(name) || /[\r\n]/.test(password)) throw new Error(`password file: unusable user "${name}" or password`);
    return `${name}:${password}\n`;
  });
  await writeFile(path, lines.join(''), { mode: 0o600 });
  await runFile('mosquitto_passwd', ['-U', path]);
  return path;
}

/** The `vars` of auth.conf: the password file to use and the ACL of broker-config/mosquitto/acl.conf. */
export function authVars(passwordFile: string, aclFile = join(CONFIG_DIR, 'acl.conf')): Record<string, string> {
  return { PASSWORD_FILE: passwordFile, ACL_FILE: aclFile };
}

/** The `vars` of tls.conf for a test PKI: its CA, its server certificate, and the ACL of acl.conf. */
export function tlsVars(pki: TestPki, aclFile = join(CONFIG_DIR, 'acl.conf')): Record<string, string> {
  return { CA_FILE: pki.caFile, SERVER_CERT_FILE: pki.server.certFile, SERVER_KEY_FILE: pki.server.keyFile, ACL_FILE: aclFile };
}
