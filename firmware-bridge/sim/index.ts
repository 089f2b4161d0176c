/**
 * The simulator's device-neutral parts: the battery model, the device state (mains, thresholds, cuts,
 * restarts), the links it listens on (TCP, a tty, a socat pty), the protocol interface each simulated device
 * implements, and the control commands. Each protocol folder holds its own simulated device
 * (`jbd/sim-device.ts`, ...) built on these; `lastgasp bms-sim` (cli/bms-sim.ts) assembles them. Nothing in
 * the daemon imports this folder.
 */
export { Battery, BATTERY_DEFAULTS, restingCellMv, type BatteryOptions, type Chemistry } from './battery.ts';
export { parseControl, garbageBytes, CONTROL_HELP, type ControlCommand, type ControlParse } from './control.ts';
export { SimDevice, THRESHOLD_DEFAULTS, type Thresholds, type SimLine, type SimStatus } from './device.ts';
export { TcpSimLink, TtySimLink, PtySimLink, type SimLink, type SimLinkHandlers } from './link.ts';
export { PolledSimProtocol, type SimProtocol } from './protocol.ts';
