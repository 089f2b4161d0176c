/**
 * A Daly BMS (legacy UART protocol) as a PowerSource. Real units now and then send one corrupted frame
 * (dbus-serialbattery ignores a single bad 0x95 read), so every command's last good answer is kept for one
 * more poll: one bad or missing frame changes nothing, two in a row drop that part of the status (and two
 * missing SOC answers fail the poll).
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
  DalyAccumulator,
  DalyCommand,
  dalyRequest,
  DALY_BMS_ADDRESS,
  decodeDalyCells,
  decodeDalyFailures,
  decodeDalySoc,
  decodeDalyStatus,
  decodeDalyTemperatures,
  type DalyFrame,
} from './codec.ts';

export interface DalySourceOptions extends PolledOptions {
  readonly invertCurrent?: boolean;
  /** Host address byte, 0x40 for board 1. */
  readonly address?: number;
  readonly acDischargeThresholdMa: number;
}

/** Misses tolerated per command before its last good answer is dropped. */
const DALY_MISSES_TOLERATED = 1;
/** Largest cell count we ask for (Daly boards go to 32 series cells), which bounds the 0x95 frames awaited. */
const DALY_CELLS_MAX = 32;

export class DalyPowerSource extends PolledPowerSource<DalyFrame> {
  readonly capabilities: PowerSourceCapabilities = { cutPower: false, holdPower: false, pushEvents: false };
  private readonly cache = new Map<number, { frames: Uint8Array[]; misses: number }>();

  constructor(transport: Transport, private readonly daly: DalySourceOptions) {
    super(`daly:${transport.name}`, transport, daly);
  }

  protected createParser(counters: Counters, onFrame: (frame: DalyFrame) => void): StreamParser {
    return new DalyAccumulator(counters, onFrame);
  }

  protected override onOpen(): void {
    this.cache.clear();
  }

  /** Ask `command` and collect `count` answer frames; fall back to the cached answer once. */
  private async ask(command: number, count = 1): Promise<Uint8Array[] | undefined> {
    const frames: Uint8Array[] = [];
    const complete = await this.exchange(dalyRequest(command, { address: this.daly.address }), (frame) => {
      if (frame.address !== DALY_BMS_ADDRESS || frame.command !== command) return false;
      frames.push(frame.data);
      return frames.length >= count;
    });
    const cached = this.cache.get(command);
    if (complete) {
      this.cache.set(command, { frames, misses: 0 });
      return frames;
    }
    if (!cached || cached.misses >= DALY_MISSES_TOLERATED) {
      this.cache.delete(command);
      return undefined;
    }
    cached.misses++;
    this.counters_.add('daly.tolerated-misses');
    return cached.frames;
  }

  protected async poll(): Promise<PollResult | undefined> {
    const socFrames = await this.ask(DalyCommand.SOC);
    if (!socFrames) return undefined;
    const soc = decodeDalySoc(socFrames[0]!);
    const statusFrames = await this.ask(DalyCommand.STATUS);
    const status = statusFrames ? decodeDalyStatus(statusFrames[0]!) : undefined;
    const cellCount = Math.min(status?.cells ?? 0, DALY_CELLS_MAX);
    const cellFrames = cellCount > 0 ? await this.ask(DalyCommand.CELLS, Math.ceil(cellCount / 3)) : undefined;
    const temperatureFrames = status && status.sensors > 0 ? await this.ask(DalyCommand.TEMPERATURES, Math.ceil(status.sensors / 7)) : undefined;
    const failureFrames = await this.ask(DalyCommand.FAILURES);
    const currentMa = (this.daly.invertCurrent ? -1 : 1) * soc.currentMa;
    const alarms = failureFrames ? decodeDalyFailures(failureFrames[0]!) : [];
    return {
      status: {
        source: this.name,
        acPresent: acFromCurrent(currentMa, this.daly.acDischargeThresholdMa),
        socPercent: soc.socPercent,
        packMv: soc.packMv,
        currentMa,
        cellMv: cellFrames ? cellsFrom(cellFrames, cellCount) : undefined,
        temperaturesC: temperatureFrames && status ? temperaturesFrom(temperatureFrames, status.sensors) : undefined,
        // Daly has no low-battery flag; its under-voltage alarms (levels 1 and 2) are the nearest thing.
        lowBattery: alarms.some((alarm) => /^(cell|pack)-uv-/.test(alarm)),
        alarms,
        atMs: this.clock.nowMs(),
      },
    };
  }
}

function cellsFrom(frames: Uint8Array[], count: number): number[] {
  const cells: number[] = [];
  for (const frame of frames.map(decodeDalyCells).sort((a, b) => a.frameNumber - b.frameNumber)) cells.push(...frame.cellMv);
  return cells.slice(0, count);
}

function temperaturesFrom(frames: Uint8Array[], count: number): number[] {
  const temperatures: number[] = [];
  for (const frame of frames.map(decodeDalyTemperatures).sort((a, b) => a.frameNumber - b.frameNumber)) temperatures.push(...frame.temperaturesC);
  return temperatures.slice(0, count);
}
