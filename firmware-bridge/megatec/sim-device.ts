/**
 * The simulator answering as a Megatec UPS: `Q1`, `F`, `I`, shutdown `S<n>` / `S<n>R<m>`, cancel `C`, and
 * the beeper and test commands. Like real units it echoes a command it does not know.
 */
import { DelimitedAccumulator } from '../core/index.ts';
import { encodeQ1, MEGATEC_LINE_LEN_MAX, parseMegatecShutdown, Q1_TERMINATOR } from './codec.ts';
import { PolledSimProtocol, type SimDevice, type SimLine, type SimLink } from '../sim/index.ts';

/** Mains as the simulated UPS sees it: 230 V 50 Hz, 0 V when lost. */
const MAINS_V = 230;
const MAINS_HZ = 50;
/** Rated load of the simulated UPS, to express the gateway's current as a load percentage. */
const RATED_LOAD_MA = 5000;
/** `#` + 15 + space + 10 + space + 10 characters, CR: the 39-byte `I` answer of nutdrv_qx's table. */
const I_REPLY = `#${'lastgasp'.padEnd(15)} ${'BMS-SIM'.padEnd(10)} ${'sim-1'.padEnd(10)}\r`;

const ascii = new TextDecoder('latin1');
const bytes = (text: string) => Uint8Array.from(text, (char) => char.charCodeAt(0));

export class Q1SimProtocol extends PolledSimProtocol {
  protected readonly accumulator: DelimitedAccumulator;
  private beeper = true;

  constructor(private readonly device: SimDevice, private readonly link: SimLink, private readonly emit: (line: SimLine) => void) {
    super();
    this.accumulator = new DelimitedAccumulator({ delimiter: Q1_TERMINATOR, frameLenMax: MEGATEC_LINE_LEN_MAX }, this.stats, (line) => this.onCommand(ascii.decode(line).trim()));
  }

  private onCommand(command: string): void {
    if (command === '') return;
    this.device.tick();
    if (command === 'Q1') return this.link.write(bytes(this.q1()));
    if (command === 'F') return this.link.write(bytes(this.ratings()));
    if (command === 'I') return this.link.write(bytes(I_REPLY));
    if (command === 'C') {
      this.emit({ event: 'command', kind: 'cancel' });
      this.device.cancelCut();
      return;
    }
    const shutdownMs = parseMegatecShutdown(command);
    if (shutdownMs !== undefined) {
      this.emit({ event: 'command', kind: 'cut', delayMs: shutdownMs, raw: command });
      this.device.cut(shutdownMs);
      return;
    }
    if (command === 'Q') {
      this.beeper = !this.beeper;
      return;
    }
    if (/^(T|TL|T\d\d|CT)$/.test(command)) {
      this.emit({ event: 'command', kind: 'test', raw: command });
      return;
    }
    this.link.write(bytes(`${command}\r`));
  }

  private q1(): string {
    const status = this.device.status();
    const cellsV = status.packMv / 1000;
    return encodeQ1({
      inputV: status.acPresent ? MAINS_V : 0,
      inputFaultV: status.acPresent ? MAINS_V : 0,
      outputV: status.powered ? MAINS_V : 0,
      loadPercent: status.powered ? Math.min(100, Math.round((status.loadMa / RATED_LOAD_MA) * 100)) : 0,
      frequencyHz: MAINS_HZ,
      batteryV: cellsV >= 100 ? cellsV / status.cells : cellsV,
      temperatureC: status.temperatureDeciC / 10,
      utilityFail: !status.acPresent,
      batteryLow: status.lowBattery,
      bypassActive: false,
      upsFailed: false,
      standby: true,
      testInProgress: false,
      shutdownActive: status.cutPendingMs !== undefined,
      beeperOn: this.beeper,
    });
  }

  private ratings(): string {
    const status = this.device.status();
    const nominalV = (status.cells * this.nominalCellMv()) / 1000;
    return `#${MAINS_V.toFixed(1).padStart(5, '0')} 000 ${nominalV.toFixed(1).padStart(5, '0')} ${MAINS_HZ.toFixed(1).padStart(4, '0')}\r`;
  }

  private nominalCellMv(): number {
    return this.device.battery.options.chemistry === 'lifepo4' ? 3200 : 3600;
  }
}
