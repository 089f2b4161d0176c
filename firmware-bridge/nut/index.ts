/**
 * A UPS behind a NUT server (upsd, TCP 3493): the pure line codec of the network protocol and the polled
 * PowerSource (OL/OB for mains, FSD for a cut). No simulated device: the tests run a real upsd.
 */
export * from './codec.ts';
export { NutPowerSource, type NutSourceOptions } from './source.ts';
