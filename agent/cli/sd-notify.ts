/**
 * systemd's notification protocol (sd_notify(3)): READY=1 once the agent serves, WATCHDOG=1 while its event
 * loop turns, STATUS= for `systemctl status`, RELOADING=1 and STOPPING=1 around a reload and a stop.
 *
 * A message is one datagram on the Unix socket named by NOTIFY_SOCKET, and Node has no Unix datagram sockets
 * (`dgram` speaks UDP only). The packages that add them are native and build from source at install time,
 * which a gateway image with install scripts blocked does not do. So each message is sent by systemd's own
 * `systemd-notify`, spawned with NOTIFY_SOCKET in its environment. Two things make that sound:
 * - the sender is a child, not the main process: the unit says `NotifyAccess=all`;
 * - since systemd 246 `systemd-notify` waits (BARRIER=1) until the manager has read the message, so the
 *   manager never finds the sender already gone and unable to say which unit it belongs to (the old race of
 *   scripts that called `systemd-notify --ready`). Debian 12 ships systemd 252.
 */
import { spawn } from 'node:child_process';
import type { Logger } from '../util/index.ts';

/** A spawned systemd-notify that has not returned in this time is killed (its barrier waits 5 s at most). */
const SD_NOTIFY_TIMEOUT_MS = 10_000;

/**
 * Messages waiting for their turn, at most. Each is one short process; more than this waiting means that
 * systemd-notify hangs, and a backlog of stale STATUS lines would help nobody.
 */
const SD_NOTIFY_QUEUE_MAX = 8;

export interface SdNotifyOptions {
  /** NOTIFY_SOCKET: a path, or an abstract socket when it begins with `@`. */
  readonly socket: string;
  /** WATCHDOG_USEC for this process, if the unit asked for a watchdog. */
  readonly watchdogUsec: number | undefined;
  readonly logger: Logger;
  /** The sending program; `systemd-notify` from PATH unless a test gives another. */
  readonly command?: string;
}

export class SdNotify {
  private queue: Promise<void> = Promise.resolve();
  private waiting = 0;
  private failedOnce = false;
  readonly counters = { sent: 0, failed: 0, dropped: 0 };

  constructor(private readonly options: SdNotifyOptions) {}

  /**
   * The notifier for this process when a service manager started it with NOTIFY_SOCKET, else undefined.
   * Like sd_notify's `unset_environment`, the variables are taken out of `env`: the application the agent runs
   * must not report for the agent's unit, nor feed its watchdog.
   */
  static fromEnv(env: NodeJS.ProcessEnv, logger: Logger, pid = process.pid): SdNotify | undefined {
    const socket = env.NOTIFY_SOCKET;
    const usec = Number(env.WATCHDOG_USEC);
    const forUs = env.WATCHDOG_PID === undefined || Number(env.WATCHDOG_PID) === pid;
    delete env.NOTIFY_SOCKET;
    delete env.WATCHDOG_USEC;
    delete env.WATCHDOG_PID;
    if (!socket) return undefined;
    return new SdNotify({ socket, watchdogUsec: forUs && Number.isSafeInteger(usec) && usec > 0 ? usec : undefined, logger });
  }

  /** How often to send WATCHDOG=1: half the manager's timeout, as sd_watchdog_enabled(3) advises. */
  get watchdogIntervalMs(): number | undefined {
    return this.options.watchdogUsec === undefined ? undefined : Math.max(1, Math.floor(this.options.watchdogUsec / 2000));
  }

  /** Send `fields` (NAME=value lines) as one message, after those sent before it. */
  notify(fields: Record<string, string>): Promise<void> {
    if (this.waiting >= SD_NOTIFY_QUEUE_MAX) {
      this.counters.dropped++;
      return Promise.resolve();
    }
    this.waiting++;
    const lines = Object.entries(fields).map(([name, value]) => `${name}=${value.replace(/\n/g, ' ')}`);
    this.queue = this.queue.then(() => this.send(lines)).finally(() => void this.waiting--);
    return this.queue;
  }

  private send(lines: readonly string[]): Promise<void> {
    const { socket, logger } = this.options;
    return new Promise<void>((resolve) => {
      const child = spawn(this.options.command ?? 'systemd-notify', lines, {
        env: { PATH: process.env.PATH ?? '/usr/bin:/bin', NOTIFY_SOCKET: socket },
        stdio: ['ignore', 'ignore', 'pipe'],
        timeout: SD_NOTIFY_TIMEOUT_MS,
      });
      let stderr = '';
      let finished = false;
      child.stderr.setEncoding('utf8').on('data', (chunk: string) => void (stderr = (stderr + chunk).slice(-500)));
      const done = (problem: string | undefined) => {
        // A spawn that fails reports an error and may then close as well: count it once.
        if (finished) return;
        finished = true;
        if (problem === undefined) this.counters.sent++;
        else {
          this.counters.failed++;
          // Once at warn (a missing systemd-notify, a socket that went away), then quietly: the watchdog
          // would repeat it every few seconds.
          const log = this.failedOnce ? logger.debug : logger.warn;
          this.failedOnce = true;
          log(`could not notify the service manager (${lines.map((line) => line.split('=')[0]).join(', ')}): ${problem}; is systemd-notify installed, and does the unit say NotifyAccess=all?`, { event: 'sd-notify-failed' });
        }
        resolve();
      };
      child.once('error', (error) => done(error.message));
      child.once('close', (code, signal) => done(code === 0 ? undefined : `systemd-notify exited with ${code ?? signal}${stderr ? `: ${stderr.trim()}` : ''}`));
    });
  }
}

/** CLOCK_MONOTONIC in microseconds, as RELOADING=1 wants it in MONOTONIC_USEC (libuv's hrtime reads that clock). */
export function monotonicUsec(): string {
  return String(process.hrtime.bigint() / 1000n);
}
