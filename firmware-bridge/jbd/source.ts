/**
 * A JBD smart BMS as a PowerSource: polls basic info (0x03) and cell voltages (0x04), reads the model (0x05)
 * once per connection. A BMS cannot see mains, so mains is inferred from the pack current.
 */
import {
  acFromCurrent,
  PolledPowerSource,
  type Counters,
  type PolledOptions,
  type PollResult,
  type PowerSourceCapabilities,
  type StreamParser,
  type Transport,
} from '../core/index.ts';
import {
  decodeJbdBasic,
  decodeJbdCells,
  decodeJbdHardware,
  JbdAccumulator,
  jbdReadRequest,
  JBD_REG_BASIC,
  JBD_REG_CELLS,
  JBD_REG_HARDWARE,
  JBD_STATUS_OK,
  type JbdFrame,
} from './codec.ts';

export interface JbdSourceOptions extends PolledOptions {
  readonly invertCurrent?: boolean;
  readonly acDischargeThresholdMa: number;
}

export class JbdPowerSource extends PolledPowerSource<JbdFrame> {
  readonly capabilities: PowerSourceCapabilities = { cutPower: false, holdPower: false, pushEvents: false };
  private model: string | undefined;

  constructor(transport: Transport, private readonly jbd: JbdSourceOptions) {
    super(`jbd:${transport.name}`, transport, jbd);
  }

  protected createParser(counters: Counters, onFrame: (frame: JbdFrame) => void): StreamParser {
    return new JbdAccumulator(counters, onFrame);
  }

  protected override onOpen(): void {
    this.model = undefined;
  }

  private async read(register: number): Promise<Uint8Array | undefined> {
    let data: Uint8Array | undefined;
    // Byte 1 of the answer echoes the register on real devices; a frame for another register is a stale answer.
    const complete = await this.exchange(jbdReadRequest(register), (frame) => {
      if (frame.register !== register) return false;
      if (frame.status !== JBD_STATUS_OK) return true;
      data = frame.data;
      return true;
    });
    return complete ? data : undefined;
  }

  protected async poll(): Promise<PollResult | undefined> {
    const basicData = await this.read(JBD_REG_BASIC);
    const basic = basicData && decodeJbdBasic(basicData);
    if (!basic?.ok) return undefined;
    const cellsData = await this.read(JBD_REG_CELLS);
    const cells = cellsData ? decodeJbdCells(cellsData) : undefined;
    if (this.model === undefined) {
      const hardware = await this.read(JBD_REG_HARDWARE);
      if (hardware) {
        const decoded = decodeJbdHardware(hardware);
        if (decoded.ok) this.model = decoded.value;
      }
    }
    const info = basic.value;
    const currentMa = (this.jbd.invertCurrent ? -1 : 1) * info.currentMa;
    return {
      status: {
        source: this.name,
        acPresent: acFromCurrent(currentMa, this.jbd.acDischargeThresholdMa),
        socPercent: info.socPercent,
        packMv: info.packMv,
        currentMa,
        cellMv: cells?.ok ? cells.value : undefined,
        temperaturesC: info.temperaturesC,
        // JBD has no low-battery flag; its under-voltage protection is the nearest thing (the BMS is about to open the discharge FET).
        lowBattery: info.alarms.includes('cell-uv') || info.alarms.includes('pack-uv'),
        alarms: info.alarms,
        atMs: this.clock.nowMs(),
      },
    };
  }
}
