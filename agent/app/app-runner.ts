/**
 * The application that moves with leadership (config `app:`): started on the node that becomes primary,
 * stopped before that node stands down, restarted when it exits on its own.
 *
 * - Started in its own process group, so that stopping it reaches whatever it started (a shell's children):
 *   SIGTERM to the group, then SIGKILL after `stopTimeoutMs`. `stop` resolves once the process has exited,
 *   so a caller that awaits it knows the application writes nothing more through this node.
 * - An exit that was not asked for is logged and counted, and the application is started again after
 *   `restartDelayMs`, doubled for each exit within `stableMs` of its start (up to `restartDelayMsMax`):
 *   a crash loop costs one start per `restartDelayMsMax`, not a busy loop, and shows in `status()`.
 * - The agent's own death does not reach the application by itself (Linux does not kill children with
 *   their parent): under systemd the unit's control group is stopped whole (KillMode=control-group, the
 *   default); an application run otherwise should exit when its parent changes (LASTGASP_AGENT_PID).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import type { Clock, Logger, TimerHandle } from '../util/index.ts';

/** Exits within stableMs in a row after which the application is reported as crash-looping. */
export const APP_CRASH_LOOP_EXITS = 3;
/** After SIGKILL, how long to wait for the exit before giving up on it (a process in D state). */
const APP_KILL_WAIT_MS = 5000;

export interface AppRunnerOptions {
  command: readonly string[];
  env: Readonly<Record<string, string>>;
  cwd: string;
  stopTimeoutMs: number;
  restartDelayMs: number;
  restartDelayMsMax: number;
  stableMs: number;
  logger: Logger;
  clock: Clock;
}

export type AppState = 'stopped' | 'running' | 'stopping' | 'backoff';

export class AppRunner {
  private child: ChildProcess | undefined;
  private exited: Promise<void> | undefined;
  private wanted = false;
  /** Builds the environment at each start: the epoch and the applied seq are those of that moment. */
  private environment: () => Record<string, string> = () => ({});
  private startedAtMs = 0;
  private restartTimer: TimerHandle | undefined;
  private quickExits = 0;
  private stopping: Promise<void> | undefined;
  private readonly counters = { starts: 0, exits: 0, restarts: 0, kills: 0, spawnErrors: 0 };
  private lastExit: { code: number | null; signal: string | null; ranMs: number; atMs: number } | undefined;
  private backoffMs = 0;

  constructor(private readonly options: AppRunnerOptions) {}

  /** Run the application (now, or after a stop under way has finished) until `stop`. */
  start(environment: () => Record<string, string>): void {
    this.environment = environment;
    this.wanted = true;
    this.quickExits = 0;
    if (!this.child && !this.restartTimer) this.spawn();
  }

  /** Stop the application and resolve once it has exited (SIGTERM, then SIGKILL after stopTimeoutMs). */
  async stop(reason: string): Promise<void> {
    this.wanted = false;
    this.restartTimer?.cancel();
    this.restartTimer = undefined;
    const child = this.child;
    if (!child) return;
    this.stopping ??= this.terminate(child, reason).finally(() => (this.stopping = undefined));
    await this.stopping;
  }

  status(): Record<string, unknown> {
    const state: AppState = this.stopping ? 'stopping' : this.child ? 'running' : this.restartTimer ? 'backoff' : 'stopped';
    return {
      state,
      pid: this.child?.pid,
      crashLoop: this.quickExits >= APP_CRASH_LOOP_EXITS,
      backoffMs: this.restartTimer ? this.backoffMs : 0,
      lastExit: this.lastExit,
      ...this.counters,
    };
  }

  private spawn(): void {
    const { options } = this;
    const [program, ...args] = options.command;
    const env = { ...process.env, ...options.env, ...this.environment(), LASTGASP_AGENT_PID: String(process.pid) };
    this.startedAtMs = options.clock.monotonicMs();
    let child: ChildProcess;
    try {
      child = spawn(program!, args, { cwd: options.cwd, env, stdio: ['ignore', 'inherit', 'inherit'], detached: true });
    } catch (error) {
      this.counters.spawnErrors++;
      options.logger.error(`app: cannot start ${program} (${(error as Error).message}); check app.command`, { event: 'app-spawn-error' });
      this.afterExit(null, null);
      return;
    }
    this.child = child;
    this.counters.starts++;
    this.exited = new Promise<void>((resolve) => {
      let settled = false;
      const done = (code: number | null, signal: string | null) => {
        if (settled) return;
        settled = true;
        resolve();
        this.afterExit(code, signal);
      };
      child.once('exit', done);
      child.once('error', (error) => {
        this.counters.spawnErrors++;
        options.logger.error(`app: ${program} failed to start (${error.message}); check app.command`, { event: 'app-spawn-error' });
        done(null, null);
      });
    });
    options.logger.info('app started', { event: 'app-start', pid: child.pid, command: options.command, starts: this.counters.starts });
  }

  private afterExit(code: number | null, signal: string | null): void {
    const { options } = this;
    const ranMs = Math.round(options.clock.monotonicMs() - this.startedAtMs);
    this.child = undefined;
    this.counters.exits++;
    this.lastExit = { code, signal, ranMs, atMs: options.clock.nowMs() };
    if (!this.wanted || this.stopping) {
      options.logger.info('app stopped', { event: 'app-stop', code, signal, ranMs });
      // Started again while it was being stopped (leadership came back meanwhile): run it anew.
      if (this.wanted) this.spawn();
      return;
    }
    this.quickExits = ranMs < options.stableMs ? this.quickExits + 1 : 0;
    this.backoffMs = Math.min(options.restartDelayMsMax, options.restartDelayMs * 2 ** Math.max(0, this.quickExits - 1));
    const crashLoop = this.quickExits >= APP_CRASH_LOOP_EXITS;
    const fields = { event: 'app-exit', code, signal, ranMs, exits: this.counters.exits, restartInMs: this.backoffMs, crashLoop };
    if (crashLoop) options.logger.error(`app exited ${this.quickExits} times in a row within app.stableMs (${options.stableMs} ms) of its start: crash loop, restarting in ${this.backoffMs} ms`, fields);
    else options.logger.warn(`app exited (${signal ?? `code ${code}`}) after ${ranMs} ms; restarting in ${this.backoffMs} ms`, fields);
    this.restartTimer = options.clock.setTimeout(() => {
      this.restartTimer = undefined;
      if (!this.wanted) return;
      this.counters.restarts++;
      this.spawn();
    }, this.backoffMs);
  }

  private async terminate(child: ChildProcess, reason: string): Promise<void> {
    const { options } = this;
    const exited = this.exited!;
    options.logger.info(`stopping the app: ${reason}`, { event: 'app-stopping', pid: child.pid, reason });
    signalGroup(child, 'SIGTERM');
    if (await settlesWithin(exited, options.stopTimeoutMs, options.clock)) return;
    this.counters.kills++;
    options.logger.warn(`app did not exit within app.stopTimeoutMs (${options.stopTimeoutMs} ms) of SIGTERM: killing it`, { event: 'app-kill', pid: child.pid });
    signalGroup(child, 'SIGKILL');
    if (!(await settlesWithin(exited, APP_KILL_WAIT_MS, options.clock))) options.logger.error('app did not exit after SIGKILL (stuck in the kernel?)', { event: 'app-stuck', pid: child.pid });
  }
}

function signalGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  try {
    // The negative pid names the process group the detached child leads.
    process.kill(-child.pid!, signal);
  } catch {
    child.kill(signal);
  }
}

function settlesWithin(promise: Promise<void>, ms: number, clock: Clock): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = clock.setTimeout(() => resolve(false), ms);
    void promise.then(() => {
      timer.cancel();
      resolve(true);
    });
  });
}
