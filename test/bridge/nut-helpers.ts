/**
 * Real NUT for the tests: a driver (nutdrv_qx, dummy-ups) and upsd, started from configs written into the
 * test's temporary directory, run as the test's own user, upsd listening on a free loopback port.
 */
import { existsSync } from 'node:fs';
import { chmod, writeFile } from 'node:fs/promises';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { userInfo } from 'node:os';
import { canConnect, freePort, waitFor } from '../support/ports.ts';
import { startProcess, type Managed } from '../support/processes.ts';

/**
 * Where distributions put NUT's drivers and the real upsd (Debian: /lib/nut). Debian's /usr/sbin/upsd is a
 * wrapper that reads the machine's /etc/nut/nut.conf and refuses to start unless MODE is set there, so the
 * binary beside the drivers is run instead.
 */
const NUT_DIRS = ['/lib/nut', '/usr/lib/nut', '/usr/libexec/nut'];

export function nutProgram(name: string): string {
  for (const dir of NUT_DIRS) if (existsSync(join(dir, name))) return join(dir, name);
  return name;
}

export interface NutUps {
  readonly name: string;
  readonly driver: string;
  /** Extra `key = value` lines of the ups.conf section. */
  readonly settings: Record<string, string>;
}

export interface NutServer {
  readonly port: number;
  readonly processes: Managed[];
  /** `upsc ups@127.0.0.1:port [variable]`, trimmed. */
  upsc(ups: string, variable?: string): Promise<string>;
  stop(): Promise<void>;
}

export async function startNut(dir: string, upses: NutUps[], users = ''): Promise<NutServer> {
  const port = await freePort();
  const user = userInfo().username;
  const env = { ...process.env, NUT_CONFPATH: dir, NUT_STATEPATH: dir, NUT_ALTPIDPATH: dir };
  const section = (ups: NutUps) => [`[${ups.name}]`, `  driver = ${ups.driver}`, ...Object.entries(ups.settings).map(([key, value]) => `  ${key} = ${value}`)].join('\n');
  await writeFile(join(dir, 'ups.conf'), upses.map(section).join('\n') + '\n');
  await writeFile(join(dir, 'upsd.conf'), `LISTEN 127.0.0.1 ${port}\n`);
  await writeFile(join(dir, 'upsd.users'), users);
  await chmod(join(dir, 'upsd.users'), 0o600);
  const processes: Managed[] = [];
  // NUT drops root privileges to its own account unless told otherwise; the test's user owns the temp dir.
  for (const ups of upses) {
    const driver = startProcess(`${ups.driver}:${ups.name}`, nutProgram(ups.driver), ['-a', ups.name, '-u', user, '-F'], { env });
    processes.push(driver);
    await waitFor(`${ups.driver} socket for ${ups.name}`, () => {
      if (driver.child.exitCode !== null) throw new Error(`${ups.driver} exited:\n${driver.output()}`);
      return existsSync(join(dir, `${ups.driver}-${ups.name}`)) ? true : undefined;
    }, 15_000);
  }
  const upsd = startProcess('upsd', nutProgram('upsd'), ['-u', user, '-F'], { env });
  processes.push(upsd);
  await waitFor(`upsd on ${port}`, () => {
    if (upsd.child.exitCode !== null) throw new Error(`upsd exited:\n${upsd.output()}`);
    return canConnect(port);
  }, 10_000);
  return {
    port,
    processes,
    upsc: (ups, variable) =>
      new Promise((resolve, reject) => {
        const args = [`${ups}@127.0.0.1:${port}`, ...(variable ? [variable] : [])];
        execFile('upsc', args, { env }, (error, stdout, stderr) => (error ? reject(new Error(`upsc ${args.join(' ')}: ${stderr || error.message}`)) : resolve(stdout.trim())));
      }),
    async stop() {
      for (const managed of processes.reverse()) await managed.kill('SIGTERM');
    },
  };
}
