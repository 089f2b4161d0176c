/**
 * The public surface of firmware-bridge/ as the daemon uses it: the `PowerSource` interface, the
 * `createPowerSource` factory, the core (clock, errors, counters, transports), the lastgasp bridge protocol
 * and the device protocols (codecs and their sources). The simulator (sim/index.ts) and the command lines
 * (cli/index.ts) have barrels of their own and are not re-exported here, so that importing this file never
 * loads them.
 */
export * from './core/index.ts';
export {
  createPowerSource,
  BRIDGE_BAUD_DEFAULT,
  JBD_BAUD_DEFAULT,
  DALY_BAUD_DEFAULT,
  Q1_BAUD_DEFAULT,
  POLL_MS_DEFAULT,
  SYSFS_POLL_MS_DEFAULT,
  type PowerSourceDeps,
} from './power-source.ts';
export * from './bridge/index.ts';
export * from './jbd/index.ts';
export * from './daly/index.ts';
export * from './megatec/index.ts';
export * from './nut/index.ts';
export * from './sysfs/index.ts';
