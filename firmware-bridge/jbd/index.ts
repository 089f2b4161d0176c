/**
 * JBD / Xiaoxiang smart BMS (registers 0x03, 0x04, 0x05 at 9600 baud): the pure codec and accumulator,
 * and the polled PowerSource that infers mains from the pack current.
 * The simulated device (sim-device.ts) and the CLI's decoder (decoder.ts) are entered directly by cli/, not
 * from here, so that the daemon never loads them.
 */
export * from './codec.ts';
export { JbdPowerSource, type JbdSourceOptions } from './source.ts';
