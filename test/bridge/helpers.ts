/**
 * Helpers for the bridge tests: the simulator as a separate process driven through stdin, whose JSON lines
 * are parsed as they come, and a PowerSourceListener that records what a source reported.
 */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { LinkState, PowerEvent, PowerSourceListener, PowerStatus } from '../../firmware-bridge/index.ts';
import { startProcess, type Managed } from '../support/processes.ts';
import { waitFor } from '../support/ports.ts';

const SIM_ENTRY = join(fileURLToPath(import.meta.url), '..', '..', '..', 'firmware-bridge', 'cli', 'run-bms-sim.ts');

export interface SimLine {
  readonly event: string;
  readonly [key: string]: unknown;
}

export interface SimProcess {
  readonly process: Managed;
  /** The `listening` line's fields. */
  readonly listening: SimLine;
  lines(): SimLine[];
  /** Send one control command and wait for its acknowledgement. */
  control(command: string): Promise<SimLine>;
  /** Wait for a line (seen since `fromIndex`, default: since the start) matching `predicate`. */
  waitForLine(what: string, predicate: (line: SimLine) => boolean, timeoutMs?: number, fromIndex?: number): Promise<SimLine>;
  stop(): Promise<void>;
}

export async function startSim(args: readonly string[]): Promise<SimProcess> {
  const process = startProcess('bms-sim', globalThis.process.execPath, ['--import', 'tsx', SIM_ENTRY, ...args]);
  const parsed: SimLine[] = [];
  let pending = '';
  process.child.stdout?.on('data', (chunk: Buffer) => {
    pending += chunk.toString('utf8');
    let newline = pending.indexOf('\n');
    while (newline !== -1) {
      const text = pending.slice(0, newline);
      pending = pending.slice(newline + 1);
      if (text.startsWith('{')) parsed.push(JSON.parse(text) as SimLine);
      newline = pending.indexOf('\n');
    }
  });
  const waitForLine = (what: string, predicate: (line: SimLine) => boolean, timeoutMs = 10_000, fromIndex = 0) =>
    waitFor(
      `bms-sim line: ${what}`,
      () => {
        if (process.child.exitCode !== null) throw new Error(`bms-sim exited early:\n${process.output()}`);
        return parsed.slice(fromIndex).find(predicate);
      },
      timeoutMs,
      5,
    );
  const listening = await waitForLine('listening', (line) => line.event === 'listening', 15_000);
  return {
    process,
    listening,
    lines: () => parsed,
    waitForLine,
    async control(command) {
      const from = parsed.length;
      process.child.stdin?.write(command + '\n');
      return waitForLine(`control ack of "${command}"`, (line) => line.event === 'control' && line.command === command, 10_000, from);
    },
    async stop() {
      if (process.child.exitCode === null) process.child.stdin?.write('quit\n');
      const exited = await Promise.race([process.exited, new Promise((resolve) => setTimeout(() => resolve('timeout'), 5000))]);
      if (exited === 'timeout') await process.kill('SIGKILL');
    },
  };
}

/** Records everything a PowerSource reports, with waits on each kind. */
export class RecordingListener implements PowerSourceListener {
  readonly statuses: PowerStatus[] = [];
  readonly events: PowerEvent[] = [];
  readonly links: Array<{ state: LinkState; reason?: string }> = [];

  status(status: PowerStatus): void {
    this.statuses.push(status);
  }
  event(event: PowerEvent): void {
    this.events.push(event);
  }
  link(state: LinkState, reason?: string): void {
    this.links.push({ state, reason });
  }

  get linkState(): LinkState | undefined {
    return this.links.at(-1)?.state;
  }

  waitForLink(state: LinkState, timeoutMs = 10_000, fromIndex = 0): Promise<number> {
    return waitFor(`link ${state}`, () => {
      const index = this.links.findIndex((entry, at) => at >= fromIndex && entry.state === state);
      return index === -1 ? undefined : index;
    }, timeoutMs, 5);
  }

  waitForEvent(kind: PowerEvent['kind'], timeoutMs = 10_000): Promise<PowerEvent> {
    return waitFor(`event ${kind}`, () => this.events.find((event) => event.kind === kind), timeoutMs, 5);
  }

  waitForStatus(what: string, predicate: (status: PowerStatus) => boolean, timeoutMs = 10_000): Promise<PowerStatus> {
    return waitFor(`status ${what}`, () => this.statuses.find(predicate), timeoutMs, 5);
  }
}
