/**
 * `lastgasp bms decode --protocol jbd`: captured bytes through the driver's accumulator, each frame named
 * (request, basic info, cells, hardware) and decoded as the driver would read it.
 */
import { OrderedDrops, type DecodeOutput } from '../core/index.ts';
import { decodeJbdBasic, decodeJbdCells, decodeJbdHardware, JbdAccumulator, JBD_OP_READ, JBD_REG_BASIC, JBD_REG_CELLS, JBD_REG_HARDWARE, JBD_STATUS_OK, type JbdFrame } from './codec.ts';

export function decodeJbd(bytes: Uint8Array): DecodeOutput[] {
  const out: DecodeOutput[] = [];
  const accumulator = new JbdAccumulator(new OrderedDrops(out), (frame) => out.push(describeJbd(frame)));
  accumulator.push(bytes);
  accumulator.flush();
  return out;
}

function describeJbd(frame: JbdFrame): DecodeOutput {
  const isRequest = (frame.register === JBD_OP_READ || frame.register === 0x5a) && frame.data.length === 0 && frame.status <= JBD_REG_HARDWARE;
  if (isRequest) return { ok: true, request: frame.register === JBD_OP_READ ? 'read' : 'write', register: frame.status };
  if (frame.status !== JBD_STATUS_OK) return { ok: false, reason: 'status', register: frame.register, status: frame.status };
  const register = [JBD_REG_BASIC, JBD_REG_CELLS, JBD_REG_HARDWARE].includes(frame.register) ? frame.register : guessJbdRegister(frame.data);
  const guessed = register !== frame.register;
  const base = { ok: true as const, register, ...(guessed ? { registerGuessed: true, byte1: frame.register } : {}) };
  if (register === JBD_REG_BASIC) {
    const basic = decodeJbdBasic(frame.data);
    return basic.ok ? { ...base, basic: basic.value } : { ok: false, reason: 'basic info too short', register };
  }
  if (register === JBD_REG_CELLS) {
    const cells = decodeJbdCells(frame.data);
    return cells.ok ? { ...base, cellMv: cells.value } : { ok: false, reason: 'odd cell data length', register };
  }
  const hardware = decodeJbdHardware(frame.data);
  return hardware.ok ? { ...base, model: hardware.value } : { ok: false, reason: 'hardware', register };
}

/**
 * Some printed captures show A5 in byte 1 instead of the register. Guess from the data: printable ASCII is
 * the model string, a run of plausible cell voltages is register 0x04, anything at least 23 bytes is 0x03.
 */
function guessJbdRegister(data: Uint8Array): number {
  if (data.length > 0 && data.every((byte) => byte >= 0x20 && byte < 0x7f)) return JBD_REG_HARDWARE;
  const cells = decodeJbdCells(data);
  if (cells.ok && cells.value.length > 0 && cells.value.every((mv) => mv >= 1000 && mv <= 5000)) return JBD_REG_CELLS;
  return JBD_REG_BASIC;
}
