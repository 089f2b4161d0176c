/**
 * Event hooks (config `hooks`), as NUT's NOTIFYCMD and apcupsd's apccontrol: on power lost, power restored,
 * brownout, flush done, handoff, takeover, demotion and quarantine, the configured command runs with the
 * event in its environment:
 *
 *   LASTGASP_EVENT             the event's name (powerLost, flushDone, ...)
 *   LASTGASP_EVENT_NODE, LASTGASP_EVENT_GROUP, LASTGASP_EVENT_TIME_MS, LASTGASP_EVENT_POWER_STATE
 *   LASTGASP_EVENT_<FIELD>     the event's own fields (LASTGASP_EVENT_COMPLETE, _LAST_SEQ, _TO, ...)
 *
 * The command is executed directly (argv, no shell) unless `hooks.shell` says to run it through /bin/sh -c.
 * A hook never holds up the agent: `fire` starts it and returns; the brownout flush does not wait for it.
 * Each run is time-limited (SIGKILL after `timeoutMs`), its output logged line by line (bounded), its
 * failures counted; at most HOOKS_RUNNING_MAX run at once, and an event beyond that is dropped and counted,
 * so that a hook that hangs cannot pile up processes on a gateway whose power is failing.
 */
import { spawn } from 'node:child_process';
import type { Logger } from '../util/index.ts';

export const HOOK_EVENTS = ['powerLost', 'powerRestored', 'brownout', 'flushDone', 'handoff', 'takeover', 'demotion', 'quarantine'] as const;
export type HookEvent = (typeof HOOK_EVENTS)[number];

/** Hooks running at once; more are dropped (counted). Eight covers every event of one brownout at once. */
const HOOKS_RUNNING_MAX = 8;
/** Output lines logged per run; the rest are counted, not logged (a chatty hook must not flood the journal). */
const HOOK_OUTPUT_LINES_MAX = 32;

export interface HooksOptions {
  commands: Partial<Record<HookEvent, readonly string[]>>;
  shell: boolean;
  timeoutMs: number;
  /** Fields every event carries (node, group). */
  base: Readonly<Record<string, string>>;
  /** The power state now, for LASTGASP_EVENT_POWER_STATE. */
  powerState: () => string;
  logger: Logger;
}

export interface HookCounters {
  hooksRun: number;
  hooksFailed: number;
  hooksTimedOut: number;
  hooksDropped: number;
  hooksRunning: number;
}

export class Hooks {
  readonly counters: HookCounters = { hooksRun: 0, hooksFailed: 0, hooksTimedOut: 0, hooksDropped: 0, hooksRunning: 0 };

  constructor(private options: HooksOptions) {}

  /** SIGHUP: the commands, shell and timeout of a re-read config apply to the next event (running hooks go on). */
  reconfigure(settings: Pick<HooksOptions, 'commands' | 'shell' | 'timeoutMs'>): void {
    this.options = { ...this.options, ...settings };
  }

  /** Start the event's hook, if one is configured; never waits for it, never throws. */
  fire(event: HookEvent, fields: Readonly<Record<string, string | number | boolean | undefined>> = {}): void {
    const command = this.options.commands[event];
    if (!command) return;
    const logger = this.options.logger;
    if (this.counters.hooksRunning >= HOOKS_RUNNING_MAX) {
      this.counters.hooksDropped++;
      logger.warn(`hook ${event} not run: ${HOOKS_RUNNING_MAX} hooks are still running (each is killed after hooks.timeoutMs ${this.options.timeoutMs} ms)`, { event: 'hook-dropped', hook: event });
      return;
    }
    const env: Record<string, string> = { ...(process.env as Record<string, string>), LASTGASP_EVENT: event, LASTGASP_EVENT_TIME_MS: String(Date.now()), LASTGASP_EVENT_POWER_STATE: this.options.powerState() };
    for (const [key, value] of Object.entries({ ...this.options.base, ...fields })) {
      if (value !== undefined) env[`LASTGASP_EVENT_${key.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase()}`] = String(value);
    }
    const [file, args] = this.options.shell ? ['/bin/sh', ['-c', command[0]!]] : [command[0]!, command.slice(1)];
    this.counters.hooksRun++;
    this.counters.hooksRunning++;
    const child = spawn(file, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let lines = 0;
    const onOutput = (chunk: Buffer) => {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (line === '' || ++lines > HOOK_OUTPUT_LINES_MAX) continue;
        logger.info(`hook ${event}: ${line}`, { event: 'hook-output', hook: event });
      }
    };
    child.stdout.on('data', onOutput);
    child.stderr.on('data', onOutput);
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, this.options.timeoutMs);
    timer.unref();
    const started = performance.now();
    let finished = false;
    // A child that cannot start emits 'error' and may still emit 'close': the run ends once.
    const done = (code: number | null, error?: Error) => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      this.counters.hooksRunning--;
      const durationMs = Math.round(performance.now() - started);
      if (code === 0 && !timedOut) return logger.info(`hook ${event} done`, { event: 'hook', hook: event, code, durationMs });
      this.counters.hooksFailed++;
      if (timedOut) this.counters.hooksTimedOut++;
      const why = error ? `could not start ${file}: ${error.message}` : timedOut ? `killed after hooks.timeoutMs (${this.options.timeoutMs} ms)` : `exited with ${code ?? 'a signal'}`;
      logger.warn(`hook ${event} failed: ${why}${lines > HOOK_OUTPUT_LINES_MAX ? ` (${lines - HOOK_OUTPUT_LINES_MAX} more output lines not logged)` : ''}`, { event: 'hook', hook: event, code, durationMs, failed: true });
    };
    child.once('error', (error) => done(null, error));
    child.once('close', (code) => done(code));
  }
}
