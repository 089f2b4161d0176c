import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { waitFor } from './ports.ts';
import { startProcess, type Managed } from './processes.ts';

const BIN = join(fileURLToPath(import.meta.url), '..', '..', '..', 'agent', 'cli', 'bin.mjs');

export interface BmsSim {
  readonly process: Managed;
  send(command: string): void;
  /** JSON lines the simulator printed, in order. */
  lines(): Array<Record<string, unknown>>;
  waitForLine(match: (line: Record<string, unknown>) => boolean, what: string, timeoutMs?: number): Promise<Record<string, unknown>>;
  stop(): Promise<void>;
}

/** Run `lastgasp bms-sim` as a real process; `args` choose the protocol and where it listens. */
export async function startBmsSim(args: readonly string[]): Promise<BmsSim> {
  const process = startProcess('bms-sim', globalThis.process.execPath, [BIN, 'bms-sim', ...args]);
  const lines = () => process.jsonLines();
  const sim: BmsSim = {
    process,
    send: (command) => void process.child.stdin?.write(command + '\n'),
    lines,
    waitForLine: (match, what, timeoutMs = 20_000) => waitFor(`bms-sim: ${what}`, () => lines().find(match), timeoutMs),
    stop: async () => void (await process.kill()),
  };
  await sim.waitForLine((line) => line.event === 'listening', 'listening');
  return sim;
}
