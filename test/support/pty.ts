import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { startProcess, type Managed } from './processes.ts';
import { waitFor } from './ports.ts';

/**
 * A real pseudo-terminal pair made by socat: what is written to one end comes out of the other, through
 * the kernel's tty layer, as a USB-serial adapter would deliver it. `raw,echo=0` turns off line
 * discipline so binary frames pass unchanged.
 */
export interface PtyPair {
  /** Path of the end the device (simulator) opens. */
  readonly devicePath: string;
  /** Path of the end the agent opens. */
  readonly hostPath: string;
  readonly socat: Managed;
  close(): Promise<void>;
}

export async function createPtyPair(dir: string, name = 'bms'): Promise<PtyPair> {
  const devicePath = join(dir, `${name}-device`);
  const hostPath = join(dir, `${name}-host`);
  const socat = startProcess('socat', 'socat', [
    '-d',
    '-d',
    `pty,raw,echo=0,link=${devicePath}`,
    `pty,raw,echo=0,link=${hostPath}`,
  ]);
  await waitFor(`socat ptys ${devicePath} and ${hostPath}`, () =>
    existsSync(devicePath) && existsSync(hostPath) ? true : undefined,
  );
  await socat.waitForOutput(/starting data transfer loop/, 5000);
  return { devicePath, hostPath, socat, close: async () => void (await socat.kill()) };
}
