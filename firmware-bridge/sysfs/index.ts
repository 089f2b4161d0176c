/**
 * Linux `power_supply` class: the pure reading of its attribute files and the PowerSource that polls the
 * class directory. No simulated device: the tests write a directory of the same shape.
 */
export * from './codec.ts';
export { SysfsPowerSource, type SysfsSourceOptions } from './source.ts';
