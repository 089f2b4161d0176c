/**
 * A Megatec Q1 UPS as a PowerSource: polls `Q1`, reads `I` and `F` once per connection, and maps cut and
 * cancel to `S<n>` and `C`. Megatec commands have no answer, so each is checked on the next `Q1`: the
 * "shutdown active" bit must follow.
 */
import {
  DelimitedAccumulator,
  PolledPowerSource,
  type CommandResult,
  type Counters,
  type PolledOptions,
  type PollResult,
  type PowerSourceCapabilities,
  type StreamParser,
  type Transport,
} from '../core/index.ts';
import {
  decodeF,
  decodeI,
  decodeQ1,
  megatecShutdownCommand,
  MEGATEC_CANCEL_SHUTDOWN,
  MEGATEC_LINE_LEN_MAX,
  MEGATEC_QUERY_INFO,
  MEGATEC_QUERY_RATINGS,
  MEGATEC_QUERY_STATUS,
  Q1_TERMINATOR,
  type Q1Status,
} from './codec.ts';

export interface MegatecSourceOptions extends PolledOptions {
  /** Battery voltage (as the UPS reports it) at empty and at full, to estimate the charge as NUT does; optional. */
  readonly batteryVoltsLow?: number;
  readonly batteryVoltsHigh?: number;
}

const ascii = new TextDecoder('latin1');
const encodeAscii = (text: string) => Uint8Array.from(text, (char) => char.charCodeAt(0));

export class MegatecPowerSource extends PolledPowerSource<string> {
  readonly capabilities: PowerSourceCapabilities = { cutPower: true, holdPower: false, pushEvents: false };
  private identified = false;
  private model: string | undefined;
  private nominalBatteryV: number | undefined;
  private last: Q1Status | undefined;

  constructor(transport: Transport, private readonly megatec: MegatecSourceOptions) {
    super(`q1:${transport.name}`, transport, megatec);
  }

  protected createParser(counters: Counters, onFrame: (line: string) => void): StreamParser {
    return new DelimitedAccumulator({ delimiter: Q1_TERMINATOR, frameLenMax: MEGATEC_LINE_LEN_MAX }, counters, (line) => {
      counters.add('rx.frames');
      counters.add('rx.frame-bytes', line.length + 1);
      onFrame(ascii.decode(line));
    });
  }

  protected override onOpen(): void {
    this.identified = false;
  }

  private async query(command: string, marker: string): Promise<string | undefined> {
    let reply: string | undefined;
    const complete = await this.exchange(encodeAscii(command), (line) => {
      if (!line.startsWith(marker)) return false;
      reply = line;
      return true;
    });
    return complete ? reply : undefined;
  }

  protected async poll(): Promise<PollResult | undefined> {
    if (!this.identified) {
      const info = await this.query(MEGATEC_QUERY_INFO, '#');
      const decodedInfo = info === undefined ? undefined : decodeI(info);
      if (decodedInfo?.ok) this.model = `${decodedInfo.value.manufacturer} ${decodedInfo.value.model}`.trim();
      const ratings = await this.query(MEGATEC_QUERY_RATINGS, '#');
      const decodedRatings = ratings === undefined ? undefined : decodeF(ratings);
      if (decodedRatings?.ok) this.nominalBatteryV = decodedRatings.value.batteryV;
      this.identified = true;
    }
    const line = await this.query(MEGATEC_QUERY_STATUS, '(');
    if (line === undefined) return undefined;
    const decoded = decodeQ1(line);
    if (!decoded.ok) {
      this.counters_.drop(`q1-${decoded.reason}`, line.length + 1);
      return undefined;
    }
    const q1 = decoded.value;
    this.last = q1;
    const alarms: string[] = [];
    if (q1.upsFailed) alarms.push('ups-failed');
    if (q1.bypassActive) alarms.push('bypass-boost-buck');
    if (q1.testInProgress) alarms.push('test-in-progress');
    if (q1.shutdownActive) alarms.push('shutdown-active');
    return {
      status: {
        source: this.name,
        acPresent: !q1.utilityFail,
        socPercent: this.estimateSoc(q1.batteryV),
        packMv: Math.round(q1.batteryV * 1000),
        temperaturesC: [q1.temperatureC],
        lowBattery: q1.batteryLow,
        alarms,
        atMs: this.clock.nowMs(),
      },
      powerOffPending: q1.shutdownActive,
    };
  }

  /** Linear between the configured empty and full voltages, as NUT's battery.voltage.low/high estimate. */
  private estimateSoc(batteryV: number): number | undefined {
    const low = this.megatec.batteryVoltsLow;
    const high = this.megatec.batteryVoltsHigh;
    if (low === undefined || high === undefined || high <= low) return undefined;
    return Math.round(Math.min(100, Math.max(0, ((batteryV - low) / (high - low)) * 100)));
  }

  override async cutPower(delayMs: number): Promise<CommandResult> {
    const command = megatecShutdownCommand(delayMs);
    if (command === undefined) return { ok: false, reason: 'out-of-range' };
    return this.commandAndCheck(command, true);
  }

  override async cancelCut(): Promise<CommandResult> {
    return this.commandAndCheck(MEGATEC_CANCEL_SHUTDOWN, false);
  }

  private async commandAndCheck(command: string, shutdownExpected: boolean): Promise<CommandResult> {
    if (!this.linkUp) return { ok: false, reason: 'link-down' };
    // The command has no answer: send it with no collector waiting, then read Q1 back.
    await this.exchange(encodeAscii(command), () => false, 1);
    const line = await this.query(MEGATEC_QUERY_STATUS, '(');
    const decoded = line === undefined ? undefined : decodeQ1(line);
    if (!decoded?.ok) return { ok: false, reason: 'timeout' };
    this.last = decoded.value;
    return decoded.value.shutdownActive === shutdownExpected ? { ok: true } : { ok: false, reason: 'state' };
  }

  /** Identity read with `I` and the nominal battery voltage from `F`, once known. */
  get identity(): { model?: string; nominalBatteryV?: number; last?: Q1Status } {
    return { model: this.model, nominalBatteryV: this.nominalBatteryV, last: this.last };
  }
}
