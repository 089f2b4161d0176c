/**
 * The bridge's own typed error, so that this folder stays free of the agent: expected operating errors
 * carry a stable `code` and a message that names the field and the fix. The agent turns them into its
 * `LastgaspError` of the same code where it needs one (agent/power/bridge-source.ts). Programmer errors
 * (a transport started twice, a frame field out of range) stay plain `Error`/`RangeError`.
 */
export type BridgeErrorCode =
  /** A power source configuration the bridge cannot build (an unknown `power.source.kind`). */
  'CONFIG_INVALID';

export class BridgeError extends Error {
  readonly code: BridgeErrorCode;

  constructor(code: BridgeErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'BridgeError';
    this.code = code;
  }
}

export function isBridgeError(error: unknown, code?: BridgeErrorCode): error is BridgeError {
  return error instanceof BridgeError && (code === undefined || error.code === code);
}
