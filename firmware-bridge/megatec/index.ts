/**
 * Megatec / Q1 UPS (Q1, F, I, S<n>, C at 2400 baud): the pure line codec and the polled PowerSource with
 * cut (S<n>) and cancel (C).
 * The simulated device (sim-device.ts) and the CLI's decoder (decoder.ts) are entered directly by cli/, not
 * from here, so that the daemon never loads them.
 */
export * from './codec.ts';
export { MegatecPowerSource, type MegatecSourceOptions } from './source.ts';
