/**
 * The simulator speaking the bridge protocol as a controller would: CAPABILITIES in answer to HELLO,
 * telemetry pushed every period, power events pushed at once and retransmitted until acknowledged,
 * heartbeats, a watchdog on the host's heartbeats, and the host's HOLD, CUT and CANCEL.
 */
import type { PowerEventKind } from '../core/index.ts';
import { BridgeEndpoint } from './endpoint.ts';
import { BRIDGE_FRAME_LEN_MAX, BRIDGE_HEARTBEAT_MISSES_MAX, BRIDGE_HEARTBEAT_MS, BRIDGE_VERSION_MAX, BRIDGE_VERSION_MIN, Feature } from './constants.ts';
import type { BridgeFrame, HelloMessage } from './messages.ts';
import type { SimDevice, SimLine, SimLink, SimProtocol } from '../sim/index.ts';

export interface BridgeSimOptions {
  readonly telemetryMs: number;
  readonly heartbeatMs: number;
  /** Longest HOLD accepted; longer ones are NAKed out-of-range. */
  readonly holdMsMax: number;
  readonly model: string;
  readonly firmware: string;
}

export const BRIDGE_SIM_DEFAULTS: BridgeSimOptions = {
  telemetryMs: 250,
  heartbeatMs: BRIDGE_HEARTBEAT_MS,
  holdMsMax: 600_000,
  model: 'lastgasp-sim',
  firmware: 'sim-1',
};

export class BridgeSimProtocol implements SimProtocol {
  private readonly endpoint: BridgeEndpoint;
  private telemetryTimer: ReturnType<typeof setInterval> | undefined;
  private heartbeatTimer: ReturnType<typeof setInterval> | undefined;
  private hostHeartbeatMs = 0;
  private lastHostFrameMs = 0;
  private hostAlive = false;
  private readonly startedMs = performance.now();

  constructor(
    private readonly device: SimDevice,
    private readonly link: SimLink,
    private readonly emit: (line: SimLine) => void,
    private readonly options: BridgeSimOptions,
  ) {
    this.endpoint = new BridgeEndpoint({ write: (bytes) => (link.write(bytes), true) }, { message: (frame) => this.onMessage(frame) });
    device.onPowerEvent((kind) => void this.pushEvent(kind));
  }

  start(): void {
    this.telemetryTimer = setInterval(() => this.sendTelemetry(), this.options.telemetryMs);
    this.heartbeatTimer = setInterval(() => this.heartbeat(), this.options.heartbeatMs);
  }

  stop(): void {
    clearInterval(this.telemetryTimer);
    clearInterval(this.heartbeatTimer);
    this.endpoint.reset('stopped');
  }

  receive(chunk: Uint8Array): void {
    this.endpoint.receive(chunk);
  }

  linkUp(): void {
    this.endpoint.reset('link-down');
  }

  linkDown(): void {
    this.endpoint.reset('link-down');
    this.hostAlive = false;
  }

  counters(): Record<string, number> {
    return this.endpoint.counters.snapshot();
  }

  private async pushEvent(kind: PowerEventKind): Promise<void> {
    const holdUpMs = Math.min(this.device.battery.runtimeS() * 1000, 0xffffffff);
    // High-resolution wall time of the write, so that a reader in another process can time the delivery;
    // the frame is written before the line is printed, so that printing does not delay it.
    const sentAtMs = performance.timeOrigin + performance.now();
    const sent = this.endpoint.sendReliable({ type: 'power-event', kind, holdUpMs });
    this.emit({ event: 'power-event', kind, sentAtMs });
    const result = await sent;
    this.emit(result.ok ? { event: 'power-event-acked', kind } : { event: 'power-event-unacked', kind, reason: result.reason });
  }

  private sendTelemetry(): void {
    this.device.tick();
    const status = this.device.status();
    this.endpoint.send({
      type: 'telemetry',
      acPresent: status.acPresent,
      socPermille: Math.round(status.socPercent * 10),
      runtimeS: Math.min(status.runtimeS, 0xffffffff),
      packMv: status.packMv,
      currentMa: status.currentMa,
      cellMv: Array.from({ length: status.cells }, () => status.cellMv),
      temperaturesDeciC: [status.temperatureDeciC],
      lowBattery: status.lowBattery,
      alarms: status.brownout ? ['brownout'] : [],
      uptimeMs: Math.round(performance.now() - this.startedMs) >>> 0,
    });
  }

  private heartbeat(): void {
    this.endpoint.send({ type: 'heartbeat', uptimeMs: Math.round(performance.now() - this.startedMs) >>> 0 });
    if (!this.hostAlive) return;
    const silentMs = performance.now() - this.lastHostFrameMs;
    if (silentMs > this.hostHeartbeatMs * BRIDGE_HEARTBEAT_MISSES_MAX) {
      // The host is hung or gone: a hold it asked for can no longer be trusted to end by its own command.
      this.hostAlive = false;
      this.device.releaseHold();
      this.emit({ event: 'watchdog', state: 'expired', silentMs: Math.round(silentMs) });
    }
  }

  private onMessage(frame: BridgeFrame): void {
    this.lastHostFrameMs = performance.now();
    const message = frame.message;
    switch (message.type) {
      case 'hello':
        return this.onHello(frame, message);
      case 'heartbeat':
        return;
      case 'hold':
        this.emit({ event: 'command', kind: 'hold', durationMs: message.durationMs });
        if (message.durationMs > this.options.holdMsMax) {
          return this.endpoint.nak(frame, 'out-of-range', { detail: `hold is limited to ${this.options.holdMsMax} ms` });
        }
        this.device.hold(message.durationMs);
        return this.endpoint.ack(frame);
      case 'cut':
        this.emit({ event: 'command', kind: 'cut', delayMs: message.delayMs });
        this.device.cut(message.delayMs);
        return this.endpoint.ack(frame);
      case 'cancel':
        this.emit({ event: 'command', kind: 'cancel' });
        this.device.cancelCut();
        return this.endpoint.ack(frame);
      case 'power-event':
      case 'capabilities':
        return this.endpoint.nak(frame, 'unsupported');
      default:
        return;
    }
  }

  private onHello(frame: BridgeFrame, hello: HelloMessage): void {
    const version = Math.min(hello.versionMax, BRIDGE_VERSION_MAX);
    if (version < Math.max(hello.versionMin, BRIDGE_VERSION_MIN)) {
      this.emit({ event: 'hello', ok: false, versionMin: hello.versionMin, versionMax: hello.versionMax });
      return this.endpoint.nak(frame, 'version', { versionMin: BRIDGE_VERSION_MIN, versionMax: BRIDGE_VERSION_MAX });
    }
    this.endpoint.version = version;
    this.hostHeartbeatMs = hello.heartbeatMs || BRIDGE_HEARTBEAT_MS;
    this.hostAlive = true;
    this.emit({ event: 'hello', ok: true, version, agent: hello.agent, heartbeatMs: hello.heartbeatMs });
    this.endpoint.reply(frame, {
      type: 'capabilities',
      helloSeq: frame.seq,
      version,
      model: this.options.model,
      firmware: this.options.firmware,
      features: Feature.CUT | Feature.HOLD | Feature.EVENTS | Feature.CELLS | Feature.TEMPERATURES,
      telemetryMs: this.options.telemetryMs,
      heartbeatMs: this.options.heartbeatMs,
      watchdogMs: this.hostHeartbeatMs * BRIDGE_HEARTBEAT_MISSES_MAX,
      holdMsMax: this.options.holdMsMax,
      frameLenMax: BRIDGE_FRAME_LEN_MAX,
    });
    // Send the present state at once, so the host does not wait a telemetry period after connecting.
    this.sendTelemetry();
  }
}
