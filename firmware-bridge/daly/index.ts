/**
 * Daly BMS, legacy UART commands 0x90-0x98 in 13-byte frames: the pure codec and accumulator, and the
 * polled PowerSource that infers mains from the pack current.
 * The simulated device (sim-device.ts) and the CLI's decoder (decoder.ts) are entered directly by cli/, not
 * from here, so that the daemon never loads them.
 */
export * from './codec.ts';
export { DalyPowerSource, type DalySourceOptions } from './source.ts';
