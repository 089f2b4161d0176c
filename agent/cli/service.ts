/**
 * What the agent tells its service manager while it runs (through sd-notify.ts): ready, a watchdog fed by a
 * timer of the event loop (a loop stuck in a busy callback or a blocking call stops feeding it, and systemd
 * restarts the agent), a one-line status, and the two halves of a reload and a stop.
 */
import { monotonicUsec, type SdNotify } from './sd-notify.ts';

/**
 * How often the status line is looked at when no watchdog asks for more: often enough for an operator's
 * `systemctl status`, seldom enough that a process spawned per change costs nothing worth counting.
 */
const SERVICE_STATUS_INTERVAL_MS = 5000;

/** The fields of the agent's status that the line shows (Agent.status() has them all). */
export interface StatusSource {
  status(): Record<string, unknown>;
}

export class ServiceReports {
  private timer: ReturnType<typeof setInterval> | undefined;
  private lastStatus = '';

  constructor(
    private readonly notifier: SdNotify,
    private readonly source: StatusSource,
  ) {}

  /** READY=1 with the first status line, then the periodic watchdog and status. */
  ready(): Promise<void> {
    this.lastStatus = statusLine(this.source.status());
    const intervalMs = Math.min(this.notifier.watchdogIntervalMs ?? SERVICE_STATUS_INTERVAL_MS, SERVICE_STATUS_INTERVAL_MS);
    this.timer = setInterval(() => this.tick(), intervalMs);
    // The process ends when the agent has stopped, not when this timer says so.
    this.timer.unref();
    return this.notifier.notify({ READY: '1', STATUS: this.lastStatus });
  }

  reloading(): Promise<void> {
    return this.notifier.notify({ RELOADING: '1', MONOTONIC_USEC: monotonicUsec(), STATUS: 'reloading the configuration' });
  }

  reloaded(): Promise<void> {
    this.lastStatus = statusLine(this.source.status());
    return this.notifier.notify({ READY: '1', STATUS: this.lastStatus });
  }

  stopping(reason: string): Promise<void> {
    clearInterval(this.timer);
    return this.notifier.notify({ STOPPING: '1', STATUS: `stopping (${reason})` });
  }

  private tick(): void {
    const fields: Record<string, string> = {};
    if (this.notifier.watchdogIntervalMs !== undefined) fields.WATCHDOG = '1';
    const line = statusLine(this.source.status());
    if (line !== this.lastStatus) fields.STATUS = this.lastStatus = line;
    if (Object.keys(fields).length > 0) void this.notifier.notify(fields);
  }
}

/** `primary in epoch 3, power ONLINE, 0 entries unreplicated (committed 1200)`: role, power state, tail. */
export function statusLine(status: Record<string, unknown>): string {
  const role = typeof status.role === 'string' ? status.role : 'starting';
  const power = (status.power as { state?: string } | undefined)?.state ?? 'unknown';
  const marks = status.watermarks as { committed: number; replicated: number } | undefined;
  const tail = marks ? `${marks.committed - marks.replicated} entries unreplicated (committed ${marks.committed})` : 'log not open';
  const handingOff = status.handingOff === true ? ', handing off' : '';
  return `${role} in epoch ${String(status.epoch ?? 0)}, power ${power}${handingOff}, ${tail}`;
}
