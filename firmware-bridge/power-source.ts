/**
 * `createPowerSource`: the one entry point the agent uses to get a PowerSource from its config.
 */
import {
  AC_DISCHARGE_THRESHOLD_MA_DEFAULT,
  BridgeError,
  createTransport,
  NoPowerSource,
  type BridgeClock,
  type BridgeLogger,
  type PowerSource,
  type PowerSourceConfig,
} from './core/index.ts';
import { BridgePowerSource } from './bridge/index.ts';
import { JbdPowerSource } from './jbd/index.ts';
import { DalyPowerSource } from './daly/index.ts';
import { MegatecPowerSource } from './megatec/index.ts';
import { NUT_PORT_DEFAULT, NutPowerSource } from './nut/index.ts';
import { SysfsPowerSource } from './sysfs/index.ts';

/** The bridge's default line speed: 115200 baud carries a full frame in 23 ms. */
export const BRIDGE_BAUD_DEFAULT = 115200;
/** JBD and Daly UARTs run at 9600 baud (dbus-serialbattery's baud table); Megatec at 2400 (nutdrv_qx.c). */
export const JBD_BAUD_DEFAULT = 9600;
export const DALY_BAUD_DEFAULT = 9600;
export const Q1_BAUD_DEFAULT = 2400;

/**
 * Poll periods. One second keeps a polled device's mains-lost latency near the bridge's push (plus one
 * period) while a 9600-baud BMS spends under 10 % of the line on it; NUT itself polls every 2-5 s.
 */
export const POLL_MS_DEFAULT = 1000;
export const SYSFS_POLL_MS_DEFAULT = 500;
/** Answer timeouts: a JBD or Daly answer is a few dozen bytes at 9600 baud (under 50 ms), Q1 is 47 bytes at 2400 (200 ms). */
const ANSWER_TIMEOUT_MS = { jbd: 500, daly: 300, q1: 1000, nut: 2000 } as const;

export interface PowerSourceDeps {
  readonly logger?: BridgeLogger;
  /** One clock for every timer and timestamp of the source and its transport; the system clock by default. */
  readonly clock?: BridgeClock;
}

export function createPowerSource(config: PowerSourceConfig, deps: PowerSourceDeps = {}): PowerSource {
  const { logger, clock } = deps;
  switch (config.kind) {
    case 'none':
      return new NoPowerSource(clock);
    case 'bridge':
      return new BridgePowerSource({
        transport: createTransport(config.transport, { defaultBaudRate: BRIDGE_BAUD_DEFAULT, clock }),
        logger,
        clock,
        agent: 'lastgasp',
        invertCurrent: config.invertCurrent,
      });
    case 'jbd':
      return new JbdPowerSource(createTransport(config.transport, { defaultBaudRate: JBD_BAUD_DEFAULT, clock }), {
        pollMs: config.pollMs ?? POLL_MS_DEFAULT,
        answerTimeoutMs: ANSWER_TIMEOUT_MS.jbd,
        logger,
        clock,
        invertCurrent: config.invertCurrent,
        acDischargeThresholdMa: config.acDischargeThresholdMa ?? AC_DISCHARGE_THRESHOLD_MA_DEFAULT,
      });
    case 'daly':
      return new DalyPowerSource(createTransport(config.transport, { defaultBaudRate: DALY_BAUD_DEFAULT, clock }), {
        pollMs: config.pollMs ?? POLL_MS_DEFAULT,
        answerTimeoutMs: ANSWER_TIMEOUT_MS.daly,
        logger,
        clock,
        invertCurrent: config.invertCurrent,
        address: config.address,
        acDischargeThresholdMa: config.acDischargeThresholdMa ?? AC_DISCHARGE_THRESHOLD_MA_DEFAULT,
      });
    case 'q1':
      return new MegatecPowerSource(createTransport(config.transport, { defaultBaudRate: Q1_BAUD_DEFAULT, clock }), {
        pollMs: config.pollMs ?? POLL_MS_DEFAULT,
        answerTimeoutMs: ANSWER_TIMEOUT_MS.q1,
        logger,
        clock,
        batteryVoltsLow: config.batteryVoltsLow,
        batteryVoltsHigh: config.batteryVoltsHigh,
      });
    case 'nut':
      return new NutPowerSource(createTransport({ type: 'tcp', host: config.host, port: config.port ?? NUT_PORT_DEFAULT }, { defaultBaudRate: 0, clock }), {
        pollMs: config.pollMs ?? POLL_MS_DEFAULT,
        answerTimeoutMs: ANSWER_TIMEOUT_MS.nut,
        logger,
        clock,
        ups: config.ups,
        username: config.username,
        passwordFile: config.passwordFile,
      });
    case 'sysfs':
      return new SysfsPowerSource({ path: config.path, pollMs: config.pollMs ?? SYSFS_POLL_MS_DEFAULT, clock });
    default:
      throw new BridgeError('CONFIG_INVALID', `power.source.kind: "${(config as { kind: string }).kind}" is not one of none, bridge, jbd, daly, q1, nut, sysfs`);
  }
}
