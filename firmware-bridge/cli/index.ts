/**
 * The bridge's command lines, which `lastgasp` loads only when asked for them: `lastgasp bms probe|decode`
 * (bms.ts, with one decoder per protocol from its folder) and `lastgasp bms-sim` (bms-sim.ts, which
 * assembles each protocol's simulated device over sim/, with scenario files from scenario.ts).
 * run-bms-sim.ts runs the simulator as a program of its own for the tests; a bad option is explained by
 * core/usage.ts, in the bridge's own code (nothing under firmware-bridge/ imports the agent).
 */
export { bmsMain, BMS_HELP } from './bms.ts';
export { bmsSimMain, BMS_SIM_HELP, SIM_PROTOCOLS, type SimProtocolName } from './bms-sim.ts';
export { DECODERS, PROBE_ORDER, type DecodeOutput, type DecoderName } from './decoders.ts';
export type { Io } from './io.ts';
