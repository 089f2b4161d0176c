/**
 * Turns what a source learns (pushed events and polled status) into edge-triggered PowerEvents: each
 * condition is reported once when it starts, whichever path brought the news first. A bridge controller's
 * pushed event and the telemetry after it therefore give one event, an event lost in a link outage is
 * recovered from the first status after reconnecting, and polled drivers (JBD, Daly, Q1, NUT, sysfs) get
 * their events from status alone.
 */
import type { PowerEvent, PowerEventKind, PowerStatus } from './types.ts';

export class EventEdges {
  private acPresent: boolean | undefined;
  private lowBattery = false;
  private brownout = false;
  private powerOffPending = false;

  constructor(private readonly emit: (event: PowerEvent) => void) {}

  /** A pushed event: reported unless the condition is already known. */
  pushed(kind: PowerEventKind, atMs: number, detail?: string): void {
    if (this.apply(kind)) this.emit(detail === undefined ? { kind, atMs } : { kind, atMs, detail });
  }

  /** A status: every condition it shows that is new becomes an event, derived from status. */
  status(status: PowerStatus, brownout = false, powerOffPending = false): void {
    const kinds: PowerEventKind[] = [];
    if (status.acPresent === false && this.acPresent !== false) kinds.push('ac-lost');
    if (status.acPresent === true && this.acPresent === false) kinds.push('ac-restored');
    if (status.lowBattery === true && !this.lowBattery && status.acPresent !== true) kinds.push('low-battery');
    if (brownout && !this.brownout) kinds.push('brownout');
    if (powerOffPending && !this.powerOffPending) kinds.push('power-off-pending');
    // The first status on mains is the starting point, not a restoration.
    if (status.acPresent === true && this.acPresent === undefined) this.acPresent = true;
    if (status.lowBattery === false) this.lowBattery = false;
    if (!brownout && status.acPresent === true) this.brownout = false;
    if (!powerOffPending) this.powerOffPending = false;
    for (const kind of kinds) if (this.apply(kind)) this.emit({ kind, atMs: status.atMs, detail: 'derived from status' });
  }

  /** Forget everything (a new device, or a source restarted): the next status reports afresh. */
  reset(): void {
    this.acPresent = undefined;
    this.lowBattery = false;
    this.brownout = false;
    this.powerOffPending = false;
  }

  /** Record the condition; true when it is new. */
  private apply(kind: PowerEventKind): boolean {
    switch (kind) {
      case 'ac-lost':
        if (this.acPresent === false) return false;
        this.acPresent = false;
        return true;
      case 'ac-restored':
        if (this.acPresent === true) return false;
        this.acPresent = true;
        this.lowBattery = false;
        this.brownout = false;
        this.powerOffPending = false;
        return true;
      case 'low-battery':
        if (this.lowBattery) return false;
        this.lowBattery = true;
        return true;
      case 'brownout':
        if (this.brownout) return false;
        this.brownout = true;
        return true;
      case 'power-off-pending':
        if (this.powerOffPending) return false;
        this.powerOffPending = true;
        return true;
    }
  }
}
