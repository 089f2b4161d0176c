/** The simulator answering as a Daly BMS: 0x90-0x98 requests, 13-byte answers from address 0x01. */
import { DalyAccumulator, DalyCommand, dalyChecksum, DALY_BMS_ADDRESS, DALY_DATA_LEN, DALY_FRAME_LEN, DALY_HOST_ADDRESS, DALY_START, type DalyFrame } from './codec.ts';
import { PolledSimProtocol, type SimDevice, type SimLine, type SimLink } from '../sim/index.ts';

const DALY_CURRENT_OFFSET = 30000;
const DALY_TEMPERATURE_OFFSET_C = 40;

/** An answer frame: A5 01 cmd 08 data checksum. */
export function dalyResponse(command: number, data: Uint8Array): Uint8Array {
  const frame = new Uint8Array(DALY_FRAME_LEN);
  frame[0] = DALY_START;
  frame[1] = DALY_BMS_ADDRESS;
  frame[2] = command;
  frame[3] = DALY_DATA_LEN;
  frame.set(data.subarray(0, DALY_DATA_LEN), 4);
  frame[DALY_FRAME_LEN - 1] = dalyChecksum(frame);
  return frame;
}

export class DalySimProtocol extends PolledSimProtocol {
  protected readonly accumulator: DalyAccumulator;

  constructor(private readonly device: SimDevice, private readonly link: SimLink, private readonly emit: (line: SimLine) => void) {
    super();
    this.accumulator = new DalyAccumulator(this.stats, (frame) => this.onRequest(frame));
  }

  private onRequest(frame: DalyFrame): void {
    // A BMS with another board number does not answer at all (batmon-ha#398).
    if (frame.address !== DALY_HOST_ADDRESS) return;
    this.device.tick();
    for (const data of this.answer(frame.command)) this.link.write(dalyResponse(frame.command, data));
  }

  private answer(command: number): Uint8Array[] {
    const status = this.device.status();
    const data = () => new Uint8Array(DALY_DATA_LEN);
    switch (command) {
      case DalyCommand.SOC: {
        const out = data();
        const view = new DataView(out.buffer);
        view.setUint16(0, Math.round(status.packMv / 100));
        view.setUint16(4, Math.max(0, Math.min(0xffff, DALY_CURRENT_OFFSET + Math.round(status.currentMa / 100))));
        view.setUint16(6, Math.round(status.socPercent * 10));
        return [out];
      }
      case DalyCommand.CELL_MINMAX: {
        const out = data();
        const view = new DataView(out.buffer);
        view.setUint16(0, status.cellMv);
        view.setUint8(2, 1);
        view.setUint16(3, status.cellMv);
        view.setUint8(5, 1);
        return [out];
      }
      case DalyCommand.TEMP_MINMAX:
        return [Uint8Array.of(25 + DALY_TEMPERATURE_OFFSET_C, 1, 25 + DALY_TEMPERATURE_OFFSET_C, 1, 0, 0, 0, 0)];
      case DalyCommand.MOS: {
        const out = data();
        const view = new DataView(out.buffer);
        view.setUint8(0, status.currentMa > 0 ? 1 : status.currentMa < 0 ? 2 : 0);
        view.setUint8(1, 1);
        view.setUint8(2, status.powered ? 1 : 0);
        view.setInt32(4, Math.round((status.socPercent / 100) * this.device.battery.options.capacityMah));
        return [out];
      }
      case DalyCommand.STATUS: {
        const out = data();
        const view = new DataView(out.buffer);
        view.setUint8(0, status.cells);
        view.setUint8(1, 1);
        view.setUint8(2, status.acPresent ? 1 : 0);
        view.setUint8(3, status.powered ? 1 : 0);
        return [out];
      }
      case DalyCommand.CELLS:
        return Array.from({ length: Math.ceil(status.cells / 3) }, (_, index) => {
          const out = data();
          const view = new DataView(out.buffer);
          view.setUint8(0, index + 1);
          for (let slot = 0; slot < 3; slot++) if (index * 3 + slot < status.cells) view.setUint16(1 + 2 * slot, status.cellMv);
          return out;
        });
      case DalyCommand.TEMPERATURES:
        return [Uint8Array.of(1, Math.round(status.temperatureDeciC / 10) + DALY_TEMPERATURE_OFFSET_C, 0, 0, 0, 0, 0, 0)];
      case DalyCommand.BALANCE:
        return [data()];
      case DalyCommand.FAILURES: {
        const out = data();
        if (status.lowBattery) out[0] = 1 << 2;
        return [out];
      }
      default:
        this.emit({ event: 'unknown-request', protocol: 'daly', command });
        return [];
    }
  }
}
