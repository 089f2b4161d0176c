/**
 * The application as a systemd unit (config `app.unit`): `systemctl start` when this node becomes primary,
 * `systemctl stop` before it stands down, its state read with `systemctl is-active`. The same lifecycle as
 * AppRunner (app-runner.ts), with systemd holding the process:
 *
 * - The environment the application is told (node, group, epoch, API address, applied seq) is written to
 *   `envFile` before each start; the unit reads it with `EnvironmentFile=-<that file>` (the `-`: a node that
 *   never led has none). A file, not `systemctl set-environment`, which would change every unit's.
 * - `systemctl stop` waits for the unit to be stopped (its ExecStop, then systemd's own TimeoutStopSec). If
 *   that takes longer than `stopTimeoutMs`, the agent sends SIGKILL to the unit's processes
 *   (`systemctl kill --signal=SIGKILL`), so that a stand-down is never held up by the application.
 * - While wanted, the state is polled every `pollMs`: a unit found `inactive` or `failed` (it exited and
 *   systemd's own Restart= did not bring it back) is logged, counted and started again after
 *   `restartDelayMs`, doubled for each such exit in a row up to `restartDelayMsMax`.
 * - Calls run one after another: a stop waits for a start under way, so the last word is always the last call.
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { writeFileAtomic, type Clock, type Logger, type TimerHandle } from '../util/index.ts';

/** How long one `systemctl start` or `is-active` may take before it counts as failed. */
const UNIT_CALL_TIMEOUT_MS = 30_000;
/** Exits in a row after which the unit is reported as crash-looping (as APP_CRASH_LOOP_EXITS). */
const UNIT_CRASH_LOOP_EXITS = 3;

/** What Agent needs of whatever runs the application: a command (AppRunner) or a unit (UnitRunner). */
export interface AppControl {
  start(environment: () => Record<string, string>): void;
  stop(reason: string): Promise<void>;
  status(): Record<string, unknown>;
}

export interface UnitRunnerOptions {
  unit: string;
  /** `systemctl --user`: the agent's own user manager instead of the system's. */
  user: boolean;
  /** Where the application's environment is written before each start (the unit's EnvironmentFile). */
  envFile: string;
  stopTimeoutMs: number;
  restartDelayMs: number;
  restartDelayMsMax: number;
  pollMs: number;
  logger: Logger;
  clock: Clock;
}

/** The app's environment file, in the data directory (the unit names it in EnvironmentFile=). */
export function unitEnvFile(dataDir: string): string {
  return join(dataDir, 'app.env');
}

export class UnitRunner implements AppControl {
  private wanted = false;
  private environment: () => Record<string, string> = () => ({});
  private chain: Promise<void> = Promise.resolve();
  private pollTimer: TimerHandle | undefined;
  private activeState = 'unknown';
  private exitsInRow = 0;
  private backoffMs = 0;
  private readonly counters = { starts: 0, exits: 0, restarts: 0, kills: 0, startFailures: 0 };

  constructor(private readonly options: UnitRunnerOptions) {}

  start(environment: () => Record<string, string>): void {
    this.environment = environment;
    this.wanted = true;
    this.exitsInRow = 0;
    this.enqueue(() => this.startUnit());
  }

  stop(reason: string): Promise<void> {
    this.wanted = false;
    this.pollTimer?.cancel();
    this.pollTimer = undefined;
    return this.enqueue(() => this.stopUnit(reason));
  }

  status(): Record<string, unknown> {
    return { unit: this.options.unit, state: this.activeState, wanted: this.wanted, crashLoop: this.exitsInRow >= UNIT_CRASH_LOOP_EXITS, backoffMs: this.backoffMs, ...this.counters };
  }

  private enqueue(step: () => Promise<void>): Promise<void> {
    this.chain = this.chain.then(step, step);
    return this.chain;
  }

  private async startUnit(): Promise<void> {
    if (!this.wanted) return;
    const { options } = this;
    const lines = Object.entries(this.environment()).map(([name, value]) => `${name}=${value}`);
    await writeFileAtomic(options.envFile, new TextEncoder().encode(lines.join('\n') + '\n'));
    const result = await this.systemctl(['start', options.unit]);
    if (result.code === 0) {
      this.counters.starts++;
      this.activeState = 'active';
      options.logger.info(`app unit ${options.unit} started`, { event: 'app-start', unit: options.unit, starts: this.counters.starts });
    } else {
      this.counters.startFailures++;
      options.logger.error(`app: systemctl start ${options.unit} failed (exit ${result.code}: ${result.stderr.trim()}); check app.unit and the unit's journal`, { event: 'app-spawn-error', unit: options.unit });
    }
    this.schedulePoll(result.code === 0 ? options.pollMs : this.nextBackoff());
  }

  private async stopUnit(reason: string): Promise<void> {
    const { options } = this;
    options.logger.info(`stopping the app: ${reason}`, { event: 'app-stopping', unit: options.unit, reason });
    const result = await this.systemctl(['stop', options.unit], options.stopTimeoutMs);
    if (result.timedOut) {
      this.counters.kills++;
      options.logger.warn(`app unit ${options.unit} did not stop within app.stopTimeoutMs (${options.stopTimeoutMs} ms): killing it`, { event: 'app-kill', unit: options.unit });
      await this.systemctl(['kill', '--signal=SIGKILL', options.unit]);
    } else if (result.code !== 0) {
      options.logger.error(`app: systemctl stop ${options.unit} failed (exit ${result.code}: ${result.stderr.trim()})`, { event: 'app-stop-error', unit: options.unit });
    }
    this.activeState = 'inactive';
    options.logger.info('app stopped', { event: 'app-stop', unit: options.unit });
  }

  private schedulePoll(delayMs: number): void {
    this.pollTimer?.cancel();
    this.pollTimer = this.options.clock.setTimeout(() => {
      this.pollTimer = undefined;
      if (this.wanted) void this.enqueue(() => this.poll());
    }, delayMs);
  }

  private async poll(): Promise<void> {
    if (!this.wanted) return;
    const { options } = this;
    const state = (await this.systemctl(['is-active', options.unit])).stdout.trim() || 'unknown';
    this.activeState = state;
    if (state !== 'inactive' && state !== 'failed') {
      if (state === 'active') this.exitsInRow = 0;
      return this.schedulePoll(options.pollMs);
    }
    this.counters.exits++;
    const delayMs = this.nextBackoff();
    const crashLoop = this.exitsInRow >= UNIT_CRASH_LOOP_EXITS;
    const fields = { event: 'app-exit', unit: options.unit, state, exits: this.counters.exits, restartInMs: delayMs, crashLoop };
    if (crashLoop) options.logger.error(`app unit ${options.unit} is ${state} again (${this.exitsInRow} times in a row): crash loop, starting it in ${delayMs} ms`, fields);
    else options.logger.warn(`app unit ${options.unit} is ${state}; starting it again in ${delayMs} ms`, fields);
    this.pollTimer = options.clock.setTimeout(() => {
      this.pollTimer = undefined;
      if (!this.wanted) return;
      this.counters.restarts++;
      void this.enqueue(() => this.startUnit());
    }, delayMs);
  }

  private nextBackoff(): number {
    this.exitsInRow++;
    const { restartDelayMs, restartDelayMsMax } = this.options;
    this.backoffMs = Math.min(restartDelayMsMax, restartDelayMs * 2 ** Math.max(0, this.exitsInRow - 1));
    return this.backoffMs;
  }

  private systemctl(args: readonly string[], timeoutMs = UNIT_CALL_TIMEOUT_MS): Promise<{ code: number; stdout: string; stderr: string; timedOut: boolean }> {
    const full = this.options.user ? ['--user', ...args] : [...args];
    return new Promise((resolve) => {
      execFile('systemctl', full, { timeout: timeoutMs, killSignal: 'SIGKILL' }, (error, stdout, stderr) => {
        const failure = error as (Error & { code?: number | string; killed?: boolean }) | null;
        const code = failure === null ? 0 : typeof failure.code === 'number' ? failure.code : -1;
        resolve({ code, stdout: String(stdout), stderr: failure && code === -1 ? failure.message : String(stderr), timedOut: failure?.killed === true });
      });
    });
  }
}
