/** The simulator answering as a JBD smart BMS: registers 0x03 (basic info), 0x04 (cells) and 0x05 (model). */
import { JbdAccumulator, jbdChecksum, JBD_END, JBD_OP_READ, JBD_REG_BASIC, JBD_REG_CELLS, JBD_REG_HARDWARE, JBD_START, JBD_STATUS_OK, type JbdFrame } from './codec.ts';
import { PolledSimProtocol, type SimDevice, type SimLine, type SimLink } from '../sim/index.ts';

/** NTC reading for 0 °C in 0.1 K, as the BMS encodes temperatures. */
const JBD_NTC_ZERO_DECI_K = 2731;
const SIM_MODEL = 'lastgasp-sim-jbd';

/** A response frame: DD reg status len data checksum 77. */
export function jbdResponse(register: number, data: Uint8Array, status = JBD_STATUS_OK): Uint8Array {
  const frame = new Uint8Array(data.length + 7);
  frame[0] = JBD_START;
  frame[1] = register;
  frame[2] = status;
  frame[3] = data.length;
  frame.set(data, 4);
  const checksum = jbdChecksum(frame, 2, 4 + data.length);
  frame[4 + data.length] = checksum >> 8;
  frame[5 + data.length] = checksum & 0xff;
  frame[6 + data.length] = JBD_END;
  return frame;
}

export class JbdSimProtocol extends PolledSimProtocol {
  protected readonly accumulator: JbdAccumulator;

  constructor(private readonly device: SimDevice, private readonly link: SimLink, private readonly emit: (line: SimLine) => void) {
    super();
    this.accumulator = new JbdAccumulator(this.stats, (frame) => this.onRequest(frame));
  }

  private onRequest(frame: JbdFrame): void {
    if (frame.register !== JBD_OP_READ) return;
    this.device.tick();
    const register = frame.status;
    if (register === JBD_REG_BASIC) return this.link.write(jbdResponse(register, this.basic()));
    if (register === JBD_REG_CELLS) return this.link.write(jbdResponse(register, this.cells()));
    if (register === JBD_REG_HARDWARE) return this.link.write(jbdResponse(register, Uint8Array.from(SIM_MODEL, (c) => c.charCodeAt(0))));
    this.emit({ event: 'unknown-request', protocol: 'jbd', register });
  }

  private basic(): Uint8Array {
    const status = this.device.status();
    const battery = this.device.battery.options;
    const data = new Uint8Array(23 + 2);
    const view = new DataView(data.buffer);
    view.setUint16(0, Math.round(status.packMv / 10));
    view.setInt16(2, Math.max(-32768, Math.min(32767, Math.round(status.currentMa / 10))));
    view.setUint16(4, Math.min(0xffff, Math.round(((status.socPercent / 100) * battery.capacityMah) / 10)));
    view.setUint16(6, Math.min(0xffff, Math.round(battery.capacityMah / 10)));
    view.setUint16(16, status.lowBattery ? 1 << 1 : 0);
    view.setUint8(18, 0x10);
    view.setUint8(19, Math.round(status.socPercent));
    view.setUint8(20, status.powered ? 0x03 : 0x01);
    view.setUint8(21, status.cells);
    view.setUint8(22, 1);
    view.setUint16(23, JBD_NTC_ZERO_DECI_K + status.temperatureDeciC);
    return data;
  }

  private cells(): Uint8Array {
    const status = this.device.status();
    const data = new Uint8Array(status.cells * 2);
    const view = new DataView(data.buffer);
    for (let cell = 0; cell < status.cells; cell++) view.setUint16(2 * cell, status.cellMv);
    return data;
  }
}
