/**
 * The agent's door to firmware-bridge's factory: the same `createPowerSource`, with the bridge's own
 * `BridgeError` turned into the agent's `LastgaspError` of the same code, so that `lastgasp run` treats a
 * power source it cannot build like any other configuration error (exit 78), while firmware-bridge/ imports
 * nothing from the agent.
 */
import { createPowerSource as createBridgePowerSource, isBridgeError, type BridgeErrorCode, type PowerSource, type PowerSourceConfig, type PowerSourceDeps } from '../../firmware-bridge/index.ts';
import { LastgaspError, type ErrorCode } from '../util/index.ts';

/** Every code the bridge raises, and the agent's code for it (a new bridge code fails to compile here until mapped). */
const AGENT_CODE: Record<BridgeErrorCode, ErrorCode> = {
  CONFIG_INVALID: 'CONFIG_INVALID',
};

export function createPowerSource(config: PowerSourceConfig, deps: PowerSourceDeps = {}): PowerSource {
  try {
    return createBridgePowerSource(config, deps);
  } catch (error) {
    if (isBridgeError(error)) throw new LastgaspError(AGENT_CODE[error.code], error.message, undefined, { cause: error });
    throw error;
  }
}
