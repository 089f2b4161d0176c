/**
 * The agent's side of the bridge protocol as a PowerSource: handshake and version negotiation, heartbeats
 * both ways, telemetry turned into PowerStatus, power events acknowledged and passed on, and the hold, cut
 * and cancel commands (PROTOCOL.md §6-§8).
 */
import {
  EventEdges,
  systemBridgeClock,
  type BridgeClock,
  type BridgeLogger,
  type CommandResult,
  type LinkState,
  type PowerSource,
  type PowerSourceCapabilities,
  type PowerSourceListener,
  type PowerStatus,
  type Transport,
} from '../core/index.ts';
import {
  BRIDGE_HEARTBEAT_MISSES_MAX,
  BRIDGE_HEARTBEAT_MS,
  BRIDGE_VERSION_MAX,
  BRIDGE_VERSION_MIN,
  BRIDGE_DELIMITER,
  Feature,
} from './constants.ts';
import type { BridgeFrame, CapabilitiesMessage, TelemetryMessage } from './messages.ts';
import { BridgeEndpoint, type ReliableResult } from './endpoint.ts';

export interface BridgeSourceOptions {
  readonly transport: Transport;
  readonly logger?: BridgeLogger;
  readonly clock?: BridgeClock;
  /** How often the host sends HEARTBEAT (and retries HELLO while the device does not answer). */
  readonly heartbeatMs?: number;
  readonly ackTimeoutMs?: number;
  readonly sendAttemptsMax?: number;
  /** Flip the sign of currentMa, for a controller whose firmware reports it the other way round. */
  readonly invertCurrent?: boolean;
  /** Sent in HELLO so that the controller can log who talks to it. */
  readonly agent?: string;
}

/** What the host assumes before CAPABILITIES arrives: nothing it has not been told. */
const CAPABILITIES_UNKNOWN: PowerSourceCapabilities = { cutPower: false, holdPower: false, pushEvents: true };

export class BridgePowerSource implements PowerSource {
  readonly name: string;
  private listener: PowerSourceListener | undefined;
  private readonly endpoint: BridgeEndpoint;
  private readonly clock: BridgeClock;
  private readonly heartbeatMs: number;
  private device: CapabilitiesMessage | undefined;
  private linkState: LinkState = 'down';
  private transportUp = false;
  private lastRxMs = 0;
  private helloInFlight = false;
  private ticker: { cancel(): void } | undefined;
  private started = false;
  private readonly edges = new EventEdges((event) => this.listener?.event(event));

  constructor(private readonly options: BridgeSourceOptions) {
    this.name = `bridge:${options.transport.name}`;
    this.clock = options.clock ?? systemBridgeClock;
    this.heartbeatMs = options.heartbeatMs ?? BRIDGE_HEARTBEAT_MS;
    this.endpoint = new BridgeEndpoint(
      { clock: this.clock, ackTimeoutMs: options.ackTimeoutMs, sendAttemptsMax: options.sendAttemptsMax, write: (bytes) => options.transport.write(bytes) },
      { message: (frame) => this.onMessage(frame) },
    );
  }

  get capabilities(): PowerSourceCapabilities {
    const device = this.device;
    if (!device) return CAPABILITIES_UNKNOWN;
    return { cutPower: (device.features & Feature.CUT) !== 0, holdPower: (device.features & Feature.HOLD) !== 0, pushEvents: (device.features & Feature.EVENTS) !== 0 };
  }

  /** The device's last CAPABILITIES (kept through an outage), once a handshake was done. */
  get deviceInfo(): CapabilitiesMessage | undefined {
    return this.device;
  }

  async start(listener: PowerSourceListener): Promise<void> {
    if (this.started) throw new Error(`${this.name} started twice`);
    this.started = true;
    this.listener = listener;
    this.options.transport.start({
      data: (chunk) => {
        this.endpoint.receive(chunk);
      },
      state: (state, reason) => this.onTransportState(state, reason),
    });
    this.scheduleTick();
  }

  async stop(): Promise<void> {
    this.ticker?.cancel();
    this.ticker = undefined;
    this.endpoint.reset('stopped');
    await this.options.transport.stop();
    this.started = false;
  }

  holdPower(durationMs: number): Promise<CommandResult> {
    return this.command('hold', durationMs, () => this.endpoint.sendReliable({ type: 'hold', durationMs: Math.round(durationMs) }));
  }

  cutPower(delayMs: number): Promise<CommandResult> {
    return this.command('cut', delayMs, () => this.endpoint.sendReliable({ type: 'cut', delayMs: Math.round(delayMs) }));
  }

  cancelCut(): Promise<CommandResult> {
    return this.command('cancel', 0, () => this.endpoint.sendReliable({ type: 'cancel' }));
  }

  counters(): Readonly<Record<string, number>> {
    return { ...this.endpoint.counters.snapshot(), ...this.options.transport.counters() };
  }

  private async command(kind: 'hold' | 'cut' | 'cancel', valueMs: number, send: () => Promise<ReliableResult>): Promise<CommandResult> {
    if (!Number.isFinite(valueMs) || valueMs < 0 || valueMs > 0xffffffff) return { ok: false, reason: 'out-of-range' };
    if (this.linkState !== 'up') return { ok: false, reason: 'link-down' };
    const needed = kind === 'hold' ? Feature.HOLD : Feature.CUT;
    if (this.device && (this.device.features & needed) === 0) return { ok: false, reason: 'unsupported' };
    const result = await send();
    if (!result.ok) this.options.logger?.warn(`bridge ${kind} failed: ${result.reason}`, { source: this.name, valueMs });
    return result.ok ? { ok: true } : { ok: false, reason: result.reason };
  }

  private onTransportState(state: LinkState, reason?: string): void {
    this.transportUp = state === 'up';
    if (state === 'up') {
      // A lone delimiter ends whatever fragment the device may hold from before, so our HELLO is read cleanly.
      this.options.transport.write(Uint8Array.of(BRIDGE_DELIMITER));
      this.setLink('connecting', 'transport up, waiting for CAPABILITIES');
      void this.hello();
      return;
    }
    // The device's capabilities stay known across an outage (it is the same controller), so that a caller
    // still tries a cut and hears "link-down" rather than "unsupported".
    this.endpoint.reset('link-down');
    this.setLink(state, reason);
  }

  private async hello(): Promise<void> {
    if (this.helloInFlight || !this.transportUp) return;
    this.helloInFlight = true;
    const result = await this.endpoint.sendReliable({
      type: 'hello',
      versionMin: BRIDGE_VERSION_MIN,
      versionMax: BRIDGE_VERSION_MAX,
      heartbeatMs: this.heartbeatMs,
      agent: this.options.agent,
    });
    this.helloInFlight = false;
    if (result.ok || !this.transportUp) return;
    const nak = result.reply;
    if (nak?.type === 'nak' && nak.reason === 'version') {
      this.setLink('down', `the device speaks bridge versions ${nak.versionMin ?? '?'}..${nak.versionMax ?? '?'}, this agent ${BRIDGE_VERSION_MIN}..${BRIDGE_VERSION_MAX}`);
    } else if (result.reason === 'timeout') {
      this.setLink('down', 'the device does not answer HELLO (wrong port, baud rate or protocol?)');
    }
  }

  private onMessage(frame: BridgeFrame): void {
    this.lastRxMs = this.clock.monotonicMs();
    const message = frame.message;
    switch (message.type) {
      case 'capabilities':
        return this.onCapabilities(message);
      case 'telemetry': {
        if (this.linkState !== 'up') return;
        const status = this.toStatus(message);
        this.listener?.status(status);
        this.edges.status(status, status.alarms.includes('brownout'));
        return;
      }
      case 'power-event':
        if (this.linkState !== 'up') {
          // Before CAPABILITIES nothing says this frame comes from a controller this agent speaks with (line
          // noise that framed, another device on the port, a frame left from an earlier session), and one
          // brownout event starts the irreversible flush and handoff. Refused with NAK "state" (§6.4): the
          // first telemetry after the handshake carries the state, and the edge is derived from it.
          this.endpoint.counters.add('rx.events-before-handshake');
          this.endpoint.nak(frame, 'state', { detail: 'power event before the handshake (HELLO/CAPABILITIES)' });
          return;
        }
        // Acknowledge before acting: the controller stops retransmitting at once, and the listener's work
        // (a flush) must not delay the ACK into a retransmission.
        this.endpoint.ack(frame);
        this.edges.pushed(message.kind, this.clock.nowMs(), message.detail);
        return;
      case 'heartbeat':
        return;
      default:
        // HELLO, HOLD, CUT and CANCEL are the host's to send; a device that sends them is answered, not obeyed.
        this.endpoint.nak(frame, 'unsupported');
    }
  }

  private onCapabilities(message: CapabilitiesMessage): void {
    if (message.version < BRIDGE_VERSION_MIN || message.version > BRIDGE_VERSION_MAX) {
      this.setLink('down', `the device chose bridge version ${message.version}, which this agent does not speak`);
      return;
    }
    this.device = message;
    this.endpoint.version = message.version;
    this.setLink('up');
  }

  private toStatus(message: TelemetryMessage): PowerStatus {
    const sign = this.options.invertCurrent ? -1 : 1;
    return {
      source: this.name,
      acPresent: message.acPresent,
      socPercent: message.socPermille === undefined ? undefined : message.socPermille / 10,
      runtimeS: message.runtimeS,
      packMv: message.packMv,
      currentMa: message.currentMa === undefined ? undefined : sign * message.currentMa,
      cellMv: message.cellMv,
      temperaturesC: message.temperaturesDeciC?.map((deci) => deci / 10),
      lowBattery: message.lowBattery,
      alarms: message.alarms ?? [],
      atMs: this.clock.nowMs(),
    };
  }

  /** Once per heartbeat period: send a HEARTBEAT, check the device's, and retry HELLO while not up. */
  private scheduleTick(): void {
    this.ticker = this.clock.setTimeout(() => {
      this.tick();
      this.scheduleTick();
    }, this.heartbeatMs);
  }

  private tick(): void {
    if (!this.transportUp) return;
    if (this.linkState !== 'up') {
      void this.hello();
      return;
    }
    this.endpoint.send({ type: 'heartbeat', uptimeMs: Math.round(this.clock.monotonicMs()) >>> 0 });
    const deviceHeartbeatMs = this.device?.heartbeatMs || BRIDGE_HEARTBEAT_MS;
    const silentMs = this.clock.monotonicMs() - this.lastRxMs;
    if (silentMs > deviceHeartbeatMs * BRIDGE_HEARTBEAT_MISSES_MAX) {
      this.endpoint.reset('link-down');
      this.setLink('down', `no frame from the device for ${Math.round(silentMs)} ms (heartbeat ${deviceHeartbeatMs} ms)`);
    }
  }

  private setLink(state: LinkState, reason?: string): void {
    if (state === this.linkState) return;
    this.linkState = state;
    this.options.logger?.info(`bridge link ${state}${reason ? `: ${reason}` : ''}`, { source: this.name });
    this.listener?.link(state, reason);
  }
}
