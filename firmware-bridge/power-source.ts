/**
 * `createPowerSource`: the one entry point the agent uses to get a PowerSource from its config.
 */
import type { BridgeLogger, PowerSource, PowerSourceConfig } from './types.ts';
import { BridgePowerSource } from './bridge/host.ts';
import { createTransport } from './transport/index.ts';
import { LastgaspError } from '../agent/util/index.ts';

/** The bridge's default line speed: 115200 baud carries a full frame in 23 ms. */
export const BRIDGE_BAUD_DEFAULT = 115200;

export interface PowerSourceDeps {
  readonly logger?: BridgeLogger;
}

export function createPowerSource(config: PowerSourceConfig, deps: PowerSourceDeps = {}): PowerSource {
  switch (config.kind) {
    case 'bridge':
      return new BridgePowerSource({ transport: createTransport(config.transport, { defaultBaudRate: BRIDGE_BAUD_DEFAULT }), logger: deps.logger, agent: 'lastgasp' });
    default:
      throw new LastgaspError('CONFIG_INVALID', `power.source.kind: "${config.kind}" is not available in this build`);
  }
}
