import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { userInfo } from 'node:os';
import { connect } from 'node:net';
import { freePort, waitFor } from './ports.ts';
import { startProcess, type Managed } from './processes.ts';

const CONFIG_DIR = join(fileURLToPath(import.meta.url), '..', '..', '..', 'broker-config', 'mosquitto');

export interface Mosquitto {
  readonly port: number;
  readonly url: string;
  readonly process: Managed;
  stop(signal?: NodeJS.Signals): Promise<void>;
  /** Start again on the same port and data directory (after a kill). */
  restart(): Promise<Mosquitto>;
}

/**
 * Start a real mosquitto from a config in broker-config/mosquitto/, on a free loopback port, with its
 * persistence in `dataDir`. Resolves once the broker listens.
 */
export async function startMosquitto(dataDir: string, options: { config?: string; port?: number; vars?: Record<string, string> } = {}): Promise<Mosquitto> {
  const port = options.port ?? (await freePort());
  const template = await readFile(join(CONFIG_DIR, options.config ?? 'single.conf'), 'utf8');
  const vars: Record<string, string> = { PORT: String(port), DATA_DIR: dataDir, CONFIG_DIR, ...options.vars };
  const text = template.replace(/\$\{([A-Z_]+)\}/g, (_, name: string) => {
    const value = vars[name];
    if (value === undefined) throw new Error(`mosquitto config ${options.config}: no value for \${${name}}`);
    return value;
  });
  const configFile = join(dataDir, `mosquitto-${port}.conf`);
  // Run as the test's own user: as root, mosquitto would otherwise switch to the `mosquitto` account,
  // which cannot write the test's temporary persistence directory.
  await writeFile(configFile, `${text}\nuser ${userInfo().username}\n`);
  const process = startProcess(`mosquitto:${port}`, 'mosquitto', ['-c', configFile]);
  await waitFor(`mosquitto listening on ${port}`, () => (process.child.exitCode === null ? canConnect(port) : Promise.reject(new Error(`mosquitto exited:\n${process.output()}`))), 10_000);
  const broker: Mosquitto = {
    port,
    url: `mqtt://127.0.0.1:${port}`,
    process,
    stop: async (signal = 'SIGTERM') => void (await process.kill(signal)),
    restart: () => startMosquitto(dataDir, { ...options, port }),
  };
  return broker;
}

function canConnect(port: number): Promise<true | undefined> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(undefined));
  });
}
