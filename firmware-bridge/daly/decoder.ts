/**
 * `lastgasp bms decode --protocol daly`: captured bytes through the driver's accumulator, each answer
 * decoded by its command byte.
 */
import { OrderedDrops, type DecodeOutput } from '../core/index.ts';
import {
  DalyAccumulator,
  DalyCommand,
  DALY_BMS_ADDRESS,
  decodeDalyCellMinMax,
  decodeDalyCells,
  decodeDalyFailures,
  decodeDalyMos,
  decodeDalySoc,
  decodeDalyStatus,
  decodeDalyTemperatureMinMax,
  decodeDalyTemperatures,
  type DalyFrame,
} from './codec.ts';

export function decodeDaly(bytes: Uint8Array): DecodeOutput[] {
  const out: DecodeOutput[] = [];
  const accumulator = new DalyAccumulator(new OrderedDrops(out), (frame) => out.push(describeDaly(frame)));
  accumulator.push(bytes);
  accumulator.flush();
  return out;
}

function describeDaly(frame: DalyFrame): DecodeOutput {
  const base = { ok: true as const, address: frame.address, command: frame.command };
  if (frame.address !== DALY_BMS_ADDRESS) return { ...base, request: true };
  switch (frame.command) {
    case DalyCommand.SOC:
      return { ...base, soc: decodeDalySoc(frame.data) };
    case DalyCommand.CELL_MINMAX:
      return { ...base, cellMinMax: decodeDalyCellMinMax(frame.data) };
    case DalyCommand.TEMP_MINMAX:
      return { ...base, temperatureMinMax: decodeDalyTemperatureMinMax(frame.data) };
    case DalyCommand.MOS:
      return { ...base, mos: decodeDalyMos(frame.data) };
    case DalyCommand.STATUS:
      return { ...base, status: decodeDalyStatus(frame.data) };
    case DalyCommand.CELLS:
      return { ...base, cells: decodeDalyCells(frame.data) };
    case DalyCommand.TEMPERATURES:
      return { ...base, temperatures: decodeDalyTemperatures(frame.data) };
    case DalyCommand.FAILURES:
      return { ...base, failures: decodeDalyFailures(frame.data) };
    default:
      return { ...base, data: Array.from(frame.data) };
  }
}
